"""Raw iii clients on bare ``websockets`` (the baseline of G1-G3 and G9; perf.md §2.2 "real").

    python bench/reference/raw.py worker URL FUNCTION_ID
    python bench/reference/raw.py caller URL FUNCTION_ID

The worker registers ``FUNCTION_ID`` (and reports itself with a void ``engine::workers::register``
so the iii-typed engine fixes its namespace at once) and answers each ``invokefunction`` with its
``data`` from a task of its own. The caller correlates results through a Future per ``uuid4``
invocation id; it speaks the driver protocol of :mod:`driver` on stdin/stdout. Loop and codec
follow ``BENCH_POLICY`` (:mod:`policy`).
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from driver import serve_driver
from policy import dumps, loads, run
from websockets.asyncio.client import ClientConnection, connect

__all__ = ["RawCaller", "raw_worker"]

_OPTIONS: dict[str, Any] = {"compression": None, "ping_interval": None, "max_size": 2**26}


async def raw_worker(url: str, function_id: str, ready: Callable[[], None] | None = None) -> None:
    """Serve ``function_id`` (an echo) until the connection ends."""
    async with connect(url, **_OPTIONS) as ws:
        await ws.send(dumps({"type": "registerfunction", "id": function_id}), text=True)
        register = {"runtime": "python", "name": "raw-worker", "namespace": None}
        hello = {"type": "invokefunction", "function_id": "engine::workers::register", "data": register}
        await ws.send(dumps(hello | {"action": {"type": "void"}}), text=True)
        if ready is not None:
            ready()
        tasks: set[asyncio.Task[None]] = set()

        async def answer(frame: dict[str, Any]) -> None:
            result = {
                "type": "invocationresult",
                "invocation_id": frame["invocation_id"],
                "function_id": frame["function_id"],
                "result": frame["data"],
            }
            await ws.send(dumps(result), text=True)

        async for _ in _frames(ws, "invokefunction"):
            task = asyncio.get_running_loop().create_task(answer(_))
            tasks.add(task)
            task.add_done_callback(tasks.discard)


async def _frames(ws: ClientConnection, kind: str) -> Any:
    """Yield the decoded frames of type ``kind`` until the socket closes."""
    try:
        while True:
            frame = loads(await ws.recv(decode=False))
            if frame.get("type") == kind:
                yield frame
    except Exception:
        return


class RawCaller:
    """A caller: one socket, a Future per invocation id, results matched by a reader task."""

    def __init__(self, ws: ClientConnection, function_id: str, payload: Any) -> None:
        self.ws = ws
        self.function_id = function_id
        self.payload = payload
        self.pending: dict[str, asyncio.Future[Any]] = {}
        self.reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for frame in _frames(self.ws, "invocationresult"):
            future = self.pending.pop(frame["invocation_id"], None)
            if future is not None and not future.done():
                if "error" in frame:
                    future.set_exception(RuntimeError(frame["error"]))
                else:
                    future.set_result(frame.get("result"))

    async def call(self) -> Any:
        """One round trip."""
        invocation_id = str(uuid.uuid4())
        future = asyncio.get_running_loop().create_future()
        self.pending[invocation_id] = future
        frame = {
            "type": "invokefunction",
            "invocation_id": invocation_id,
            "function_id": self.function_id,
            "data": self.payload,
        }
        await self.ws.send(dumps(frame), text=True)
        return await future


async def _caller(url: str, function_id: str) -> None:
    from driver import PAYLOAD

    async with connect(url, **_OPTIONS) as ws:
        caller = RawCaller(ws, function_id, PAYLOAD)
        calls: dict[str, Callable[[], Awaitable[Any]]] = {"async": caller.call}
        await serve_driver(calls)


if __name__ == "__main__":
    role, url, fid = sys.argv[1:4]
    run(raw_worker(url, fid) if role == "worker" else _caller(url, fid))
