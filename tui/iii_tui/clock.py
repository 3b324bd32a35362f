"""Injectable clocks: widgets never read the wall clock themselves (tui.md §3.1 rule 4)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock", "format_age", "format_clock"]


class Clock(Protocol):
    """Something that tells the time, in seconds since the epoch."""

    def now(self) -> float:
        """The current time (seconds since the epoch)."""
        ...


class SystemClock:
    """The real wall clock."""

    def now(self) -> float:
        """The current wall-clock time."""
        return time.time()


class ManualClock:
    """A clock that moves only when told to (replay, tests).

    Args:
        start: The initial time in seconds since the epoch.
    """

    def __init__(self, start: float = 0.0) -> None:
        self.value = start

    def now(self) -> float:
        """The time last set."""
        return self.value

    def set(self, value: float) -> None:
        """Move to ``value`` (never backwards)."""
        self.value = max(self.value, value)


def format_clock(ts: float | None) -> str:
    """``HH:MM:SS`` in UTC for a time in seconds (``-`` when unknown); UTC keeps snapshots stable."""
    if ts is None or ts <= 0:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S")


def format_age(seconds: float | None) -> str:
    """A short duration such as ``42s``, ``3m``, ``5h`` or ``2d`` (``-`` when unknown)."""
    if seconds is None or seconds < 0:
        return "-"
    if seconds < 60:
        return f"{int(seconds)}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m"
    if seconds < 86400:
        return f"{int(seconds // 3600)}h"
    return f"{int(seconds // 86400)}d"
