"""The dev engine's listeners: the worker port and its routes (protocol.md §1.1, §1.2).

Routes on the worker port (``websockets`` asyncio server, no compression, bytes end to end):

* ``/`` — the worker protocol (:class:`~iii_typed.engine.router.Router`). Text and binary
  messages are both read as bytes; binary messages starting with ``OTLP``, ``MTRC`` or ``LOGS`` are
  telemetry, everything else is a JSON frame.
* ``/otel`` — telemetry only: binary frames with those prefixes go to the telemetry sink (dropped
  until a built-in installs one); text frames are ignored; other binary frames are dropped with a
  warning.
* extra routes added by built-ins (:class:`~iii_typed.engine.builtins.base.WebSocketRoute`), e.g.
  ``/ws/channels/<id>?key=&dir=``; without a channel provider that prefix answers HTTP 404
  ``Channel not found``.
* anything else — HTTP 404 before the upgrade.

With a token configured (:mod:`iii_typed.engine.auth`), every upgrade without
``Authorization: Bearer <token>`` is answered HTTP 401 first, whatever the path.

Message size: the engine accepts messages up to 64 MiB
(:data:`~iii_typed.protocol.frames.MAX_MESSAGE_BYTES`). A message between 64 MiB and
:data:`HARD_MESSAGE_LIMIT` (128 MiB) is read, logged at WARNING and dropped, and the connection stays
open. A message over 128 MiB is refused by the WebSocket layer as soon as its header announces the
length: that one connection is closed with code 1009 (message too big) and nothing else is
affected.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sqlite3
from collections.abc import Sequence
from importlib import metadata
from types import TracebackType
from typing import Final
from urllib.parse import parse_qs

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from .._transport import coalesce_writes
from ..protocol.frames import MAX_MESSAGE_BYTES
from .auth import refuse_unauthorized
from .builtins import discover
from .builtins._sqlite import StoreError
from .builtins.base import BuiltinWorker, WebSocketRoute
from .config import ConfigError, EngineConfig
from .connection import OUTBOUND_HIGH_WATER, OUTBOUND_LOW_WATER
from .router import TELEMETRY_PREFIXES, Router

__all__ = ["ENGINE_VERSION", "HARD_MESSAGE_LIMIT", "Engine"]

log = logging.getLogger("iii_typed.engine")

#: Messages over this size close the sending connection with 1009 (see the module docstring).
HARD_MESSAGE_LIMIT: Final = 2 * MAX_MESSAGE_BYTES
#: Seconds to wait for a peer's close frame at shutdown.
CLOSE_TIMEOUT: Final = 2.0


def _version() -> str:
    try:
        return metadata.version("iii-typed")
    except metadata.PackageNotFoundError:  # pragma: no cover - source checkout without install
        return "0.0.0"


#: Version reported by ``engine::health::check`` and for built-in workers.
ENGINE_VERSION: Final = _version()


def _url(scheme: str, host: str, port: int) -> str:
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


def bind_socket(host: str, port: int) -> socket.socket:
    """Create a listening TCP socket on the first address ``host`` resolves to.

    One socket (rather than one per resolved address) keeps a ``port=0`` choice unambiguous.

    Raises:
        OSError: the address cannot be resolved or bound (e.g. the port is in use).
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, address = infos[0]
    return socket.create_server(address, family=family, backlog=1024)


class Engine:
    """The embedded dev engine, in-process (the CLI runs one of these).

    Args:
        config: Settings (defaults: 127.0.0.1, port 49134, in memory).
        builtins: Built-in worker classes to consider (default: every discovered module);
            each runs when the configuration enables it.

    Example::

        async with Engine(EngineConfig(port=0)) as engine:
            print(engine.url)

    Attributes:
        config: The settings.
        router: The protocol core (available after :meth:`start`).
        addresses: ``{"engine": "ws://H:P", ...}`` after :meth:`start` — the ready line.
    """

    def __init__(
        self,
        config: EngineConfig | None = None,
        *,
        builtins: Sequence[type[BuiltinWorker]] | None = None,
    ) -> None:
        self.config = config or EngineConfig()
        self._builtin_classes = builtins
        self.router = Router(self.config, ENGINE_VERSION)
        self.addresses: dict[str, str] = {}
        self._server: Server | None = None
        self._started: list[BuiltinWorker] = []

    @property
    def url(self) -> str:
        """The worker WebSocket URL, e.g. ``ws://127.0.0.1:49134``."""
        return self.addresses["engine"]

    @property
    def port(self) -> int:
        """The bound worker port."""
        return int(self.url.rsplit(":", 1)[1])

    # -- lifecycle -------------------------------------------------------------------------
    def _select_builtins(self) -> list[type[BuiltinWorker]]:
        classes = list(self._builtin_classes) if self._builtin_classes is not None else discover()
        known_classes = classes if self._builtin_classes is None else [*classes, *discover()]
        tables = {cls.section for cls in known_classes}
        stray = sorted(set(self.config.sections) - tables)
        if stray:  # a misspelt table would otherwise be ignored without a word
            names = ", ".join(f"[{name}]" for name in stray)
            available = ", ".join(f"[{name}]" for name in sorted(tables))
            raise ConfigError(
                f"unknown table(s) in the configuration: {names} (built-in tables: {available})"
            )
        if self.config.builtins is not None:
            known = {cls.name for cls in classes} | {cls.section for cls in classes}
            unknown = [name for name in self.config.builtins if name not in known]
            if unknown:
                available = ", ".join(sorted(cls.section for cls in classes))
                names = ", ".join(unknown)
                raise ConfigError(
                    f"unknown built-in worker(s) in engine.builtins: {names} (available: {available})"
                )
        return [
            cls
            for cls in classes
            if cls.mandatory or self.config.enabled(cls.name, cls.section, default=cls.default_enabled)
        ]

    async def start(self) -> Engine:
        """Start the built-in workers, then bind the worker port.

        Returns:
            ``self``, with :attr:`addresses` filled.

        Raises:
            ConfigError: the configuration names an unknown built-in.
            OSError: a port cannot be bound, or a built-in's database in ``--data-dir`` cannot
                be used (:class:`~iii_typed.engine.builtins._sqlite.StoreError`).
        """
        if self._server is not None:
            raise RuntimeError("engine already started")
        router = self.router
        try:
            workers = [cls(router) for cls in self._select_builtins()]
            for worker in workers:
                router.install(worker)
            for worker in workers:
                try:
                    await worker.start()
                except sqlite3.Error as exc:
                    # Its tables exist but do not fit (open_database checks everything else).
                    raise StoreError(
                        f"the {worker.name} built-in cannot use its database in {self.config.data_dir} "
                        f"({exc}): move the file away, or start with another --data-dir"
                    ) from exc
                self._started.append(worker)
            sock = bind_socket(self.config.host, self.config.port)
            self._server = await serve(
                self._handle,
                sock=sock,
                compression=None,
                process_request=self._process_request,
                max_size=HARD_MESSAGE_LIMIT,
                ping_interval=None,
                close_timeout=CLOSE_TIMEOUT,
                write_limit=(OUTBOUND_HIGH_WATER, OUTBOUND_LOW_WATER),
                logger=logging.getLogger("iii_typed.engine.websockets"),
            )
        except BaseException:
            await self._stop_builtins()
            await router.cancel_tasks()
            raise
        port = sock.getsockname()[1]
        self.addresses = {"engine": _url("ws", self.config.host, port)}
        for key in ("http", "streams"):
            if key in router.advertised:
                self.addresses[key] = router.advertised[key]
        for key, value in router.advertised.items():
            self.addresses.setdefault(key, value)
        log.info(
            "engine %s listening on %s (%s)", ENGINE_VERSION, self.url, ", ".join(w.name for w in workers)
        )
        return self

    async def stop(self) -> None:
        """Stop promptly: answer in-flight invocations ``invocation_stopped``, close every
        connection with a close frame (1001), stop the built-ins (they persist their state), end
        all tasks.

        A worker that does not take its close frame within :data:`CLOSE_TIMEOUT` (+1 s) — one that
        stopped reading — has its TCP connection aborted, so a stuck worker cannot hold up the
        shutdown.
        """
        router = self.router
        router.stopping = True
        halted = router.halt_invocations()
        if halted:
            log.info("shutdown: %d in-flight invocation(s) answered invocation_stopped", halted)
        server = self._server
        if server is not None:
            server.close()
            try:
                await asyncio.wait_for(asyncio.shield(server.wait_closed()), CLOSE_TIMEOUT + 1)
            except TimeoutError:
                stuck = [c for c in server.all_connections if c.protocol.state is not State.CLOSED]
                log.warning("shutdown: aborting %d connection(s) that did not close in time", len(stuck))
                for connection in stuck:
                    connection.transport.abort()
                await server.wait_closed()
            self._server = None
        await self._stop_builtins()
        await router.cancel_tasks()
        log.info("engine stopped")

    async def _stop_builtins(self) -> None:
        while self._started:
            worker = self._started.pop()
            try:
                await worker.stop()
            except Exception:
                log.exception("built-in worker %s failed to stop", worker.name)

    async def __aenter__(self) -> Engine:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- routes ----------------------------------------------------------------------------
    def _route(self, path: str) -> WebSocketRoute | None:
        for route in self.router.ws_routes:
            if path.startswith(route.prefix):
                return route
        return None

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        denied = refuse_unauthorized(self.config, connection, request)  # 401 before any route
        if denied is not None:
            return denied
        path, _, query = request.path.partition("?")
        if path in ("/", "/otel"):
            return None
        route = self._route(path)
        if route is not None:
            refusal = route.accept(path, parse_qs(query))
            if refusal is None:
                return None
            status, body = refusal
            return connection.respond(status, body if body.endswith("\n") else body + "\n")
        if path.startswith("/ws/channels/"):
            return connection.respond(404, "Channel not found\n")
        return connection.respond(404, "Not Found\n")

    async def _handle(self, ws: ServerConnection) -> None:
        path, _, query = ws.request.path.partition("?") if ws.request is not None else ("/", "", "")
        if path == "/":
            await self._serve_worker(ws)
        elif path == "/otel":
            await self._serve_otel(ws)
        else:
            route = self._route(path)
            if route is not None:
                await route.handle(ws, path, parse_qs(query))

    async def _serve_worker(self, ws: ServerConnection) -> None:
        router = self.router
        coalesce_writes(ws)  # one syscall per loop iteration, not per frame (_transport)
        conn = await router.connected(ws)
        handle = router.handle
        recv = ws.recv
        try:
            while True:
                message = await recv(decode=False)
                try:
                    await handle(conn, message)
                except Exception:
                    log.exception("error handling a message from worker %s (connection kept)", conn.id)
        except ConnectionClosed as exc:
            if exc.sent is not None and exc.sent.code == 1009:
                log.warning(
                    "worker %s sent a message over %d bytes: connection closed with 1009 (message too big)",
                    conn.id,
                    HARD_MESSAGE_LIMIT,
                )
        finally:
            await router.disconnected(conn)

    async def _serve_otel(self, ws: ServerConnection) -> None:
        router = self.router
        router.telemetry_connection(True)
        try:
            while True:
                message = await ws.recv()
                if isinstance(message, str):
                    continue  # text frames are ignored on /otel (§1.2)
                if message[:4] in TELEMETRY_PREFIXES:
                    router.telemetry(message)
                else:
                    log.warning("dropped a %d-byte /otel frame with an unknown prefix", len(message))
        except ConnectionClosed:
            return
        finally:
            router.telemetry_connection(False)
