"""Event-loop and codec policy of the reference processes (perf.md §1 "Codec").

``fast`` = uvloop + orjson on the bytes path (``recv(decode=False)``, ``send(bytes, text=True)``),
``std`` = the standard asyncio loop + stdlib ``json``. Chosen with ``BENCH_POLICY`` (default
``fast``) so a reference process runs on the same loop and codec policy as the SDK it is compared
with.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["POLICY", "dumps", "loads", "run"]

T = TypeVar("T")

POLICY = os.environ.get("BENCH_POLICY", "fast")

loads: Callable[[bytes], Any]
dumps: Callable[[Any], bytes]

if POLICY == "fast":
    import orjson

    loads = orjson.loads
    dumps = orjson.dumps
else:
    loads = json.loads

    def dumps(value: Any) -> bytes:
        """Compact UTF-8 JSON, as the official SDK writes it."""
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the policy's event loop."""
    if POLICY == "fast":
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)
