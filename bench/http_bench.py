"""Benchmark: HTTP trigger requests/s end to end, against a bare aiohttp echo server in the same run.

    .venv/bin/python bench/http_bench.py [--duration 3] [--concurrency 32] [--repeat 2] [--write]

Path measured: aiohttp client → dev engine (``http`` built-in, its own process) → our SDK worker
(its own process, ``async def`` handler echoing the JSON body) → response. Baseline: an aiohttp
server (its own process) answering the same POST with the same JSON body. Both run on the same
machine in the same run, one after the other, each sequentially (1 request in flight) and with
``--concurrency`` requests in flight over keep-alive connections; each figure is the best of
``--repeat`` rounds of ``--duration`` seconds after a short warm-up. The load generator uses uvloop
when installed, so does the engine (its default) and the echo server.
With ``--write`` the results replace the "HTTP trigger" section of ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from iii_typed.engine.process import EngineProcess

__all__ = ["main"]

RESULTS = Path(__file__).with_name("RESULTS.md")
_BEGIN = "<!-- http-bench:begin -->"
_END = "<!-- http-bench:end -->"
_TITLE = "## HTTP trigger (requests/s end to end)"
PAYLOAD = {"order": 42, "items": ["a", "b", "c"], "note": "benchmark"}

_WORKER = """
import sys, threading
from iii_typed import InitOptions, register_worker

iii = register_worker(sys.argv[1], InitOptions(worker_name="http-bench"))

async def echo(data):
    return {"status_code": 200, "body": data["body"]}

iii.register_function("bench::echo", echo)
trigger = iii.register_trigger(
    {"type": "http", "function_id": "bench::echo", "config": {"api_path": "/echo", "http_method": "POST"}}
)
print("ready", flush=True)
sys.stdin.read()
iii.shutdown()
"""

_ECHO = """
import asyncio, socket, sys
from aiohttp import web

try:
    import uvloop
    uvloop.install()
except ImportError:
    pass

async def echo(request):
    return web.json_response(await request.json())

async def main():
    app = web.Application()
    app.router.add_post("/echo", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(runner.addresses[0][1], flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await runner.cleanup()

asyncio.run(main())
"""


def _cpu(pids: tuple[int, ...]) -> float:
    """CPU seconds (user + system) used so far by these processes (Linux ``/proc``; else NaN)."""
    total = 0.0
    try:
        for pid in pids:
            with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return float("nan")
    return total


async def _load(
    url: str, concurrency: int, duration: float, pids: tuple[int, ...] = ()
) -> tuple[int, float, float]:
    """Send POSTs from ``concurrency`` loops for ``duration`` seconds.

    Returns:
        (requests, seconds, CPU seconds the server processes ``pids`` used meanwhile).
    """
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        loop = asyncio.get_running_loop()

        async def one(stop: float) -> int:
            done = 0
            while loop.time() < stop:
                async with session.post(url, json=PAYLOAD) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"{url} answered {response.status}")
                done += 1
            return done

        await asyncio.gather(*(one(loop.time() + 0.5) for _ in range(concurrency)))  # warm-up
        cpu = _cpu(pids)
        started = loop.time()
        counts = await asyncio.gather(*(one(started + duration) for _ in range(concurrency)))
        elapsed = loop.time() - started
        return sum(counts), elapsed, _cpu(pids) - cpu


async def _wait_live(url: str) -> None:
    deadline = time.monotonic() + 15
    async with aiohttp.ClientSession() as session:
        while True:
            async with session.post(url, json=PAYLOAD) as response:
                if response.status == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} never became live")
            await asyncio.sleep(0.05)


def _measure(
    url: str, concurrency: int, duration: float, repeat: int, pids: tuple[int, ...]
) -> tuple[float, float]:
    """Best requests/s over ``repeat`` rounds, and the server CPU per request (µs) in that round."""
    best = (0.0, float("nan"))
    for _ in range(repeat):
        count, seconds, cpu = _run(_load(url, concurrency, duration, pids))
        if count / seconds > best[0]:
            best = (count / seconds, cpu / count * 1e6)
    return best


def _run(coro: Any) -> Any:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print a table and optionally write it to ``bench/RESULTS.md``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per measurement")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight (concurrent rows)")
    parser.add_argument("--repeat", type=int, default=2, help="rounds per figure (the best is kept)")
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    args = parser.parse_args(argv)
    env = {**os.environ, "OTEL_ENABLED": "false"}
    echo = subprocess.Popen(
        [sys.executable, "-c", _ECHO], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )
    engine = EngineProcess(env={"III_LOG": "WARNING"}).start()
    worker = subprocess.Popen(
        [sys.executable, "-c", _WORKER, engine.url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    rows: list[tuple[str, float, float, float, float]] = []
    try:
        assert echo.stdout is not None and worker.stdout is not None
        echo_url = f"http://127.0.0.1:{echo.stdout.readline().strip()}/echo"
        if worker.stdout.readline().strip() != "ready":
            raise RuntimeError("the bench worker did not start")
        engine_url = engine.http_url + "/echo"
        _run(_wait_live(engine_url))
        _run(_wait_live(echo_url))
        for label, concurrency in (
            ("sequential (1 in flight)", 1),
            (f"{args.concurrency} in flight", args.concurrency),
        ):
            bare, bare_cpu = _measure(echo_url, concurrency, args.duration, args.repeat, (echo.pid,))
            assert engine.pid is not None
            full, full_cpu = _measure(
                engine_url, concurrency, args.duration, args.repeat, (engine.pid, worker.pid)
            )
            rows.append((label, full, bare, full_cpu, bare_cpu))
            print(
                f"{label}: engine {full:,.0f} req/s, bare aiohttp {bare:,.0f} req/s, ratio {full / bare:.2f}"
            )
    finally:
        for proc in (worker, echo):
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        engine.stop()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    command = (
        "`.venv/bin/python bench/http_bench.py " + " ".join(argv if argv is not None else sys.argv[1:]) + "`"
    )
    table = [
        f"Command: {command.replace(' `', '`')}",
        "",
        f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}, {platform.machine()}; "
        f"1-minute load average at the end: {load:.2f}. Best of {args.repeat} rounds of {args.duration:g} s.",
        "Path: aiohttp client → engine (`http` built-in) → our SDK worker (`async def` echo of the JSON "
        "body) → response; baseline: a bare aiohttp server echoing the same body. Client, engine, worker and "
        "baseline each run in their own process.",
        "",
        "| load | end to end (req/s) | bare aiohttp echo (req/s) | ratio "
        "| server CPU per request: engine + worker | bare echo |",
        "|---|---|---|---|---|---|",
        *(
            f"| {label} | {full:,.0f} | {bare:,.0f} | {full / bare:.2f} "
            f"| {full_cpu:,.0f} µs | {bare_cpu:,.0f} µs |"
            for label, full, bare, full_cpu, bare_cpu in rows
        ),
        "",
        "The machine is shared, so requests/s move with its load; the CPU per request (from `/proc`) "
        "is steadier. The end-to-end path adds a WebSocket round trip to a second process, two "
        "channels per request (`request_body`, `response`) and the payload's JSON framing.",
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
