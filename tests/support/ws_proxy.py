"""A fault-injecting TCP/WebSocket proxy between workers and an engine (cases.md fixture ``ws_proxy``).

:class:`WsProxy` listens on 127.0.0.1 (port 0) and relays every accepted connection to a target
``host:port``. It passes the HTTP upgrade through untouched, then relays WebSocket frames *whole*
(it parses frame headers, so faults happen at frame boundaries and frames can be counted). It runs
its own event loop on a daemon thread, so sync and async tests drive it the same way; every
control method is synchronous and returns once the fault is in place.

Faults, per direction (``"worker_to_engine"``, ``"engine_to_worker"`` or ``"both"``):

* :meth:`pause` / :meth:`resume` — stop forwarding (nothing is read from the source socket, so
  TCP backpressure builds up, as with a stuck peer); resume delivers everything held back.
* :meth:`blackhole` / :meth:`heal` — keep reading but drop every frame (and a FIN): the path is
  dead while both TCP connections look alive (a NAT or proxy that lost the flow).
* :meth:`reset` — abort the TCP connections with RST (an abnormal close, 1006), on the worker side,
  the engine side or both.
* :meth:`close` — send a WebSocket close frame with a chosen code (1000, 1001, 1011…) to the worker
  and/or the engine, as a reverse proxy going away does, then close TCP.
* :attr:`accepting` — ``False`` resets new connections at once (engine unreachable).

Example::

    with WsProxy(engine.port) as proxy:
        iii = register_worker(proxy.url, options)
        proxy.blackhole("both")          # dead path: keepalive must notice
        proxy.close(1001)                # clean close from "nginx"

Each connection is a :class:`ProxyConnection` (in :attr:`WsProxy.connections`, in accept order)
that records the upgrade request and response and, per direction, every frame's opcode and size,
the text of small text frames and the codes of close frames.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, TypeVar

__all__ = ["DIRECTIONS", "Direction", "ProxyConnection", "ProxyFrame", "WsProxy"]

T = TypeVar("T")

Direction = Literal["worker_to_engine", "engine_to_worker"]
DIRECTIONS: tuple[Direction, Direction] = ("worker_to_engine", "engine_to_worker")

OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

#: Text frames up to this size are kept (unmasked) in :attr:`ProxyFrame.text`.
RECORD_TEXT_BYTES = 64 * 1024


def _directions(direction: str) -> tuple[Direction, ...]:
    if direction == "both":
        return DIRECTIONS
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS} or 'both', not {direction!r}")
    return (direction,)


def _unmask(payload: bytes, mask: bytes) -> bytes:
    if not payload:
        return payload
    repeated = (mask * (len(payload) // 4 + 1))[: len(payload)]
    n = int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")
    return n.to_bytes(len(payload), "big")


def close_frame(code: int, reason: str = "", *, masked: bool) -> bytes:
    """Encode a WebSocket close frame (masked when sent towards a server)."""
    payload = struct.pack("!H", code) + reason.encode()
    if not masked:
        return bytes([0x80 | OP_CLOSE, len(payload)]) + payload
    mask = os.urandom(4)
    return bytes([0x80 | OP_CLOSE, 0x80 | len(payload)]) + mask + _unmask(payload, mask)


@dataclass
class ProxyFrame:
    """One frame seen by the proxy."""

    opcode: int
    size: int
    at: float
    forwarded: bool
    text: str | None = None
    close_code: int | None = None


@dataclass(eq=False)
class ProxyConnection:
    """One relayed connection (worker side ⇄ engine side)."""

    index: int
    worker_reader: asyncio.StreamReader
    worker_writer: asyncio.StreamWriter
    engine_reader: asyncio.StreamReader | None = None
    engine_writer: asyncio.StreamWriter | None = None
    request_head: bytes = b""
    response_head: bytes = b""
    frames: dict[str, list[ProxyFrame]] = field(default_factory=lambda: {d: [] for d in DIRECTIONS})
    flowing: dict[str, asyncio.Event] = field(default_factory=dict)
    blackholed: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(DIRECTIONS, False))
    write_locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    injected_close: bool = False
    aborted: set[str] = field(default_factory=set)
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def request_headers(self) -> dict[str, str]:
        """The upgrade request's headers (lower-case names)."""
        return _headers(self.request_head)

    @property
    def response_status(self) -> int | None:
        """The HTTP status of the engine's answer to the upgrade."""
        line = self.response_head.split(b"\r\n", 1)[0].split()
        return int(line[1]) if len(line) > 1 and line[1].isdigit() else None

    @property
    def response_headers(self) -> dict[str, str]:
        """The engine's upgrade response headers (lower-case names)."""
        return _headers(self.response_head)

    def texts(self, direction: Direction) -> list[str]:
        """Recorded text frames in ``direction``, in order."""
        return [f.text for f in self.frames[direction] if f.text is not None]

    def close_codes(self, direction: Direction) -> list[int]:
        """Close codes of the close frames seen in ``direction`` (injected ones included)."""
        return [f.close_code for f in self.frames[direction] if f.close_code is not None]


def _sides(direction: Direction) -> tuple[str, str]:
    return ("worker", "engine") if direction == "worker_to_engine" else ("engine", "worker")


def _headers(head: bytes) -> dict[str, str]:
    lines = head.decode("latin-1").split("\r\n")[1:]
    out: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if sep:
            out[name.strip().lower()] = value.strip()
    return out


class WsProxy:
    """The proxy (see the module docstring).

    Args:
        target_port: Engine port on ``target_host``.
        target_host: Engine host (default 127.0.0.1).
    """

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = 0
        self.accepting = True
        self.connections: list[ProxyConnection] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="ws-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._paused: set[str] = set()
        self._changed = threading.Condition()

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """``ws://127.0.0.1:<port>`` of the proxy."""
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> WsProxy:
        """Bind 127.0.0.1:0 and start relaying."""
        self._thread.start()
        self._server = self._call(self._start())
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _start(self) -> asyncio.Server:
        return await asyncio.start_server(self._accept, "127.0.0.1", 0)

    def stop(self) -> None:
        """Reset every connection, stop listening and end the proxy's thread."""
        if not self._thread.is_alive():
            return
        try:
            self._call(self._stop(), timeout=10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            self._loop.close()

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in self.connections:
            self._abort(conn, "both")
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def __enter__(self) -> WsProxy:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 5.0, what: str = "") -> Any:
        """Wait (bounded) until ``predicate()`` is truthy; re-checked whenever the proxy sees traffic."""
        deadline = time.monotonic() + timeout * float(os.environ.get("IIITYPED_TEST_TIMEOUT_FACTOR", "1"))
        with self._changed:
            while True:
                value = predicate()
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"proxy: condition not met within {timeout} s: {what or predicate!r}"
                    )
                self._changed.wait(min(left, 0.05))

    def wait_for_connections(self, count: int, timeout: float = 5.0) -> ProxyConnection:
        """Wait until ``count`` connections were accepted; return the last one."""
        self.wait_for(lambda: len(self.connections) >= count, timeout, f"{count} connection(s)")
        return self.connections[count - 1]

    # -- faults ----------------------------------------------------------------------------
    def _live(self) -> list[ProxyConnection]:
        return [c for c in self.connections if not c.closed.is_set()]

    def pause(self, direction: str = "both") -> None:
        """Hold every frame in ``direction`` on the current and future connections until :meth:`resume`."""
        self._paused |= set(_directions(direction))

        def apply() -> None:
            for conn in self._live():
                for d in _directions(direction):
                    conn.flowing[d].clear()

        self._call(self._run(apply))

    def resume(self, direction: str = "both") -> None:
        """Deliver what :meth:`pause` held back and keep forwarding."""
        self._paused -= set(_directions(direction))

        def apply() -> None:
            for conn in self.connections:
                for d in _directions(direction):
                    conn.flowing[d].set()

        self._call(self._run(apply))

    def blackhole(self, direction: str = "both") -> None:
        """Silently drop every frame (and EOF) in ``direction`` on the *current* connections.

        New connections are relayed normally, so a client that notices the dead path can
        reconnect through the proxy.
        """

        def apply() -> None:
            for conn in self._live():
                for d in _directions(direction):
                    conn.blackholed[d] = True

        self._call(self._run(apply))

    def heal(self, direction: str = "both") -> None:
        """Stop dropping frames on the current connections."""

        def apply() -> None:
            for conn in self._live():
                for d in _directions(direction):
                    conn.blackholed[d] = False

        self._call(self._run(apply))

    def reset(self, side: Literal["worker", "engine", "both"] = "both") -> None:
        """Abort the current connections' TCP sockets with RST on ``side`` (abnormal close)."""

        def apply() -> None:
            for conn in self._live():
                self._abort(conn, side)

        self._call(self._run(apply))

    def close(
        self,
        code: int = 1001,
        reason: str = "proxy going away",
        *,
        side: Literal["worker", "engine", "both"] = "both",
        engine_code: int = 1001,
    ) -> None:
        """Send a close frame with ``code`` to the worker (and ``engine_code`` to the engine), at a
        frame boundary; stop relaying; close TCP once the peers answered (at most 2 s)."""
        self._call(self._close_all(code, reason, side, engine_code))

    async def _run(self, fn: Callable[[], None]) -> None:
        fn()

    async def _close_all(self, code: int, reason: str, side: str, engine_code: int) -> None:
        for conn in self._live():
            conn.injected_close = True
            if side in ("worker", "both"):
                await self._inject(conn, "engine_to_worker", close_frame(code, reason, masked=False), code)
            if side in ("engine", "both") and conn.engine_writer is not None:
                await self._inject(
                    conn, "worker_to_engine", close_frame(engine_code, reason, masked=True), engine_code
                )
            self._spawn(self._finish_close(conn, side))

    async def _inject(self, conn: ProxyConnection, direction: Direction, frame: bytes, code: int) -> None:
        writer = conn.worker_writer if direction == "engine_to_worker" else conn.engine_writer
        assert writer is not None
        async with conn.write_locks[direction]:
            try:
                writer.write(frame)
                await writer.drain()
            except (ConnectionError, RuntimeError):
                return
        conn.frames[direction].append(
            ProxyFrame(OP_CLOSE, len(frame), time.monotonic(), True, close_code=code)
        )
        self._notify()

    async def _finish_close(self, conn: ProxyConnection, side: str) -> None:
        try:
            await asyncio.wait_for(conn.closed.wait(), 2.0)
        except TimeoutError:
            pass
        if side in ("worker", "both"):
            conn.worker_writer.close()
        if side in ("engine", "both") and conn.engine_writer is not None:
            conn.engine_writer.close()

    @staticmethod
    def _abort(conn: ProxyConnection, side: str) -> None:
        writers = []
        if side in ("worker", "both"):
            conn.aborted.add("worker")
            writers.append(conn.worker_writer)
        if side in ("engine", "both") and conn.engine_writer is not None:
            conn.aborted.add("engine")
            writers.append(conn.engine_writer)
        for writer in writers:
            sock = writer.get_extra_info("socket")
            if sock is not None:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                except OSError:
                    pass
            writer.transport.abort()

    # -- relaying --------------------------------------------------------------------------
    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.accepting:
            conn = ProxyConnection(-1, reader, writer)
            self._abort(conn, "worker")
            return
        conn = ProxyConnection(len(self.connections), reader, writer)
        for d in DIRECTIONS:
            event = asyncio.Event()
            if d not in self._paused:
                event.set()
            conn.flowing[d] = event
            conn.write_locks[d] = asyncio.Lock()
        self.connections.append(conn)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            try:
                conn.engine_reader, conn.engine_writer = await asyncio.open_connection(
                    self.target_host, self.target_port
                )
            except OSError:
                self._abort(conn, "worker")
                return
            self._notify()
            await asyncio.gather(
                self._pump(conn, "worker_to_engine", reader, conn.engine_writer),
                self._pump(conn, "engine_to_worker", conn.engine_reader, writer),
                return_exceptions=True,
            )
        finally:
            conn.closed.set()
            for w in (writer, conn.engine_writer):
                if w is not None and not w.is_closing():
                    w.close()
            self._notify()
            if task is not None:
                self._tasks.discard(task)

    async def _pump(
        self,
        conn: ProxyConnection,
        direction: Direction,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        raw = False
        target = _sides(direction)[1]
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            if direction == "worker_to_engine":
                conn.request_head = head
            else:
                conn.response_head = head
                raw = conn.response_status != 101
            await self._forward(conn, direction, writer, head)
            self._notify()
            if raw:  # a refused upgrade: relay the body as it comes
                while chunk := await reader.read(65536):
                    await self._forward(conn, direction, writer, chunk)
                raise EOFError
            while True:
                first = await reader.readexactly(2)
                length = first[1] & 0x7F
                ext = b""
                if length == 126:
                    ext = await reader.readexactly(2)
                    length = struct.unpack("!H", ext)[0]
                elif length == 127:
                    ext = await reader.readexactly(8)
                    length = struct.unpack("!Q", ext)[0]
                mask = await reader.readexactly(4) if first[1] & 0x80 else b""
                payload = await reader.readexactly(length)
                opcode = first[0] & 0x0F
                record = ProxyFrame(opcode, length, time.monotonic(), False)
                if opcode == OP_TEXT and length <= RECORD_TEXT_BYTES:
                    data = _unmask(payload, mask) if mask else payload
                    record.text = data.decode("utf-8", "replace")
                elif opcode == OP_CLOSE and length >= 2:
                    data = _unmask(payload, mask) if mask else payload
                    record.close_code = struct.unpack("!H", data[:2])[0]
                await conn.flowing[direction].wait()
                record.forwarded = (
                    not conn.blackholed[direction] and not conn.injected_close and target not in conn.aborted
                )
                conn.frames[direction].append(record)  # recorded before the peer can react to it
                if record.forwarded:
                    await self._forward(conn, direction, writer, first + ext + mask + payload)
                self._notify()
        except (
            asyncio.IncompleteReadError,
            EOFError,
            asyncio.LimitOverrunError,
            ConnectionError,
            OSError,
        ) as exc:
            source, target = _sides(direction)
            if source in conn.aborted or target in conn.aborted:
                return  # the proxy reset a side itself: the other side learns nothing
            if isinstance(exc, (ConnectionError, OSError)):
                self._abort(conn, target)  # a reset: pass it on as a reset
                return
            # The source closed (FIN): pass it on unless the path is dead or paused.
            await conn.flowing[direction].wait()
            if conn.blackholed[direction]:
                return
            try:
                if writer.can_write_eof():
                    writer.write_eof()
            except (OSError, RuntimeError):
                pass

    @staticmethod
    async def _forward(
        conn: ProxyConnection, direction: Direction, writer: asyncio.StreamWriter, data: bytes
    ) -> None:
        async with conn.write_locks[direction]:
            writer.write(data)
            await writer.drain()
