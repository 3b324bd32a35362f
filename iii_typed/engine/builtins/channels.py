"""Channels: byte/text streams between workers through the engine (protocol.md §1.1, §5).

Wire side
---------

* ``engine::channels::create {buffer_size?: int | null}`` → ``{"reader": ref, "writer": ref}``
  (golden frame E15). Both refs ``{"access_key", "channel_id", "direction"}`` share the channel
  id and the access key; only ``direction`` differs. The buffer holds ``min(buffer_size or 64,
  1024)`` **messages** (at least 1); a negative size is a ``deserialization_error``.
* ``GET /ws/channels/<channel_id>?key=<access_key>&dir=read|write`` on the worker port
  (golden frame C01), §5.2:

  - unknown id or wrong key → HTTP 404 ``Channel not found`` (the upgrade is refused); a missing
    ``key`` or a ``dir`` other than ``read``/``write`` → HTTP 400;
  - each side is taken once: a second ``dir=write`` (or ``dir=read``) socket is accepted and closed
    at once (code 1008, the reason says the side is taken);
  - writer socket: each text frame becomes a text item, each binary frame a binary item, in order.
    While the buffer is full the engine stops reading that socket, so TCP pushes back on the
    writer (bounded memory). A close frame from the writer ends the stream;
  - reader socket: the items in order, then a close frame. Code **1000** after a clean end;
    **1011** with a reason when the stream broke (the writer's socket dropped without a close
    frame, or the channel was discarded or swept);
  - when the reader leaves before the end, the writer's socket is closed with 1011 (reason
    ``the reader of channel … went away``) and what was buffered is dropped;
  - a channel is forgotten (later connections get 404) once both sides are done, and channels
    where a side never connected are swept ``abandon_after_ms`` (5 min) after their creation,
    checked every ``sweep_interval_ms`` (60 s); sockets still attached are closed with 1011.

  Besides the message count, the buffer is bounded in bytes (``max_buffered_bytes``, 16 MiB): the
  engine stops reading a writer once that much is waiting, unless the buffer is empty (one
  message of any size always fits). The real engine has no byte bound.

* Extension (not in the real engine; for the dashboard): ``engine::channels::list {}`` →
  ``{"channels": [ChannelInfo], "count": n}`` ordered by creation, where ``ChannelInfo`` is
  ``{"buffer_size", "buffered_bytes", "buffered_messages", "bytes", "channel_id", "created_at_ms",
  "ended", "error", "messages", "owner", "owner_worker_id", "reader": Side, "writer": Side}`` and
  ``Side`` is ``{"remote_address": "ip:port" | null, "state": "waiting" | "connected" | "done",
  "via": "socket" | "engine" | null}``. ``messages``/``bytes`` count what the writer put into the
  channel; ``owner_worker_id`` is the worker that called ``engine::channels::create`` (``null``
  when the engine created it, then ``owner`` names the built-in). Access keys are never listed.

In-engine API (for other built-ins, e.g. the ``http`` request and response channels)
-----------------------------------------------------------------------------------

The running worker is found with :func:`iii_typed.engine.builtins._http_channels.locate` (or by
``section == "channels"`` in ``services.builtin_workers``); it implements that module's
``EngineChannelFactory``::

    channel = factory.create_channel(buffer_size=None, owner="iii-http")
    channel.reader_ref, channel.writer_ref   # wire refs to hand to a worker
    await channel.send(b"bytes" or "text")   # engine as the writer; waits while the buffer is full
    await channel.end()                      # end of stream (the reader gets everything, then 1000)
    async for item in channel: ...           # engine as the reader: bytes / str until the end
    channel.error                            # None, or why the stream broke
    channel.discard()                        # forget it now; close attached sockets (1011)

Using ``send``/``end`` takes the write side and iterating takes the read side, exactly as a
socket would: a worker connecting to a side the engine uses gets the "already taken" close.
``send`` raises :class:`ChannelClosedError` once the reader went away or the channel was
discarded. Iteration ends quietly when the stream breaks (check ``channel.error``).

``engine.toml``::

    [channels]
    sweep_interval_ms = 60000       # how often abandoned channels are looked for
    abandon_after_ms = 300000       # age after which a channel with an unconnected side is swept
    max_buffered_bytes = 16777216   # byte bound of one channel's buffer (besides buffer_size)
"""

from __future__ import annotations

import asyncio
import collections
import hmac
import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, ClassVar, Final, Literal

from pydantic import BaseModel, Field
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK

from ._settings import check_section
from .base import (
    BuiltinFunction,
    BuiltinWorker,
    CallContext,
    EngineServices,
    WebSocketRoute,
)

__all__ = [
    "BUILTIN",
    "CHANNEL_PREFIX",
    "DEFAULT_BUFFER",
    "MAX_BUFFER",
    "ChannelClosedError",
    "ChannelCreateInput",
    "ChannelsWorker",
    "EngineChannel",
    "effective_buffer",
]

log = logging.getLogger("iii_typed.engine.channels")

#: Route prefix on the worker port (protocol.md §1.1).
CHANNEL_PREFIX: Final = "/ws/channels/"
#: Buffer size (messages) when ``buffer_size`` is absent or null (§5.1).
DEFAULT_BUFFER: Final = 64
#: Largest buffer size (messages) (§5.1).
MAX_BUFFER: Final = 1024

#: Close codes the engine uses on channel sockets.
CLOSE_NORMAL: Final = 1000
CLOSE_TAKEN: Final = 1008
CLOSE_BROKEN: Final = 1011

_DEFAULT_SWEEP_MS: Final = 60_000
_DEFAULT_ABANDON_MS: Final = 300_000
_DEFAULT_MAX_BYTES: Final = 16 * 1024 * 1024

Item = bytes | str
Direction = Literal["read", "write"]
SideState = Literal["waiting", "connected", "done"]


def effective_buffer(buffer_size: int | None) -> int:
    """``min(buffer_size or 64, 1024)``, at least 1 (protocol.md §5.1)."""
    size = DEFAULT_BUFFER if buffer_size is None else buffer_size
    return max(1, min(size, MAX_BUFFER))


class ChannelClosedError(Exception):
    """The channel cannot take more data: its reader went away or it was discarded/swept."""


class _End:
    """Sentinel returned by :meth:`EngineChannel._get` at the end of the stream."""


_END: Final = _End()


class _Side:
    """One end of a channel: who holds it and in which state."""

    __slots__ = ("remote_address", "socket", "state", "via")

    def __init__(self) -> None:
        self.state: SideState = "waiting"
        self.via: Literal["socket", "engine"] | None = None
        self.remote_address: str | None = None
        self.socket: ServerConnection | None = None

    def info(self) -> dict[str, Any]:
        return {"remote_address": self.remote_address, "state": self.state, "via": self.via}


def _close_reason(text: str) -> str:
    """A close reason fits in 123 UTF-8 bytes."""
    data = text.encode("utf-8")
    if len(data) <= 123:
        return text
    return data[:120].decode("utf-8", "ignore") + "..."


class EngineChannel:
    """One channel: a bounded FIFO of items between a write side and a read side.

    Created by :meth:`ChannelsWorker.create_channel`; see the module docstring for the in-engine
    API. Everything runs on the engine's event loop.
    """

    def __init__(
        self,
        registry: ChannelsWorker,
        buffer_size: int,
        *,
        owner_worker_id: str | None,
        owner: str | None,
        max_bytes: int,
    ) -> None:
        self.id = str(uuid.uuid4())
        self.key = str(uuid.uuid4())
        self.buffer_size = buffer_size
        self.created_at_ms = int(time.time() * 1000)
        self.created_mono = time.monotonic()
        self.owner_worker_id = owner_worker_id
        self.owner = owner
        self.messages = 0
        self.bytes = 0
        self.reader = _Side()
        self.writer = _Side()
        self._registry = registry
        self._max_bytes = max_bytes
        self._items: collections.deque[Item] = collections.deque()
        self._buffered_bytes = 0
        self._ended = False
        self._error: str | None = None
        self._broken: str | None = None  # set when no more data can be delivered
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._forgotten = False

    # -- refs --------------------------------------------------------------------------------
    def _ref(self, direction: Direction) -> dict[str, Any]:
        return {"access_key": self.key, "channel_id": self.id, "direction": direction}

    @property
    def reader_ref(self) -> dict[str, Any]:
        """``{"access_key", "channel_id", "direction": "read"}`` (protocol.md §5.1)."""
        return self._ref("read")

    @property
    def writer_ref(self) -> dict[str, Any]:
        """``{"access_key", "channel_id", "direction": "write"}`` (protocol.md §5.1)."""
        return self._ref("write")

    @property
    def error(self) -> str | None:
        """Why the stream broke (the writer dropped, discarded, swept), or ``None``."""
        return self._error

    @property
    def ended(self) -> bool:
        """Whether the writer ended the stream (cleanly or not)."""
        return self._ended

    # -- the queue ---------------------------------------------------------------------------
    def _has_room(self) -> bool:
        items = self._items
        return not items or (len(items) < self.buffer_size and self._buffered_bytes < self._max_bytes)

    async def _put(self, item: Item) -> None:
        while not self._has_room() and self._broken is None:
            self._writable.clear()
            await self._writable.wait()
        if self._broken is not None:
            raise ChannelClosedError(self._broken)
        if self._ended:
            raise ChannelClosedError(f"channel {self.id} has already ended")
        self._items.append(item)
        size = len(item)
        self._buffered_bytes += size
        self.messages += 1
        self.bytes += size
        self._readable.set()

    async def _get(self) -> Item | _End:
        items = self._items
        while not items:
            if self._ended or self._broken is not None:
                return _END
            self._readable.clear()
            await self._readable.wait()
        item = items.popleft()
        self._buffered_bytes -= len(item)
        self._writable.set()
        return item

    def _end(self, error: str | None = None) -> None:
        if self._ended:
            return
        self._ended = True
        if error is not None and self._error is None:
            self._error = error
        self.writer.state = "done"
        self._readable.set()
        self._maybe_forget()

    def _break(self, reason: str) -> None:
        """No more data can flow (the reader left, discarded, swept): wake and close everything."""
        if self._broken is not None:
            return
        self._broken = reason
        if self._error is None:
            self._error = reason
        self._items.clear()
        self._buffered_bytes = 0
        self._readable.set()
        self._writable.set()
        for side in (self.reader, self.writer):
            if side.socket is not None and side.state == "connected":
                self._registry.close_socket(side.socket, CLOSE_BROKEN, reason)

    def _maybe_forget(self) -> None:
        if self.reader.state == "done" and self.writer.state == "done":
            self._registry.forget(self)

    def _claim(self, side: _Side, via: Literal["socket", "engine"], ws: ServerConnection | None) -> bool:
        if side.state != "waiting" or self._forgotten:
            return False
        side.state = "connected"
        side.via = via
        side.socket = ws
        if ws is not None:
            address = ws.remote_address
            if isinstance(address, tuple) and len(address) >= 2:
                side.remote_address = f"{address[0]}:{address[1]}"
        return True

    # -- in-engine API -----------------------------------------------------------------------
    async def send(self, item: Item) -> None:
        """Write one item as the engine (takes the write side); waits while the buffer is full.

        Raises:
            ChannelClosedError: the reader went away, or the channel was discarded or swept.
            RuntimeError: a worker socket holds the write side.
        """
        self._engine_side(self.writer, "write")
        await self._put(item)

    async def end(self) -> None:
        """End the stream as the engine (takes the write side); the reader then gets a 1000 close."""
        self._engine_side(self.writer, "write")
        self._end()

    def _engine_side(self, side: _Side, direction: str) -> None:
        if side.via == "engine":
            return
        if not self._claim(side, "engine", None):
            raise RuntimeError(f"the {direction} side of channel {self.id} is held by a worker socket")

    def __aiter__(self) -> AsyncIterator[Item]:
        """Read the items as the engine (takes the read side) until the end of the stream."""
        self._engine_side(self.reader, "read")
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Item]:
        try:
            while True:
                item = await self._get()
                if isinstance(item, _End):
                    if self._error is not None:
                        log.info("channel %s ended with an error: %s", self.id, self._error)
                    return
                yield item
        finally:
            if self._ended or self._broken is not None:
                self.reader.state = "done"
                self._maybe_forget()

    def discard(self) -> None:
        """Forget the channel now; sockets still attached are closed with 1011."""
        if self._forgotten:
            return
        complete = self._ended and not self._items and self._error is None
        if not complete:
            self._break(f"channel {self.id} was discarded by the engine")
        self._registry.forget(self)

    def info(self) -> dict[str, Any]:
        """The ``ChannelInfo`` row of ``engine::channels::list`` (keys sorted)."""
        return {
            "buffer_size": self.buffer_size,
            "buffered_bytes": self._buffered_bytes,
            "buffered_messages": len(self._items),
            "bytes": self.bytes,
            "channel_id": self.id,
            "created_at_ms": self.created_at_ms,
            "ended": self._ended,
            "error": self._error,
            "messages": self.messages,
            "owner": self.owner,
            "owner_worker_id": self.owner_worker_id,
            "reader": self.reader.info(),
            "writer": self.writer.info(),
        }

    # -- socket sides ------------------------------------------------------------------------
    async def serve_writer(self, ws: ServerConnection) -> None:
        """Copy a writer socket's frames into the channel until it closes (§5.2)."""
        side = self.writer
        if not self._claim(side, "socket", ws):
            await ws.close(
                CLOSE_TAKEN, _close_reason(f"the write side of channel {self.id} is already taken")
            )
            return
        put = self._put
        recv = ws.recv
        try:
            while True:
                await put(await recv())
        except ConnectionClosedOK:
            self._end()
        except ConnectionClosed:
            self._end("the writer disconnected without closing the channel")
        except ChannelClosedError as exc:
            side.state = "done"
            await ws.close(CLOSE_BROKEN, _close_reason(str(exc)))
            self._maybe_forget()
        finally:
            side.socket = None

    async def serve_reader(self, ws: ServerConnection) -> None:
        """Send the channel's items to a reader socket, then close it (§5.2)."""
        side = self.reader
        if not self._claim(side, "socket", ws):
            await ws.close(CLOSE_TAKEN, _close_reason(f"the read side of channel {self.id} is already taken"))
            return
        watcher = asyncio.get_running_loop().create_task(
            self._watch_reader(ws), name=f"channel-reader:{self.id}"
        )
        get = self._get
        send = ws.send
        try:
            while True:
                item = await get()
                if isinstance(item, _End):
                    break
                await send(item)
            if self._broken is None:
                side.state = "done"
            if self._error is None:
                await ws.close(CLOSE_NORMAL)
            else:
                await ws.close(CLOSE_BROKEN, _close_reason(self._error))
        except ConnectionClosed:
            pass
        finally:
            watcher.cancel()
            side.socket = None
            if side.state != "done":
                side.state = "done"
                if not self._ended:
                    self._break(f"the reader of channel {self.id} went away")
            self._maybe_forget()

    async def _watch_reader(self, ws: ServerConnection) -> None:
        """Drain (and ignore) what a reader sends, so its close is noticed while it waits."""
        try:
            async for _ in ws:
                pass
        except ConnectionClosed:
            pass
        if self.reader.state == "connected" and not (self._ended and not self._items):
            self.reader.state = "done"
            self._break(f"the reader of channel {self.id} went away")
            self._maybe_forget()


class ChannelCreateInput(BaseModel):
    """``engine::channels::create`` input."""

    buffer_size: int | None = Field(
        default=None, ge=0, description="Buffer capacity in messages (default 64, at most 1024)."
    )


class ChannelRef(BaseModel):
    """A channel reference (``StreamChannelRef``)."""

    access_key: str
    channel_id: str
    direction: Literal["read", "write"]


class ChannelCreateResult(BaseModel):
    """``engine::channels::create`` result (golden frame E15)."""

    reader: ChannelRef
    writer: ChannelRef


class ChannelListInput(BaseModel):
    """``engine::channels::list`` input (no fields)."""


class ChannelSideInfo(BaseModel):
    """One side of a listed channel."""

    remote_address: str | None = Field(description="Peer address of the socket, `ip:port`.")
    state: Literal["waiting", "connected", "done"]
    via: Literal["socket", "engine"] | None = Field(description="A worker socket or the engine itself.")


class ChannelInfo(BaseModel):
    """One row of ``engine::channels::list``."""

    buffer_size: int = Field(description="Capacity in messages.")
    buffered_bytes: int
    buffered_messages: int
    bytes: int = Field(description="Bytes the writer put into the channel.")
    channel_id: str
    created_at_ms: int
    ended: bool = Field(description="The writer ended the stream.")
    error: str | None = Field(description="Why the stream broke, if it did.")
    messages: int = Field(description="Messages the writer put into the channel.")
    owner: str | None = Field(description="Built-in that created it (when the engine did).")
    owner_worker_id: str | None = Field(description="Worker that called engine::channels::create.")
    reader: ChannelSideInfo
    writer: ChannelSideInfo


class ChannelListResult(BaseModel):
    """``engine::channels::list`` result (an extension of iii-typed)."""

    channels: list[ChannelInfo]
    count: int


class ChannelsWorker(BuiltinWorker):
    """The channels built-in (see the module docstring); part of the real engine's worker manager."""

    name: ClassVar[str] = "iii-channels"
    section: ClassVar[str] = "channels"
    description: ClassVar[str] = "Worker-to-worker byte streams (engine::channels::create, /ws/channels/)"
    mandatory: ClassVar[bool] = True
    order: ClassVar[int] = 5

    def __init__(self, services: EngineServices) -> None:
        super().__init__(services)
        table = services.section(self.section)
        check_section(
            self.section,
            table,
            {"sweep_interval_ms": int, "abandon_after_ms": int, "max_buffered_bytes": int},
        )
        from ..config import ConfigError

        for key in ("sweep_interval_ms", "abandon_after_ms", "max_buffered_bytes"):
            value = table.get(key)
            if value is not None and value <= 0:
                raise ConfigError(f"[channels] {key} must be a positive integer, got {value}")
        self.sweep_interval = table.get("sweep_interval_ms", _DEFAULT_SWEEP_MS) / 1000
        self.abandon_after = table.get("abandon_after_ms", _DEFAULT_ABANDON_MS) / 1000
        self.max_buffered_bytes: int = table.get("max_buffered_bytes", _DEFAULT_MAX_BYTES)
        self.channels: dict[str, EngineChannel] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()

    # -- declarations --------------------------------------------------------------------------
    def functions(self) -> Sequence[BuiltinFunction]:
        """``engine::channels::create`` (§5.1) and the ``engine::channels::list`` extension."""
        return (
            BuiltinFunction(
                "engine::channels::create",
                self._create,
                "Create a channel; returns its reader and writer refs",
                input_model=ChannelCreateInput,
                output_model=ChannelCreateResult,
            ),
            BuiltinFunction(
                "engine::channels::list",
                self._list,
                "Open channels with their sides, traffic and age (iii-typed extension)",
                input_model=ChannelListInput,
                output_model=ChannelListResult,
            ),
        )

    async def start(self) -> None:
        """Serve ``/ws/channels/`` on the worker port and start the sweeper."""
        self.services.add_ws_route(WebSocketRoute(CHANNEL_PREFIX, self._accept, self._handle))
        self._sweeper = self.services.spawn(self._sweep_loop(), name="channels-sweeper")

    async def stop(self) -> None:
        """Stop sweeping; break every channel still open."""
        if self._sweeper is not None:
            self._sweeper.cancel()
        for channel in list(self.channels.values()):
            channel._break("the engine is shutting down")
            self.forget(channel)

    # -- in-engine API -------------------------------------------------------------------------
    def create_channel(
        self, buffer_size: int | None = None, *, owner: str | None = None, owner_worker_id: str | None = None
    ) -> EngineChannel:
        """A new channel (``engine::channels::create`` without the wire).

        Args:
            buffer_size: Messages the buffer holds (``None`` → 64; clamped to 1..1024).
            owner: Name of the built-in creating it (shown by ``engine::channels::list``).
            owner_worker_id: Worker id of the creator, when a worker asked for it.
        """
        channel = EngineChannel(
            self,
            effective_buffer(buffer_size),
            owner_worker_id=owner_worker_id,
            owner=owner,
            max_bytes=self.max_buffered_bytes,
        )
        self.channels[channel.id] = channel
        return channel

    def forget(self, channel: EngineChannel) -> None:
        """Remove a channel from the registry (later connections get 404)."""
        channel._forgotten = True
        if self.channels.get(channel.id) is channel:
            del self.channels[channel.id]

    def close_socket(self, ws: ServerConnection, code: int, reason: str) -> None:
        """Close a channel socket in the background."""
        task = asyncio.get_running_loop().create_task(ws.close(code, _close_reason(reason)))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    # -- functions -----------------------------------------------------------------------------
    async def _create(self, data: ChannelCreateInput, ctx: CallContext) -> Any:
        channel = self.create_channel(data.buffer_size, owner_worker_id=ctx.caller_worker_id)
        return {"reader": channel.reader_ref, "writer": channel.writer_ref}

    async def _list(self, data: ChannelListInput, ctx: CallContext) -> Any:
        rows = [
            channel.info() for channel in sorted(self.channels.values(), key=lambda c: (c.created_mono, c.id))
        ]
        return {"channels": rows, "count": len(rows)}

    # -- the route -----------------------------------------------------------------------------
    def _lookup(self, path: str, query: Mapping[str, list[str]]) -> tuple[EngineChannel | None, str | None]:
        channel_id = path[len(CHANNEL_PREFIX) :].strip("/")
        keys = query.get("key") or []
        dirs = query.get("dir") or []
        direction = dirs[-1] if dirs else None
        channel = self.channels.get(channel_id)
        if channel is None or not keys or not hmac.compare_digest(keys[-1].encode(), channel.key.encode()):
            return None, direction
        return channel, direction

    def _accept(self, path: str, query: Mapping[str, list[str]]) -> tuple[int, str] | None:
        if not query.get("key") or not query.get("dir"):
            return 400, "Failed to deserialize query string: missing field `key` or `dir`"
        channel, direction = self._lookup(path, query)
        if direction not in ("read", "write"):
            return 400, "Failed to deserialize query string: dir must be `read` or `write`"
        if channel is None:
            return 404, "Channel not found"
        return None

    async def _handle(self, ws: ServerConnection, path: str, query: Mapping[str, list[str]]) -> None:
        channel, direction = self._lookup(path, query)
        if channel is None:  # forgotten between the upgrade check and now
            await ws.close(CLOSE_BROKEN, "Channel not found")
            return
        if direction == "write":
            await channel.serve_writer(ws)
        else:
            await channel.serve_reader(ws)

    # -- sweeping ------------------------------------------------------------------------------
    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval)
            self.sweep()

    def sweep(self, now: float | None = None) -> int:
        """Forget channels older than ``abandon_after_ms`` with a side that never connected.

        Returns:
            How many were swept.
        """
        now = time.monotonic() if now is None else now
        swept = 0
        for channel in list(self.channels.values()):
            if now - channel.created_mono < self.abandon_after:
                continue
            if channel.reader.via is None or channel.writer.via is None:
                log.info("channel %s swept: a side never connected", channel.id)
                channel._break(f"channel {channel.id} was swept: a side never connected")
                self.forget(channel)
                swept += 1
        return swept


BUILTIN = ChannelsWorker
