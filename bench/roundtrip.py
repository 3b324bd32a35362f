"""Round-trip benchmarks: trigger → handler → result through an engine (perf.md §5, G1-G6, G8, G9).

    .venv/bin/python bench/roundtrip.py [--rounds 5] [--seconds 3] [--groups core,g5,g6]

A *setup* is one engine, one worker and one caller, each a fresh process (the one-process setups
run all three in one). The caller obeys the driver protocol of ``bench/reference/driver.py``; the
measured commands are ``async 1`` (sequential), ``async 64`` (64 in flight) and ``sync 1`` (the
blocking API). A *group* is a list of setups run interleaved for ``--rounds`` rounds (the order
rotates every round), so the ratio of two setups is taken within each round and reported as a
median with min..max (perf.md §5 "Method"). :mod:`run` (``make bench``) calls :func:`run_groups`
and turns the ratios into the goals G1-G10.

Roles (this file as a child process): ``ours-worker``, ``ours-caller``, ``official-worker``,
``official-caller``, ``ours-oneproc``, ``tui``. The reference roles live in ``bench/reference/``.
Every child runs under a timeout and in its own process group, killed at the end of its sample.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import queue
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
REFERENCE = BENCH / "reference"
sys.path.insert(0, str(REFERENCE))

__all__ = ["GROUPS", "Proc", "Setup", "cleanup", "rate", "run_groups"]

FUNCTION_ID = "bench::echo"
#: Seconds a child may take to print its ready line.
START_TIMEOUT = 60.0
#: Seconds a command may take beyond its own duration.
COMMAND_SLACK = 30.0


# ================================================================================================
# Child processes
# ================================================================================================
_LIVE: set[Proc] = set()


class Proc:
    """A child process in its own process group, its stdout read line by line by a thread.

    Args:
        argv: Command line.
        env: Extra environment variables.
        name: Label used in errors.
        log: File receiving the child's stderr.
    """

    def __init__(self, argv: list[str], env: dict[str, str], name: str, log: IO[bytes]) -> None:
        self.name = name
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.popen = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            env={**os.environ, **env},
            cwd=ROOT,
            text=True,
            process_group=0,
        )
        _LIVE.add(self)
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.popen.stdout is not None
        with self.popen.stdout:  # closed here, by its only reader, once the child is gone
            for line in self.popen.stdout:
                self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    @property
    def pid(self) -> int:
        """The child's pid (its process group id too)."""
        return self.popen.pid

    def readline(self, timeout: float) -> str:
        """The next stdout line; ``RuntimeError`` on timeout or exit."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"{self.name}: no output within {timeout:.0f} s") from None
        if line is None:
            raise RuntimeError(f"{self.name}: exited with {self.popen.wait()}")
        return line

    def expect(self, prefix: str, timeout: float) -> str:
        """Read lines until one starts with ``prefix`` (other lines are ignored) and return it."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.readline(max(0.1, deadline - time.monotonic()))
            if line.startswith(prefix):
                return line

    def send(self, line: str) -> None:
        """Write one command line to the child's stdin."""
        assert self.popen.stdin is not None
        self.popen.stdin.write(line + "\n")
        self.popen.stdin.flush()

    def cpu(self) -> float:
        """User + system CPU seconds of the child so far (``/proc``), 0 once it is gone."""
        try:
            with open(f"/proc/{self.pid}/stat", encoding="ascii") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self, grace: float = 5.0) -> None:
        """Close stdin, SIGTERM the process group, SIGKILL it after ``grace`` seconds."""
        _LIVE.discard(self)
        with contextlib.suppress(OSError):
            assert self.popen.stdin is not None
            self.popen.stdin.close()
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)  # anything the child left in its group
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(grace)


def cleanup() -> None:
    """Stop every child still running (called on exit and on signals by ``run.py``)."""
    for proc in list(_LIVE):
        proc.stop(grace=1.0)


def _python(*args: str) -> list[str]:
    return [sys.executable, *args]


# ================================================================================================
# Setups and groups
# ================================================================================================
@dataclass(frozen=True)
class Setup:
    """One engine + worker + caller combination (or one process running all three).

    Attributes:
        key: Short name used in ratios (``ref``, ``ours``…).
        label: Human description for the results table.
        engine: ``ours`` (``python -m iii_typed.engine``), ``ref`` (the reference relay) or
            ``none`` (the caller process embeds everything).
        worker: argv of the worker after the interpreter, or ``()``.
        caller: argv of the caller after the interpreter (``{url}`` is replaced).
        env: Environment of every process of the setup.
        commands: Driver commands, e.g. ``("async 1", "async 64")``.
        tui: Attach a headless dashboard to the engine during the measurement.
    """

    key: str
    label: str
    engine: str
    worker: tuple[str, ...]
    caller: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    commands: tuple[str, ...] = ("async 1", "async 64")
    tui: bool = False


_OFF = {"OTEL_ENABLED": "false"}
_FAST = {"BENCH_POLICY": "fast", "III_TYPED_LOOP": "auto"}
_STD = {"BENCH_POLICY": "std", "III_TYPED_LOOP": "asyncio"}
_RAW_W = ("bench/reference/raw.py", "worker", "{url}", FUNCTION_ID)
_RAW_C = ("bench/reference/raw.py", "caller", "{url}", FUNCTION_ID)
_THIS = "bench/roundtrip.py"


def _ours_w(handler: str) -> tuple[str, ...]:
    return (_THIS, "ours-worker", "{url}", FUNCTION_ID, handler)


def _official_w(handler: str) -> tuple[str, ...]:
    return (_THIS, "official-worker", "{url}", FUNCTION_ID, handler)


_OURS_C = (_THIS, "ours-caller", "{url}", FUNCTION_ID)
_OFFICIAL_C = (_THIS, "official-caller", "{url}", FUNCTION_ID)

#: The benchmark groups: setups measured interleaved within each round.
GROUPS: dict[str, list[Setup]] = {
    # G1-G4, G8, G9: recommended install (uvloop + orjson where a side uses them), OTel off,
    # ``async def`` handler.
    "core": [
        Setup("ref", "reference relay + raw worker + raw caller", "ref", _RAW_W, _RAW_C, {**_FAST, **_OFF}),
        Setup(
            "oeng",
            "our engine + raw worker + raw caller",
            "ours",
            _RAW_W,
            _RAW_C,
            {**_FAST, **_OFF},
            ("async 64",),
        ),
        Setup(
            "ours",
            "our engine + our worker + our caller",
            "ours",
            _ours_w("async"),
            _OURS_C,
            {**_FAST, **_OFF},
            ("async 1", "async 64", "sync 1"),
        ),
        Setup(
            "ref1p",
            "reference relay, raw worker and raw caller on one loop (one process)",
            "none",
            (),
            ("bench/reference/oneproc.py",),
            {**_FAST, **_OFF},
            ("async 1",),
        ),
        Setup(
            "ours1p",
            "embedded engine + our worker + our caller (one process)",
            "none",
            (),
            (_THIS, "ours-oneproc", "", FUNCTION_ID),
            {**_FAST, **_OFF},
            ("async 1",),
        ),
    ],
    # Diagnostic (not a goal): attribute the G1/G2 deficit by mixing roles on our engine: our
    # worker alone, our caller alone, and our caller driven on the SDK's own loop (no thread hop).
    "diag": [
        Setup("oeng", "our engine + raw worker + raw caller", "ours", _RAW_W, _RAW_C, {**_FAST, **_OFF}),
        Setup(
            "ourW",
            "our engine + our worker + raw caller",
            "ours",
            _ours_w("async"),
            _RAW_C,
            {**_FAST, **_OFF},
        ),
        Setup("ourC", "our engine + raw worker + our caller", "ours", _RAW_W, _OURS_C, {**_FAST, **_OFF}),
        Setup(
            "ours",
            "our engine + our worker + our caller",
            "ours",
            _ours_w("async"),
            _OURS_C,
            {**_FAST, **_OFF},
        ),
        Setup(
            "oursL",
            "our engine + our worker + our caller driven on the SDK loop (no hop)",
            "ours",
            _ours_w("async"),
            (_THIS, "ours-caller-on-loop", "{url}", FUNCTION_ID),
            {**_FAST, **_OFF},
        ),
    ],
    # G8: the engine at 64 in flight with and without the dashboard attached (OTel on, so the
    # dashboard's trace view has spans to show).
    "tui": [
        Setup(
            "notui",
            "our engine + our clients, OTel on",
            "ours",
            _ours_w("async"),
            _OURS_C,
            dict(_FAST),
            ("async 64",),
        ),
        Setup(
            "withtui",
            "same, with iii-tui attached (headless)",
            "ours",
            _ours_w("async"),
            _OURS_C,
            dict(_FAST),
            ("async 64",),
            tui=True,
        ),
    ],
    # G5: like for like: stdlib asyncio, each SDK's own codec, OTel off, ``async def`` handler.
    "g5": [
        Setup(
            "off5",
            "iii-sdk 0.25 caller + worker (asyncio, json)",
            "ours",
            _official_w("async"),
            _OFFICIAL_C,
            {**_STD, **_OFF},
        ),
        Setup(
            "ours5",
            "iii-typed caller + worker (asyncio)",
            "ours",
            _ours_w("async"),
            _OURS_C,
            {**_STD, **_OFF},
        ),
    ],
    # G6: our recommended install vs the official defaults (OTel on for both, as installed), ``def``
    # handler.
    "g6": [
        Setup("off6", "iii-sdk 0.25 defaults (OTel on)", "ours", _official_w("def"), _OFFICIAL_C, dict(_STD)),
        Setup("ours6", "iii-typed [fast] defaults (OTel on)", "ours", _ours_w("def"), _OURS_C, dict(_FAST)),
    ],
}


def rate(result: dict[str, float]) -> float:
    """Round trips per second of one command's result."""
    return result["calls"] / result["seconds"] if result["seconds"] > 0 else 0.0


def _start(argv: tuple[str, ...], url: str, env: dict[str, str], name: str, log: IO[bytes]) -> Proc:
    return Proc(_python(*(a.replace("{url}", url) for a in argv)), env, name, log)


def run_sample(setup: Setup, seconds: float, log: IO[bytes], order: int = 0) -> dict[str, dict[str, float]]:
    """Run ``setup`` once with fresh processes; return each command's result (with CPU µs/RT)."""
    procs: list[Proc] = []
    try:
        env = dict(setup.env)
        url = ""
        engine: Proc | None = None
        if setup.engine != "none":
            argv = (
                ("-m", "iii_typed.engine", "--port", "0")
                if setup.engine == "ours"
                else ("bench/reference/relay.py",)
            )
            engine = _start(argv, "", env, f"{setup.key}:engine", log)
            procs.append(engine)
            url = json.loads(engine.expect("{", START_TIMEOUT))["engine"]
        if setup.worker:
            worker = _start(setup.worker, url, env, f"{setup.key}:worker", log)
            procs.append(worker)
        tui: Proc | None = None
        if setup.tui:
            tui = _start((_THIS, "tui", url), url, env, f"{setup.key}:tui", log)
            procs.append(tui)
            tui.expect("ready", START_TIMEOUT)
        caller = _start(setup.caller, url, env, f"{setup.key}:caller", log)
        procs.append(caller)
        caller.expect("ready", START_TIMEOUT)
        commands = list(setup.commands)
        if order % 2:  # alternate the order of the modes measured in one process
            commands.reverse()
        results: dict[str, dict[str, float]] = {}
        for command in commands:
            before = {p.name: p.cpu() for p in procs}
            caller.send(f"{command} {seconds}")
            result = json.loads(caller.expect("{", seconds + COMMAND_SLACK))
            calls = max(1.0, result["calls"])
            result["cpu_us"] = {p.name.split(":")[1]: (p.cpu() - before[p.name]) / calls * 1e6 for p in procs}
            results[command] = result
        caller.send("quit")
        return results
    finally:
        for proc in reversed(procs):
            proc.stop()


@dataclass
class GroupResult:
    """Every round of one group: ``samples[setup_key][round][command]``."""

    setups: list[Setup]
    samples: dict[str, list[dict[str, dict[str, Any]]]]
    load: list[float]
    errors: list[str] = field(default_factory=list)

    def rates(self, key: str, command: str) -> list[float]:
        """The rate of ``command`` for setup ``key``, one per successful round."""
        return [rate(s[command]) for s in self.samples[key] if command in s]

    def ratios(self, b: tuple[str, str], a: tuple[str, str]) -> list[float]:
        """Per-round ratios B/A of ``(setup, command)`` pairs (rounds where both ran)."""
        out = []
        for sb, sa in zip(self.samples[b[0]], self.samples[a[0]], strict=True):
            if b[1] in sb and a[1] in sa and rate(sa[a[1]]) > 0:
                out.append(rate(sb[b[1]]) / rate(sa[a[1]]))
        return out


def run_groups(
    names: list[str],
    rounds: int,
    seconds: float,
    log: IO[bytes],
    progress: Callable[[str], None] = lambda s: None,
) -> dict[str, GroupResult]:
    """Run each named group for ``rounds`` interleaved rounds."""
    out: dict[str, GroupResult] = {}
    for name in names:
        setups = GROUPS[name]
        result = GroupResult(setups, {s.key: [] for s in setups}, [])
        for i in range(rounds):
            order = setups[i % len(setups) :] + setups[: i % len(setups)]
            for setup in order:
                started = time.monotonic()
                try:
                    sample = run_sample(setup, seconds, log, order=i)
                except Exception as exc:  # recorded; the other setups still run
                    result.errors.append(f"{setup.key} (round {i + 1}): {exc}")
                    progress(f"  [{name} {i + 1}/{rounds}] {setup.key}: FAILED {exc}")
                    sample = {}
                result.samples[setup.key].append(sample)
                summary = ", ".join(f"{c}: {rate(r):,.0f}/s" for c, r in sample.items())
                progress(
                    f"  [{name} {i + 1}/{rounds}] {setup.key}: {summary} ({time.monotonic() - started:.1f} s)"
                )
            result.load.append(os.getloadavg()[0])
        out[name] = result
    return out


def summary(values: list[float]) -> tuple[float, float, float]:
    """Median, min and max."""
    return statistics.median(values), min(values), max(values)


# ================================================================================================
# Child roles
# ================================================================================================
def _wait_stdin() -> None:
    with contextlib.suppress(Exception):
        sys.stdin.read()


def _ours_worker(url: str, function_id: str, handler: str) -> None:
    from iii_typed import InitOptions, register_worker

    iii = register_worker(url, InitOptions(worker_name=f"bench-worker-{os.getpid()}"))
    if handler == "async":

        async def echo(data: Any) -> Any:
            return data

        iii.register_function(function_id, echo)
    else:

        def echo_sync(data: Any) -> Any:
            return data

        iii.register_function(function_id, echo_sync)
    print("ready", flush=True)
    _wait_stdin()
    iii.shutdown()


def _ours_caller(url: str, function_id: str) -> None:
    from driver import PAYLOAD, serve_driver
    from policy import run

    from iii_typed import InitOptions, register_worker

    iii = register_worker(url, InitOptions(worker_name=f"bench-caller-{os.getpid()}"))
    request = {"function_id": function_id, "payload": PAYLOAD}

    def call_async() -> Any:
        return iii.trigger_async(request)

    try:
        run(serve_driver({"async": call_async}, lambda: iii.trigger(request)))
    finally:
        iii.shutdown()


def _ours_caller_on_loop(url: str, function_id: str) -> None:
    """Diagnostic: the driver runs on the SDK's own loop (as code in an async handler would), so
    ``trigger_async`` needs no hop from another thread (uses a private attribute)."""
    from driver import PAYLOAD, serve_driver

    from iii_typed import InitOptions, register_worker

    iii = register_worker(url, InitOptions(worker_name=f"bench-caller-{os.getpid()}"))
    request = {"function_id": function_id, "payload": PAYLOAD}

    def call_async() -> Any:
        return iii.trigger_async(request)

    try:
        iii._loop.submit(serve_driver({"async": call_async})).result()
    finally:
        iii.shutdown()


def _official_worker(url: str, function_id: str, handler: str) -> None:
    from iii import InitOptions, register_worker  # the official iii-sdk

    iii = register_worker(url, InitOptions(worker_name=f"official-worker-{os.getpid()}"))
    if handler == "async":

        async def echo(data: Any) -> Any:
            return data

        iii.register_function(function_id, echo)
    else:

        def echo_sync(data: Any) -> Any:
            return data

        iii.register_function(function_id, echo_sync)
    print("ready", flush=True)
    _wait_stdin()
    iii.shutdown()


def _official_caller(url: str, function_id: str) -> None:
    from driver import PAYLOAD, serve_driver
    from iii import InitOptions, register_worker
    from policy import run

    iii = register_worker(url, InitOptions(worker_name=f"official-caller-{os.getpid()}"))
    request = {"function_id": function_id, "payload": PAYLOAD}

    def call_async() -> Any:
        return iii.trigger_async(request)

    try:
        run(serve_driver({"async": call_async}, lambda: iii.trigger(request)))
    finally:
        iii.shutdown()


def _ours_oneproc(function_id: str) -> None:
    """G9: the embedded engine on this process's loop, our worker and caller in the same process."""
    from driver import PAYLOAD, serve_driver
    from policy import run

    from iii_typed import III, InitOptions
    from iii_typed.engine import Engine, EngineConfig

    async def main() -> None:
        async with Engine(EngineConfig(port=0, http_port=0, stream_port=0)) as engine:
            worker = III(engine.url, InitOptions(worker_name="bench-1p-worker"))
            caller = III(engine.url, InitOptions(worker_name="bench-1p-caller"))
            try:
                await worker.connect_async()

                async def echo(data: Any) -> Any:
                    return data

                worker.register_function(function_id, echo)
                await caller.connect_async()
                request = {"function_id": function_id, "payload": PAYLOAD}
                await serve_driver({"async": lambda: caller.trigger_async(request)})
            finally:
                await caller.shutdown_async()
                await worker.shutdown_async()

    run(main())


def _tui(url: str) -> None:
    """G8: the dashboard's live source and app, headless, invocations screen open."""
    os.environ.setdefault("TEXTUAL_ANIMATIONS", "none")
    from iii_tui.app import IIIApp
    from iii_tui.source import EngineSource

    async def main() -> None:
        app = IIIApp(source=EngineSource(url, readonly=True))
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause(1.0)
            with contextlib.suppress(Exception):
                app.switch_mode("invocations")
            print("ready", flush=True)
            await asyncio.get_running_loop().run_in_executor(None, _wait_stdin)
            app.exit(0)

    asyncio.run(main())


def _child(argv: list[str]) -> None:
    role = argv[0]
    if role == "ours-worker":
        _ours_worker(argv[1], argv[2], argv[3])
    elif role == "ours-caller":
        _ours_caller(argv[1], argv[2])
    elif role == "ours-caller-on-loop":
        _ours_caller_on_loop(argv[1], argv[2])
    elif role == "official-worker":
        _official_worker(argv[1], argv[2], argv[3])
    elif role == "official-caller":
        _official_caller(argv[1], argv[2])
    elif role == "ours-oneproc":
        _ours_oneproc(argv[2])
    elif role == "tui":
        _tui(argv[1])
    else:
        raise SystemExit(f"unknown role {role!r}")


# ================================================================================================
# Command line (ad-hoc runs; ``make bench`` uses run.py)
# ================================================================================================
def _print_group(name: str, result: GroupResult) -> None:
    print(f"{name}: load {', '.join(f'{x:.2f}' for x in result.load)}")
    for setup in result.setups:
        for command in setup.commands:
            rates = result.rates(setup.key, command)
            if not rates:
                print(f"  {setup.key:8} {command:9} no result")
                continue
            med, lo, hi = summary(rates)
            cpu = statistics.median(
                sum(s[command]["cpu_us"].values()) for s in result.samples[setup.key] if command in s
            )
            roles = {
                role: statistics.median(
                    s[command]["cpu_us"].get(role, 0.0) for s in result.samples[setup.key] if command in s
                )
                for role in ("engine", "worker", "caller")
            }
            split = " ".join(f"{role[0]} {us:4.0f}" for role, us in roles.items())
            print(
                f"  {setup.key:8} {command:9} {med:9,.0f}/s ({lo:,.0f}..{hi:,.0f})  "
                f"CPU {cpu:6.0f} µs/RT ({split})"
            )


@contextlib.contextmanager
def _log_file() -> Iterator[IO[bytes]]:
    with tempfile.NamedTemporaryFile(prefix="iii-bench-", suffix=".log", delete=False) as log:
        yield log


def main(argv: list[str] | None = None) -> int:
    """Run groups ad hoc and print their rates."""
    args = sys.argv[1:] if argv is None else argv
    if args and not args[0].startswith("-"):
        _child(args)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--groups", default="core")
    parsed = parser.parse_args(args)
    with _log_file() as log:
        try:
            results = run_groups(parsed.groups.split(","), parsed.rounds, parsed.seconds, log, print)
        finally:
            cleanup()
        print(f"child stderr: {log.name}")
    for name, result in results.items():
        _print_group(name, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
