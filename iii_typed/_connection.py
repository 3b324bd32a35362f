"""The worker connection: connect, replay, receive, reconnect (protocol.md §3, §10; sdk.md §2.7-§2.8).

Everything here runs on the client's loop thread. The loop is the single writer: every frame is
sent from it with one ``websocket.send`` call (messages over 16 MiB as one fragmented message), so
frames from concurrent threads can never interleave.

On every successful socket open the connection sends, in order: ``reattach`` (when a previous
``worker_id`` is known), the registrations supplied by :meth:`ConnectionHooks.replay_frames`
(services, trigger types, functions, triggers), the frames queued while offline, and the
``engine::workers::register`` call; anything registered or queued while that replay was being
written follows before the state becomes ``connected``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
from collections.abc import Callable
from typing import Any, Final, Protocol

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.protocol import State

from ._transport import coalesce_writes
from ._wire import SINGLE_FRAME_BYTES, encode_frame, fragments
from .errors import EngineUnreachableError, IIIError, RegistrationRejectedError
from .models import IIIConnectionState
from .options import InitOptions
from .protocol.frames import MAX_MESSAGE_BYTES, Reattach

__all__ = ["MAX_QUEUED_FRAMES", "Connection", "ConnectionHooks", "StateListener", "build_headers"]

log = logging.getLogger("iii_typed")

#: Frames kept while disconnected; the oldest is dropped (with a warning) beyond this.
MAX_QUEUED_FRAMES: Final = 1000

#: Seconds to wait at most for the engine's answer to our close frame (less when the keepalive
#: timeout is shorter).
CLOSE_TIMEOUT_S: Final = 2.0

#: Seconds allowed for the opening handshake of one attempt.
OPEN_TIMEOUT_S: Final = 10.0

#: Seconds to wait at most for ``workerregistered`` before reporting ``connected``.
REGISTERED_WAIT_S: Final = 2.0

StateListener = Callable[[IIIConnectionState], None]


class ConnectionHooks(Protocol):
    """What the connection needs from the client."""

    def replay_frames(self, generation: int) -> list[bytes]:
        """Registration frames not yet sent on connection ``generation`` (marks them sent)."""
        ...

    def registration_frame(self) -> bytes:
        """The ``engine::workers::register`` invocation frame."""
        ...

    def handle_message(self, message: bytes) -> None:
        """Process one message received from the engine (never raises)."""
        ...

    def on_failed(self, error: IIIError) -> None:
        """The connection reached ``failed``: reject pending calls with ``error``."""
        ...

    def on_disconnected(self, generation: int) -> None:
        """The socket of connection ``generation`` ended: what was written to it gets no answer."""
        ...


def build_headers(options: InitOptions) -> dict[str, str]:
    """Handshake headers: ``options.headers`` plus ``Authorization: Bearer $III_TOKEN`` when the
    variable is set (non-blank) and no Authorization header was given (protocol.md §1.5)."""
    headers = dict(options.headers or {})
    token = os.environ.get("III_TOKEN", "").strip()
    if token and not any(k.lower() == "authorization" for k in headers):
        headers["Authorization"] = f"Bearer {token}"
    return headers


class _Queued:
    __slots__ = ("data", "on_drop", "on_sent")

    def __init__(
        self, data: bytes, on_drop: Callable[[], None] | None, on_sent: Callable[[], None] | None
    ) -> None:
        self.data = data
        self.on_drop = on_drop
        self.on_sent = on_sent


class Connection:
    """One logical connection to the engine, surviving socket ends by reconnecting.

    Args:
        url: Engine WebSocket URL.
        options: Client options (reconnection policy, headers, keepalive).
        hooks: Callbacks into the client.
    """

    def __init__(self, url: str, options: InitOptions, hooks: ConnectionHooks) -> None:
        self.url = url
        self._options = options
        self._reconnect = options.reconnection
        timeout_ms = options.keepalive_timeout_ms
        # A dead peer never answers our close frame: do not wait longer for it than for a pong.
        self._close_timeout = (
            CLOSE_TIMEOUT_S if timeout_ms is None else min(CLOSE_TIMEOUT_S, timeout_ms / 1000)
        )
        self._hooks = hooks
        self.state: IIIConnectionState = "disconnected"
        self.worker_id: str | None = None
        self.reattach_token: str | None = None
        self.engine_features: list[str] | None = None
        self.generation = 0
        self.fatal_error: IIIError | None = None
        self.attempts = 0
        self._ws: ClientConnection | None = None
        self._ready = False
        self._closing = False
        self._retry = 0
        self._task: asyncio.Task[None] | None = None
        self._queue: collections.deque[_Queued] = collections.deque()
        self._listeners: list[tuple[object, StateListener]] = []
        self._waiters: list[tuple[frozenset[str], asyncio.Future[IIIConnectionState]]] = []

    # -- state ---------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        """Whether frames go straight to the socket (connected and replay written)."""
        return self._ready

    def add_listener(self, listener: StateListener) -> Callable[[], None]:
        """Register ``listener``; returns an idempotent function that removes this registration."""
        token = object()
        self._listeners.append((token, listener))

        def unsubscribe() -> None:
            self._listeners[:] = [entry for entry in self._listeners if entry[0] is not token]

        return unsubscribe

    def _set_state(self, state: IIIConnectionState) -> None:
        if state == self.state:
            return
        log.debug("connection state %s -> %s", self.state, state)
        self.state = state
        for _, listener in list(self._listeners):
            try:
                listener(state)
            except BaseException:  # SystemExit & co. too: this runs in the connection task
                log.exception("connection-state listener %r raised", listener)
        for entry in list(self._waiters):
            states, future = entry
            if state in states and not future.done():
                future.set_result(state)

    async def wait_for_state(self, states: frozenset[str], timeout: float) -> IIIConnectionState:
        """Wait until the state is one of ``states``; return it (or the current state on timeout)."""
        if self.state in states:
            return self.state
        future: asyncio.Future[IIIConnectionState] = asyncio.get_running_loop().create_future()
        entry = (states, future)
        self._waiters.append(entry)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return self.state
        finally:
            self._waiters.remove(entry)

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        """Start (or restart after a non-fatal ``failed``) the connect loop. Loop thread only."""
        if self._closing or self.fatal_error is not None:
            return
        if self._task is not None and not self._task.done():
            return
        self._retry = 0
        self._set_state("connecting" if self.generation == 0 else "reconnecting")
        self._task = asyncio.get_running_loop().create_task(self._run(), name="iii-connection")

    async def close(self) -> None:
        """Stop reconnecting, send a close frame (code 1000) and wait briefly for the answer."""
        self._closing = True
        self._ready = False
        ws = self._ws
        if ws is not None:
            try:
                await asyncio.wait_for(ws.close(1000, "client shutdown"), self._close_timeout + 1)
            except Exception:
                log.debug("error while closing the socket", exc_info=True)
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except BaseException:
                pass
        self._drop_queue()
        self._set_state("disconnected")

    def fail(self, error: IIIError) -> None:
        """Enter ``failed`` for good (fatal rejection or authentication failure)."""
        if self.fatal_error is not None or self._closing:
            return
        self.fatal_error = error
        self._ready = False
        log.error("iii connection failed: %s", error)
        self._drop_queue()
        self._set_state("failed")
        self._hooks.on_failed(error)
        ws = self._ws
        if ws is not None:
            asyncio.get_running_loop().create_task(ws.close(1000, "fatal rejection"))

    def _drop_queue(self) -> None:
        queued = list(self._queue)
        self._queue.clear()
        for item in queued:
            if item.on_drop is not None:
                item.on_drop()

    async def _run(self) -> None:
        last_error: BaseException | None = None
        while not self._closing and self.fatal_error is None:
            self._set_state("connecting" if self.generation == 0 and self._retry == 0 else "reconnecting")
            self.attempts += 1
            try:
                ws = await connect(
                    self.url,
                    additional_headers=build_headers(self._options),
                    compression=None,
                    max_size=MAX_MESSAGE_BYTES,
                    ping_interval=_seconds(self._options.keepalive_interval_ms),
                    ping_timeout=_seconds(self._options.keepalive_timeout_ms),
                    open_timeout=OPEN_TIMEOUT_S,
                    close_timeout=self._close_timeout,
                    proxy=None,
                    user_agent_header=None,
                )
            except InvalidStatus as exc:
                status = exc.response.status_code
                if status in (401, 403):
                    self.fail(
                        RegistrationRejectedError(
                            "AUTH_ERROR",
                            f"the engine at {self.url} refused the connection with HTTP {status}: "
                            "check InitOptions.headers / III_TOKEN",
                        )
                    )
                    return
                last_error = exc
                log.warning("connecting to %s failed: HTTP %s", self.url, status)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                last_error = exc
                log.info("connecting to %s failed: %s", self.url, exc)
            else:
                try:
                    await self._session(ws)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a bug must cost one connection, never the reconnect loop
                    last_error = exc
                    log.exception("the connection to %s failed unexpectedly; reconnecting", self.url)
                    with contextlib.suppress(Exception):
                        await ws.close(1011, "internal error")
                finally:
                    self._ready = False
                    self._ws = None
                    self._hooks.on_disconnected(self.generation)
                if self._closing or self.fatal_error is not None:
                    return
                self._set_state("disconnected")
            if self._closing or self.fatal_error is not None:
                return
            max_retries = self._reconnect.max_retries
            if max_retries != -1 and self._retry >= max_retries:
                error = EngineUnreachableError(
                    f"could not connect to the iii engine at {self.url} after {self._retry + 1} "
                    f"attempt(s) (max_retries={max_retries}); last error: {last_error}"
                )
                self._ready = False
                self._drop_queue()
                self._set_state("failed")
                self._hooks.on_failed(error)
                return
            delay_ms = self._reconnect.delay_ms(self._retry)
            self._retry += 1
            self._set_state("reconnecting")
            await asyncio.sleep(delay_ms / 1000)

    async def _session(self, ws: ClientConnection) -> None:
        coalesce_writes(ws)  # one syscall per loop iteration, not per frame (_transport)
        self.generation += 1
        generation = self.generation
        self._ws = ws
        first: list[bytes] = []
        if self.worker_id is not None:
            reattach = Reattach(type="reattach", previous_worker_id=self.worker_id)
            if self.reattach_token is not None:
                reattach.reattach_token = self.reattach_token
            first.append(encode_frame(reattach))
        setup_done = False
        try:
            await self._write_all(ws, first + self._hooks.replay_frames(generation))
            await self._drain_queue(ws)
            await self._write(ws, self._hooks.registration_frame())
            await self._await_worker_registered(ws)
            while True:  # registrations or calls made while the replay was being written
                late = self._hooks.replay_frames(generation)
                if not late and not self._queue:
                    break
                await self._write_all(ws, late)
                await self._drain_queue(ws)
            setup_done = True
        except ConnectionClosed as exc:
            # Still read what arrived before the close: it may say why (AUTH_ERROR, rejection).
            log.info("connection to %s closed during setup: %s", self.url, exc)
        if setup_done and self.fatal_error is None and not self._closing:
            self._ready = True
            self._retry = 0
            self._set_state("connected")
            log.info("connected to the iii engine at %s", self.url)
        try:
            while True:
                message = await ws.recv(decode=False)
                self._hooks.handle_message(message)
        except ConnectionClosed as exc:
            if not self._closing and self.fatal_error is None and setup_done:
                log.warning("connection to %s ended (%s); reconnecting", self.url, _close_text(exc))

    async def _await_worker_registered(self, ws: ClientConnection) -> None:
        """Read until this connection's ``workerregistered`` was handled (bounded).

        The engine sends it first on every upgrade (protocol.md §3.1), so it has normally arrived
        while the replay was written. Waiting for it means ``worker_id`` (and the reattach token
        the next reconnect presents) names the current connection once the state is
        ``connected``. Other messages read meanwhile are handled as usual; what they send waits
        in the offline queue, drained before ``connected``.
        """
        known = self.worker_id
        loop = asyncio.get_running_loop()
        deadline = loop.time() + REGISTERED_WAIT_S
        while self.worker_id == known and self.fatal_error is None:
            left = deadline - loop.time()
            try:
                if left <= 0:
                    raise TimeoutError
                message = await asyncio.wait_for(ws.recv(decode=False), left)
            except TimeoutError:
                log.warning("no workerregistered from %s within %.0f s", self.url, REGISTERED_WAIT_S)
                return
            self._hooks.handle_message(message)

    async def _write_all(self, ws: ClientConnection, frames: list[bytes]) -> None:
        for data in frames:
            await self._write(ws, data)

    async def _drain_queue(self, ws: ClientConnection) -> None:
        while self._queue:
            item = self._queue[0]
            await self._write(ws, item.data)
            if self._queue and self._queue[0] is item:
                self._queue.popleft()
            if item.on_sent is not None:
                item.on_sent()

    @staticmethod
    async def _write(ws: ClientConnection, data: bytes) -> None:
        if len(data) > SINGLE_FRAME_BYTES:
            await ws.send(fragments(data), text=True)
        else:
            await ws.send(data, text=True)

    # -- sending -------------------------------------------------------------------------
    def write_now(self, data: bytes) -> bool:
        """Write ``data`` to the socket at once, without a coroutine, when :meth:`send` would write
        it without waiting either; ``False`` (nothing written) means: use :meth:`send`.

        That is the common case: connected, the socket open, no fragmented message being
        written, a message of one frame. It does exactly what ``websockets``' ``send`` does
        before its flow-control wait (websockets is pinned), minus that wait: a frame written
        here still counts towards the transport's buffer, so later :meth:`send` calls wait for
        it to drain. Callers use it for frames whose sender waits for an answer anyway
        (``invokefunction`` with an id) or for results.
        """
        ws = self._ws
        if (
            not self._ready
            or ws is None
            or ws.send_in_progress is not None
            or ws.protocol.state is not State.OPEN
            or len(data) > SINGLE_FRAME_BYTES
            or ws.transport.is_closing()
        ):
            return False
        ws.protocol.send_text(data)
        try:
            ws.send_data()
        except Exception as exc:  # as websockets' send_context: the connection is lost
            log.debug("error while writing a frame", exc_info=True)
            ws.set_connection_exc(exc)
            ws.transport.abort()
            self._ready = False
            return False  # send() keeps the frame for the next connection, as it would have
        return True

    async def send(
        self,
        data: bytes,
        *,
        queue: bool = True,
        on_drop: Callable[[], None] | None = None,
        on_sent: Callable[[], None] | None = None,
    ) -> bool:
        """Send ``data`` now, or keep it for the next connection.

        Args:
            data: One encoded frame.
            queue: Keep the frame while disconnected (bounded FIFO); ``False`` drops it.
            on_drop: Called when a queued frame is dropped (overflow, failure, shutdown).
            on_sent: Called when a queued frame is written on a later connection (not when the
                frame is written at once: the return value says so).

        Returns:
            ``True`` when written to the socket now.

        Raises:
            IIIError: the connection failed for good (the stored fatal error).
        """
        ws = self._ws
        if self._ready and ws is not None:
            try:
                await self._write(ws, data)
                return True
            except ConnectionClosed:
                self._ready = False
        if self.fatal_error is not None:
            raise self.fatal_error
        if self.state == "failed" or self._closing:
            if on_drop is not None:
                on_drop()
            return False
        if queue:
            if len(self._queue) >= MAX_QUEUED_FRAMES:
                dropped = self._queue.popleft()
                log.warning(
                    "offline queue full (%d frames): dropped the oldest frame while disconnected",
                    MAX_QUEUED_FRAMES,
                )
                if dropped.on_drop is not None:
                    dropped.on_drop()
            self._queue.append(_Queued(data, on_drop, on_sent))
        return False

    async def send_now(self, data: bytes) -> bool:
        """Send ``data`` only when connected (registrations and unregistrations are never queued)."""
        ws = self._ws
        if not self._ready or ws is None:
            return False
        try:
            await self._write(ws, data)
            return True
        except ConnectionClosed:
            self._ready = False
            return False

    def queued(self) -> int:
        """Number of frames waiting for the next connection."""
        return len(self._queue)

    def abort_socket(self) -> None:
        """Close the current socket without stopping (the connection reconnects)."""
        ws = self._ws
        if ws is not None:
            asyncio.get_running_loop().create_task(ws.close(1000, "reconnect"))


def _seconds(ms: int | None) -> float | None:
    return None if ms is None else ms / 1000


def _close_text(exc: ConnectionClosed) -> str:
    rcvd: Any = exc.rcvd
    if rcvd is None:
        return "no close frame"
    return f"code {rcvd.code}" + (f", reason {rcvd.reason!r}" if rcvd.reason else "")
