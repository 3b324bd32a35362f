"""`make bench`: every ratio benchmark in one bounded run, written to ``bench/RESULTS.md``.

    .venv/bin/python bench/run.py              # the full run (about 13 minutes, at most 15)
    .venv/bin/python bench/run.py --quick      # about 3 minutes: fewer rounds, shorter samples
    .venv/bin/python bench/run.py --only goals # just G1-G10 (no other engineers' benches)

1. The other benches (codegen, queue, HTTP, channels, telemetry, dashboard) run as child
   processes with bounded settings and ``--write``; each rewrites its own section.
2. The goals G1-G10 (docs/performance.md): the round-trip groups of :mod:`roundtrip` (interleaved rounds of
   fresh processes), the codec microbenchmark (G7) and the handshake check (G10).
3. The top summary and the "Round trips" section of ``bench/RESULTS.md`` are rewritten: machine,
   versions, command, every ratio with its median, min..max, target and verdict.

Every child runs under a timeout in its own process group; whatever is still running at the end
(or on SIGINT/SIGTERM) is killed. The run stops starting new work when its time budget is spent.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import roundtrip  # noqa: E402
from roundtrip import GroupResult, summary  # noqa: E402

RESULTS = BENCH / "RESULTS.md"
_BEGIN, _END = "<!-- run-summary:begin -->", "<!-- run-summary:end -->"
_RT_BEGIN, _RT_END = "<!-- roundtrip-bench:begin -->", "<!-- roundtrip-bench:end -->"
_RT_TITLE = "## Round trips: goals G1-G10 (docs/performance.md)"
#: Wall-clock budget of the whole run, seconds (decisions.md: 15 minutes).
BUDGET_S = 15 * 60


# ================================================================================================
# The other engineers' benches
# ================================================================================================
@dataclass(frozen=True)
class OtherBench:
    """A bench script run as a child with bounded settings."""

    name: str
    script: str
    full: tuple[str, ...]
    quick: tuple[str, ...]
    timeout: float
    headline: Callable[[str], str]


def _grab(pattern: str, text: str, fmt: str = "{}") -> str:
    match = re.search(pattern, text, re.S)
    return fmt.format(*match.groups()) if match else "see its section"


def _section(text: str, marker: str) -> str:
    match = re.search(rf"<!-- {marker}:begin -->(.*?)<!-- {marker}:end -->", text, re.S)
    return match.group(1) if match else ""


OTHERS = [
    OtherBench(
        "codegen (500 functions)",
        "codegen_bench.py",
        ("--functions", "500", "--repeat", "3"),
        ("--functions", "200", "--repeat", "1"),
        240,
        lambda t: _grab(
            r"codegen-bench:begin.*?\| in-process \(`jobs=1`\) \| ([\d.]+ s) .*?\| (yes|no) \|",
            t,
            "{} in-process (goal < 5 s: {})",
        ),
    ),
    OtherBench(
        "queue msgs/s",
        "queue_bench.py",
        ("--messages", "5000"),
        ("--messages", "1000"),
        180,
        lambda t: _grab(
            r"queue-bench:begin.*?named queue \(`Enqueue`\) \| memory \| \d+ \| (\d+) \| (\d+) \|",
            t,
            "named queue in memory: {} accepted, {} end to end msg/s",
        ),
    ),
    OtherBench(
        "HTTP req/s vs bare aiohttp",
        "http_bench.py",
        ("--duration", "3", "--repeat", "3"),
        ("--duration", "1", "--repeat", "1"),
        180,
        lambda t: _grab(
            r"http-bench:begin.*?\| sequential \(1 in flight\) \| ([\d,]+) \| ([\d,]+) \| ([\d.]+) .*?"
            r"\| 32 in flight \| ([\d,]+) \| ([\d,]+) \| ([\d.]+) ",
            t,
            "ratio {2} sequential, {5} at 32 in flight",
        ),
    ),
    OtherBench(
        "channel MiB/s vs raw relay, stream fan-out",
        "channels_bench.py",
        ("--mib", "256", "--repeat", "3", "--subscribers", "100", "--updates", "2000"),
        ("--mib", "64", "--repeat", "1", "--subscribers", "50", "--updates", "500"),
        240,
        lambda t: _grab(
            r"channels-bench:begin.*?ratio channel / raw \| ([\d.]+) \|.*?updates/s delivered to all "
            r"(\d+) subscribers \| ([\d,]+) \|",
            t,
            "channel/raw {0}; {2} updates/s to {1} subscribers",
        ),
    ),
    OtherBench(
        "telemetry on/off, span ingestion",
        "telemetry_bench.py",
        ("--duration", "3", "--rounds", "4"),
        ("--duration", "1", "--rounds", "1", "--frames", "50"),
        240,
        lambda t: _grab(
            r"telemetry-bench:begin.*?\| sequential \(1 in flight\) \| [\d,]+ \| [\d,]+ \| ([\d.]+%) .*?"
            r"\| 64 in flight \| [\d,]+ \| [\d,]+ \| ([\d.]+%) .*?Engine ingestion: ([\d,]+) spans/s",
            t,
            "overhead {} sequential, {} at 64 in flight (target < 25 %); {} spans/s ingested",
        ),
    ),
    OtherBench(
        "TUI replay",
        "tui_bench.py",
        ("--seconds", "60"),
        ("--quick",),
        150,
        lambda t: _grab(r"tui-bench:begin.*?All goals met: (yes|no)", t, "all dashboard goals met: {}"),
    ),
]


def run_other(bench: OtherBench, quick: bool, log: IO[bytes], write: bool = True) -> tuple[str, float, str]:
    """Run one bench (with ``--write`` unless ``write`` is false); return (status, seconds, command)."""
    args = (*(bench.quick if quick else bench.full), *(("--write",) if write else ()))
    argv = [sys.executable, str(BENCH / bench.script), *args]
    command = f".venv/bin/python bench/{bench.script} {' '.join(args)}"
    started = time.monotonic()
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=log, process_group=0)
    try:
        code = proc.wait(bench.timeout)
        status = "ok" if code == 0 else f"failed (exit {code})"
    except subprocess.TimeoutExpired:
        status = f"timed out after {bench.timeout:.0f} s"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the bench's own children too
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
    return status, time.monotonic() - started, command


# ================================================================================================
# G7 and G10
# ================================================================================================
def codec_ratio(pairs: int, number: int) -> list[float]:
    """G7: our typed decode + encode of an ``invokefunction`` / orjson loads + dumps of the same
    bytes, per pair (each side the best of 3 interleaved timeit runs of ``number`` calls)."""
    import uuid

    import orjson
    from driver import PAYLOAD

    from iii_typed.protocol import codec
    from iii_typed.protocol.frames import InvokeFunction

    frame = InvokeFunction(
        type="invokefunction",
        invocation_id=uuid.uuid4(),
        function_id="bench::echo",
        data=PAYLOAD,
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        baggage="tenant=acme",
    )
    message = codec.encode(frame)

    def ours() -> None:
        codec.encode(codec.decode(message))

    def reference() -> None:
        orjson.dumps(orjson.loads(message))

    ratios = []
    for _ in range(pairs):
        a: list[float] = []
        b: list[float] = []
        for _ in range(3):  # interleaved within the pair too: load spikes hit both sides
            a.append(timeit.timeit(reference, number=number))
            b.append(timeit.timeit(ours, number=number))
        ratios.append(min(b) / min(a))
    return ratios


def handshake_check() -> tuple[bool, str]:
    """G10: no WebSocket extension is negotiated, engine side nor client side."""
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import ServerConnection, serve

    from iii_typed import III, InitOptions
    from iii_typed.engine.process import EngineProcess

    offered: list[str | None] = []
    seen = asyncio.Event()

    async def record(ws: ServerConnection) -> None:
        assert ws.request is not None
        offered.append(ws.request.headers.get("Sec-WebSocket-Extensions"))
        seen.set()
        await ws.close()

    async def check(url: str) -> tuple[str | None, str | None]:
        async with connect(url, compression="deflate") as ws:  # a client that offers deflate
            assert ws.response is not None
            engine_answer = ws.response.headers.get("Sec-WebSocket-Extensions")
        async with serve(record, "127.0.0.1", 0) as server:  # a server that would accept deflate
            port = next(iter(server.sockets)).getsockname()[1]
            client = III(f"ws://127.0.0.1:{port}", InitOptions(otel={"enabled": False}))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(seen.wait(), 10)
            await client.shutdown_async()
        return engine_answer, offered[0] if offered else "(no handshake seen)"

    with EngineProcess(env={"OTEL_ENABLED": "false"}) as engine:
        engine_answer, client_offer = asyncio.run(check(engine.url))
    ok = engine_answer is None and client_offer is None
    note = (
        f"engine answers a deflate offer with {engine_answer or 'no extension'}; "
        f"the SDK offers {client_offer or 'no extension'}"
    )
    return ok, note


# ================================================================================================
# Goals
# ================================================================================================
@dataclass
class Goal:
    """One row of the goals table."""

    gid: str
    what: str
    target: str
    values: list[float] | None
    passed: bool | None
    note: str
    lower_is_better: bool = False

    def cells(self) -> list[str]:
        """Markdown cells: id, what, median (min..max), target, verdict, note."""
        if self.values:
            med, lo, hi = summary(self.values)
            value = f"**{med:.2f}** ({lo:.2f}..{hi:.2f})"
        else:
            value = "n/a"
        verdict = "skipped" if self.passed is None else ("PASS" if self.passed else "MISS")
        return [self.gid, self.what, value, self.target, verdict, self.note]


def _ratio_goal(
    gid: str,
    what: str,
    target: float,
    result: GroupResult | None,
    b: tuple[str, str],
    a: tuple[str, str],
    note: str,
) -> Goal:
    if result is None:
        return Goal(gid, what, f"≥ {target:.2f}", None, None, "not run")
    values = result.ratios(b, a)
    if not values:
        return Goal(
            gid, what, f"≥ {target:.2f}", None, None, "no complete round: " + "; ".join(result.errors)
        )
    return Goal(gid, what, f"≥ {target:.2f}", values, statistics.median(values) >= target, note)


def _official_installed() -> bool:
    try:
        importlib.metadata.version("iii-sdk")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def goals(
    results: dict[str, GroupResult], g7: list[float] | None, g10: tuple[bool, str] | None
) -> list[Goal]:
    """G1-G10 from the measured groups."""
    core, g5, g6, tui = (results.get(k) for k in ("core", "g5", "g6", "tui"))
    rows = [
        _ratio_goal(
            "G1",
            "our engine + our SDK (caller and worker) / reference relay + raw clients, sequential",
            0.80,
            core,
            ("ours", "async 1"),
            ("ref", "async 1"),
            "the SDK + engine overhead budget on one round trip",
        ),
        _ratio_goal(
            "G2",
            "same, 64 in flight",
            0.70,
            core,
            ("ours", "async 64"),
            ("ref", "async 64"),
            "concurrency exposes the hot paths of all three processes",
        ),
        _ratio_goal(
            "G3",
            "our engine / reference relay, both with raw clients, 64 in flight",
            0.85,
            core,
            ("oeng", "async 64"),
            ("ref", "async 64"),
            "isolates the engine",
        ),
        _ratio_goal(
            "G4",
            "our sync `trigger` / our `trigger_async`, sequential (same caller process)",
            0.85,
            core,
            ("ours", "sync 1"),
            ("ours", "async 1"),
            "the thin-shell principle",
        ),
    ]
    official = _official_installed()
    for gid, result, a_key, b_key, what, seq_t, conc_t, note in (
        (
            "G5",
            g5,
            "off5",
            "ours5",
            "ours / iii-sdk 0.25 on our engine: stdlib asyncio, own codec, OTel off, `async def`",
            1.2,
            1.2,
            "like for like",
        ),
        (
            "G6",
            g6,
            "off6",
            "ours6",
            "ours with `[fast]` (uvloop) / iii-sdk 0.25 defaults, `def` handler, OTel on for both",
            1.5,
            2.5,
            "recommended install against the official defaults",
        ),
    ):
        for mode, target, label in (("async 1", seq_t, "sequential"), ("async 64", conc_t, "64 in flight")):
            if not official:
                rows.append(
                    Goal(f"{gid} {label[:3]}", what, f"≥ {target:.1f}", None, None, "iii-sdk not installed")
                )
                continue
            rows.append(
                _ratio_goal(
                    f"{gid} {label[:3]}",
                    f"{what}; {label}",
                    target,
                    result,
                    (b_key, mode),
                    (a_key, mode),
                    note,
                )
            )
    if g7 is None:
        rows.append(Goal("G7", "typed decode+encode / orjson round trip", "≤ 3.50", None, None, "not run"))
    else:
        rows.append(
            Goal(
                "G7",
                "typed codec decode + encode / orjson loads + dumps, same `invokefunction` bytes",
                "≤ 3.50",
                g7,
                statistics.median(g7) <= 3.5,
                "catches double validation or dict round trips",
                lower_is_better=True,
            )
        )
    rows.append(
        _ratio_goal(
            "G8",
            "engine at 64 in flight with the dashboard attached / without (our clients, OTel on)",
            0.90,
            tui,
            ("withtui", "async 64"),
            ("notui", "async 64"),
            "headless iii-tui (live source, invocations screen) in its own process",
        )
    )
    rows.append(
        _ratio_goal(
            "G9",
            "embedded engine + our clients in one process / reference relay + raw clients on one "
            "loop, sequential",
            0.75,
            core,
            ("ours1p", "async 1"),
            ("ref1p", "async 1"),
            "what an in-process test fixture gets",
        )
    )
    if g10 is None:
        rows.append(Goal("G10", "no WebSocket extension negotiated", "must hold", None, None, "not run"))
    else:
        rows.append(Goal("G10", "no WebSocket extension negotiated", "must hold", None, g10[0], g10[1]))
    return rows


# ================================================================================================
# RESULTS.md
# ================================================================================================
def machine() -> dict[str, str]:
    """CPU model, cores, Python and package versions, git commit."""
    cpu = "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = []
    for dist in ("websockets", "pydantic", "pydantic-core", "uvloop", "orjson", "iii-sdk", "textual"):
        try:
            versions.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{dist} (not installed)")
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "cpu": f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}",
        "python": f"CPython {platform.python_version()}",
        "versions": ", ".join(versions),
        "commit": commit or "unknown",
    }


def _replace(text: str, begin: str, end: str, block: str, title: str | None, top: bool) -> str:
    body = f"{begin}\n{block}\n{end}"
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    if pattern.search(text):
        return pattern.sub(lambda _: body, text)
    section = (f"{title}\n\n" if title else "") + body + "\n"
    if top:
        head, sep, rest = text.partition("\n\n")
        return f"{head}\n\n{section}\n{rest}" if sep else f"{text.rstrip()}\n\n{section}"
    return text.rstrip("\n") + "\n\n" + section


def setups_table(results: dict[str, GroupResult]) -> list[str]:
    """Rates per setup and command: median (min..max), CPU µs per round trip per process."""
    lines = [
        "| group | setup | command | round trips/s, median (min..max) "
        "| CPU µs per round trip: engine / worker / caller |",
        "|---|---|---|---|---|",
    ]
    for name, result in results.items():
        for setup in result.setups:
            for command in setup.commands:
                rates = result.rates(setup.key, command)
                if not rates:
                    continue
                med, lo, hi = summary(rates)
                cpu: dict[str, list[float]] = {}
                for sample in result.samples[setup.key]:
                    for proc, value in sample.get(command, {}).get("cpu_us", {}).items():
                        cpu.setdefault(proc, []).append(value)
                parts = [
                    f"{statistics.median(cpu[p]):.0f}" for p in ("engine", "worker", "caller") if p in cpu
                ]
                label = {"async 1": "sequential", "async 64": "64 in flight", "sync 1": "sync, sequential"}
                lines.append(
                    f"| {name} | `{setup.key}`: {setup.label} | {label.get(command, command)} "
                    f"| {med:,.0f} ({lo:,.0f}..{hi:,.0f}) | {' / '.join(parts)} |"
                )
    return lines


def write_results(
    rows: list[Goal],
    results: dict[str, GroupResult],
    others: list[tuple[OtherBench, str, float, str]],
    info: dict[str, str],
    command: str,
    rounds: int,
    seconds: float,
    elapsed: float,
    loads: tuple[float, float],
) -> None:
    """Rewrite the top summary and the round-trip section of RESULTS.md."""
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmark results\n"
    passed = sum(1 for g in rows if g.passed)
    missed = [g.gid for g in rows if g.passed is False]
    group_loads = [x for r in results.values() for x in r.load]
    load_text = (
        f"{min(group_loads):.2f}..{max(group_loads):.2f} during the goal rounds" if group_loads else "n/a"
    )
    summary_lines = [
        f"Command: `{command}` (commit {info['commit']}); the whole run took {elapsed / 60:.1f} min.",
        "",
        f"Machine: {info['cpu']}; {info['python']}; 1-minute load average {loads[0]:.2f} at the start, "
        f"{loads[1]:.2f} at the end, {load_text}.",
        f"Versions: {info['versions']}.",
        "",
        f"Goals (see docs/performance.md): {passed} of {len(rows)} met"
        + (f"; missed: {', '.join(missed)}." if missed else ".")
        + f" Each ratio is B/A per interleaved round ({rounds} rounds of fresh processes, {seconds:g} s per"
        " measurement, 300 warm-up round trips), median (min..max). Details in"
        " [Round trips](#round-trips-goals-g1-g10-docsperformancemd).",
        "",
        "| goal | B / A | ratio | target | result | note |",
        "|---|---|---|---|---|---|",
        *("| " + " | ".join(g.cells()) + " |" for g in rows),
    ]
    if others:
        summary_lines += [
            "",
            "Other benches (each rewrote its own section below in this run):",
            "",
            "| bench | command | status | wall | headline |",
            "|---|---|---|---|---|",
        ]
        for bench, status, wall, cmd in others:
            headline = bench.headline(text) if status == "ok" else "—"
            summary_lines.append(f"| {bench.name} | `{cmd}` | {status} | {wall:.0f} s | {headline} |")
    text = _replace(text, _BEGIN, _END, "\n".join(summary_lines), "## Summary (`make bench`)", top=True)
    detail = [
        "Setups (each sample starts fresh processes; `ours` = `python -m iii_typed.engine` and iii-typed "
        "clients, `ref` = `bench/reference/relay.py` with `bench/reference/raw.py` clients on uvloop + "
        "orjson, a relay doing what a real engine must). The caller measures with the driver of "
        "`bench/reference/driver.py`: `async` round trips from its own event loop (iii-typed and iii-sdk "
        "hop to their private loop thread), `sync` with the blocking API from one thread.",
        "",
        *setups_table(results),
        "",
        "CPU per round trip comes from `/proc/<pid>/stat` of each process over the measured window "
        "(steadier than rates on this shared machine). Load average per round: "
        + "; ".join(f"{k} {', '.join(f'{x:.2f}' for x in r.load)}" for k, r in results.items())
        + ".",
    ]
    text = _replace(text, _RT_BEGIN, _RT_END, "\n".join(detail), _RT_TITLE, top=False)
    RESULTS.write_text(text, encoding="utf-8")


# ================================================================================================
# Main
# ================================================================================================
def _on_signal(signum: int, frame: FrameType | None) -> None:
    roundtrip.cleanup()
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    """Run the benches and the goals; write RESULTS.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="about 3 minutes instead of 13")
    parser.add_argument("--only", choices=("all", "goals", "others"), default="all")
    parser.add_argument("--groups", default="core,tui,g5,g6", help="round-trip groups to run")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 5, quick 3)")
    parser.add_argument("--seconds", type=float, default=None, help="seconds per measurement (3, quick 1)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 5)
    seconds = args.seconds or (1.0 if args.quick else 3.0)
    command = "make bench" if not (argv or sys.argv[1:]) else "bench/run.py " + " ".join(argv or sys.argv[1:])
    signal.signal(signal.SIGTERM, _on_signal)
    started = time.monotonic()
    load_start = os.getloadavg()[0]
    info = machine()
    print(f"{info['cpu']}; {info['python']}; load {load_start:.2f}", flush=True)

    def left() -> float:
        return BUDGET_S - (time.monotonic() - started)

    others: list[tuple[OtherBench, str, float, str]] = []
    results: dict[str, GroupResult] = {}
    g7: list[float] | None = None
    g10: tuple[bool, str] | None = None
    with tempfile.NamedTemporaryFile(prefix="iii-bench-", suffix=".log", delete=False) as log:
        try:
            if args.only in ("all", "others"):
                for bench in OTHERS:
                    if left() < bench.timeout + 60:
                        print(f"skipping {bench.name}: time budget", flush=True)
                        continue
                    status, wall, cmd = run_other(bench, args.quick, log, write=not args.no_write)
                    print(f"{bench.name}: {status} in {wall:.0f} s", flush=True)
                    others.append((bench, status, wall, cmd))
            if args.only in ("all", "goals"):
                g10 = handshake_check()
                print(f"G10: {'PASS' if g10[0] else 'MISS'} ({g10[1]})", flush=True)
                g7 = codec_ratio(5 if not args.quick else 3, 20_000)
                print(f"G7: {statistics.median(g7):.2f}", flush=True)
                for name in args.groups.split(","):
                    if not roundtrip.GROUPS.get(name):
                        continue
                    if name in ("g5", "g6") and not _official_installed():
                        print(f"skipping {name}: iii-sdk is not installed", flush=True)
                        continue
                    if left() < 30:
                        print(f"skipping {name}: time budget", flush=True)
                        continue
                    results.update(roundtrip.run_groups([name], rounds, seconds, log, print))
        finally:
            roundtrip.cleanup()
        print(f"child output: {log.name}", flush=True)
    rows = goals(results, g7, g10) if args.only != "others" else []
    for goal in rows:
        print(" | ".join(goal.cells()))
    elapsed = time.monotonic() - started
    if not args.no_write:
        write_results(
            rows,
            results,
            others,
            info,
            command,
            rounds,
            seconds,
            elapsed,
            (load_start, os.getloadavg()[0]),
        )
        print(f"wrote {RESULTS} ({elapsed / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
