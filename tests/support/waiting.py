"""Bounded waiting on conditions: tests never sleep a fixed time to wait for something."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

#: Multiply every test bound by this (set IIITYPED_TEST_TIMEOUT_FACTOR on slow machines).
FACTOR = float(os.environ.get("IIITYPED_TEST_TIMEOUT_FACTOR", "1"))

#: ``what`` names the condition in failure messages: a string, or a callable evaluated at failure
#: time (so the message can show the state that was last seen, e.g. which routes are still missing).
What = str | Callable[[], str]


def _describe(what: What, predicate: Any) -> str:
    text = what() if callable(what) else what
    return text or repr(predicate)


def wait_for(predicate: Callable[[], T], timeout: float = 5.0, interval: float = 0.01, what: What = "") -> T:
    """Poll ``predicate`` until it returns a truthy value; return it. Raises AssertionError on timeout."""
    deadline = time.monotonic() + timeout * FACTOR
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            bound = f"{timeout * FACTOR:.1f} s"
            raise AssertionError(f"condition not met within {bound}: {_describe(what, predicate)}")
        time.sleep(interval)


async def wait_for_async(
    predicate: Callable[[], T | Awaitable[T]], timeout: float = 5.0, interval: float = 0.01, what: What = ""
) -> T:
    """Async twin of :func:`wait_for`; ``predicate`` may be a coroutine function."""
    deadline = time.monotonic() + timeout * FACTOR
    while True:
        value = predicate()
        if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            bound = f"{timeout * FACTOR:.1f} s"
            raise AssertionError(f"condition not met within {bound}: {_describe(what, predicate)}")
        await asyncio.sleep(interval)


def holds_for(
    predicate: Callable[[], object], seconds: float, interval: float = 0.05, what: What = ""
) -> int:
    """Check that ``predicate`` *keeps* holding over an observation window of ``seconds``.

    The negative twin of :func:`wait_for`, for "nothing happens" assertions (no retry, no flip, no
    state change): ``predicate`` is sampled at once, every ``interval`` s, and once more at the end
    of the window; the first falsy sample raises AssertionError naming ``what`` and when it stopped
    holding. ``predicate`` may also do work per sample (e.g. a call) and assert on it. Returns the
    number of samples taken. The window is not scaled by :data:`FACTOR`: it is a minimum
    observation time, not a bound on how long something may take.
    """
    started = time.monotonic()
    deadline = started + seconds
    samples = 0
    while True:
        samples += 1
        if not predicate():
            elapsed = time.monotonic() - started
            window = f"{elapsed:.2f} s of a {seconds:g} s window"
            raise AssertionError(f"stopped holding after {window}: {_describe(what, predicate)}")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return samples
        time.sleep(min(interval, remaining))
