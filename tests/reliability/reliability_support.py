"""Helpers of the reliability tests: test-sized options, a timed state recorder, engine probes."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from iii_typed import III, IIIConnectionState, InitOptions, ReconnectionConfig

__all__ = [
    "KEEPALIVE_BOUND_S",
    "KEEPALIVE_MS",
    "StateRecorder",
    "fast_options",
    "sdk_threads",
    "unique",
    "worker_ids_named",
]

#: Keepalive interval and timeout used by these tests (decisions "Tests": <= 500 ms).
KEEPALIVE_MS = 500
#: A dead engine is noticed within interval + timeout + close timeout (docs/reliability.md).
KEEPALIVE_BOUND_S = 3 * KEEPALIVE_MS / 1000


def unique(prefix: str = "rel") -> str:
    """A short unique name."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def fast_options(**kwargs: Any) -> InitOptions:
    """Test-sized intervals: reconnect after 100 ms doubling to at most 1 s (so a reachable engine is
    reconnected within 2 s: docs/reliability.md), keepalive 500/500 ms."""
    kwargs.setdefault("reconnection_config", ReconnectionConfig(initial_delay_ms=100, max_delay_ms=1000))
    kwargs.setdefault("keepalive_interval_ms", KEEPALIVE_MS)
    kwargs.setdefault("keepalive_timeout_ms", KEEPALIVE_MS)
    return InitOptions(**kwargs)


def sdk_threads() -> list[threading.Thread]:
    """Threads the SDK starts (its loop thread and handler threads)."""
    return [t for t in threading.enumerate() if t.name.startswith(("iii-loop", "iii-handler"))]


@dataclass
class StateRecorder:
    """Every connection state a client reports, with ``time.monotonic()`` stamps."""

    seen: list[tuple[float, IIIConnectionState]] = field(default_factory=list)
    _changed: threading.Condition = field(default_factory=threading.Condition)

    @classmethod
    def attach(cls, client: III) -> StateRecorder:
        recorder = cls()
        client.add_connection_state_listener(recorder._on_state)
        return recorder

    def _on_state(self, state: IIIConnectionState) -> None:
        with self._changed:
            self.seen.append((time.monotonic(), state))
            self._changed.notify_all()

    @property
    def states(self) -> list[IIIConnectionState]:
        return [s for _, s in self.seen]

    def mark(self) -> int:
        """An index to wait for states recorded after now."""
        return len(self.seen)

    def wait(self, state: IIIConnectionState, after: int = 0, timeout: float = 5.0) -> float:
        """Wait until ``state`` is recorded at an index >= ``after``; return when it was recorded."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for stamp, seen in self.seen[after:]:
                    if seen == state:
                        return stamp
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"state {state!r} not reached within {timeout} s: {self.states}")
                self._changed.wait(left)


def worker_ids_named(client: III, name: str) -> list[str]:
    """Ids of the live workers the engine lists under ``name`` (``engine::workers::list``)."""
    rows = client.trigger({"function_id": "engine::workers::list", "payload": {}, "timeout_ms": 5000})
    return sorted(row["id"] for row in rows["workers"] if row.get("name") == name)
