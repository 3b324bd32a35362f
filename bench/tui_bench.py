"""iii-tui benchmark (not a test): replay a recorded session through the headless dashboard.

1. **Firehose**: a session of ``--rate`` invocations/s (root spans, delivered in 300 ms batches
   as the engine's ``trace`` trigger coalesces them) plus 10 % as many log lines, replayed at the
   recorded pace with the invocations screen open. Reports event-loop lag (p50/p99/max of a
   20 ms probe), CPU share of one core, and RSS over time (flat = bounded by the ring sizes).
2. **First paint**: a catalog of 10,000 functions and 1,000 workers arriving at once; time from
   its arrival to the functions and workers screens drawn.

Goals (issue 7, tui.md §4): lag p99 < 50 ms, < 25 % of one core, memory flat, first paint < 1 s.

    .venv/bin/python bench/tui_bench.py            # 60 s at 1,000 invocations/s
    .venv/bin/python bench/tui_bench.py --quick    # 10 s
    .venv/bin/python bench/tui_bench.py --write    # also update bench/RESULTS.md
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TEXTUAL_ANIMATIONS", "none")

from iii_tui.app import IIIApp, NullSource  # noqa: E402
from iii_tui.session import ReplaySource, write_session  # noqa: E402
from iii_tui.store import Event, Store  # noqa: E402
from iii_tui.widgets import KeyedTable  # noqa: E402

T0 = 1_800_000_000.0


def _span(n: int, t: float) -> dict[str, Any]:
    """A worker's handler span as the engine stores it (``execute <fn>``, ``iii.function.id``)."""
    start = int(t * 1e9)
    fn = ("orders::create", "orders::get", "billing::charge", "mail::send")[n % 4]
    return {
        "trace_id": f"{n:032x}",
        "span_id": f"{n:016x}",
        "parent_span_id": None,
        "name": f"execute {fn}",
        "start_time_unix_nano": start,
        "end_time_unix_nano": start + (2 + n % 40) * 1_000_000,
        "status": "error" if n % 50 == 0 else "ok",
        "attributes": [["iii.function.id", fn], ["iii.invocation.id", f"inv-{n}"]],
        "service_name": "iii-python-sdk",
        "events": [],
        "links": [],
    }


def firehose_events(rate: int, seconds: float) -> list[Event]:
    """The recorded session: a catalog, then spans and logs in 300 ms batches."""
    events = [
        Event(T0, "conn", {"state": "connected", "url": "ws://bench"}),
        Event(
            T0,
            "functions",
            {
                "functions": [
                    {"function_id": f, "worker_name": "bench-worker"}
                    for f in ("orders::create", "orders::get")
                ]
            },
        ),
    ]
    n = 0
    batch = 0.3
    steps = int(seconds / batch)
    for step in range(steps):
        t = T0 + (step + 1) * batch
        spans = []
        for _ in range(int(rate * batch)):
            n += 1
            spans.append(_span(n, t - batch + (n % 300) / 1000))
        events.append(Event(t, "spans", {"spans": spans}))
        logs = [
            {
                "timestamp_unix_nano": int(t * 1e9) - i,
                "severity_number": 9,
                "body": f"handled {n - i}",
                "trace_id": f"{n - i:032x}",
                "service_name": "bench-worker",
            }
            for i in range(int(rate * batch / 10))  # newest first, as engine::logs::list answers
        ]
        events.append(Event(t, "logs", {"logs": logs}))
    return events


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


async def firehose(rate: int, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "firehose.jsonl"
        write_session(path, firehose_events(rate, seconds))
        source = ReplaySource(path, speed=1.0)
    app = IIIApp(source, clock=source.clock, replay=True, initial="invocations")
    app.animation_level = "none"
    lags: list[float] = []
    rss: list[tuple[float, float]] = []
    async with app.run_test(size=(120, 40)):
        loop = asyncio.get_running_loop()
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        wall0 = loop.time()
        last_rss = wall0
        while not source.done.is_set():
            before = loop.time()
            await asyncio.sleep(0.02)
            now = loop.time()
            lags.append(max(0.0, (now - before - 0.02) * 1000))
            if now - last_rss >= 1.0:
                rss.append((now - wall0, _rss_mb()))
                last_rss = now
        wall = loop.time() - wall0
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        store = app.store
        result = {
            "seconds": round(wall, 1),
            "invocations": store.invocations_total,
            "kept": len(store.invocations),
            "logs": store.logs_total,
            "lag_p50_ms": round(statistics.median(lags), 1),
            "lag_p99_ms": round(statistics.quantiles(lags, n=100)[98], 1),
            "lag_max_ms": round(max(lags), 1),
            "cpu_share": round(
                (cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime) / wall * 100, 1
            ),
            "flush_ms_mean": round(app.flush_seconds / max(1, app.flushes) * 1000, 2),
        }
    third = max(1, len(rss) // 3)
    result["rss_first_third_mb"] = round(max(r for _, r in rss[:third]), 1) if rss else None
    result["rss_last_third_mb"] = round(max(r for _, r in rss[-third:]), 1) if rss else None
    return result


async def first_paint(functions: int = 10_000, workers: int = 1_000) -> dict[str, float]:
    out: dict[str, float] = {}
    catalog = [
        Event(
            T0,
            "functions",
            {
                "functions": [
                    {
                        "function_id": f"ns{i % 50}::fn{i}",
                        "namespace": "default",
                        "worker_name": f"w{i % workers}",
                    }
                    for i in range(functions)
                ]
            },
        ),
        Event(
            T0,
            "workers",
            {
                "workers": [
                    {
                        "id": f"{i:08x}-0000-4000-8000-000000000000",
                        "name": f"w{i}",
                        "runtime": "python",
                        "version": "0.1",
                        "function_count": functions // workers,
                        "active_invocations": 0,
                        "connected_at_ms": int(T0 * 1000),
                        "namespace": "default",
                        "status": "connected",
                    }
                    for i in range(workers)
                ]
            },
        ),
    ]
    for screen, expected in (("functions", functions), ("workers", workers)):
        app = IIIApp(NullSource(), store=Store(), initial=screen)
        app.animation_level = "none"
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            started = time.perf_counter()
            for event in catalog:
                app.sink(event)
            app.flush()
            table = app.screen.query_one("#main-table", KeyedTable)
            await pilot.pause()
            assert table.row_count == expected, (screen, table.row_count)
            out[screen] = round(time.perf_counter() - started, 3)
    return out


def _write_results(text: str) -> None:
    path = ROOT / "bench" / "RESULTS.md"
    current = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark results\n"
    block = f"<!-- tui-bench:begin -->\n{text}\n<!-- tui-bench:end -->"
    if "<!-- tui-bench:begin -->" in current:
        current = re.sub(
            r"<!-- tui-bench:begin -->.*?<!-- tui-bench:end -->", lambda m: block, current, flags=re.S
        )
    else:
        current = current.rstrip() + "\n\n## Dashboard (`iii-tui`)\n\n" + block + "\n"
    path.write_text(current, encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 s instead of 60 s")
    parser.add_argument("--rate", type=int, default=1000, help="invocations per second (default 1000)")
    parser.add_argument(
        "--seconds", type=float, default=None, help="firehose length (default 60, --quick 10)"
    )
    parser.add_argument("--write", action="store_true", help="update the section of bench/RESULTS.md")
    args = parser.parse_args()
    seconds = args.seconds or (10.0 if args.quick else 60.0)
    fire = asyncio.run(firehose(args.rate, seconds))
    paint = asyncio.run(first_paint())
    print(fire)
    print(paint)
    ok = fire["lag_p99_ms"] < 50 and fire["cpu_share"] < 25 and max(paint.values()) < 1.0
    cmd = " ".join(["bench/tui_bench.py", *sys.argv[1:]])
    load = os.getloadavg()[0]
    text = (
        f"Command: `.venv/bin/python {cmd}`\n\n"
        f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}, {platform.machine()}; "
        f"1-minute load average at the end: {load:.2f}. "
        "Headless Textual 8.2.8 at 120x40, invocations screen open.\n\n"
        "| measure | value | goal |\n|---|---|---|\n"
        f"| replayed | {fire['invocations']} invocations + {fire['logs']} log lines in {fire['seconds']} s "
        f"({args.rate}/s) | 1,000/s for 60 s |\n"
        f"| event-loop lag p50 / p99 / max | {fire['lag_p50_ms']} / {fire['lag_p99_ms']} / "
        f"{fire['lag_max_ms']} ms | p99 < 50 ms |\n"
        f"| CPU (share of one core, whole process) | {fire['cpu_share']} % | < 25 % |\n"
        f"| flush (apply + redraw) mean | {fire['flush_ms_mean']} ms every 100 ms | |\n"
        f"| RSS max, first / last third of the run | {fire['rss_first_third_mb']} / "
        f"{fire['rss_last_third_mb']} MiB"
        f" (ring keeps {fire['kept']} invocations) | flat |\n"
        f"| first paint, 10,000 functions / 1,000 workers | functions screen {paint['functions']} s, "
        f"workers screen {paint['workers']} s | < 1 s |\n\n"
        f"All goals met: {'yes' if ok else 'no'}. The 20 ms probe shares the loop with the replay, "
        "so its lag includes the cost of delivering each 300 ms batch."
    )
    print(text)
    if args.write:
        _write_results(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
