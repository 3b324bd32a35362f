"""Reference relay engine, the "real" profile of perf.md §2.2 (the baseline of G1-G3, G9).

    python bench/reference/relay.py          # prints {"engine": "ws://127.0.0.1:PORT"}; SIGTERM stops

Routes ``invokefunction`` to the worker that sent ``registerfunction`` and the worker's
``invocationresult`` back: a task per invocation awaits a Future for the result (the shape an
engine with timeouts needs), ``_caller_worker_id`` is injected into object payloads, the result is
forwarded as received. ``engine::*`` calls are answered ``{}``. No compression, no pings. Loop and
codec follow ``BENCH_POLICY`` (:mod:`policy`).
"""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from typing import Any

from policy import dumps, loads, run
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed


class Relay:
    """Function table, pending invocations and the per-connection read loop."""

    def __init__(self) -> None:
        self.functions: dict[str, ServerConnection] = {}
        self.pending: dict[str, asyncio.Future[bytes]] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    async def serve(self, ws: ServerConnection) -> None:
        """Read one worker's frames until it goes away."""
        worker_id = str(uuid.uuid4())
        hello = {"type": "workerregistered", "worker_id": worker_id, "reattach_token": str(uuid.uuid4())}
        await ws.send(dumps(hello), text=True)
        try:
            while True:
                message = await ws.recv(decode=False)
                frame = loads(message)
                kind = frame.get("type")
                if kind == "invokefunction":
                    task = asyncio.get_running_loop().create_task(self.invoke(ws, worker_id, frame))
                    self.tasks.add(task)
                    task.add_done_callback(self.tasks.discard)
                elif kind == "invocationresult":
                    future = self.pending.pop(frame["invocation_id"], None)
                    if future is not None and not future.done():
                        future.set_result(message)
                elif kind == "registerfunction":
                    self.functions[frame["id"]] = ws
        except ConnectionClosed:
            pass
        finally:
            for key in [k for k, owner in self.functions.items() if owner is ws]:
                del self.functions[key]

    async def invoke(self, caller: ServerConnection, caller_id: str, frame: dict[str, Any]) -> None:
        """Forward one invocation and, unless it is void, its result."""
        invocation_id, function_id = frame.get("invocation_id"), frame["function_id"]
        callee = self.functions.get(function_id)
        if callee is None:
            if invocation_id is not None:
                body = (
                    {"result": {}}
                    if function_id.startswith("engine::")
                    else {"error": {"code": "function_not_found", "message": function_id}}
                )
                await caller.send(
                    dumps(
                        {
                            "type": "invocationresult",
                            "invocation_id": invocation_id,
                            "function_id": function_id,
                            **body,
                        }
                    ),
                    text=True,
                )
            return
        data = frame.get("data")
        if type(data) is dict:
            data["_caller_worker_id"] = caller_id
        if invocation_id is None:
            await callee.send(dumps(frame | {"invocation_id": str(uuid.uuid4())}), text=True)
            return
        future = asyncio.get_running_loop().create_future()
        self.pending[invocation_id] = future
        await callee.send(dumps(frame), text=True)
        await caller.send(await future, text=True)


async def main() -> None:
    """Listen on a free port, print the ready line, serve until SIGTERM/SIGINT."""
    stop = asyncio.get_running_loop().create_future()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set_result, None)
    relay = Relay()
    async with serve(
        relay.serve, "127.0.0.1", 0, compression=None, ping_interval=None, max_size=2**26
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        print(json.dumps({"engine": f"ws://127.0.0.1:{port}"}), flush=True)
        await stop


if __name__ == "__main__":
    run(main())
