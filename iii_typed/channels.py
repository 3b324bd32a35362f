"""Channels: stream bytes and text messages between workers through the engine (protocol.md §5).

A channel has a write side and a read side. ``iii.create_channel()`` (or
``await iii.create_channel_async()``) asks the engine for one (``engine::channels::create``,
golden frame E15) and returns a :class:`Channel` holding a local :class:`ChannelWriter` and
:class:`ChannelReader` plus their serialisable refs (:class:`StreamChannelRef`). Put a ref
anywhere in a payload: the handler that receives it gets a live :class:`ChannelReader` or
:class:`ChannelWriter` in its place (the SDK resolves every ``{"channel_id", "access_key",
"direction"}`` object, protocol.md §4.8). ::

    ch = iii.create_channel()
    iii.trigger({"function_id": "files::produce", "payload": {"output": ch.writer_ref}})
    data = ch.reader.read_all()

    def produce(data):                    # a sync handler (runs on its own thread)
        out = data["output"]                # a ChannelWriter
        out.send_message("starting")        # a text frame
        out.write(b"..." * 100_000)         # binary frames of at most 64 KiB
        out.close()                         # end of stream

Each side opens its own WebSocket to ``<engine URL>/ws/channels/<id>?key=…&dir=read|write``
(golden frame C01) the first time it is used, with the worker's handshake headers and no
compression. All socket work runs on the client's event loop:

* the blocking forms (:meth:`ChannelWriter.write`, :meth:`~ChannelWriter.send_message`,
  :meth:`~ChannelWriter.close`, :meth:`ChannelReader.read_all`, ``for chunk in reader``) may be
  called from any thread except the SDK's loop thread, where they raise ``RuntimeError`` (use the
  ``*_async`` twins and ``async for`` in async handlers);
* the ``*_async`` forms may be awaited from any event loop.

**Backpressure.** A writer faster than its reader blocks: the engine buffers at most
``buffer_size`` messages (default 64, at most 1024) and then stops reading the writer's socket,
so :meth:`ChannelWriter.write` waits; memory stays bounded on both ends.

**Errors** are :class:`~iii_typed.IIIError`\\ s naming the channel: the engine does not know the
channel (HTTP 404: unknown id, wrong key, finished or swept), the side is already taken by another
socket, the reader went away (the writer's next write fails), the stream broke (the writer's
socket dropped without closing, the engine discarded the channel or shut down: the reader raises
instead of returning a silently truncated stream), or the engine is unreachable.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import quote

from pydantic import BaseModel, GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from ._connection import build_headers
from .errors import IIIError
from .formats import channel_ref_schema
from .protocol.frames import MAX_MESSAGE_BYTES

if TYPE_CHECKING:
    from ._loop import LoopThread
    from .client import III
    from .options import InitOptions

__all__ = [
    "CHUNK_BYTES",
    "Channel",
    "ChannelFactory",
    "ChannelReader",
    "ChannelWriter",
    "StreamChannelRef",
    "create_request",
    "is_channel_ref",
    "resolve_channel_refs",
]

log = logging.getLogger("iii_typed")

#: Binary frames written by :meth:`ChannelWriter.write` carry at most this many bytes (§5.2).
CHUNK_BYTES: Final = 64 * 1024

#: Largest frame a reader accepts (what the engine accepts on its worker port).
_MAX_FRAME: Final = 2 * MAX_MESSAGE_BYTES

#: Seconds allowed for a channel socket's opening handshake.
_OPEN_TIMEOUT_S: Final = 10.0


class StreamChannelRef(BaseModel):
    """A serialisable channel reference (protocol.md §5.1).

    Attributes:
        channel_id: The channel's id (a UUID string).
        access_key: The secret that lets a socket attach to the channel.
        direction: ``"read"`` or ``"write"``: which side it opens.
    """

    channel_id: str
    access_key: str
    direction: Literal["read", "write"]


def is_channel_ref(value: Any) -> bool:
    """Whether ``value`` is a channel ref object ``{"channel_id": str, "access_key": str,
    "direction": "read" | "write"}`` (extra keys allowed, as the official SDK does)."""
    return (
        type(value) is dict
        and isinstance(value.get("channel_id"), str)
        and isinstance(value.get("access_key"), str)
        and value.get("direction") in ("read", "write")
    )


def _channel_url(address: str, ref: StreamChannelRef) -> str:
    """``<address>/ws/channels/<id>?<address query>&key=<key>&dir=<dir>`` (§5.2, golden C01).

    The id and the key come from a payload, so both are percent-escaped: whatever they hold,
    the request stays well-formed and can only name a channel (the engine answers 404).
    """
    base, _, query = address.partition("?")
    own = f"key={quote(ref.access_key, safe='')}&dir={ref.direction}"
    channel = quote(ref.channel_id, safe="")
    return f"{base.rstrip('/')}/ws/channels/{channel}?{query + '&' if query else ''}{own}"


def _closed_error(ref: StreamChannelRef, exc: ConnectionClosed, what: str) -> IIIError:
    received = exc.rcvd
    if received is not None and received.reason:
        return IIIError(f"channel {ref.channel_id}: {received.reason} (close code {received.code})")
    if received is not None:
        return IIIError(
            f"channel {ref.channel_id}: the engine closed the {what} (close code {received.code})"
        )
    return IIIError(f"channel {ref.channel_id}: the connection to the engine was lost while {what}")


class _Endpoint:
    """What the reader and the writer share: the lazily opened socket on the client's loop."""

    _direction: Literal["read", "write"]

    def __init__(self, client: III | ChannelFactory, ref: StreamChannelRef | dict[str, Any]) -> None:
        factory = client if isinstance(client, ChannelFactory) else getattr(client, "_channels", None)
        if not isinstance(factory, ChannelFactory):
            raise TypeError(f"{type(self).__name__} needs an iii client, not {type(client).__name__}")
        model = ref if isinstance(ref, StreamChannelRef) else StreamChannelRef.model_validate(ref)
        if model.direction != self._direction:
            raise ValueError(
                f"a {type(self).__name__} needs a {self._direction!r} ref, got {model.direction!r}"
            )
        self._factory = factory
        self._ref = model
        self._ws: ClientConnection | None = None
        self._opening: asyncio.Task[ClientConnection] | None = None
        self._closed = False

    @property
    def ref(self) -> StreamChannelRef:
        """The serialisable ref of this side."""
        return self._ref

    @property
    def channel_id(self) -> str:
        """The channel's id."""
        return self._ref.channel_id

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (or the stream is over)."""
        return self._closed

    def _refuse_on_loop(self, name: str) -> None:
        if self._factory.loop.on_loop_thread():
            twin = {"__iter__": "async for chunk in reader"}.get(name, f"await {name}_async(...)")
            raise RuntimeError(
                f"{type(self).__name__}.{name}() blocks and cannot be called on the iii SDK's event-loop "
                f"thread (an async handler or a listener); use `{twin}` instead"
            )

    def _run(self, coro: Awaitable[Any], name: str) -> Any:
        try:
            self._refuse_on_loop(name)
        except RuntimeError:
            if inspect.iscoroutine(coro):
                coro.close()
            raise
        return self._factory.loop.run_sync(_as_coroutine(coro), name)

    async def _hop(self, coro: Awaitable[Any]) -> Any:
        return await self._factory.loop.run_async(_as_coroutine(coro))

    async def _socket(self) -> ClientConnection:
        """The open socket (opened on first use); runs on the SDK loop."""
        ws = self._ws
        if ws is not None:
            return ws
        if self._closed:
            raise IIIError(f"channel {self.channel_id}: this {self._direction} side is closed")
        if self._opening is None:
            self._opening = asyncio.get_running_loop().create_task(self._open())
        return await asyncio.shield(self._opening)

    async def _open(self) -> ClientConnection:
        factory = self._factory
        url = _channel_url(factory.address, self._ref)
        try:
            ws = await connect(
                url,
                additional_headers=factory.headers,
                compression=None,
                max_size=_MAX_FRAME,
                open_timeout=_OPEN_TIMEOUT_S,
                ping_interval=None,
                close_timeout=None if self._direction == "write" else 2.0,
                user_agent_header=None,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status == 404:
                raise IIIError(
                    f"channel {self.channel_id} not found at the engine (HTTP 404): unknown id, wrong "
                    "access key, or the channel is finished or was swept"
                ) from None
            raise IIIError(
                f"channel {self.channel_id}: the engine refused the {self._direction} socket (HTTP {status})"
            ) from None
        except (OSError, TimeoutError) as exc:
            raise IIIError(
                f"channel {self.channel_id}: cannot reach the engine at {factory.address}: {exc}"
            ) from None
        self._ws = ws
        factory._track(self)
        return ws

    async def _close(self) -> None:
        self._closed = True
        ws = self._ws
        if ws is None and self._opening is not None and not self._opening.done():
            self._opening.cancel()
        if ws is not None:
            await ws.close()

    def _abort(self) -> None:
        """Drop the socket at client shutdown (on the SDK loop)."""
        self._closed = True
        ws = self._ws
        if ws is not None and ws.transport is not None:
            ws.transport.abort()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._ws is not None else "not connected"
        return f"<{type(self).__name__} channel={self.channel_id} {state}>"

    # -- pydantic: a handler model may declare a field as ChannelReader / ChannelWriter ----------
    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.is_instance_schema(
            cls,
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda value: value.ref.model_dump(), when_used="always"
            ),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return channel_ref_schema(cls._direction)


async def _as_coroutine(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


class ChannelWriter(_Endpoint):
    """The write side of a channel.

    Obtained from :attr:`Channel.writer`, as a resolved ref in a handler's payload, or built from
    a ref with ``ChannelWriter(iii, ref)`` (``ref`` a :class:`StreamChannelRef` or its dict). Writes block
    (or await) while the channel's buffer is full. Use it as a context manager (``with`` /
    ``async with``) to close it at the end.
    """

    _direction = "write"

    async def _write(self, data: bytes | bytearray | memoryview) -> None:
        ws = await self._socket()
        view = memoryview(data).cast("B")
        if not view:
            return
        try:
            if len(view) <= CHUNK_BYTES:
                await ws.send(view)
                return
            for start in range(0, len(view), CHUNK_BYTES):
                await ws.send(view[start : start + CHUNK_BYTES])
        except ConnectionClosed as exc:
            self._closed = True
            raise _closed_error(self._ref, exc, "writing") from None

    async def _send_text(self, message: str) -> None:
        if not isinstance(message, str):
            raise TypeError(
                f"send_message() takes a str, not {type(message).__name__} (use write() for bytes)"
            )
        ws = await self._socket()
        try:
            await ws.send(message)
        except ConnectionClosed as exc:
            self._closed = True
            raise _closed_error(self._ref, exc, "writing") from None

    async def _finish(self) -> None:
        if self._closed and self._ws is None:
            return
        if self._ws is None and not self._closed:
            await self._socket()  # an empty stream: the reader still gets its end at once
        ws = self._ws
        self._closed = True
        if ws is None:
            return
        await ws.close()
        code = ws.close_code
        if code is not None and code != 1000:
            reason = ws.close_reason or "the engine closed the writer"
            raise IIIError(
                f"channel {self.channel_id}: the stream did not end cleanly: {reason} (close code {code})"
            )

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Write bytes, as binary frames of at most 64 KiB (§5.2); blocks while the buffer is full.

        Raises:
            IIIError: the channel is unknown or finished, its reader went away, this side is taken
                or closed, or the engine is unreachable.
            RuntimeError: called on the SDK's event-loop thread (use :meth:`write_async`).
            TypeError: ``data`` is not a bytes-like object.
        """
        self._run(self._write(_check_bytes(data)), "write")

    async def write_async(self, data: bytes | bytearray | memoryview) -> None:
        """Async twin of :meth:`write`."""
        await self._hop(self._write(_check_bytes(data)))

    def send_message(self, message: str) -> None:
        """Send one text frame (a control message, e.g. the HTTP response's ``set_status``).

        Raises:
            IIIError: as :meth:`write`.
            RuntimeError: called on the SDK's event-loop thread (use :meth:`send_message_async`).
        """
        self._run(self._send_text(message), "send_message")

    async def send_message_async(self, message: str) -> None:
        """Async twin of :meth:`send_message`."""
        await self._hop(self._send_text(message))

    def close(self) -> None:
        """End the stream: the reader gets everything written so far, then its end.

        Returns once the engine has taken every frame (it waits while the channel buffer is full).
        A writer that wrote nothing still connects, so its reader sees an empty stream at once.
        Idempotent.

        Raises:
            IIIError: the stream could not end cleanly (the reader went away, the side was taken).
            RuntimeError: called on the SDK's event-loop thread (use :meth:`close_async`).
        """
        self._run(self._finish(), "close")

    async def close_async(self) -> None:
        """Async twin of :meth:`close`."""
        await self._hop(self._finish())

    def __enter__(self) -> ChannelWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    async def __aenter__(self) -> ChannelWriter:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close_async()


def _check_bytes(data: Any) -> bytes | bytearray | memoryview:
    if isinstance(data, bytes | bytearray | memoryview):
        return data
    if isinstance(data, str):
        raise TypeError(
            "write() takes bytes; encode the text (text.encode()) or use send_message() for a text frame"
        )
    raise TypeError(f"write() takes a bytes-like object, not {type(data).__name__}")


_Frame = bytes | str
#: What a read step returns: the text frames met on the way, then one binary chunk or ``None`` at
#: the end of the stream.
_Step = tuple[list[str], bytes | None]


class ChannelReader(_Endpoint):
    """The read side of a channel.

    Obtained from :attr:`Channel.reader`, as a resolved ref in a handler's payload, or built from
    a ref with ``ChannelReader(iii, ref)`` (e.g. a ref returned in a function's result).

    Iterate it (``async for chunk in reader`` / ``for chunk in reader``) to receive the binary
    chunks in order; text frames go, in order with the chunks, to the callbacks registered with
    :meth:`on_message`, called by the iterating code before it receives the next chunk.
    :meth:`read_all` returns the whole stream. A clean end stops the iteration; a broken stream
    raises :class:`~iii_typed.IIIError`.
    """

    _direction = "read"

    def __init__(self, client: III | ChannelFactory, ref: StreamChannelRef | dict[str, Any]) -> None:
        super().__init__(client, ref)
        self._callbacks: list[Callable[[str], Any]] = []
        self._done = False

    def on_message(self, callback: Callable[[str], Any]) -> Callable[[str], Any]:
        """Call ``callback(text)`` for every text frame (usable as a decorator).

        A callback may be a coroutine function (it is awaited) ; an exception in a callback is
        logged and reading goes on.

        Returns:
            ``callback``.
        """
        self._callbacks.append(callback)
        return callback

    async def _step(self) -> _Step:
        """Receive up to the next binary frame (runs on the SDK loop)."""
        texts: list[str] = []
        if self._done:
            return texts, None
        ws = await self._socket()
        recv = ws.recv
        while True:
            try:
                frame: _Frame = await recv()
            except ConnectionClosed as exc:
                self._done = True
                self._closed = True
                received = exc.rcvd
                if received is not None and received.code == 1000:
                    return texts, None
                raise _closed_error(self._ref, exc, "reading") from None
            if isinstance(frame, str):
                texts.append(frame)
                continue
            return texts, frame

    async def _dispatch_async(self, texts: list[str]) -> None:
        for text in texts:
            for callback in list(self._callbacks):
                try:
                    result = callback(text)
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    log.exception("channel %s: on_message callback %r raised", self.channel_id, callback)

    def _dispatch_sync(self, texts: list[str]) -> None:
        for text in texts:
            for callback in list(self._callbacks):
                try:
                    result = callback(text)
                    if inspect.isawaitable(result):
                        self._factory.loop.run_sync(_as_coroutine(result), "on_message")
                except Exception:
                    log.exception("channel %s: on_message callback %r raised", self.channel_id, callback)

    async def _next_async(self) -> bytes:
        step: _Step = await self._hop(self._step())
        texts, chunk = step
        await self._dispatch_async(texts)
        if chunk is None:
            raise StopAsyncIteration
        return chunk

    def __aiter__(self) -> AsyncIterator[bytes]:
        """Binary chunks in order until the end of the stream (text frames go to callbacks).

        Raises:
            IIIError: the stream broke, or the channel is unknown/taken/unreachable.
        """
        return _AsyncChunks(self)

    def __iter__(self) -> Iterator[bytes]:
        """Blocking twin of ``async for``; not on the SDK's event-loop thread.

        Raises:
            IIIError: as ``async for``.
            RuntimeError: called on the SDK's event-loop thread.
        """
        while True:
            texts, chunk = self._run(self._step(), "__iter__")
            self._dispatch_sync(texts)
            if chunk is None:
                return
            yield chunk

    async def read_all_async(self) -> bytes:
        """The whole stream's binary data (text frames go to the callbacks).

        Raises:
            IIIError: as ``async for``.
        """
        chunks = [chunk async for chunk in self]
        return b"".join(chunks)

    def read_all(self) -> bytes:
        """Blocking twin of :meth:`read_all_async`.

        Raises:
            IIIError: as ``async for``.
            RuntimeError: called on the SDK's event-loop thread (use :meth:`read_all_async`).
        """
        self._refuse_on_loop("read_all")
        return b"".join(list(self))

    def close(self) -> None:
        """Stop reading: the engine drops what is left and the writer's next write fails. Idempotent.

        Raises:
            RuntimeError: called on the SDK's event-loop thread (use :meth:`close_async`).
        """
        self._run(self._close(), "close")

    async def close_async(self) -> None:
        """Async twin of :meth:`close`."""
        await self._hop(self._close())

    def __enter__(self) -> ChannelReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    async def __aenter__(self) -> ChannelReader:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close_async()


class _AsyncChunks:
    """The async iterator over a reader's chunks."""

    __slots__ = ("_reader",)

    def __init__(self, reader: ChannelReader) -> None:
        self._reader = reader

    def __aiter__(self) -> _AsyncChunks:
        return self

    async def __anext__(self) -> bytes:
        return await self._reader._next_async()


class Channel:
    """A channel made by ``create_channel()``: the local sides and their serialisable refs.

    Attributes:
        writer: The local :class:`ChannelWriter`.
        reader: The local :class:`ChannelReader`.
        writer_ref: The writer's ref, to put in a payload for a producer.
        reader_ref: The reader's ref, to put in a payload for a consumer.
    """

    __slots__ = ("reader", "reader_ref", "writer", "writer_ref")

    def __init__(self, writer: ChannelWriter, reader: ChannelReader) -> None:
        self.writer = writer
        self.reader = reader
        self.writer_ref = writer.ref
        self.reader_ref = reader.ref

    @property
    def channel_id(self) -> str:
        """The channel's id."""
        return self.writer_ref.channel_id

    def __repr__(self) -> str:
        return f"<Channel {self.channel_id}>"


class ChannelFactory:
    """Per-client channel plumbing: builds live sides from refs and closes them at shutdown.

    Args:
        address: The engine URL of the client.
        options: The client options (handshake headers).
        loop: The client's loop thread.
    """

    def __init__(self, address: str, options: InitOptions, loop: LoopThread) -> None:
        self.address = address
        self.headers = build_headers(options)
        self.loop = loop
        self._open: weakref.WeakSet[_Endpoint] = weakref.WeakSet()

    def _track(self, endpoint: _Endpoint) -> None:
        self._open.add(endpoint)

    def endpoint(self, ref: StreamChannelRef | dict[str, Any]) -> ChannelReader | ChannelWriter:
        """A live side for ``ref`` (a reader for ``direction == "read"``, else a writer)."""
        model = ref if isinstance(ref, StreamChannelRef) else StreamChannelRef.model_validate(ref)
        if model.direction == "read":
            return ChannelReader(self, model)
        return ChannelWriter(self, model)

    def channel(self, result: Any) -> Channel:
        """A :class:`Channel` from an ``engine::channels::create`` result.

        Raises:
            IIIError: the result is not ``{"reader": ref, "writer": ref}``.
        """
        try:
            writer = StreamChannelRef.model_validate(result["writer"])
            reader = StreamChannelRef.model_validate(result["reader"])
        except (KeyError, TypeError, ValueError):
            raise IIIError(f"unexpected engine::channels::create result: {result!r:.200}") from None
        return Channel(ChannelWriter(self, writer), ChannelReader(self, reader))

    def abort_all(self) -> None:
        """Drop every open channel socket (client shutdown; on the SDK loop)."""
        for endpoint in list(self._open):
            endpoint._abort()


def create_request(buffer_size: int | None) -> dict[str, Any]:
    """The ``engine::channels::create`` trigger request (golden frame G25).

    Raises:
        TypeError: ``buffer_size`` is not an int (or ``None``).
        ValueError: ``buffer_size`` is negative.
    """
    if buffer_size is not None:
        if isinstance(buffer_size, bool) or not isinstance(buffer_size, int):
            raise TypeError(f"buffer_size must be an int or None, not {type(buffer_size).__name__}")
        if buffer_size < 0:
            raise ValueError(f"buffer_size must be >= 0, got {buffer_size}")
    return {"function_id": "engine::channels::create", "payload": {"buffer_size": buffer_size}}


def resolve_channel_refs(data: Any, factory: ChannelFactory) -> Any:
    """Replace every channel ref object in ``data`` (dicts and lists, at any depth) by a live side.

    Containers without refs are returned as they are (nothing is copied); a container holding a
    ref is copied with the ref replaced.
    """
    if type(data) is dict:
        if is_channel_ref(data):
            return factory.endpoint(data)
        out: dict[str, Any] | None = None
        for key, value in data.items():
            if type(value) is dict or type(value) is list:
                new = resolve_channel_refs(value, factory)
                if new is not value:
                    if out is None:
                        out = dict(data)
                    out[key] = new
        return data if out is None else out
    if type(data) is list:
        items: list[Any] | None = None
        for index, value in enumerate(data):
            if type(value) is dict or type(value) is list:
                new = resolve_channel_refs(value, factory)
                if new is not value:
                    if items is None:
                        items = list(data)
                    items[index] = new
        return data if items is None else items
    return data
