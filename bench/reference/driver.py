"""The caller side of every round-trip benchmark process (perf.md §1 "Bounds", §5 "Method").

A caller process connects, checks that the function answers (up to 15 s), warms up with 300
sequential round trips and 300 at 64 in flight, prints ``ready`` and then obeys one command per
stdin line, printing one JSON line per command:

    async 1 3.0      # round trips for 3 s, 1 in flight   -> {"calls": n, "seconds": s, "cpu": c}
    async 64 3.0     # 64 in flight (64 coroutines on this process's loop)
    sync 1 3.0       # the blocking API from one thread (when the client has one)

Every measurement stops at 200,000 round trips or after its seconds, whichever comes first. EOF
or ``quit`` ends the process.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["LIMIT", "PAYLOAD", "measure", "measure_sync", "serve_driver"]

#: The benchmark payload: 5 fields, about the ``data`` of perf.md's 330-byte InvokeFunction.
PAYLOAD: dict[str, Any] = {
    "order_id": "ord_7Hq2Lx9Pz4",
    "amount": 4200,
    "currency": "EUR",
    "items": ["sku-1", "sku-22", "sku-333"],
    "note": "ratio benchmark payload",
}

#: Round trips per measurement at most.
LIMIT = 200_000
WARMUP = 300


async def measure(call: Callable[[], Awaitable[Any]], in_flight: int, seconds: float) -> dict[str, float]:
    """Round trips of ``call`` with ``in_flight`` coroutines for ``seconds`` (bounded by LIMIT)."""
    loop = asyncio.get_running_loop()
    stop = loop.time() + seconds
    done = 0

    async def lane() -> None:
        nonlocal done
        while done < LIMIT and loop.time() < stop:
            await call()
            done += 1

    cpu, started = time.process_time(), time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(in_flight)))
    return {"calls": done, "seconds": time.perf_counter() - started, "cpu": time.process_time() - cpu}


def measure_sync(call: Callable[[], Any], seconds: float) -> dict[str, float]:
    """Sequential round trips of a blocking ``call`` on this thread."""
    cpu, started = time.process_time(), time.perf_counter()
    stop = started + seconds
    done = 0
    while done < LIMIT and time.perf_counter() < stop:
        call()
        done += 1
    return {"calls": done, "seconds": time.perf_counter() - started, "cpu": time.process_time() - cpu}


async def _probe(call: Callable[[], Awaitable[Any]]) -> None:
    deadline = time.monotonic() + 15
    while True:
        try:
            await asyncio.wait_for(call(), 2)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def serve_driver(
    calls: dict[str, Callable[[], Awaitable[Any]]], sync_call: Callable[[], Any] | None = None
) -> None:
    """Probe, warm up, print ``ready``, then run the commands read from stdin."""
    first = next(iter(calls.values()))
    await _probe(first)
    for _ in range(WARMUP):
        await first()
    await asyncio.gather(*(first() for _ in range(WARMUP)))
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str] = asyncio.Queue()

    def read() -> None:  # a thread: stdin is not selectable with every loop
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line)
        loop.call_soon_threadsafe(lines.put_nowait, "quit")

    threading.Thread(target=read, daemon=True).start()
    while True:
        words = (await lines.get()).split()
        if not words or words[0] == "quit":
            return
        mode, in_flight, seconds = words[0], int(words[1]), float(words[2])
        if mode == "sync":
            if sync_call is None:
                raise SystemExit("this client has no blocking API")
            result = await loop.run_in_executor(None, measure_sync, sync_call, seconds)
        else:
            result = await measure(calls[mode], in_flight, seconds)
        print(json.dumps(result), flush=True)
