"""The reference of G9: the relay, a raw worker and a raw caller on one event loop (one process).

    python bench/reference/oneproc.py       # then the driver protocol of :mod:`driver`

Still over loopback sockets, like an in-process test fixture (perf.md §1 "Topologies", 1proc).
"""

from __future__ import annotations

import asyncio

from driver import PAYLOAD, serve_driver
from policy import run
from raw import RawCaller, raw_worker
from relay import Relay
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve

FUNCTION_ID = "bench::echo"


async def main() -> None:
    """Start the three roles, then serve the driver."""
    relay = Relay()
    async with serve(relay.serve, "127.0.0.1", 0, compression=None, ping_interval=None) as server:
        url = f"ws://127.0.0.1:{next(iter(server.sockets)).getsockname()[1]}"
        worker = asyncio.get_running_loop().create_task(raw_worker(url, FUNCTION_ID))
        async with connect(url, compression=None, ping_interval=None) as ws:
            caller = RawCaller(ws, FUNCTION_ID, PAYLOAD)
            await serve_driver({"async": caller.call})
        worker.cancel()


if __name__ == "__main__":
    run(main())
