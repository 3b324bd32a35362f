"""Session files: ``--record`` writes one, ``--replay`` plays one back, the tests replay them too.

Format (JSON Lines, UTF-8; gzip-compressed when the name ends in ``.gz``):

* line 1, the header: ``{"iii_tui_session": 1, "url": "ws://…", "started": <epoch s>}``;
* then one line per data-source event, in order: ``{"t": <epoch s>, "k": "<kind>", "d": <data>}``
  where ``kind`` and ``data`` are those of :class:`iii_tui.store.Event` (the engine's answers and
  push payloads exactly as received, plus ``conn``/``missing``/``available`` markers).

Replaying feeds the same events to the same store, with the clock following their ``t``.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

from .clock import ManualClock
from .store import Event

__all__ = ["FORMAT_VERSION", "ReplaySource", "SessionError", "SessionWriter", "read_session", "write_session"]

FORMAT_VERSION = 1


class SessionError(ValueError):
    """A session file that cannot be read (names the line)."""


def _open(path: Path, mode: str) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, mode + "t", encoding="utf-8")  # type: ignore[return-value]
    return open(path, mode, encoding="utf-8")


class SessionWriter:
    """Append events to a session file as they happen (``--record``).

    Args:
        path: The file to create (``.gz`` compresses).
        url: The engine URL, written to the header.
        started: The header's start time.
    """

    def __init__(self, path: str | os.PathLike[str], url: str, started: float) -> None:
        self.path = Path(path)
        self._file = _open(self.path, "w")
        self._file.write(
            json.dumps({"iii_tui_session": FORMAT_VERSION, "url": url, "started": started}) + "\n"
        )
        self.count = 0

    def write(self, event: Event) -> None:
        """Append one event."""
        self._file.write(json.dumps({"t": round(event.t, 6), "k": event.kind, "d": event.data}) + "\n")
        self.count += 1
        if self.count % 256 == 0:
            self._file.flush()

    def close(self) -> None:
        """Flush and close the file."""
        if not self._file.closed:
            self._file.close()


def write_session(path: str | os.PathLike[str], events: Iterable[Event], url: str = "replay") -> None:
    """Write a whole session file at once (tests and the benchmark build theirs this way)."""
    events = list(events)
    writer = SessionWriter(path, url, events[0].t if events else 0.0)
    try:
        for event in events:
            writer.write(event)
    finally:
        writer.close()


def read_session(path: str | os.PathLike[str]) -> tuple[dict[str, Any], list[Event]]:
    """Read a session file.

    Returns:
        The header and the events in file order.

    Raises:
        SessionError: not a session file, or a malformed line.
    """
    events: list[Event] = []
    with _open(Path(path), "r") as fh:
        first = fh.readline()
        try:
            header = json.loads(first)
        except ValueError as exc:
            raise SessionError(f"{path}: line 1 is not a session header") from exc
        if not isinstance(header, dict) or header.get("iii_tui_session") != FORMAT_VERSION:
            raise SessionError(f"{path}: not an iii-tui session file (version {FORMAT_VERSION})")
        for number, line in enumerate(fh, start=2):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                events.append(Event(float(rec["t"]), str(rec["k"]), rec.get("d")))
            except (ValueError, KeyError, TypeError) as exc:
                raise SessionError(f"{path}: line {number} is malformed ({exc})") from exc
    return header, events


class ReplaySource:
    """A data source that plays a session file back (read-only).

    Args:
        path: The session file.
        speed: 1.0 plays at the recorded pace, 2.0 twice as fast, 0 (or less) at once.
        clock: The clock to move with the events (a fresh :class:`ManualClock` by default).
    """

    readonly = True

    def __init__(
        self, path: str | os.PathLike[str], speed: float = 1.0, clock: ManualClock | None = None
    ) -> None:
        self.header, self.events = read_session(path)
        self.speed = speed
        self.clock = clock or ManualClock(self.events[0].t if self.events else 0.0)
        self.url = str(self.header.get("url", "replay"))
        self.done = asyncio.Event()

    async def run(self, sink: Callable[[Event], None]) -> None:
        """Emit every event (paced by ``speed``), then return."""
        if not self.events:
            self.done.set()
            return
        loop = asyncio.get_running_loop()
        t0 = self.events[0].t
        wall0 = loop.time()
        for event in self.events:
            if self.speed > 0:
                delay = (event.t - t0) / self.speed - (loop.time() - wall0)
                if delay > 0.001:
                    await asyncio.sleep(delay)
            self.clock.set(event.t)
            sink(event)
        self.done.set()

    def request(self, kind: str, arg: str) -> None:
        """On-demand fetches have nothing to ask in a replay (the file holds what was fetched)."""

    async def call(self, function_id: str, payload: Any, timeout_ms: int = 30000) -> Any:
        """Actions are not possible in a replay."""
        raise PermissionError("this is a replay: actions are disabled")

    async def stop(self) -> None:
        """Nothing to release."""
