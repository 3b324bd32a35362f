"""Helpers of the state / pubsub / cron / queue integration tests.

* :func:`client` — a connected iii-typed SDK worker with test-sized intervals (always shut down).
* :class:`Recorder` — a handler that records what it receives (payload, metadata, time) and lets a
  test wait, with a bounded timeout, until enough calls arrived.
* :func:`official_worker` — an official ``iii-sdk`` 0.25 client (``OTEL_ENABLED=false``).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from iii_typed import III, InitOptions, ReconnectionConfig, register_worker
from tests.support.official import shutdown_official
from tests.support.waiting import FACTOR

os.environ.setdefault("OTEL_ENABLED", "false")

__all__ = ["Call", "Recorder", "client", "official_worker", "unique"]


def unique(prefix: str = "t") -> str:
    """A short unique name (ids shared with other tests on the session engine)."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@contextlib.contextmanager
def client(url: str, **kwargs: Any) -> Iterator[III]:
    """A connected SDK worker with fast reconnects; shut down on exit."""
    kwargs.setdefault("reconnection_config", ReconnectionConfig(initial_delay_ms=50, max_delay_ms=200))
    kwargs.setdefault("keepalive_interval_ms", 500)
    kwargs.setdefault("keepalive_timeout_ms", 500)
    kwargs.setdefault("worker_name", unique("w"))
    iii = register_worker(url, InitOptions(**kwargs))
    try:
        yield iii
    finally:
        iii.shutdown()


@contextlib.contextmanager
def official_worker(url: str, name: str | None = None) -> Iterator[Any]:
    """An official ``iii-sdk`` worker; shut down on exit."""
    from iii import InitOptions as OfficialOptions
    from iii import register_worker as official_register

    worker = official_register(url, OfficialOptions(worker_name=name or unique("official")))
    try:
        yield worker
    finally:
        shutdown_official(worker)


@dataclass
class Call:
    """One recorded invocation."""

    data: Any
    metadata: Any
    at: float


class Recorder:
    """Records calls; ``fail`` decides per call whether the handler raises.

    Args:
        fail: ``fail(call_number, data)`` → raise ``RuntimeError`` when true (1-based numbers).
        block: An event the handler waits on (bounded) before answering, to simulate slow work.
        result: What the handler returns.
    """

    def __init__(
        self,
        fail: Callable[[int, Any], bool] | None = None,
        block: threading.Event | None = None,
        result: Any = None,
    ) -> None:
        self.calls: list[Call] = []
        self._fail = fail
        self._block = block
        self._result = result
        self._cond = threading.Condition()

    def __call__(self, data: Any, metadata: Any = None) -> Any:
        with self._cond:
            self.calls.append(Call(data, metadata, time.monotonic()))
            number = len(self.calls)
            self._cond.notify_all()
        if self._block is not None:
            self._block.wait(10 * FACTOR)
        if self._fail is not None and self._fail(number, data):
            raise RuntimeError(f"failure #{number}")
        return self._result

    @property
    def payloads(self) -> list[Any]:
        with self._cond:
            return [call.data for call in self.calls]

    def wait(self, count: int, timeout: float = 10.0) -> list[Call]:
        """Block until at least ``count`` calls arrived; AssertionError after ``timeout`` s."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.calls) >= count, timeout * FACTOR):
                raise AssertionError(
                    f"expected {count} calls within {timeout * FACTOR:.1f} s, got {len(self.calls)}"
                )
            return list(self.calls)

    def stays(self, count: int, window: float) -> bool:
        """True if no call beyond ``count`` arrives within ``window`` s (a bounded negative check)."""
        with self._cond:
            return not self._cond.wait_for(lambda: len(self.calls) > count, window)
