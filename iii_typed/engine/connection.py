"""Per-connection state of a worker socket on ``/`` (protocol.md §3).

A :class:`WorkerConnection` holds what the engine knows about one live worker: its ids, its
namespace state (pending until ``engine::workers::register`` or the grace timer, §3.4), what it
registered, the invocations it is executing, and the metadata it reported (§3.3).

Outbound flow control (docs/reliability.md "Slow and stuck workers"):

* :meth:`WorkerConnection.send` writes the frame into the socket's write buffer and waits while
  more than :data:`OUTBOUND_HIGH_WATER` bytes are unsent to that worker (backpressure). It is used
  where waiting is right: a caller's reader routing an invocation to a slow callee (the caller is
  slowed, nobody else), replies to a connection's own reader, engine tasks. A message larger than
  the bound is still written whole.
* :meth:`WorkerConnection.post` never makes the producer wait: it is used for frames produced on
  behalf of *another* connection — an ``invocationresult`` read from the callee goes to the caller
  this way — so a caller that stops reading cannot stall the callee's reader (and with it every
  other caller of that callee). Over the bound the frame is written by a task of its own.
* A worker that makes no progress is closed (1008, "stopped reading"): when, while a send waits
  for its buffer to drain, its unsent bytes do not shrink for
  :attr:`WorkerConnection.stall_timeout` (``[engine] stall_timeout_ms``, default 10 s), or when
  more than :data:`OUTBOUND_HARD_LIMIT` bytes are unsent to it. Its cleanup then fails its
  callers' invocations with ``invocation_stopped``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import unicodedata
from typing import TYPE_CHECKING, Any, Final
from uuid import UUID

from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

log = logging.getLogger("iii_typed.engine")

#: Writer tasks of :meth:`WorkerConnection.post` (kept referenced until they finish).
_WRITERS: set[asyncio.Task[bool]] = set()

if TYPE_CHECKING:
    from websockets.asyncio.server import ServerConnection

    from ..protocol.frames import FrameModel

__all__ = [
    "MAX_TEXT_CHARS",
    "OUTBOUND_HARD_LIMIT",
    "OUTBOUND_HIGH_WATER",
    "OUTBOUND_LOW_WATER",
    "STALL_TIMEOUT_S",
    "Pending",
    "WorkerConnection",
    "sanitize_text",
]

#: Unsent bytes per connection above which producers wait (the outbound bound).
OUTBOUND_HIGH_WATER: Final = 1024 * 1024
#: Producers resume when the unsent bytes fall below this.
OUTBOUND_LOW_WATER: Final = 256 * 1024
#: Unsent bytes beyond which a worker is considered stuck and closed (two maximum-size messages).
OUTBOUND_HARD_LIMIT: Final = 128 * 1024 * 1024
#: Default seconds a send may wait for a worker's buffer to drain before the worker is closed.
STALL_TIMEOUT_S: Final = 10.0
#: Seconds a stuck worker gets to take its close frame before the TCP connection is aborted.
STUCK_CLOSE_TIMEOUT_S: Final = 1.0
#: Longest worker name/description kept (protocol.md §3.3).
MAX_TEXT_CHARS: Final = 280

_BIDI_CONTROLS: Final = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def sanitize_text(value: str | None, limit: int = MAX_TEXT_CHARS) -> str | None:
    """Clean a worker name or description as the real engine does (protocol.md §3.3).

    Control characters (Unicode category ``Cc``) and bidirectional overrides/isolates are
    removed, surrounding whitespace is trimmed, and the text is cut to ``limit`` characters.

    Returns:
        The cleaned text, or ``None`` when nothing is left (or ``value`` is ``None``).
    """
    if value is None:
        return None
    cleaned = "".join(
        ch for ch in value if ch not in _BIDI_CONTROLS and unicodedata.category(ch) != "Cc"
    ).strip()
    if len(cleaned) > limit:
        cleaned = cleaned[:limit].rstrip()
    return cleaned or None


def _write_now(ws: ServerConnection, message: bytes) -> bool:
    """Write one text frame to an open connection whose writing is not paused.

    What ``ws.send(message, text=True)`` does in that state (its ``send_context`` would neither
    wait nor drain), without the async context manager around it: on a sequential round trip
    that wrapper was the largest piece of the engine's own Python work per frame.

    Returns:
        ``False`` when the write failed (the connection is then aborted), else ``True``.
    """
    try:
        ws.protocol.send_text(message)
        ws.send_data()
    except Exception:
        log.debug("write to a worker failed; aborting its connection", exc_info=True)
        ws.transport.abort()
        return False
    return True


class Pending:
    """An invocation a worker is executing, waiting for its ``invocationresult`` (protocol.md §4.2).

    Attributes:
        caller: The connection to answer, or ``None`` (void call, or engine-originated).
        function_id: The invoked function (echoed in the answer).
        traceparent: The request's trace context, echoed to the caller.
        baggage: The request's baggage, echoed to the caller.
        future: Completed with the result for engine-originated calls, else ``None``.
        token: What the invocation observer returned when the call started (telemetry), if any.
    """

    __slots__ = ("baggage", "caller", "function_id", "future", "token", "traceparent")

    def __init__(
        self,
        caller: WorkerConnection | None,
        function_id: str,
        traceparent: str | None = None,
        baggage: str | None = None,
        future: asyncio.Future[Any] | None = None,
    ) -> None:
        self.caller = caller
        self.function_id = function_id
        self.traceparent = traceparent
        self.baggage = baggage
        self.future = future
        self.token: object = None


class WorkerConnection:
    """One worker socket on ``/`` and everything the engine tracks for it.

    Attributes:
        ws: The WebSocket connection.
        id: ``worker_id`` (uuid4 string) sent in ``workerregistered``.
        reattach_token: Token a reconnecting worker presents in ``reattach`` (uuid4 string).
        ip_address: Peer address.
        connected_at_ms: Connection time, Unix milliseconds.
        namespace: The connection's namespace, or ``None`` while pending (§3.4).
        buffer: Registration frames received while the namespace is pending.
        draining: Set while the buffer is being applied (new registrations queue behind it).
        grace_handle: Timer that fixes the namespace to ``default`` after the grace period.
        closing: Set when cleanup starts; the connection no longer owns anything.
        functions: ``(namespace, function_id)`` keys this connection owns.
        trigger_ids: Ids of the bindings this connection registered.
        trigger_types: ``(namespace, type_id)`` keys this connection provides.
        services: ``(namespace, service_id)`` keys of ``registerservice`` frames.
        executing: Invocations this worker is executing, by invocation id.
        name_lease: The ``(namespace, name)`` this connection holds, if any.
        info: Metadata reported through ``engine::workers::register`` (name, runtime, version,
            os, pid, isolation, telemetry, features, description).
        registered: Whether ``engine::workers::register`` was processed.
    """

    __slots__ = (
        "buffer",
        "closing",
        "connected_at_ms",
        "draining",
        "executing",
        "functions",
        "grace_handle",
        "id",
        "info",
        "ip_address",
        "name_lease",
        "namespace",
        "reattach_token",
        "registered",
        "services",
        "stall_timeout",
        "stuck",
        "trigger_ids",
        "trigger_types",
        "ws",
    )

    def __init__(self, ws: ServerConnection, worker_id: str, reattach_token: str) -> None:
        self.ws = ws
        self.id = worker_id
        self.reattach_token = reattach_token
        remote = ws.remote_address
        self.ip_address: str | None = str(remote[0]) if remote else None
        self.connected_at_ms = int(time.time() * 1000)
        self.namespace: str | None = None
        self.buffer: list[FrameModel] = []
        self.draining = False
        self.grace_handle: asyncio.TimerHandle | None = None
        self.closing = False
        self.functions: set[tuple[str, str]] = set()
        self.trigger_ids: set[str] = set()
        self.trigger_types: set[tuple[str, str]] = set()
        self.services: set[tuple[str, str]] = set()
        self.executing: dict[UUID, Pending] = {}
        self.name_lease: tuple[str, str] | None = None
        self.info: dict[str, Any] = {}
        self.registered = False
        self.stall_timeout = STALL_TIMEOUT_S
        self.stuck: asyncio.Task[None] | None = None

    @property
    def name(self) -> str | None:
        """The worker name reported by ``engine::workers::register`` (sanitised), if any."""
        value = self.info.get("name")
        return value if isinstance(value, str) else None

    @property
    def live(self) -> bool:
        """Whether the connection is open and not being cleaned up."""
        return not self.closing and self.ws.protocol.state is State.OPEN

    async def send(self, message: bytes) -> bool:
        """Send one encoded frame as a text message, waiting while the outbound bound is exceeded.

        Returns:
            ``False`` when the connection is closed or closing (nothing was sent), else ``True``.
        """
        ws = self.ws
        if ws.protocol.state is not State.OPEN:
            return False
        if ws.transport.get_write_buffer_size() + len(message) >= OUTBOUND_HIGH_WATER:
            return await self._send_waiting(message)
        if not ws.paused:
            return _write_now(ws, message)
        try:  # below the bound: the write cannot make this wait
            await ws.send(message, text=True)
        except ConnectionClosed:
            return False
        return True

    async def post(self, message: bytes) -> bool:
        """Send one encoded frame without making the producer wait for this worker's buffer.

        Below :data:`OUTBOUND_HIGH_WATER` unsent bytes the frame is written at once; above it a
        task of its own writes it (and waits); above :data:`OUTBOUND_HARD_LIMIT` the worker is
        closed as stuck and the frame dropped.

        Returns:
            ``False`` when the connection is closed, closing or stuck, else ``True``.
        """
        ws = self.ws
        if ws.protocol.state is not State.OPEN or self.stuck is not None:
            return False
        buffered = ws.transport.get_write_buffer_size()
        if buffered + len(message) < OUTBOUND_HIGH_WATER:
            if not ws.paused:
                return _write_now(ws, message)
            try:
                await ws.send(message, text=True)
            except ConnectionClosed:
                return False
            return True
        if buffered > OUTBOUND_HARD_LIMIT:
            self.close_stuck(f"{buffered} bytes unsent (limit {OUTBOUND_HARD_LIMIT})")
            return False
        task = asyncio.get_running_loop().create_task(self._send_waiting(message))
        _WRITERS.add(task)
        task.add_done_callback(_WRITERS.discard)
        return True

    async def _send_waiting(self, message: bytes) -> bool:
        """Write and wait for the buffer to drain; a worker whose unsent bytes do not shrink for
        :attr:`stall_timeout` (no progress at all, however large the message) is closed."""
        ws = self.ws
        sending = asyncio.ensure_future(ws.send(message, text=True))
        unsent = ws.transport.get_write_buffer_size() + len(message)
        try:
            while True:
                done, _ = await asyncio.wait((sending,), timeout=self.stall_timeout)
                if done:
                    sending.result()
                    return True
                now = ws.transport.get_write_buffer_size()
                if now >= unsent:
                    self.close_stuck(f"its unsent bytes did not shrink for {self.stall_timeout:g} s")
                    return False
                unsent = now
        except ConnectionClosed:
            return False
        finally:
            if not sending.done():
                sending.cancel()

    def close_stuck(self, why: str) -> None:
        """Close a worker that stopped reading (1008); its cleanup fails its invocations (§3.6)."""
        if self.stuck is not None:
            return
        log.warning(
            "worker %s (%s) stopped reading: %s; closing it (1008)", self.id, self.name or "unnamed", why
        )
        self.stuck = asyncio.get_running_loop().create_task(self._close_stuck())

    async def _close_stuck(self) -> None:
        ws = self.ws
        try:  # the close frame waits behind what the worker never read: bound the attempt
            await asyncio.wait_for(ws.close(1008, "stopped reading"), STUCK_CLOSE_TIMEOUT_S)
        except (TimeoutError, ConnectionClosed):
            pass
        finally:
            ws.transport.abort()

    def __repr__(self) -> str:
        return f"<WorkerConnection {self.id} name={self.name!r} ns={self.namespace!r}>"
