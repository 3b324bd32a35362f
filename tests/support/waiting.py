"""Bounded waiting on conditions: tests never sleep a fixed time to wait for something."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

#: Multiply every test bound by this (set IIITYPED_TEST_TIMEOUT_FACTOR on slow machines).
FACTOR = float(os.environ.get("IIITYPED_TEST_TIMEOUT_FACTOR", "1"))


def wait_for(predicate: Callable[[], T], timeout: float = 5.0, interval: float = 0.01, what: str = "") -> T:
    """Poll ``predicate`` until it returns a truthy value; return it. Raises AssertionError on timeout."""
    deadline = time.monotonic() + timeout * FACTOR
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout * FACTOR:.1f} s: {what or predicate!r}")
        time.sleep(interval)


async def wait_for_async(
    predicate: Callable[[], T | Awaitable[T]], timeout: float = 5.0, interval: float = 0.01, what: str = ""
) -> T:
    """Async twin of :func:`wait_for`; ``predicate`` may be a coroutine function."""
    deadline = time.monotonic() + timeout * FACTOR
    while True:
        value = predicate()
        if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout * FACTOR:.1f} s: {what or predicate!r}")
        await asyncio.sleep(interval)
