"""A scripted fake iii engine for SDK and fault tests (protocol.md §1-§4).

:class:`FakeEngine` is a websockets server on 127.0.0.1 (port 0 by default) running on its own
event-loop thread, so sync and async tests can both drive it. It records every message it
receives, answers as protocol.md describes, and can be told to misbehave:

* on accept it sends ``workerregistered`` (fresh ``worker_id`` and ``reattach_token``);
* ``invokefunction`` with an ``invocation_id`` is answered from :attr:`FakeEngine.functions`
  (``function_id -> callable(data) -> result``; raise :class:`FakeError` for an error body), else
  routed to the worker connection that registered the function (the result is relayed back;
  ``invocation_stopped`` when that worker disconnects), else ``function_not_found``;
  ``action: enqueue`` returns ``{"messageReceiptId": …}``; ``void`` calls get no answer;
  ids in :attr:`FakeEngine.silent` are never answered;
* :attr:`FakeEngine.reject_worker` (a ``registrationrejected`` frame) is sent in reply to
  ``engine::workers::register``, followed by a close;
* :attr:`FakeEngine.reject_status` answers the HTTP upgrade with that status (401/403/500);
  :attr:`FakeEngine.auth_error` sends the ``AUTH_ERROR`` frame and closes;
* :meth:`send`, :meth:`close_connections` (any close code), :meth:`abort_connections` (TCP reset
  without a close frame), :meth:`stop` / :meth:`start` (restart on the same port).

Example::

    with FakeEngine() as fake:
        options = InitOptions(reconnection_config=ReconnectionConfig(initial_delay_ms=100))
        iii = register_worker(fake.url, options)
        fake.close_connections(1001)
        fake.wait_for_connections(2)
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from http import HTTPStatus
from types import TracebackType
from typing import Any, TypeVar

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

__all__ = ["FakeConnection", "FakeEngine", "FakeError", "Received"]

T = TypeVar("T")

MAX_SIZE = 64 * 1024 * 1024


class FakeError(Exception):
    """Raise from a :attr:`FakeEngine.functions` callable to answer with ``error{code, message}``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass
class Received:
    """One message received by the fake engine."""

    conn: int
    """Index of the connection (0 = first accepted)."""
    raw: bytes
    """The message as received."""
    frame: Any
    """The decoded JSON (``None`` when it was not JSON)."""
    at: float
    """``time.monotonic()`` when it arrived."""
    is_text: bool = True

    @property
    def type(self) -> str | None:
        """The ``type`` field, if any."""
        return self.frame.get("type") if isinstance(self.frame, dict) else None


@dataclass
class FakeConnection:
    """One accepted worker connection."""

    index: int
    worker_id: str
    reattach_token: str
    path: str
    headers: Headers
    ws: ServerConnection
    frames: list[Received] = field(default_factory=list)
    functions: set[str] = field(default_factory=set)
    closed: bool = False
    close_code: int | None = None
    close_reason: str = ""
    closed_at: float | None = None


class FakeEngine:
    """A scripted engine on its own loop thread.

    Args:
        host: Interface to bind.
        port: Port (0 = free port; kept across :meth:`stop`/:meth:`start`).
        send_workerregistered: Send ``workerregistered`` on accept.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, send_workerregistered: bool = True) -> None:
        self.host = host
        self.port = port
        self.send_workerregistered = send_workerregistered
        self.functions: dict[str, Callable[[Any], Any]] = {}
        self.silent: set[str] = set()
        self.reject_status: int | None = None
        self.auth_error: str | None = None
        self.reject_worker: dict[str, Any] | None = None
        self.on_frame: Callable[[FakeConnection, Any], None] | None = None
        self.connections: list[FakeConnection] = []
        self.attempts = 0
        self._routes: dict[str, tuple[FakeConnection, FakeConnection, str]] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-engine", daemon=True)
        self._thread.start()
        self._server: Server | None = None
        self._cond = threading.Condition()

    # -- lifecycle -----------------------------------------------------------------------
    @property
    def url(self) -> str:
        """``ws://host:port``."""
        return f"ws://{self.host}:{self.port}"

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def start(self) -> FakeEngine:
        """Bind (again) and accept connections."""
        self._run(self._start())
        return self

    async def _start(self) -> None:
        self._server = await serve(
            self._handle,
            self.host,
            self.port,
            compression=None,
            max_size=MAX_SIZE,
            process_request=self._process_request,
            ping_interval=None,
        )
        if self.port == 0:
            self.port = self._server.sockets[0].getsockname()[1]

    def stop(self, code: int = 1001) -> None:
        """Stop listening and close every connection with ``code``."""
        self._run(self._stop(code))

    async def _stop(self, code: int) -> None:
        if self._server is None:
            return
        self._server.close(close_connections=False)

        async def close(conn: FakeConnection) -> None:
            try:
                await asyncio.wait_for(conn.ws.close(code, "engine stopping"), 0.5)
            except TimeoutError:
                conn.ws.transport.abort()  # e.g. reading was paused: no closing handshake possible

        await asyncio.gather(*(close(c) for c in list(self.connections) if not c.closed))
        await self._server.wait_closed()
        self._server = None

    def close(self) -> None:
        """Stop and end the loop thread."""
        try:
            self.stop()
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            if not self._thread.is_alive():
                self._loop.close()  # no "unclosed event loop" finalizer left for the GC

    def __enter__(self) -> FakeEngine:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- server side ---------------------------------------------------------------------
    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        self.attempts += 1
        if self.reject_status is not None:
            status = HTTPStatus(self.reject_status)
            return connection.respond(status, f"{status.phrase}\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        request = ws.request
        assert request is not None
        with self._cond:
            conn = FakeConnection(
                index=len(self.connections),
                worker_id=str(uuid.uuid4()),
                reattach_token=str(uuid.uuid4()),
                path=request.path,
                headers=request.headers,
                ws=ws,
            )
            self.connections.append(conn)
            self._cond.notify_all()
        try:
            if self.auth_error is not None:
                await ws.send(
                    json.dumps({"error": {"code": "AUTH_ERROR", "message": self.auth_error}, "type": "error"})
                )
                await ws.close(1008, "auth failed")
                return
            if self.send_workerregistered:
                await ws.send(
                    json.dumps(
                        {
                            "type": "workerregistered",
                            "worker_id": conn.worker_id,
                            "reattach_token": conn.reattach_token,
                        }
                    )
                )
            async for message in ws:
                raw = message.encode() if isinstance(message, str) else bytes(message)
                try:
                    frame = json.loads(raw)
                except ValueError:
                    frame = None
                received = Received(conn.index, raw, frame, time.monotonic(), isinstance(message, str))
                with self._cond:
                    conn.frames.append(received)
                    self._cond.notify_all()
                if self.on_frame is not None:
                    self.on_frame(conn, frame)
                if isinstance(frame, dict):
                    await self._react(conn, frame)
        except ConnectionClosed:
            pass
        finally:
            with self._cond:
                conn.closed = True
                conn.closed_at = time.monotonic()
                rcvd = ws.protocol.close_rcvd
                if rcvd is not None:
                    conn.close_code = rcvd.code
                    conn.close_reason = rcvd.reason
                self._cond.notify_all()
            await self._on_disconnect(conn)

    async def _on_disconnect(self, conn: FakeConnection) -> None:
        for invocation_id, (caller, callee, function_id) in list(self._routes.items()):
            if callee is conn and not caller.closed:
                del self._routes[invocation_id]
                await self._send_to(
                    caller,
                    {
                        "type": "invocationresult",
                        "invocation_id": invocation_id,
                        "function_id": function_id,
                        "error": {"code": "invocation_stopped", "message": "Invocation stopped"},
                    },
                )
            elif caller is conn:
                del self._routes[invocation_id]

    async def _send_to(self, conn: FakeConnection, frame: Any) -> None:
        try:
            await conn.ws.send(json.dumps(frame) if not isinstance(frame, bytes | str) else frame)
        except ConnectionClosed:
            pass

    async def _react(self, conn: FakeConnection, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "registerfunction":
            conn.functions.add(frame.get("id", ""))
        elif kind == "unregisterfunction":
            conn.functions.discard(frame.get("id", ""))
        elif kind == "invokefunction":
            await self._invoke(conn, frame)
        elif kind == "invocationresult":
            route = self._routes.pop(str(frame.get("invocation_id")), None)
            if route is not None and not route[0].closed:
                await self._send_to(route[0], frame)

    async def _invoke(self, conn: FakeConnection, frame: dict[str, Any]) -> None:
        function_id = frame.get("function_id", "")
        invocation_id = frame.get("invocation_id")
        action = frame.get("action") or {}
        if function_id == "engine::workers::register" and self.reject_worker is not None:
            await self._send_to(conn, {"type": "registrationrejected", **self.reject_worker})
            await conn.ws.close(1008, "worker name conflict")
            return
        if function_id == "engine::workers::register" or function_id in self.silent:
            return
        if action.get("type") == "enqueue" and invocation_id is not None:
            await self._send_to(
                conn,
                {
                    "type": "invocationresult",
                    "invocation_id": invocation_id,
                    "function_id": function_id,
                    "result": {"messageReceiptId": str(uuid.uuid4())},
                },
            )
            return
        owner = next(
            (c for c in reversed(self.connections) if not c.closed and function_id in c.functions), None
        )
        if function_id not in self.functions and owner is not None:
            forwarded_id = invocation_id or str(uuid.uuid4())
            if invocation_id is not None:
                self._routes[forwarded_id] = (conn, owner, function_id)
            forwarded = {"type": "invokefunction", "invocation_id": forwarded_id, "function_id": function_id}
            data = frame.get("data")
            if isinstance(data, dict):
                data = {**data, "_caller_worker_id": conn.worker_id}
            forwarded["data"] = data
            for key in ("metadata", "traceparent", "baggage"):
                if frame.get(key) is not None:
                    forwarded[key] = frame[key]
            await self._send_to(owner, forwarded)
            return
        if invocation_id is None:
            fn = self.functions.get(function_id)
            if fn is not None:
                try:
                    fn(frame.get("data"))
                except Exception:
                    pass
            return
        reply: dict[str, Any] = {
            "type": "invocationresult",
            "invocation_id": invocation_id,
            "function_id": function_id,
        }
        fn = self.functions.get(function_id)
        if fn is None:
            namespace = frame.get("namespace", "default")
            reply["error"] = {
                "code": "function_not_found",
                "message": f"Function {function_id} not found in namespace {namespace}.",
            }
        else:
            try:
                result = fn(frame.get("data"))
                if asyncio.iscoroutine(result):
                    result = await result
                if result is not None:
                    reply["result"] = result
            except FakeError as exc:
                reply["error"] = {"code": exc.code, "message": exc.message}
        await self._send_to(conn, reply)

    # -- driving from tests --------------------------------------------------------------
    def connection(self, index: int = -1) -> FakeConnection:
        """The connection at ``index`` (default: the latest)."""
        with self._cond:
            return self.connections[index]

    def live(self) -> list[FakeConnection]:
        """Connections not closed yet."""
        with self._cond:
            return [c for c in self.connections if not c.closed]

    def send(self, frame: Any, conn: int = -1) -> None:
        """Send a dict (as JSON), ``str`` (text) or ``bytes`` (binary) to a connection."""
        target = self.connection(conn)
        self._run(self._send_to(target, frame))

    def close_connections(self, code: int = 1000, reason: str = "") -> None:
        """Close every live connection with a close frame carrying ``code``."""

        async def close_all() -> None:
            for conn in self.live():
                await conn.ws.close(code, reason)

        self._run(close_all())

    def abort_connections(self) -> None:
        """Drop every live connection's TCP stream without a close frame (abnormal closure)."""

        async def abort_all() -> None:
            for conn in self.live():
                conn.ws.transport.abort()

        self._run(abort_all())

    def pause_reading(self, conn: int = -1) -> None:
        """Stop reading a connection's socket: the worker's pings go unanswered (a dead engine)."""
        target = self.connection(conn)

        async def pause() -> None:
            target.ws.transport.pause_reading()

        self._run(pause())

    def invoke(
        self, function_id: str, data: Any, *, conn: int = -1, metadata: Any = None, timeout: float = 5.0
    ) -> dict[str, Any]:
        """Send ``invokefunction`` to a worker (as the engine would for a trigger) and return the
        worker's ``invocationresult`` frame."""
        target = self.connection(conn)
        invocation_id = str(uuid.uuid4())
        frame: dict[str, Any] = {
            "type": "invokefunction",
            "invocation_id": invocation_id,
            "function_id": function_id,
            "data": data,
        }
        if metadata is not None:
            frame["metadata"] = metadata
        self.send(frame, conn=target.index)
        found = self.wait_for_frame(
            lambda r: r.type == "invocationresult" and r.frame.get("invocation_id") == invocation_id,
            timeout=timeout,
            conn=target.index,
        )
        result: dict[str, Any] = found.frame
        return result

    def frames(self, conn: int | None = None, type: str | None = None) -> list[Received]:
        """Received messages (of one connection and/or one ``type``), in arrival order."""
        with self._cond:
            pool = self.connections if conn is None else [self.connections[conn]]
            out = [r for c in pool for r in c.frames]
        out.sort(key=lambda r: r.at)
        return [r for r in out if type is None or r.type == type]

    def wait_for_frame(
        self, predicate: Callable[[Received], bool], timeout: float = 5.0, conn: int | None = None
    ) -> Received:
        """Block until a received message satisfies ``predicate``; return it."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                pool = self.connections if conn is None else [self.connections[conn]]
                for c in pool:
                    for r in c.frames:
                        if predicate(r):
                            return r
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [r.raw[:200] for c in pool for r in c.frames]
                    raise AssertionError(f"no matching frame within {timeout} s; got {seen}")
                self._cond.wait(remaining)

    def wait_for_connections(self, count: int, timeout: float = 5.0) -> FakeConnection:
        """Block until ``count`` connections were accepted in total; return the latest."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.connections) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"only {len(self.connections)} connection(s) within {timeout} s")
                self._cond.wait(remaining)
            return self.connections[-1]

    def wait_closed(self, conn: int = -1, timeout: float = 5.0) -> FakeConnection:
        """Block until a connection is closed; return it."""
        deadline = time.monotonic() + timeout
        with self._cond:
            target = self.connections[conn]
            while not target.closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"connection {target.index} still open after {timeout} s")
                self._cond.wait(remaining)
            return target
