"""Write coalescing for the worker WebSocket connections (engine and SDK side).

``websockets`` hands every frame to ``transport.write`` on its own, and uvloop (like asyncio)
writes to the socket at once when its buffer is empty: one ``send`` syscall per frame. On loopback
that syscall also runs the receiver's TCP processing, so under load it is the largest single cost
of a round trip (perf.md §2.3). :class:`CoalescingTransport` sits between the connection and its
transport and gives the frames written during one event-loop iteration to the transport as one
``writelines`` call (one ``writev``): the first frame of an iteration is written at once (a lone
frame, as in a sequential call, is not delayed), the ones that follow in the same iteration are
written together at its end. Order is kept; 64 KiB and more are passed on at once.

:func:`coalesce_writes` installs it on an open ``websockets`` asyncio connection (server or client
side). It relies on the connection writing through its ``transport`` attribute
(websockets 14+ asyncio implementation, pinned in ``pyproject.toml``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

__all__ = ["FLUSH_AT_BYTES", "CoalescingTransport", "coalesce_writes"]

log = logging.getLogger("iii_typed")

#: Pending bytes at which a write is passed on at once instead of at the end of the iteration.
FLUSH_AT_BYTES: Final = 64 * 1024


class CoalescingTransport(asyncio.Transport):
    """A transport proxy that batches the writes of one loop iteration (see the module docstring).

    Args:
        transport: The connection's real transport.
        loop: The loop the connection runs on.
    """

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.transport = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self._size = 0
        self._burst = False  # a write went out in this loop iteration: queue the next ones

    # -- writing ------------------------------------------------------------------------------
    def write(self, data: Any) -> None:
        """Write ``data`` now if it is the first write of this loop iteration (no added latency
        for a lone frame), else queue it for the flush at the end of the iteration."""
        if not data:
            return
        if not self._burst:
            self._burst = True
            self._loop.call_soon(self._end_burst)
            self.transport.write(data)
            return
        self._pending.append(data)
        self._size += len(data)
        if self._size >= FLUSH_AT_BYTES:
            self.flush()

    def _end_burst(self) -> None:
        self._burst = False
        self.flush()

    def writelines(self, list_of_data: Any) -> None:
        """Queue every buffer of ``list_of_data``."""
        for data in list_of_data:
            self.write(data)

    def flush(self) -> None:
        """Hand the queued buffers to the real transport now (one call)."""
        pending = self._pending
        if not pending:
            return
        self._pending = []
        self._size = 0
        transport = self.transport
        if transport.is_closing():
            return  # the connection is going away: what it could not send is lost anyway
        try:
            if len(pending) == 1:
                transport.write(pending[0])
            else:
                transport.writelines(pending)
        except Exception:  # the transport reports socket errors to the protocol itself
            log.debug("write failed; aborting the connection", exc_info=True)
            transport.abort()

    def write_eof(self) -> None:
        """Flush, then half-close."""
        self.flush()
        self.transport.write_eof()

    def can_write_eof(self) -> bool:
        """As the real transport."""
        return self.transport.can_write_eof()

    def get_write_buffer_size(self) -> int:
        """Bytes the real transport holds plus the bytes queued here."""
        return self.transport.get_write_buffer_size() + self._size

    def get_write_buffer_limits(self) -> tuple[int, int]:
        """As the real transport."""
        return self.transport.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """As the real transport."""
        self.transport.set_write_buffer_limits(high, low)

    # -- closing ------------------------------------------------------------------------------
    def close(self) -> None:
        """Flush, then close."""
        self.flush()
        self.transport.close()

    def abort(self) -> None:
        """Drop what is queued and abort."""
        self._pending = []
        self._size = 0
        self.transport.abort()

    def is_closing(self) -> bool:
        """As the real transport."""
        return self.transport.is_closing()

    # -- reading and the rest -----------------------------------------------------------------
    def pause_reading(self) -> None:
        """As the real transport."""
        self.transport.pause_reading()

    def resume_reading(self) -> None:
        """As the real transport."""
        self.transport.resume_reading()

    def is_reading(self) -> bool:
        """As the real transport."""
        return self.transport.is_reading()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """As the real transport."""
        return self.transport.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        """As the real transport."""
        self.transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        """As the real transport."""
        return self.transport.get_protocol()


def coalesce_writes(connection: Any) -> None:
    """Route the frames of an open ``websockets`` asyncio connection through a
    :class:`CoalescingTransport` (idempotent)."""
    transport = connection.transport
    if isinstance(transport, CoalescingTransport):
        return
    connection.transport = CoalescingTransport(transport, asyncio.get_running_loop())
