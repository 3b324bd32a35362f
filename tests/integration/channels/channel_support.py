"""Helpers of the channel tests: SDK clients, peer worker processes, the engine's channel list."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from iii_typed import III, InitOptions, ReconnectionConfig, register_worker
from tests.support.waiting import FACTOR, wait_for, wait_for_async

os.environ.setdefault("OTEL_ENABLED", "false")

__all__ = ["channel_rows", "client", "peer", "unique", "wait_route"]

PEER = Path(__file__).with_name("peer.py")


def unique(prefix: str = "ch") -> str:
    """A short unique name."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@contextlib.contextmanager
def client(url: str, **kwargs: Any) -> Iterator[III]:
    """A connected SDK worker with fast reconnects; shut down on exit."""
    kwargs.setdefault("reconnection_config", ReconnectionConfig(initial_delay_ms=50, max_delay_ms=200))
    kwargs.setdefault("worker_name", unique("w"))
    iii = register_worker(url, InitOptions(**kwargs))
    try:
        yield iii
    finally:
        iii.shutdown()


def channel_rows(iii: III) -> dict[str, dict[str, Any]]:
    """``engine::channels::list`` by channel id."""
    listed = iii.trigger({"function_id": "engine::channels::list", "payload": {}})
    assert listed["count"] == len(listed["channels"])
    return {row["channel_id"]: row for row in listed["channels"]}


def _functions(iii: III) -> set[str]:
    listed = iii.trigger({"function_id": "engine::functions::list", "payload": {}})
    return {row["function_id"] for row in listed["functions"]}


@contextlib.contextmanager
def peer(url: str, sdk: str, iii: III) -> Iterator[str]:
    """A ``peer.py`` worker process using ``sdk`` (``ours`` / ``official``); yields its prefix."""
    prefix = unique(f"peer-{sdk}")
    env = dict(os.environ, OTEL_ENABLED="false", PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen(
        [sys.executable, str(PEER), url, sdk, prefix],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "ready", f"peer did not start: {line!r}"
        wanted = {f"{prefix}::produce", f"{prefix}::consume"}
        wait_for(lambda: wanted <= _functions(iii), timeout=10, what=f"{prefix} functions registered")
        yield prefix
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(10 * FACTOR)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def elapsed_since(start: float) -> float:
    """Seconds since ``start`` (``time.monotonic``)."""
    return time.monotonic() - start


async def wait_route(iii: III, function_id: str, timeout: float = 10.0) -> None:
    """Wait until an ``http`` binding of ``function_id`` is live (the engine acks no success)."""

    async def live() -> bool:
        listed = await iii.trigger_async(
            {
                "function_id": "engine::registered-triggers::list",
                "payload": {"trigger_type": "http", "function_id": function_id},
            }
        )
        return bool(listed["registered_triggers"])

    await wait_for_async(live, timeout=timeout, interval=0.02, what=f"the route of {function_id} is not live")
