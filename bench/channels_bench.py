"""Benchmark: channel throughput and stream fan-out through the dev engine.

    .venv/bin/python bench/channels_bench.py [--mib 256] [--repeat 3] [--subscribers 100]
                                             [--updates 2000] [--window 32] [--write]

**Channels.** Worker → engine → worker: a producer worker process (iii-typed SDK, ``async def``
handler) writes ``--mib`` MiB in 64 KiB chunks to a channel writer; a consumer worker process
reads the channel to the end. The orchestrator (this process) creates the channel and triggers
both handlers with the refs; the clock runs from the triggers to both results. Baseline, in the
same run: the same bytes through a raw ``websockets`` relay (a process that forwards the frames
of one socket to another through a 64-message queue, like the engine's channel buffer) between a
raw producer and a raw consumer process; the clock runs from "go" to both done. Best of
``--repeat`` rounds each; the ratio is channel / raw.

**Stream fan-out.** ``--subscribers`` raw WebSocket clients (one process) join the same stream
group; this process sends ``--updates`` ``stream::set`` calls (``--window`` in flight). The clock
runs from the first call to the last frame reaching the last subscriber; updates/s = updates /
elapsed, each update being delivered to every subscriber.

With ``--write`` the tables replace the "Channels and streams" section of ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["main"]

RESULTS = Path(__file__).with_name("RESULTS.md")
_BEGIN = "<!-- channels-bench:begin -->"
_END = "<!-- channels-bench:end -->"
CHUNK = 64 * 1024
MIB = 1024 * 1024


# -- child processes ------------------------------------------------------------------------------
def _run(coro: Any) -> Any:
    """Run ``coro`` on the loop the engine and the SDK use (uvloop when installed), for fairness."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def _child(*args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, OTEL_ENABLED="false", PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.Popen(
        [sys.executable, __file__, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )


def _expect(proc: subprocess.Popen[str], prefix: str) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith(prefix):
        raise RuntimeError(f"child said {line!r}, expected {prefix!r}")
    return line[len(prefix) :].strip()


def _finish(proc: subprocess.Popen[str]) -> None:
    if proc.stdin is not None:
        proc.stdin.close()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def _sdk_worker(url: str, prefix: str) -> None:
    """A worker with ``<prefix>::produce`` and ``<prefix>::consume`` (async handlers)."""
    from iii_typed import InitOptions, register_worker

    iii = register_worker(url, InitOptions(worker_name=f"{prefix}-{os.getpid()}"))
    block = os.urandom(CHUNK)

    async def produce(data: dict[str, Any]) -> int:
        out = data["out"]
        for _ in range(data["chunks"]):
            await out.write_async(block)
        await out.close_async()
        return data["chunks"] * CHUNK

    async def consume(data: dict[str, Any]) -> int:
        total = 0
        async for chunk in data["inp"]:
            total += len(chunk)
        return total

    iii.register_function(f"{prefix}::produce", produce)
    iii.register_function(f"{prefix}::consume", consume)
    print("ready", flush=True)
    sys.stdin.read()
    iii.shutdown()


def _relay() -> None:
    """A raw relay: frames of the ``/w`` socket go to the ``/r`` socket through a 64-message queue."""
    from websockets.asyncio.server import serve
    from websockets.exceptions import ConnectionClosed

    async def run() -> None:
        queues: dict[str, asyncio.Queue[bytes | str | None]] = {}

        def queue(key: str) -> asyncio.Queue[bytes | str | None]:
            return queues.setdefault(key, asyncio.Queue(64))

        async def handle(ws: Any) -> None:
            side, key = ws.request.path.strip("/").split("/")
            q = queue(key)
            if side == "w":
                try:
                    async for message in ws:
                        await q.put(message)
                except ConnectionClosed:
                    pass
                await q.put(None)
            else:
                while (item := await q.get()) is not None:
                    await ws.send(item)
                queues.pop(key, None)

        async with serve(
            handle, "127.0.0.1", 0, compression=None, max_size=None, ping_interval=None
        ) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            print(f"port {port}", flush=True)
            await asyncio.to_thread(sys.stdin.read)

    _run(run())


def _raw(role: str, url: str, chunks: int) -> None:
    """A raw producer or consumer: waits for ``go`` on stdin, transfers, prints ``done <s>``."""
    from websockets.asyncio.client import connect

    block = os.urandom(CHUNK)

    async def run() -> None:
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        started = time.perf_counter()
        async with connect(url, compression=None, max_size=None, ping_interval=None) as ws:
            if role == "produce":
                for _ in range(chunks):
                    await ws.send(block)
            else:
                total = 0
                async for message in ws:
                    total += len(message)
                assert total == chunks * CHUNK, total
        print(f"done {time.perf_counter() - started}", flush=True)

    _run(run())


def _subscribers(url: str, count: int, stream: str, updates: int) -> None:
    """``count`` raw subscribers of ``stream``/``g``; prints ``ready``, then ``last <monotonic>``."""
    from websockets.asyncio.client import connect

    async def one(done: asyncio.Event, all_ready: asyncio.Event, ready: list[int], seen: list[int]) -> None:
        async with connect(url, compression=None, ping_interval=None, max_queue=None) as ws:
            join = {"type": "join", "data": {"subscriptionId": "s", "streamName": stream, "groupId": "g"}}
            await ws.send(json.dumps(join))
            await ws.recv()  # sync
            ready[0] += 1
            if ready[0] == count:
                all_ready.set()
            received = 0
            while received < updates:
                await ws.recv()
                received += 1
            seen[0] += 1
            if seen[0] == count:
                done.set()

    async def run() -> None:
        done, all_ready = asyncio.Event(), asyncio.Event()
        ready, seen = [0], [0]
        tasks = [asyncio.create_task(one(done, all_ready, ready, seen)) for _ in range(count)]
        await all_ready.wait()
        print("ready", flush=True)
        await done.wait()
        print(f"last {time.monotonic()}", flush=True)
        await asyncio.gather(*tasks)

    _run(run())


# -- measurements ---------------------------------------------------------------------------------
def _channel_round(iii: Any, chunks: int, producer: str, consumer: str) -> float:
    async def run() -> float:
        channel = await iii.create_channel_async()
        started = time.perf_counter()
        sent, received = await asyncio.gather(
            iii.trigger_async(
                {
                    "function_id": f"{producer}::produce",
                    "payload": {"out": channel.writer_ref, "chunks": chunks},
                    "timeout_ms": 600_000,
                }
            ),
            iii.trigger_async(
                {
                    "function_id": f"{consumer}::consume",
                    "payload": {"inp": channel.reader_ref},
                    "timeout_ms": 600_000,
                }
            ),
        )
        elapsed = time.perf_counter() - started
        assert sent == received == chunks * CHUNK, (sent, received)
        return elapsed

    return asyncio.run(run())


def _raw_round(port: int, chunks: int, key: str) -> float:
    base = f"ws://127.0.0.1:{port}"
    consumer = _child("_raw", "consume", f"{base}/r/{key}", str(chunks))
    producer = _child("_raw", "produce", f"{base}/w/{key}", str(chunks))
    try:
        _expect(consumer, "ready")
        _expect(producer, "ready")
        started = time.perf_counter()
        for proc in (consumer, producer):
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        _expect(producer, "done")
        _expect(consumer, "done")
        return time.perf_counter() - started
    finally:
        _finish(producer)
        _finish(consumer)


def measure_channels(mib: int, repeat: int) -> dict[str, float]:
    """Best-of-``repeat`` MiB/s through the engine and through the raw relay."""
    from iii_typed import InitOptions, register_worker
    from iii_typed.engine.process import EngineProcess

    chunks = mib * MIB // CHUNK
    channel_times: list[float] = []
    raw_times: list[float] = []
    with EngineProcess(env={"OTEL_ENABLED": "false"}) as engine:
        iii = register_worker(engine.url, InitOptions(worker_name="bench-orchestrator"))
        producer_proc = _child("_worker", engine.url, "bench-p")
        consumer_proc = _child("_worker", engine.url, "bench-c")
        relay = _child("_relay")
        try:
            _expect(producer_proc, "ready")
            _expect(consumer_proc, "ready")
            port = int(_expect(relay, "port"))
            _wait_functions(iii, {"bench-p::produce", "bench-c::consume"})
            for round_number in range(repeat):  # interleaved, so load changes hit both alike
                channel_times.append(_channel_round(iii, chunks, "bench-p", "bench-c"))
                raw_times.append(_raw_round(port, chunks, f"k{round_number}"))
                print(
                    f"round {round_number + 1}: channel {mib / channel_times[-1]:.0f} MiB/s, "
                    f"raw relay {mib / raw_times[-1]:.0f} MiB/s",
                    file=sys.stderr,
                )
        finally:
            for proc in (producer_proc, consumer_proc, relay):
                _finish(proc)
            iii.shutdown()
    channel = mib / min(channel_times)
    raw = mib / min(raw_times)
    return {"channel": channel, "raw": raw, "ratio": channel / raw}


def _wait_functions(iii: Any, wanted: set[str]) -> None:
    deadline = time.monotonic() + 30
    while True:
        listed = iii.trigger({"function_id": "engine::functions::list", "payload": {}})
        if wanted <= {row["function_id"] for row in listed["functions"]}:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"functions {wanted} not registered")
        time.sleep(0.05)


def measure_fanout(subscribers: int, updates: int, window: int) -> dict[str, float]:
    """Updates/s delivered to every one of ``subscribers`` WebSocket clients."""
    from iii_typed import InitOptions, register_worker
    from iii_typed.engine.process import EngineProcess

    stream = f"bench-{os.getpid()}"
    with EngineProcess(env={"OTEL_ENABLED": "false"}) as engine:
        iii = register_worker(engine.url, InitOptions(worker_name="bench-publisher"))
        subs = _child("_subscribers", engine.streams_url, str(subscribers), stream, str(updates))
        try:
            _expect(subs, "ready")

            async def publish() -> tuple[float, float]:
                semaphore = asyncio.Semaphore(window)

                async def one(index: int) -> None:
                    async with semaphore:
                        await iii.trigger_async(
                            {
                                "function_id": "stream::set",
                                "payload": {
                                    "stream_name": stream,
                                    "group_id": "g",
                                    "item_id": f"i{index % 50}",
                                    "data": {"n": index, "text": "update"},
                                },
                            }
                        )

                started_mono = time.monotonic()
                started = time.perf_counter()
                await asyncio.gather(*(one(i) for i in range(updates)))
                return started_mono, time.perf_counter() - started

            started_mono, publish_elapsed = asyncio.run(publish())
            last = float(_expect(subs, "last"))
        finally:
            _finish(subs)
            iii.shutdown()
    elapsed = last - started_mono
    return {
        "updates_per_s": updates / elapsed,
        "deliveries_per_s": updates * subscribers / elapsed,
        "publish_per_s": updates / publish_elapsed,
    }


# -- report ---------------------------------------------------------------------------------------
def _section(channels: dict[str, float], fanout: dict[str, float], args: argparse.Namespace) -> str:
    load = os.getloadavg()[0]
    command = (
        f"`.venv/bin/python bench/channels_bench.py --mib {args.mib} --repeat {args.repeat} "
        f"--subscribers {args.subscribers} --updates {args.updates} --window {args.window} --write`"
    )
    return "\n".join(
        [
            _BEGIN,
            f"Command: {command}",
            "",
            f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}, {platform.machine()}; "
            f"1-minute load average at the end: {load:.2f}. OTel off; each worker, the engine and the "
            "relay in its own process.",
            "",
            f"Channel, {args.mib} MiB in 64 KiB chunks, best of {args.repeat}:",
            "",
            "| path | MiB/s |",
            "|---|---|",
            "| worker → engine channel → worker (iii-typed SDK both ends, `async def` handlers) | "
            f"{channels['channel']:.0f} |",
            f"| raw `websockets` relay (same bytes, 64-message queue) | {channels['raw']:.0f} |",
            f"| ratio channel / raw | {channels['ratio']:.2f} |",
            "",
            f"Stream fan-out, {args.updates} `stream::set` calls ({args.window} in flight) to "
            f"{args.subscribers} WebSocket subscribers of one group:",
            "",
            "| measure | value |",
            "|---|---|",
            f"| updates/s delivered to all {args.subscribers} subscribers | {fanout['updates_per_s']:.0f} |",
            f"| frames/s delivered (updates x subscribers) | {fanout['deliveries_per_s']:.0f} |",
            f"| `stream::set` calls answered/s | {fanout['publish_per_s']:.0f} |",
            "",
            "The channel clock runs from triggering the two handlers to both results (it includes opening "
            'the two channel sockets); the raw clock from "go" to both clients done (it includes their '
            "connects). The fan-out clock runs from the first call to the last frame at the last "
            "subscriber. Numbers vary with the machine's load.",
            _END,
        ]
    )


def _write(section: str) -> None:
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmark results\n"
    if _BEGIN in text and _END in text:
        text = re.sub(re.escape(_BEGIN) + r".*?" + re.escape(_END), lambda _: section, text, flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n## Channels and streams\n\n" + section + "\n"
    RESULTS.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print (and with ``--write`` record) the tables."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0].startswith("_"):  # a child process
        role, rest = argv[0], argv[1:]
        if role == "_worker":
            _sdk_worker(rest[0], rest[1])
        elif role == "_relay":
            _relay()
        elif role == "_raw":
            _raw(rest[0], rest[1], int(rest[2]))
        elif role == "_subscribers":
            _subscribers(rest[0], int(rest[1]), rest[2], int(rest[3]))
        return 0
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--updates", type=int, default=2000)
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    args = parser.parse_args(argv)
    os.environ.setdefault("OTEL_ENABLED", "false")
    channels = measure_channels(args.mib, args.repeat)
    fanout = measure_fanout(args.subscribers, args.updates, args.window)
    section = _section(channels, fanout, args)
    print(section)
    if args.write:
        _write(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
