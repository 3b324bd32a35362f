"""Benchmark: the cost of telemetry on the trigger round trip, and the engine's span ingestion rate.

    .venv/bin/python bench/telemetry_bench.py [--duration 3] [--rounds 3] [--concurrency 64] [--write]

1. **Round trip, telemetry on vs off** (same run, same engine). A worker process (iii-typed,
   ``async def`` echo) and caller processes (iii-typed, ``trigger_async``) are started with
   ``OTEL_ENABLED=true`` (spans around every handler with payload capture, the ``/otel`` socket, the
   engine ingesting and storing every span) or ``OTEL_ENABLED=false``; a caller measures round
   trips per second for ``--duration`` seconds sequentially (1 in flight), another with
   ``--concurrency`` in flight, and the CPU time the engine, worker and caller use meanwhile.
   Modes alternate for ``--rounds`` rounds (off, on, off, on, ...) so drift of this shared machine
   hits both; medians are reported. Overhead = 1 - on/off (perf.md §6 item 8; target < 25 %).
2. **Ingestion**: a fresh engine receives ``--frames`` ``OTLP`` frames of ``--spans`` spans each on
   ``/otel`` (encoded by the SDK's encoder from real spans with payload events), as fast as one
   socket sends; the clock stops when ``engine::observability::stats`` counts every span.

With ``--write`` the tables replace the "Telemetry" section of ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from iii_typed import InitOptions, register_worker
from iii_typed.engine.process import EngineProcess

__all__ = ["main"]

RESULTS = Path(__file__).with_name("RESULTS.md")
_BEGIN = "<!-- telemetry-bench:begin -->"
_END = "<!-- telemetry-bench:end -->"
_TITLE = "## Telemetry (OpenTelemetry on vs off, span ingestion)"
PAYLOAD = {"order": 42, "items": ["a", "b", "c"], "note": "benchmark"}

_WORKER = """
import sys
from iii_typed import InitOptions, register_worker

iii = register_worker(sys.argv[1], InitOptions(worker_name=sys.argv[2]))

async def echo(data):
    return data

iii.register_function(sys.argv[3], echo)
iii.trigger({"function_id": "engine::health::check", "payload": {}})
print("ready", flush=True)
sys.stdin.read()
iii.shutdown()
"""

_CALLER = """
import asyncio, json, sys, time
from iii_typed import InitOptions, register_worker

url, function_id, duration, in_flight = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
payload = json.loads(sys.argv[5])
iii = register_worker(url, InitOptions())

async def run(in_flight, seconds):
    loop = asyncio.get_running_loop()
    stop = loop.time() + seconds
    async def one():
        done = 0
        while loop.time() < stop:
            await iii.trigger_async({"function_id": function_id, "payload": payload})
            done += 1
        return done
    counts = await asyncio.gather(*(one() for _ in range(in_flight)))
    return sum(counts)

asyncio.run(run(in_flight, 0.5))  # warm-up
print("ready", flush=True)
sys.stdin.readline()
cpu, started = time.process_time(), time.perf_counter()
calls = asyncio.run(run(in_flight, duration))
elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
print(json.dumps({"calls": calls, "seconds": elapsed, "cpu": cpu}), flush=True)
iii.shutdown()
"""

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux ``/proc``)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _phase(
    engine: EngineProcess,
    worker: subprocess.Popen[str],
    env: dict[str, str],
    function_id: str,
    in_flight: int,
    duration: float,
) -> dict[str, float]:
    """One measured phase: calls/s, and CPU µs per call summed over engine, worker and caller."""
    caller = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _CALLER,
            engine.url,
            function_id,
            str(duration),
            str(in_flight),
            json.dumps(PAYLOAD),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert caller.stdin is not None and caller.stdout is not None
        if caller.stdout.readline().strip() != "ready":
            raise RuntimeError("the bench caller did not start")
        assert engine.pid is not None
        engine_before, worker_before = _cpu_seconds(engine.pid), _cpu_seconds(worker.pid)
        caller.stdin.write("go\n")
        caller.stdin.flush()
        result = json.loads(caller.stdout.readline())
        engine_cpu = _cpu_seconds(engine.pid) - engine_before
        worker_cpu = _cpu_seconds(worker.pid) - worker_before
        caller.wait(30)
    finally:
        if caller.poll() is None:
            caller.kill()
    calls = max(1, int(result["calls"]))
    return {
        "rate": calls / result["seconds"],
        "cpu_us": (engine_cpu + worker_cpu + result["cpu"]) / calls * 1e6,
        "engine_us": engine_cpu / calls * 1e6,
        "worker_us": worker_cpu / calls * 1e6,
        "caller_us": result["cpu"] / calls * 1e6,
    }


def _round(
    engine: EngineProcess, mode: str, index: int, args: argparse.Namespace
) -> dict[str, dict[str, float]]:
    env = {
        **os.environ,
        "OTEL_ENABLED": "true" if mode == "on" else "false",
        "III_LOG": "WARNING",
        "OTEL_SPANS_FLUSH_INTERVAL_MS": "100",
    }
    function_id = f"bench::echo{index}"
    worker = subprocess.Popen(
        [sys.executable, "-c", _WORKER, engine.url, f"bench-{mode}-{index}", function_id],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert worker.stdout is not None
        if worker.stdout.readline().strip() != "ready":
            raise RuntimeError("the bench worker did not start")
        return {
            "sequential": _phase(engine, worker, env, function_id, 1, args.duration),
            "concurrent": _phase(engine, worker, env, function_id, args.concurrency, args.duration),
        }
    finally:
        if worker.stdin is not None:
            worker.stdin.close()
        try:
            worker.wait(15)
        except subprocess.TimeoutExpired:
            worker.kill()


def _frames(count: int, spans_per_frame: int) -> list[bytes]:
    """OTLP frames encoded by the SDK from real spans (attributes and payload events)."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from iii_typed.telemetry._encode import SPANS_PREFIX, encode_spans

    exporter = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create({"service.name": "bench", "telemetry.sdk.language": "python"})
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("iii-typed")
    for i in range(spans_per_frame):
        with tracer.start_as_current_span(
            f"execute bench::f{i % 10}", attributes={"iii.function.id": "bench::f"}
        ) as span:
            span.add_event(
                "iii.invocation.input",
                {"iii.payload.json": json.dumps(PAYLOAD), "iii.payload.truncated": False},
            )
            span.add_event(
                "iii.invocation.output", {"iii.payload.json": json.dumps(PAYLOAD), "iii.payload.ok": True}
            )
    batch = list(exporter.get_finished_spans())
    frame = SPANS_PREFIX + encode_spans(batch)
    provider.shutdown()
    return [frame] * count  # same ids: the store does not deduplicate, the work is the same


def _ingest(frames: int, spans_per_frame: int) -> tuple[float, int]:
    from websockets.sync.client import connect

    engine = EngineProcess(env={"III_LOG": "WARNING"}).start()
    payload = _frames(frames, spans_per_frame)
    client = register_worker(engine.url, InitOptions(otel={"enabled": False}))
    try:
        total = frames * spans_per_frame
        started = time.perf_counter()
        with connect(engine.url + "/otel", compression=None, max_size=None) as ws:
            for frame in payload:
                ws.send(frame)
            while True:
                stats = client.trigger({"function_id": "engine::observability::stats", "payload": {}})
                if stats["counters"].get("spans", 0) >= total:
                    break
                if time.perf_counter() - started > 120:
                    raise RuntimeError(f"ingestion stalled: {stats}")
                time.sleep(0.01)
        elapsed = time.perf_counter() - started
        return total / elapsed, len(payload[0])
    finally:
        client.shutdown()
        engine.stop()


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the tables and optionally write them to ``bench/RESULTS.md``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per mode (the median is kept)")
    parser.add_argument("--concurrency", type=int, default=64, help="calls in flight (concurrent rows)")
    parser.add_argument("--frames", type=int, default=200, help="OTLP frames sent for the ingestion rate")
    parser.add_argument("--spans", type=int, default=100, help="spans per frame")
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    args = parser.parse_args(argv)

    engine = EngineProcess(env={"III_LOG": "WARNING"}).start()
    results: dict[str, list[dict[str, dict[str, float]]]] = {"off": [], "on": []}
    try:
        for index in range(args.rounds):
            for mode in ("off", "on"):
                measured = _round(engine, mode, index, args)
                results[mode].append(measured)
                seq, conc = measured["sequential"], measured["concurrent"]
                print(
                    f"round {index + 1} {mode}: {seq['rate']:,.0f} seq/s ({seq['cpu_us']:.0f} us CPU/call), "
                    f"{conc['rate']:,.0f} conc/s ({conc['cpu_us']:.0f} us CPU/call: "
                    f"engine {conc['engine_us']:.0f}, worker {conc['worker_us']:.0f}, "
                    f"caller {conc['caller_us']:.0f})"
                )
    finally:
        engine.stop()
    rate, frame_bytes = _ingest(args.frames, args.spans)
    print(
        f"ingestion: {rate:,.0f} spans/s ({args.frames} frames x {args.spans} spans, {frame_bytes:,} B/frame)"
    )

    rows = []
    for key, label in (
        ("sequential", "sequential (1 in flight)"),
        ("concurrent", f"{args.concurrency} in flight"),
    ):

        def median(mode: str, field: str, key: str = key) -> float:
            return statistics.median(r[key][field] for r in results[mode])

        off, on = median("off", "rate"), median("on", "rate")
        rows.append((label, off, on, 1 - on / off, median("off", "cpu_us"), median("on", "cpu_us")))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    command = (
        "`.venv/bin/python bench/telemetry_bench.py "
        + " ".join(argv if argv is not None else sys.argv[1:])
        + "`"
    )
    table = [
        f"Command: {command.replace(' `', '`')}",
        "",
        f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}, {platform.machine()}; "
        f"1-minute load average at the end: {load:.2f}. Median of {args.rounds} alternating rounds of "
        f"{args.duration:g} s per mode.",
        "Path: iii-typed caller (`trigger_async`) → engine → iii-typed worker (`async def` echo) → back, "
        "each in its own process. *On*: `OTEL_ENABLED=true` in caller and worker (an `execute` span per "
        "call with both payloads captured, spans sent over `/otel`, the engine parsing and storing each "
        "span); *off*: `OTEL_ENABLED=false` (no OpenTelemetry import at all).",
        "",
        "| load | off (calls/s) | on (calls/s) | overhead | target | CPU per call, off | CPU per call, on |",
        "|---|---|---|---|---|---|---|",
        *(
            f"| {label} | {off:,.0f} | {on:,.0f} | {cost:.1%} | < 25 % | {cpu_off:.0f} µs | {cpu_on:.0f} µs |"
            for label, off, on, cost, cpu_off, cpu_on in rows
        ),
        "",
        "CPU per call = CPU time of the engine, worker and caller processes during the measured window, "
        "divided by the calls made (less sensitive to other load on the machine than calls/s).",
        "",
        f"Engine ingestion: {rate:,.0f} spans/s — {args.frames} `OTLP` frames of {args.spans} spans "
        f"({frame_bytes:,} bytes each, SDK encoding with payload events) on one `/otel` socket, until "
        "`engine::observability::stats` counts them all (parsed, stored in the ring buffer).",
    ]
    text = "\n".join(table)
    print(text)
    if args.write:
        section = f"{_TITLE}\n\n{_BEGIN}\n{text}\n{_END}\n"
        old = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmark results\n"
        pattern = re.compile(
            re.escape(_TITLE) + r"\n\n" + re.escape(_BEGIN) + ".*?" + re.escape(_END) + "\n", re.S
        )
        new = (
            pattern.sub(lambda _: section, old)
            if pattern.search(old)
            else old.rstrip("\n") + "\n\n" + section
        )
        RESULTS.write_text(new, encoding="utf-8")
        print(f"\nwrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
