"""``iii-http``: the REST API and the ``http`` trigger type (protocol.md §6.6, golden frames E07, H01-H03).

An aiohttp server on the http port (``[engine] http_port`` / ``--http-port``, default 3111, 0 =
free) serves the routes that ``http`` bindings declare. Trigger config::

    {"api_path": "/users/:id", "http_method": "GET", "condition_function_id"?: "...",
     "middleware_function_ids"?: ["..."]}

Routing rules are in :mod:`._http_routes` (``:param`` segments, literal-over-parameter priority,
conflicts refused with ``trigger_registration_failed``, the same method and path replaces).

Malformed requests (``400``, one INFO line), the header read timeout (``header_read_timeout_ms``,
``408``) and the keep-alive timeout (``keepalive_timeout_ms``) are handled per connection by
:mod:`._http_server`; a request body that breaks or is cut mid-way is answered ``400`` (the client
gets it if it is still there) and logged as one INFO line.

Request flow, under one deadline (``default_timeout``, 30 s):

1. CORS preflight (when ``[http.cors]`` is set), then the route; none → ``404`` (H02).
2. A slot of ``concurrency_request_limit``; none free before the deadline → ``503``
   ``CONCURRENCY_LIMIT``. A body over ``max_body_bytes`` → ``413`` ``PAYLOAD_TOO_LARGE``.
3. Global middleware (``[[http.middleware]]``, lower ``priority`` first), called with
   ``{"context": {}, "phase": "preHandler", "request": {headers, method, path_params,
   query_params}}``; ``{"action": "continue"}`` goes on, ``{"action": "respond", "response":
   {status_code, headers, body}}`` answers at once. An error → 500 with its code and message;
   the deadline passing → ``504`` ``MIDDLEWARE_TIMEOUT``.
4. The ``request_body`` and ``response`` channels are created (when channels run); the raw body
   is streamed into ``request_body`` whatever its content type (cases.md B10), an empty body
   ends the channel at once.
5. ``condition_function_id`` with the payload minus the channel refs: exactly ``false`` →
   ``422`` (H03); an error → 500.
6. Per-route ``middleware_function_ids``, as in step 3.
7. The handler gets the E07 payload (``body`` parsed only for JSON content types, invalid JSON →
   ``null``; lower-case header names, a repeated header as a list; ``query_params`` last value
   wins; ``path`` the registered ``api_path``) and the binding's metadata sidecar. It answers
   with a buffered result (option A, :mod:`._http_response`) or streams through ``response``
   (option B): ``set_status`` / ``set_headers`` text frames, then binary chunks sent as a chunked
   body as they arrive (server-sent events work), until the handler closes the channel. A
   non-null result before the first body chunk wins; a null result waits for the channel.
   An error → 500 ``{"error": {"code", "message"}}`` with the function's code and message; the
   deadline passing before the response starts → ``504`` with an empty body.

Every request's channels are discarded when its response is done.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from aiohttp import HttpVersion11, web
from multidict import CIMultiDict

from ...errors import InvocationError
from ...formats import channel_ref_schema
from ._http_channels import EngineChannel, EngineChannelFactory, locate
from ._http_config import HttpSettings, parse_settings
from ._http_response import (
    CONDITION_NOT_MET,
    BufferedResponse,
    InvalidResponseError,
    buffered_response,
    error_envelope,
    loads,
    parse_headers,
    parse_status,
)
from ._http_routes import HTTP_METHODS, Route, RouteConflictError, RouteTable, parse_method
from ._http_server import CLIENT_ERRORS, HttpServer, describe_client_error
from .base import (
    BuiltinTriggerType,
    BuiltinWorker,
    EngineServices,
    TriggerBinding,
    TriggerRegistrationError,
)

__all__ = ["BUILTIN", "CHUNK_BYTES", "HttpWorker", "validate_trigger_config"]

log = logging.getLogger("iii_typed.engine.http")

#: Size of the binary frames the request body is cut into on the ``request_body`` channel.
CHUNK_BYTES: Final = 64 * 1024
#: A buffered body of one chunk always fits the (empty) request channel: it is written inline.
_INLINE_FEED_BYTES: Final = CHUNK_BYTES
_JSON: Final = "application/json"
_HOP_HEADERS: Final = frozenset({"content-length", "transfer-encoding", "connection"})

#: JSON Schema of an ``http`` binding's config (``engine::triggers::info``).
TRIGGER_CONFIG_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["api_path"],
    "properties": {
        "api_path": {"type": "string", "description": "Route, e.g. /users/:id"},
        "http_method": {"type": "string", "enum": sorted(HTTP_METHODS), "default": "GET"},
        "condition_function_id": {"type": "string"},
        "middleware_function_ids": {"type": "array", "items": {"type": "string"}},
    },
}
#: JSON Schema of the payload an ``http`` handler receives (golden frame E07); the two channel refs
#: carry the SDK's channel marker, so generated stubs type them as a reader and a writer.
CALL_REQUEST_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "body": {},
        "headers": {"type": "object"},
        "method": {"type": "string"},
        "path": {"type": "string"},
        "path_params": {"type": "object", "additionalProperties": {"type": "string"}},
        "query_params": {"type": "object", "additionalProperties": {"type": "string"}},
        "request_body": channel_ref_schema("read"),
        "response": channel_ref_schema("write"),
        "trigger": {"type": "object"},
    },
}


@dataclass(frozen=True, slots=True)
class RouteConfig:
    """A validated ``http`` binding config.

    Attributes:
        api_path: The path as registered (reported as ``path`` in payloads).
        method: Upper-case method.
        condition_function_id: Condition checked before the handler, if any.
        middleware_function_ids: Per-route middleware, in order.
    """

    api_path: str
    method: str
    condition_function_id: str | None
    middleware_function_ids: tuple[str, ...]


def validate_trigger_config(config: Any) -> RouteConfig:
    """Check an ``http`` binding config (protocol.md §6.6).

    Raises:
        TriggerRegistrationError: the message names the bad field.
    """
    if not isinstance(config, Mapping):
        raise TriggerRegistrationError(
            f"http trigger config must be an object with api_path, got {type(config).__name__}"
        )
    api_path = config.get("api_path")
    if not isinstance(api_path, str) or not api_path.strip():
        raise TriggerRegistrationError("http trigger config: api_path is required (a non-empty string)")
    try:
        method = parse_method(config.get("http_method"))
    except ValueError as exc:
        raise TriggerRegistrationError(f"http trigger config: {exc}") from None
    condition = config.get("condition_function_id")
    if condition is not None and (not isinstance(condition, str) or not condition.strip()):
        raise TriggerRegistrationError(
            "http trigger config: condition_function_id must be a non-empty string"
        )
    middleware = config.get("middleware_function_ids")
    if middleware is None:
        middleware = []
    if not isinstance(middleware, list) or not all(isinstance(m, str) and m.strip() for m in middleware):
        raise TriggerRegistrationError(
            "http trigger config: middleware_function_ids must be a list of function ids"
        )
    return RouteConfig(
        api_path=api_path,
        method=method,
        condition_function_id=condition or None,
        middleware_function_ids=tuple(middleware),
    )


class _Respond(Exception):
    """Ends the request flow with a prepared response."""

    def __init__(self, response: web.StreamResponse) -> None:
        super().__init__()
        self.response = response


def _json_response(status: int, body: bytes, headers: list[tuple[str, str]] | None = None) -> web.Response:
    response = web.Response(status=status, body=body, content_type=_JSON)
    if headers:
        for name, value in headers:
            response.headers.add(name, value)
    return response


def _error(status: int, code: str, message: str, error_id: str | None = None) -> web.Response:
    return _json_response(status, error_envelope(code, message, error_id))


def _from_buffered(buffered: BufferedResponse) -> web.Response:
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in buffered.headers:
        if name.lower() not in _HOP_HEADERS:
            headers.add(name, value)
    return web.Response(status=buffered.status, body=buffered.body, headers=headers)


#: The interim response to ``Expect: 100-continue``.
_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"


def _text(value: str) -> str:
    """A request header value as Unicode text.

    aiohttp decodes header bytes as UTF-8 and keeps the bytes that are not (``obs-text`` such as
    Latin-1 ``\\xe9``) as lone surrogates, which no JSON frame and no response header can carry
    (the request failed with a 500 and a traceback). They become U+FFFD, as in the path and the
    query string, which aiohttp decodes that way.
    """
    if value.isascii():
        return value
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _header(request: web.BaseRequest, name: str) -> str | None:
    value = request.headers.get(name)
    return None if value is None else _text(value)


def _request_headers(request: web.BaseRequest) -> dict[str, Any]:
    headers: dict[str, Any] = {}
    for name, raw in request.headers.items():
        key = name.lower()
        value = _text(raw)
        seen = headers.get(key)
        if seen is None:
            headers[key] = value
        elif isinstance(seen, list):
            seen.append(value)
        else:
            headers[key] = [seen, value]
    return headers


def _query_params(request: web.BaseRequest) -> dict[str, str]:
    params: dict[str, str] = {}
    for name, value in request.rel_url.query.items():
        params[name] = value  # the last value wins (protocol.md §6.6)
    return params


class _BodyFailure:
    """Set by the task streaming a request body when the body cannot be delivered whole."""

    __slots__ = ("event", "response")

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.response: web.Response | None = None

    def fail(self, response: web.Response) -> None:
        if self.response is None:
            self.response = response
            self.event.set()


class _Head:
    """Status, headers and first chunk of a streamed response (option B)."""

    __slots__ = ("chunk", "headers", "status")

    def __init__(self) -> None:
        self.status = 200
        self.headers: list[tuple[str, str]] = []
        self.chunk: bytes | None = None

    def control(self, text: str) -> None:
        try:
            message = loads(text.encode("utf-8", "surrogatepass"))
        except ValueError:
            log.debug("non-JSON text frame on a response channel ignored: %.80r", text)
            return
        if not isinstance(message, dict):
            return
        kind = message.get("type")
        try:
            if kind == "set_status":
                self.status = parse_status(message.get("status_code"))
            elif kind == "set_headers":
                pairs = parse_headers(message.get("headers"))
                names = {name.lower() for name, _ in pairs}
                self.headers = [(n, v) for n, v in self.headers if n.lower() not in names] + pairs
        except InvalidResponseError as exc:
            log.warning("response channel: %s frame ignored: %s", kind, exc)


async def _read_head(items: AsyncIterator[bytes | str], head: _Head) -> _Head:
    """Consume control frames until the first binary chunk or the end of the channel."""
    async for item in items:
        if isinstance(item, str):
            head.control(item)
        else:
            head.chunk = bytes(item)
            return head
    return head


class HttpWorker(BuiltinWorker):
    """The ``http`` trigger type and its REST listener (see the module docstring)."""

    name: ClassVar[str] = "iii-http"
    section: ClassVar[str] = "http"
    description: ClassVar[str] = "REST API: routes of http triggers on the http port"
    default_enabled: ClassVar[bool] = True
    order: ClassVar[int] = 60

    def __init__(self, services: EngineServices) -> None:
        super().__init__(services)
        self.settings: HttpSettings = parse_settings(services.section(self.section))
        self.routes = RouteTable()
        self.url: str | None = None
        self._configs: dict[str, RouteConfig] = {}
        self._runner: web.ServerRunner | None = None
        self._slots: asyncio.Semaphore | None = None
        self._inflight = 0
        self._channels: EngineChannelFactory | None = None

    # -- trigger type ----------------------------------------------------------------------
    def trigger_types(self) -> list[BuiltinTriggerType]:
        """The ``http`` trigger type."""
        return [
            BuiltinTriggerType(
                id="http",
                description="HTTP requests on the REST API port",
                register=self._register,
                unregister=self._unregister,
                trigger_request_format=TRIGGER_CONFIG_SCHEMA,
                call_request_format=CALL_REQUEST_SCHEMA,
            )
        ]

    async def _register(self, binding: TriggerBinding) -> None:
        config = validate_trigger_config(binding.config)
        try:
            self.routes.add(binding, config.method, config.api_path)
        except RouteConflictError as exc:
            raise TriggerRegistrationError(str(exc)) from None
        self._configs[binding.id] = config
        log.info(
            "route %s %s → %s (trigger %s)", config.method, config.api_path, binding.function_id, binding.id
        )

    async def _unregister(self, binding: TriggerBinding) -> None:
        if self.routes.remove(binding.id):
            config = self._configs.pop(binding.id, None)
            if config is not None:
                log.info("route %s %s removed (trigger %s)", config.method, config.api_path, binding.id)

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Bind the http port, start serving and advertise ``http`` on the ready line."""
        config = self.services.config
        self._slots = asyncio.Semaphore(self.settings.concurrency)
        self._channels = locate(self.services)
        if self._channels is None:
            log.warning("no channels built-in: http handlers get no request_body/response channels")
        server = HttpServer(
            self._handle,
            header_read_timeout=self.settings.header_read_timeout,
            keepalive_timeout=self.settings.keepalive_timeout,
            access_log=None,
            handler_cancellation=False,
        )
        runner = web.ServerRunner(server, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        try:
            sock = _bind(config.host, config.http_port)
        except OSError as exc:
            await runner.cleanup()
            raise OSError(
                exc.errno, f"http port {config.host}:{config.http_port}: {exc.strerror or exc}"
            ) from exc
        try:
            site = web.SockSite(runner, sock, backlog=1024)
            await site.start()
        except BaseException:
            sock.close()
            await runner.cleanup()
            raise
        self._runner = runner
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{port}"
        self.services.advertise("http", self.url)
        log.info("http listening on %s", self.url)

    async def stop(self) -> None:
        """Stop the listener (open requests get up to 1 s)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    # -- requests --------------------------------------------------------------------------
    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.timeout
        cors = self.settings.cors
        origin = _header(request, "Origin") if cors is not None else None
        try:
            if (
                origin is not None
                and request.method == "OPTIONS"
                and "Access-Control-Request-Method" in request.headers
            ):
                response: web.StreamResponse = self._preflight(request, origin)
            else:
                # a request with a `traceparent` header continues that trace (protocol.md §4.5)
                traceparent, baggage = _header(request, "traceparent"), _header(request, "baggage")
                with self.services.trace_context(traceparent, baggage):
                    response = await self._route(request, deadline, origin)
        except _Respond as answer:
            response = answer.response
        except CLIENT_ERRORS as exc:
            # The request body could not be read to its end: bad framing, or the client left.
            response = self._client_error(request, exc)
        except Exception:
            error_id = uuid.uuid4().hex[:16]
            log.exception("http request %s %s failed (error_id %s)", request.method, request.path, error_id)
            response = _error(500, "INTERNAL_ERROR", "Internal Server Error", error_id)
        if origin is not None and not response.prepared:
            self._cors_headers(response, origin)
        return response

    @staticmethod
    def _client_error(request: web.BaseRequest, exc: BaseException) -> web.Response:
        """The answer to a request whose body failed (``400``, the connection is closed).

        A client that went away gets nothing (the response cannot be sent) and one INFO line.
        """
        reason = describe_client_error(exc)
        if isinstance(exc, ConnectionError):
            log.info("http %s %s: the client went away: %s", request.method, request.path, reason)
        else:
            log.info("http %s %s: bad request body: %s", request.method, request.path, reason)
        response = web.Response(status=400, text=f"{reason}\n", content_type="text/plain")
        response.force_close()
        return response

    async def _route(
        self, request: web.BaseRequest, deadline: float, origin: str | None
    ) -> web.StreamResponse:
        found = self.routes.match(request.method, request.rel_url.raw_path)
        if found is None:
            return _error(404, "NOT_FOUND", "Not Found")
        route, path_params = found
        slots = self._slots
        assert slots is not None
        try:
            if slots.locked():
                async with asyncio.timeout_at(deadline):
                    await slots.acquire()
            else:
                await slots.acquire()  # a free slot: no timer needed
        except TimeoutError:
            return _error(
                503,
                "CONCURRENCY_LIMIT",
                f"Too many concurrent requests (concurrency_request_limit is {self.settings.concurrency})",
            )
        self._inflight += 1
        try:
            return await self._serve(request, route, path_params, deadline, origin)
        finally:
            self._inflight -= 1
            slots.release()

    async def _serve(
        self,
        request: web.BaseRequest,
        route: Route,
        path_params: dict[str, str],
        deadline: float,
        origin: str | None,
    ) -> web.StreamResponse:
        binding = route.binding
        config = self._configs.get(binding.id) or validate_trigger_config(binding.config)
        limit = self.settings.max_body_bytes
        length = request.content_length
        if length is not None and length > limit:
            return self._too_large()
        if request.version == HttpVersion11 and (_header(request, "Expect") or "").lower() == "100-continue":
            # The client waits for this before it sends the body (RFC 9110 §10.1.1); refusals
            # above (404, 413) are final answers instead.
            await request.writer.write(_CONTINUE)
            request.writer.output_size = 0  # the response itself has not started
        headers = _request_headers(request)
        query = _query_params(request)
        content_type = request.headers.get("Content-Type", "")
        is_json = _JSON in content_type.lower()
        factory = self._channels
        # JSON bodies are parsed for `body`, so they are read whole; other bodies are streamed
        # into the request channel as they arrive.
        raw: bytes | None = None
        if is_json or factory is None:
            try:
                async with asyncio.timeout_at(deadline):
                    raw = await self._read_body(request, limit)
            except TimeoutError:
                return web.Response(status=504)  # the client did not send its body in time
        request_info = {
            "headers": headers,
            "method": request.method,
            "path_params": path_params,
            "query_params": query,
        }
        for entry in self.settings.middleware:
            await self._middleware(entry.function_id, "default", request_info, deadline)
        body: Any = None
        if is_json and raw:
            try:
                body = loads(raw)
            except ValueError:
                log.debug(
                    "request body of %s %s is not valid JSON: body is null", request.method, request.path
                )
        payload: dict[str, Any] = {
            "body": body,
            "headers": headers,
            "method": request.method,
            "path": config.api_path,
            "path_params": path_params,
            "query_params": query,
            "trigger": {"method": route.method, "path": config.api_path, "type": "http"},
        }
        channels: list[EngineChannel] = []
        feeder: asyncio.Task[None] | None = None
        body_failure = _BodyFailure()
        try:
            if factory is not None:
                request_channel = factory.create_channel(owner=self.name)
                channels.append(request_channel)
                response_channel = factory.create_channel(owner=self.name)
                channels.append(response_channel)
                if raw is not None and len(raw) <= _INLINE_FEED_BYTES:
                    # One item always fits an empty channel: written at once, no task needed.
                    await self._feed(request_channel, request, raw, limit, body_failure)
                else:
                    feeder = asyncio.get_running_loop().create_task(
                        self._feed(request_channel, request, raw, limit, body_failure),
                        name="http-request-body",
                    )
            if config.condition_function_id is not None:
                await self._condition(config.condition_function_id, binding, payload, deadline)
            for function_id in config.middleware_function_ids:
                await self._middleware(function_id, binding.namespace, request_info, deadline)
            if factory is not None:
                payload["request_body"] = channels[0].reader_ref
                payload["response"] = channels[1].writer_ref
                payload["trigger"] = payload.pop("trigger")  # keys in sorted order, like E07
                watch = body_failure if feeder is not None and raw is None else None
                return await self._exchange(request, binding, payload, channels[1], deadline, watch, origin)
            return await self._buffered_only(binding, payload, deadline)
        finally:
            if feeder is not None:
                feeder.cancel()
            for channel in channels:
                try:
                    channel.discard()
                except Exception:
                    log.exception("discarding an http channel failed")

    # -- request body ------------------------------------------------------------------------
    def _too_large(self) -> web.Response:
        limit = self.settings.max_body_bytes
        response = _error(
            413, "PAYLOAD_TOO_LARGE", f"Request body is larger than {limit} bytes (max_body_bytes)"
        )
        response.force_close()  # the rest of the body is not read: the connection cannot be reused
        return response

    async def _read_body(self, request: web.BaseRequest, limit: int) -> bytes:
        if not request.body_exists:
            return b""
        chunks: list[bytes] = []
        total = 0
        async for chunk in request.content.iter_any():
            total += len(chunk)
            if total > limit:
                raise _Respond(self._too_large())
            chunks.append(chunk)
        return b"".join(chunks)

    async def _feed(
        self,
        channel: EngineChannel,
        request: web.BaseRequest,
        raw: bytes | None,
        limit: int,
        failure: _BodyFailure,
    ) -> None:
        """Write the raw request body into the ``request_body`` channel, then end it (B10).

        A streamed body over ``limit``, with broken framing or cut by the client ends in
        ``failure`` (the request is answered 413 / 400). Stops quietly when the channel cannot
        take more (its reader went away, or the request is over and the channel was discarded).
        """
        try:
            if raw is not None:
                view = memoryview(raw)
                for start in range(0, len(view), CHUNK_BYTES):
                    await channel.send(bytes(view[start : start + CHUNK_BYTES]))
            else:
                total = 0
                chunks = request.content.iter_chunked(CHUNK_BYTES)
                while True:
                    try:
                        chunk = await anext(chunks)
                    except StopAsyncIteration:
                        break
                    except CLIENT_ERRORS as exc:
                        failure.fail(self._client_error(request, exc))
                        return
                    total += len(chunk)
                    if total > limit:
                        failure.fail(self._too_large())
                        return
                    await channel.send(chunk)
            await channel.end()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.debug("request body not fully delivered to its channel: %s", exc)

    # -- middleware and condition ------------------------------------------------------------
    async def _call(
        self, function_id: str, namespace: str, data: Any, deadline: float, *, middleware: bool
    ) -> Any:
        try:
            async with asyncio.timeout_at(deadline):
                return await self.services.invoke(function_id, data, namespace=namespace)
        except TimeoutError:
            if middleware:
                raise _Respond(_error(504, "MIDDLEWARE_TIMEOUT", "Middleware timeout")) from None
            raise _Respond(web.Response(status=504)) from None
        except InvocationError as exc:
            log.warning("http: %s failed: %s: %s", function_id, exc.code, exc.message)
            raise _Respond(_error(500, exc.code, exc.message)) from None

    async def _middleware(
        self, function_id: str, namespace: str, request_info: dict[str, Any], deadline: float
    ) -> None:
        data = {"context": {}, "phase": "preHandler", "request": request_info}
        result = await self._call(function_id, namespace, data, deadline, middleware=True)
        action = result.get("action") if isinstance(result, Mapping) else None
        if action == "continue":
            return
        if action == "respond":
            try:
                answer = buffered_response(result.get("response") or {})
            except InvalidResponseError as exc:
                raise _Respond(_error(500, "INVALID_MIDDLEWARE_RESPONSE", f"{function_id}: {exc}")) from None
            raise _Respond(_from_buffered(answer))
        raise _Respond(
            _error(
                500,
                "INVALID_MIDDLEWARE_RESPONSE",
                f'{function_id} must return {{"action": "continue"}} or {{"action": "respond", "response": '
                f"{{...}}}}, got {result!r:.200}",
            )
        )

    async def _condition(
        self, function_id: str, binding: TriggerBinding, payload: dict[str, Any], deadline: float
    ) -> None:
        result = await self._call(function_id, binding.namespace, payload, deadline, middleware=False)
        if result is False:
            raise _Respond(_json_response(422, CONDITION_NOT_MET))

    # -- the handler ---------------------------------------------------------------------------
    async def _invoke(self, binding: TriggerBinding, payload: dict[str, Any]) -> Any:
        return await self.services.invoke(
            binding.function_id, payload, namespace=binding.namespace, metadata=binding.metadata
        )

    @staticmethod
    def _answer(binding: TriggerBinding, result: Any, error: BaseException | None = None) -> web.Response:
        """The HTTP response for a handler's result (option A) or its error (500)."""
        if isinstance(error, InvocationError):
            log.info("http handler %s failed: %s: %s", binding.function_id, error.code, error.message)
            return _error(500, error.code, error.message)
        if error is not None:
            raise error
        try:
            return _from_buffered(buffered_response(result))
        except InvalidResponseError as err:
            log.warning("http handler %s returned an invalid response: %s", binding.function_id, err)
            return _error(500, "INVALID_RESPONSE", f"{binding.function_id}: {err}")

    async def _buffered_only(
        self, binding: TriggerBinding, payload: dict[str, Any], deadline: float
    ) -> web.StreamResponse:
        """Without channels: the handler's result is the response (``null`` → 200 ``{}``)."""
        try:
            async with asyncio.timeout_at(deadline):
                result = await self._invoke(binding, payload)
        except TimeoutError:
            return web.Response(status=504)  # the cancelled call's late result is dropped
        except InvocationError as exc:
            return self._answer(binding, None, exc)
        return self._answer(binding, {} if result is None else result)

    async def _exchange(
        self,
        request: web.BaseRequest,
        binding: TriggerBinding,
        payload: dict[str, Any],
        channel: EngineChannel,
        deadline: float,
        body_failure: _BodyFailure | None,
        origin: str | None,
    ) -> web.StreamResponse:
        """Invoke the handler and answer with its result (A) or its response channel (B)."""
        loop = asyncio.get_running_loop()
        invoke = loop.create_task(self._invoke(binding, payload), name=f"http:{binding.function_id}")
        items = aiter(channel)
        head = _Head()
        head_task = loop.create_task(_read_head(items, head), name="http-response-head")
        waiting: set[asyncio.Future[Any]] = {invoke, head_task}
        oversize: asyncio.Task[Any] | None = None
        if body_failure is not None:  # a streamed request body may still prove too large or broken
            oversize = loop.create_task(body_failure.event.wait(), name="http-body-failure")
            waiting.add(oversize)
        streamed = False
        try:
            try:
                async with asyncio.timeout_at(deadline):
                    while True:
                        done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                        if oversize is not None and oversize in done and body_failure is not None:
                            return body_failure.response or self._too_large()
                        if head_task in done and (head.chunk is not None or invoke not in done):
                            break  # option B: the body started (or the channel closed) first
                        if invoke in done:
                            error = invoke.exception()
                            if error is not None or invoke.result() is not None:
                                return self._answer(binding, None if error else invoke.result(), error)
                            waiting.discard(invoke)  # null result: the response channel decides
                        if head_task in done:
                            break
            except TimeoutError:
                return web.Response(status=504)
            streamed = True
            return await self._stream(request, head, items, origin)
        finally:
            if oversize is not None:
                oversize.cancel()
            head_task.cancel()
            if not invoke.done():
                if streamed:
                    # The response went out through the channel before the handler returned:
                    # let it finish, its result is ignored.
                    invoke.add_done_callback(_log_late_failure)
                else:
                    invoke.cancel()  # timeout or error: the late result is dropped

    async def _stream(
        self, request: web.BaseRequest, head: _Head, items: AsyncIterator[bytes | str], origin: str | None
    ) -> web.StreamResponse:
        response = web.StreamResponse(status=head.status)
        for name, value in head.headers:
            if name.lower() not in _HOP_HEADERS:
                response.headers.add(name, value)
        if head.chunk is None:
            response.content_length = 0
        else:
            response.enable_chunked_encoding()
        if origin is not None:
            self._cors_headers(response, origin)
        await response.prepare(request)
        if head.chunk is not None:
            try:
                await response.write(head.chunk)
                async for item in items:
                    if isinstance(item, str):
                        continue  # headers are already sent
                    await response.write(item)
            except ConnectionError:
                log.info("http client went away during a streamed response to %s", request.path)
                return response
        await response.write_eof()
        return response

    # -- CORS --------------------------------------------------------------------------------
    def _preflight(self, request: web.BaseRequest, origin: str) -> web.Response:
        cors = self.settings.cors
        assert cors is not None
        response = web.Response(status=204)
        requested = request.headers.get("Access-Control-Request-Method", "").upper()
        method_ok = not cors.allowed_methods or requested in cors.allowed_methods
        if cors.origin_allowed(origin) and method_ok:
            methods = cors.allowed_methods or tuple(sorted(HTTP_METHODS))
            response.headers["Access-Control-Allow-Methods"] = ", ".join(methods)
            asked = _header(request, "Access-Control-Request-Headers")
            if asked:
                response.headers["Access-Control-Allow-Headers"] = asked
            response.headers["Access-Control-Max-Age"] = "600"
        return response

    def _cors_headers(self, response: web.StreamResponse, origin: str) -> None:
        cors = self.settings.cors
        if cors is None or not cors.origin_allowed(origin):
            return
        wildcard = not cors.allowed_origins or "*" in cors.allowed_origins
        response.headers["Access-Control-Allow-Origin"] = "*" if wildcard else origin
        if not wildcard:
            response.headers.add("Vary", "Origin")


def _log_late_failure(task: asyncio.Task[Any]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        log.info("http handler finished after its response was sent: %s", exc)


def _bind(host: str, port: int) -> socket.socket:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, address = infos[0]
    return socket.create_server(address, family=family, backlog=1024)


BUILTIN = HttpWorker
