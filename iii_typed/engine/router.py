"""The engine core: the worker protocol on ``/`` and the services built-in workers use.

:class:`Router` receives each message a worker sends (protocol.md §2, §3, §4) and

* decodes it strictly with the protocol codec — a frame with an unknown ``type``, a missing
  required field (``data``, ``config``, ``description``…) or a bad UUID is dropped with one
  WARNING, like the real engine does (§12 item 2, §12b item 2); the connection stays open;
* routes ``invokefunction`` on the envelope by ``(namespace or "default", function_id)``: the
  decoded frame is forwarded with its ``data`` untouched except for ``_caller_worker_id``
  injected into object payloads (§4.3) — no payload validation on the routing path (perf.md §6);
* buffers registrations until ``engine::workers::register`` fixes the connection's namespace, or
  the grace timer (``III_NAMESPACE_GRACE_MS``, default 5 s) falls back to ``default`` (§3.4);
* enforces one live owner per ``(namespace, function_id)`` and per ``(namespace, worker name)``
  (§3.5), honours ``reattach`` (§2.12, cases.md B03) and cleans up on disconnect (§3.6).

It also implements :class:`~iii_typed.engine.builtins.base.EngineServices`. Engine-originated
calls made while a built-in handler runs (triggers it fires, conditions, overrides it calls)
carry that call's ``traceparent``/``baggage`` (§4.5): the handler's context is kept in a context
variable for the handler's duration; :meth:`Router.spawn` runs tasks without it.
"""

from __future__ import annotations

import asyncio
import contextvars
import hmac
import logging
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from uuid import UUID, uuid4

from pydantic_core import PydanticSerializationError
from websockets.protocol import State

from ..errors import FrameDecodeError, InvocationError, error_from_body
from ..protocol import codec
from ..protocol.frames import (
    DEFAULT_NAMESPACE,
    MAX_MESSAGE_BYTES,
    ErrorBody,
    FrameModel,
    InvocationResult,
    InvokeFunction,
    Ping,
    Pong,
    Reattach,
    RegisterFunction,
    RegisterService,
    RegisterTrigger,
    RegisterTriggerType,
    RegistrationRejected,
    TriggerRegistrationResult,
    UnregisterFunction,
    UnregisterTrigger,
    UnregisterTriggerType,
    WorkerRegistered,
)
from . import limits
from .builtins.base import (
    JSON_NULL,
    BuiltinError,
    BuiltinWorker,
    CallContext,
    HealthComponent,
    HttpFunctionInvoker,
    HttpFunctionValidator,
    InvocationObserver,
    TelemetryConnectionListener,
    TelemetrySink,
    TriggerBinding,
    WebSocketRoute,
    WorkerMetricsSource,
    parse_input,
    valid_traceparent,
)
from .connection import Pending, WorkerConnection, sanitize_text
from .functions import FunctionEntry, FunctionRegistry
from .triggers import INVALID_NAMESPACE_MESSAGE, TriggerRegistry

if TYPE_CHECKING:
    from websockets.asyncio.server import ServerConnection

    from ..protocol._generated.engine import WorkersRegisterInput
    from .config import EngineConfig

__all__ = [
    "DUPLICATE_INVOCATION_ID",
    "ENQUEUE_FUNCTION",
    "NO_QUEUE_PROVIDER_MESSAGE",
    "TELEMETRY_PREFIXES",
    "Router",
]

log = logging.getLogger("iii_typed.engine")

#: Binary frames with these 4-byte prefixes are telemetry, on ``/`` and ``/otel`` (§1.2, §8).
TELEMETRY_PREFIXES: Final = frozenset({b"OTLP", b"MTRC", b"LOGS"})
#: The provider every ``enqueue`` action routes through (§4.1).
ENQUEUE_FUNCTION: Final = "engine::queue::enqueue"
#: The real engine's ``enqueue_error`` message when no queue provider is installed (§4.1).
NO_QUEUE_PROVIDER_MESSAGE: Final = (
    "No queue provider is installed. `TriggerAction::Enqueue` routes through the "
    "`engine::queue::enqueue` provider, which the standalone queue worker registers. "
    "Add it with `iii worker add queue`. (underlying: Function engine::queue::enqueue not found "
    "in namespace default)"
)
_STOPPED: Final = "Invocation stopped"
#: Error code answering a call whose ``invocation_id`` is still in flight at the same callee.
DUPLICATE_INVOCATION_ID: Final = "DUPLICATE_INVOCATION_ID"
_REATTACH_WAIT: Final = 5.0
_UNSET: Any = object()
#: ``(traceparent, baggage)`` of the built-in call being served in this task (§4.5); engine-
#: originated calls made without an explicit context carry it. ``None`` outside any call.
_CALL_TRACE: Final[contextvars.ContextVar[tuple[str | None, str | None] | None]] = contextvars.ContextVar(
    "iii_engine_call_trace", default=None
)
_REGISTRATIONS: Final = (
    RegisterFunction,
    UnregisterFunction,
    RegisterTriggerType,
    UnregisterTriggerType,
    RegisterTrigger,
    UnregisterTrigger,
    RegisterService,
)


class Router:
    """The worker-protocol core and the built-in services (see the module docstring).

    Args:
        config: The engine configuration.
        version: Engine version reported by ``engine::health::check`` and for built-ins.

    Attributes:
        workers: Every connection by worker id (until its cleanup has finished).
        functions: The function registry.
        triggers: The trigger-type registry.
        builtin_workers: The running built-in workers, in start order.
        started_at_ms: Engine start, Unix milliseconds.
    """

    def __init__(self, config: EngineConfig, version: str) -> None:
        self._config = config
        self.version = version
        self.workers: dict[str, WorkerConnection] = {}
        self.functions = FunctionRegistry()
        self.triggers = TriggerRegistry(self)
        self.builtin_workers: list[BuiltinWorker] = []
        self.names: dict[tuple[str, str], WorkerConnection] = {}
        self.started_at_ms = int(time.time() * 1000)
        self.stopping = False
        self.advertised: dict[str, str] = {}
        self.ws_routes: list[WebSocketRoute] = []
        self.health_probes: dict[str, Callable[[], HealthComponent]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._telemetry_sink: TelemetrySink | None = None
        self._telemetry_listener: TelemetryConnectionListener | None = None
        self._observer: InvocationObserver | None = None
        self._worker_metrics: WorkerMetricsSource | None = None
        self._http_invoker: HttpFunctionInvoker | None = None
        self._http_validator: HttpFunctionValidator | None = None
        self._disconnect_callbacks: list[Callable[[str], None]] = []
        self._grace = config.namespace_grace_ms / 1000.0
        self._debug = log.isEnabledFor(logging.DEBUG)
        self._handlers: dict[type[Any], Callable[[WorkerConnection, Any], Coroutine[Any, Any, None]]] = {
            InvokeFunction: self._on_invoke,
            InvocationResult: self._on_result,
            Ping: self._on_ping,
            Reattach: self._on_reattach,
            TriggerRegistrationResult: self._on_trigger_result,
        }
        for kind in _REGISTRATIONS:
            self._handlers[kind] = self._on_registration
        self._apply: dict[type[Any], Callable[[WorkerConnection, Any], Coroutine[Any, Any, None]]] = {
            RegisterFunction: self._register_function,
            UnregisterFunction: self._unregister_function,
            RegisterTriggerType: self._register_trigger_type,
            UnregisterTriggerType: self._unregister_trigger_type,
            RegisterTrigger: self._register_trigger,
            UnregisterTrigger: self._unregister_trigger,
            RegisterService: self._register_service,
        }

    # ======================================================================================
    # Built-in workers
    # ======================================================================================
    def install(self, worker: BuiltinWorker) -> None:
        """Add a built-in worker's functions and trigger types (before :meth:`BuiltinWorker.start`)."""
        for function in worker.functions():
            self.functions.add_builtin(
                FunctionEntry(
                    id=function.id,
                    namespace=DEFAULT_NAMESPACE,
                    description=function.description,
                    request_format=function.request_format,
                    response_format=function.response_format,
                    metadata=function.metadata,
                    builtin=function,
                    builtin_worker=worker.name,
                )
            )
        for trigger_type in worker.trigger_types():
            self.triggers.add_builtin_type(trigger_type, worker.name)
        self.builtin_workers.append(worker)

    # ======================================================================================
    # Connection lifecycle
    # ======================================================================================
    async def connected(self, ws: ServerConnection) -> WorkerConnection:
        """A worker socket was upgraded on ``/`` (§3.1): send ``workerregistered``, fire the event."""
        conn = WorkerConnection(ws, str(uuid4()), str(uuid4()))
        conn.stall_timeout = self._config.stall_timeout_ms / 1000
        self.workers[conn.id] = conn
        conn.grace_handle = asyncio.get_running_loop().call_later(self._grace, self._grace_expired, conn)
        frame = WorkerRegistered(
            type="workerregistered", worker_id=conn.id, reattach_token=conn.reattach_token
        )
        await conn.send(codec.encode(frame))
        log.info("worker %s connected from %s", conn.id, conn.ip_address)
        observer = self._observer
        if observer is not None:
            observer.worker_connected(conn.id)
        self._workers_available("worker_connected", conn.id)
        return conn

    async def disconnected(self, conn: WorkerConnection) -> None:
        """The socket's read loop ended: run the cleanup of §3.6 (once)."""
        await self._cleanup(conn)

    async def _cleanup(self, conn: WorkerConnection) -> None:
        if conn.closing:
            return
        conn.closing = True
        if conn.grace_handle is not None:
            conn.grace_handle.cancel()
            conn.grace_handle = None
        conn.buffer.clear()
        for key in list(conn.functions):
            self.functions.remove(key, conn)
        conn.functions.clear()
        executing = list(conn.executing.items())
        conn.executing.clear()
        for invocation_id, pending in executing:
            self._stop_pending(invocation_id, pending)
        try:
            await self.triggers.owner_gone(conn)
            await self.triggers.provider_gone(conn)
        except Exception:
            log.exception("trigger cleanup of worker %s failed", conn.id)
        conn.services.clear()
        lease = conn.name_lease
        if lease is not None and self.names.get(lease) is conn:
            del self.names[lease]
        conn.name_lease = None
        for callback in self._disconnect_callbacks:
            try:
                callback(conn.id)
            except Exception:
                log.exception("disconnect callback failed for worker %s", conn.id)
        if self.workers.get(conn.id) is conn:
            del self.workers[conn.id]
        log.info("worker %s (%s) disconnected", conn.id, conn.name or "unnamed")
        if not self.stopping:
            self._workers_available("worker_disconnected", conn.id)

    def halt_invocations(self) -> int:
        """Shutdown: answer every in-flight invocation ``invocation_stopped`` now (§3.6).

        Called before the sockets are closed, so a waiting caller hears why its call ended (the
        answer is written ahead of the close frame) and engine-originated calls (queue
        deliveries, HTTP requests) fail at once instead of waiting for a socket to go.

        Returns:
            The number of invocations halted.
        """
        halted = 0
        for conn in list(self.workers.values()):
            executing = list(conn.executing.items())
            conn.executing.clear()
            for invocation_id, pending in executing:
                self._stop_pending(invocation_id, pending)
                halted += 1
        return halted

    def _stop_pending(self, invocation_id: UUID, pending: Pending) -> None:
        """Answer ``invocation_stopped`` for an invocation whose callee went away (§3.6)."""
        self._finished(pending, "invocation_stopped")
        future = pending.future
        if future is not None:
            if not future.done():
                future.set_exception(
                    InvocationError("invocation_stopped", _STOPPED, function_id=pending.function_id)
                )
            return
        caller = pending.caller
        if caller is None or not caller.live:
            return
        frame = InvocationResult(
            type="invocationresult",
            invocation_id=invocation_id,
            function_id=pending.function_id,
            error=ErrorBody(code="invocation_stopped", message=_STOPPED),
        )
        self._echo_trace(frame, pending.traceparent, pending.baggage)
        self.spawn(caller.send(codec.encode(frame)), name="invocation-stopped")

    def _grace_expired(self, conn: WorkerConnection) -> None:
        conn.grace_handle = None
        if conn.namespace is not None or conn.closing:
            return
        log.warning(
            "worker %s did not call engine::workers::register within %d ms; its registrations go to "
            "namespace 'default'",
            conn.id,
            self._config.namespace_grace_ms,
        )
        self._fix_namespace(conn, DEFAULT_NAMESPACE)
        self.spawn(self._drain(conn), name="namespace-grace")

    def _fix_namespace(self, conn: WorkerConnection, namespace: str) -> None:
        """Set a pending connection's namespace; registrations now queue behind the buffer."""
        if conn.grace_handle is not None:
            conn.grace_handle.cancel()
            conn.grace_handle = None
        conn.namespace = namespace
        conn.draining = True

    async def _drain(self, conn: WorkerConnection) -> None:
        """Apply the buffered registrations in arrival order (including any queued meanwhile)."""
        try:
            while conn.buffer and not conn.closing:
                frame = conn.buffer.pop(0)
                try:
                    await self._apply[type(frame)](conn, frame)
                except Exception:
                    log.exception("applying buffered %s from worker %s failed", frame.type, conn.id)
        finally:
            conn.draining = False

    async def set_namespace(self, conn: WorkerConnection, namespace: str) -> None:
        """Fix a pending connection namespace and apply its buffered registrations in order (§3.4)."""
        if conn.namespace is not None:
            return
        self._fix_namespace(conn, namespace)
        await self._drain(conn)

    # ======================================================================================
    # Inbound messages
    # ======================================================================================
    async def handle(self, conn: WorkerConnection, message: bytes) -> None:
        """Process one message received on ``/`` (text or binary)."""
        if message[:4] in TELEMETRY_PREFIXES:
            self.telemetry(message)
            return
        if not message or message.isspace():
            return
        if len(message) > MAX_MESSAGE_BYTES:
            log.warning(
                "dropped a %d-byte message from worker %s: over the %d-byte limit (the real engine "
                "closes the connection here)",
                len(message),
                conn.id,
                MAX_MESSAGE_BYTES,
            )
            text = f"the message is {len(message)} bytes, over the engine's {MAX_MESSAGE_BYTES}-byte limit"
            await self._refuse(
                conn, message, "payload_too_large", text + "; send large data through a channel"
            )
            return
        try:
            frame = codec.decode(message)
        except FrameDecodeError as exc:
            log.warning("dropped a frame from worker %s: %s (the real iii engine drops it too)", conn.id, exc)
            if exc.reason == "json" and limits.too_deep(str(exc)):
                text = f"the message nests deeper than the engine's limit of {limits.JSON_DEPTH_LIMIT} levels"
                await self._refuse(conn, message, "payload_too_deep", text)
            return
        if self._debug:
            log.debug("← %s %s", conn.id, frame.type)
        handler = self._handlers.get(type(frame))
        if handler is not None:
            await handler(conn, frame)

    def telemetry(self, message: bytes) -> None:
        """A binary telemetry frame (``OTLP``/``MTRC``/``LOGS`` prefix) from ``/`` or ``/otel``."""
        sink = self._telemetry_sink
        if sink is None:
            if self._debug:
                log.debug(
                    "telemetry frame %r of %d bytes dropped (no telemetry sink)", message[:4], len(message)
                )
            return
        try:
            sink(bytes(message[:4]), bytes(message[4:]))
        except Exception:
            log.exception("telemetry sink failed")

    def telemetry_connection(self, opened: bool) -> None:
        """A ``/otel`` socket opened (``True``) or closed (``False``)."""
        listener = self._telemetry_listener
        if listener is not None:
            try:
                listener(opened)
            except Exception:
                log.exception("telemetry connection listener failed")

    # -- invocation observer (telemetry) -----------------------------------------------------
    def _started(
        self,
        function_id: str,
        namespace: str,
        kind: str,
        caller: str | None,
        callee: str | None,
        traceparent: str | None,
        baggage: str | None,
    ) -> object:
        observer = self._observer
        if observer is None:
            return None
        try:
            return observer.invocation_started(
                function_id,
                namespace,
                kind=kind,
                caller_worker_id=caller,
                callee_worker_id=callee,
                traceparent=traceparent,
                baggage=baggage,
            )
        except Exception:
            log.exception("invocation observer failed")
            return None

    def _finished(self, pending: Pending | None, error_code: str | None, token: object = None) -> None:
        if pending is not None:
            token, pending.token = pending.token, None
        observer = self._observer
        if token is None or observer is None:
            return
        try:
            observer.invocation_finished(token, error_code)
        except Exception:
            log.exception("invocation observer failed")

    def worker_metrics(self, worker_id: str) -> Mapping[str, Any] | None:
        """The latest resource metrics ``worker_id`` reported (``latest_metrics``), if any."""
        source = self._worker_metrics
        if source is None:
            return None
        try:
            return source(worker_id)
        except Exception:
            log.exception("worker metrics source failed")
            return None

    async def _on_ping(self, conn: WorkerConnection, frame: Ping) -> None:
        await conn.send(codec.encode(Pong(type="pong")))

    async def _refuse(self, conn: WorkerConnection, message: bytes, code: str, text: str) -> None:
        """Answer an undecodable ``invokefunction`` with ``code`` when its envelope names the call."""
        reply = limits.refusal(message, code, text)
        if reply is not None:
            await conn.send(reply)

    async def _over_limit(self, conn: WorkerConnection, frame: FrameModel) -> bool:
        """Refuse a registration beyond ``max_registrations_per_worker`` (limits module)."""
        if not isinstance(frame, (RegisterFunction, RegisterTriggerType, RegisterTrigger, RegisterService)):
            return False
        namespace = conn.namespace or DEFAULT_NAMESPACE
        if isinstance(frame, RegisterTrigger):
            if frame.id in conn.trigger_ids:
                return False
        elif isinstance(frame, RegisterFunction):
            if (namespace, frame.id) in conn.functions:
                return False
        elif isinstance(frame, RegisterTriggerType):
            if (namespace, frame.id) in conn.trigger_types:
                return False
        elif (namespace, frame.id) in conn.services:
            return False
        limit = self._config.max_registrations_per_worker
        count = (
            len(conn.functions) + len(conn.trigger_types) + len(conn.trigger_ids) + len(conn.services)
        ) + len(conn.buffer)
        if count < limit:
            return False
        text = (
            f"{frame.type} {frame.id!r} refused: this worker already has {count} registrations, the "
            f"engine's limit (engine.max_registrations_per_worker = {limit})"
        )
        log.warning("worker %s: %s", conn.id, text)
        if isinstance(frame, RegisterTrigger):
            reply = TriggerRegistrationResult(
                type="triggerregistrationresult",
                id=frame.id,
                trigger_type=frame.trigger_type,
                function_id=frame.function_id,
                error=ErrorBody(code=limits.LIMIT_EXCEEDED, message=text),
            )
            await conn.send(codec.encode(reply))
        else:
            await conn.send(limits.limit_error(text))
        return True

    async def _on_registration(self, conn: WorkerConnection, frame: FrameModel) -> None:
        if conn.closing:
            return  # already cleaned up (evicted, or its socket closed): nothing may attach to it
        if await self._over_limit(conn, frame):
            return
        if conn.namespace is None or conn.draining:
            conn.buffer.append(frame)
            return
        await self._apply[type(frame)](conn, frame)

    # -- invocations -----------------------------------------------------------------------
    async def _on_invoke(self, conn: WorkerConnection, frame: InvokeFunction) -> None:
        namespace = frame.namespace
        if namespace is None:
            namespace = DEFAULT_NAMESPACE
        elif not namespace.strip():
            if frame.invocation_id is not None:
                await self._reply_error(conn, frame, "INVALID_NAMESPACE", INVALID_NAMESPACE_MESSAGE)
            return
        action = frame.action
        invocation_id = frame.invocation_id
        if action is not None:
            if action.type == "enqueue":
                self.spawn(self._enqueue(conn, frame, namespace, action.queue), name="enqueue")
                return
            invocation_id = None  # void: nothing goes back to the caller (§4.1)
        data = frame.data
        if type(data) is dict:
            data["_caller_worker_id"] = conn.id
        function_id = frame.function_id
        entry = self._lookup(namespace, function_id)
        if entry is None:
            if invocation_id is not None:
                await self._reply_error(
                    conn, frame, "function_not_found", self._not_found_message(function_id, namespace)
                )
            return
        callee = entry.owner
        if callee is None or entry.invocation is not None:
            serve = self._serve_in_process(conn, entry, frame, invocation_id)
            if entry.builtin is not None and entry.builtin.inline:
                await serve
            else:
                self.spawn(serve, name=function_id)
            return
        if invocation_id is None:
            frame.invocation_id = invocation_id = uuid4()
            caller: WorkerConnection | None = None
        else:
            caller = conn
        executing = callee.executing
        if invocation_id in executing:
            # Replacing the entry would send the callee's answer to the newcomer and leave the
            # first caller waiting forever (ids are visible in traces: a worker could take another
            # worker's result that way). The newcomer is refused; the call in flight is untouched.
            log.warning(
                "call of %r from %s refused: invocation id %s is already in flight",
                function_id,
                conn.id,
                invocation_id,
            )
            await self._reply_error(
                conn,
                frame,
                DUPLICATE_INVOCATION_ID,
                f"invocation id {invocation_id} is already in flight for {function_id!r}: "
                "use a fresh UUID for every call",
            )
            return
        pending = executing[invocation_id] = Pending(caller, function_id, frame.traceparent, frame.baggage)
        if self._observer is not None:
            pending.token = self._started(
                function_id, namespace, "worker", conn.id, callee.id, frame.traceparent, frame.baggage
            )
        fields = frame.__pydantic_fields_set__
        fields.discard("action")
        fields.discard("namespace")
        if frame.metadata is None:
            fields.discard("metadata")
        if frame.traceparent is None:
            fields.discard("traceparent")
        if frame.baggage is None:
            fields.discard("baggage")
        if not await callee.send(codec.encode(frame)):
            lost = callee.executing.pop(invocation_id, None)
            self._finished(lost, "invocation_stopped")
            if lost is not None and caller is not None:
                await self._reply_error(conn, frame, "invocation_stopped", _STOPPED)

    def _lookup(self, namespace: str, function_id: str) -> FunctionEntry | None:
        """Resolve a function for a call. A worker whose socket is already closing no longer serves
        (the call gets ``function_not_found``, not ``invocation_stopped``); its cleanup still runs
        when its read loop ends, after the frames it sent before closing."""
        entry = self.functions.lookup(namespace, function_id)
        if (
            entry is not None
            and (owner := entry.owner) is not None
            and owner.ws.protocol.state is not State.OPEN
        ):
            return self.functions.builtin(function_id) if namespace == DEFAULT_NAMESPACE else None
        return entry

    async def _on_result(self, conn: WorkerConnection, frame: InvocationResult) -> None:
        pending = conn.executing.pop(frame.invocation_id, None)
        if pending is not None and pending.token is not None:
            self._finished(pending, frame.error.code if frame.error is not None else None)
        if pending is None:
            if self._debug:
                log.debug(
                    "invocationresult for unknown invocation %s from %s dropped", frame.invocation_id, conn.id
                )
            return
        future = pending.future
        if future is not None:
            if not future.done():
                if frame.error is not None:
                    future.set_exception(error_from_body(frame.error, function_id=pending.function_id))
                else:
                    future.set_result(frame.result)
            return
        caller = pending.caller
        if caller is None:
            return  # void call: the result is consumed and dropped
        fields = frame.__pydantic_fields_set__
        if frame.error is not None or frame.result is None:
            fields.discard("result")
        if frame.error is None:
            fields.discard("error")
        if pending.traceparent is None:
            fields.discard("traceparent")
        else:
            frame.traceparent = pending.traceparent
        if pending.baggage is None:
            fields.discard("baggage")
        else:
            frame.baggage = pending.baggage
        if frame.function_id != pending.function_id:
            frame.function_id = pending.function_id
        await caller.post(codec.encode(frame))  # a slow caller must not stall this callee's reader

    async def _reply_error(
        self, conn: WorkerConnection, frame: InvokeFunction, code: str, message: str
    ) -> None:
        invocation_id = frame.invocation_id
        if invocation_id is None:
            return
        result = InvocationResult(
            type="invocationresult",
            invocation_id=invocation_id,
            function_id=frame.function_id,
            error=ErrorBody(code=code, message=message),
        )
        self._echo_trace(result, frame.traceparent, frame.baggage)
        await conn.send(codec.encode(result))

    @staticmethod
    def _echo_trace(result: InvocationResult, traceparent: str | None, baggage: str | None) -> None:
        if traceparent is not None:
            result.traceparent = traceparent
        if baggage is not None:
            result.baggage = baggage

    def _not_found_message(self, function_id: str, namespace: str) -> str:
        message = f"Function {function_id} not found in namespace {namespace}."
        elsewhere = [ns for ns in self.functions.namespaces_of(function_id) if ns != namespace]
        if elsewhere:
            message += f" It is registered in namespace(s): {', '.join(elsewhere)}."
        return message

    async def _serve_in_process(
        self,
        conn: WorkerConnection,
        entry: FunctionEntry,
        frame: InvokeFunction,
        invocation_id: UUID | None,
    ) -> None:
        """Run a built-in (or HTTP-invoked) function for a worker and answer it."""
        error: ErrorBody | None = None
        value: Any = None
        token = None
        if self._observer is not None:
            token = self._started(
                frame.function_id,
                entry.namespace,
                "builtin" if entry.builtin is not None else "http",
                conn.id,
                None,
                frame.traceparent,
                frame.baggage,
            )
        try:
            value = await self._call_in_process(
                entry,
                frame.data,
                CallContext(
                    function_id=frame.function_id,
                    invocation_id=str(invocation_id) if invocation_id is not None else None,
                    caller_worker_id=conn.id,
                    metadata=frame.metadata,
                    traceparent=frame.traceparent,
                    baggage=frame.baggage,
                    services=self,
                ),
            )
        except BuiltinError as exc:
            error = ErrorBody(code=exc.code, message=exc.message)
        except InvocationError as exc:
            error = ErrorBody(code=exc.code, message=exc.message)
        except Exception as exc:
            log.exception("built-in function %s failed", frame.function_id)
            error = ErrorBody(code="invocation_failed", message=str(exc) or type(exc).__name__)
        if token is not None:
            self._finished(None, error.code if error is not None else None, token)
        if invocation_id is None:
            return
        result = InvocationResult(
            type="invocationresult", invocation_id=invocation_id, function_id=frame.function_id
        )
        if error is not None:
            result.error = error
        elif value is JSON_NULL:
            result.result = None
        elif value is not None:
            result.result = value
        self._echo_trace(result, frame.traceparent, frame.baggage)
        try:
            message = codec.encode(result)
        except PydanticSerializationError as exc:
            failed = InvocationResult(
                type="invocationresult",
                invocation_id=invocation_id,
                function_id=frame.function_id,
                error=ErrorBody(code="serialization_error", message=str(exc)),
            )
            message = codec.encode(failed)
        await conn.send(message)

    async def _call_in_process(self, entry: FunctionEntry, data: Any, ctx: CallContext) -> Any:
        builtin = entry.builtin
        if builtin is not None:
            parsed = parse_input(builtin, data)
            # what the handler invokes or fires continues the call's trace (§4.5)
            traced = ctx.traceparent is not None or ctx.baggage is not None
            token = _CALL_TRACE.set((ctx.traceparent, ctx.baggage) if traced else None)
            try:
                return await builtin.handler(parsed, ctx)
            finally:
                _CALL_TRACE.reset(token)
        invoker = self._http_invoker
        if entry.invocation is None or invoker is None:
            raise InvocationError(
                "function_not_found", f"Function {entry.id} not found in namespace {entry.namespace}"
            )
        return await invoker({**entry.invocation, "function_id": entry.id}, data, ctx.metadata)

    async def _enqueue(
        self, conn: WorkerConnection, frame: InvokeFunction, namespace: str, queue: str
    ) -> None:
        """The ``enqueue`` action (§4.1): hand the call to ``engine::queue::enqueue``."""
        if self.functions.lookup(DEFAULT_NAMESPACE, ENQUEUE_FUNCTION) is None:
            await self._reply_error(conn, frame, "enqueue_error", NO_QUEUE_PROVIDER_MESSAGE)
            return
        receipt = str(uuid4())
        payload: dict[str, Any] = {
            "baggage": frame.baggage,
            "data": frame.data,
            "function_id": frame.function_id,
            "messageReceiptId": receipt,
            "queue": queue,
            "traceparent": frame.traceparent,
        }
        if namespace != DEFAULT_NAMESPACE:
            payload["namespace"] = namespace
        try:
            await self.invoke(ENQUEUE_FUNCTION, payload, traceparent=frame.traceparent, baggage=frame.baggage)
        except InvocationError as exc:
            await self._reply_error(conn, frame, "enqueue_error", exc.message)
            return
        if frame.invocation_id is None:
            return
        result = InvocationResult(
            type="invocationresult",
            invocation_id=frame.invocation_id,
            function_id=frame.function_id,
            result={"messageReceiptId": receipt},
        )
        self._echo_trace(result, frame.traceparent, frame.baggage)
        await conn.send(codec.encode(result))

    # -- reattach / trigger results ----------------------------------------------------------
    async def _on_reattach(self, conn: WorkerConnection, frame: Reattach) -> None:
        previous = frame.previous_worker_id
        try:
            UUID(previous)
        except ValueError:
            log.warning("reattach from worker %s ignored: previous_worker_id is not a UUID", conn.id)
            return
        if previous == conn.id:
            return
        old = self.workers.get(previous)
        if old is None or old.closing:
            log.info("reattach from worker %s: previous worker %s is already gone", conn.id, previous)
            return
        token = frame.reattach_token
        if token is None or not hmac.compare_digest(token.encode(), old.reattach_token.encode()):
            log.warning(
                "reattach from worker %s ignored: wrong reattach_token for worker %s", conn.id, previous
            )
            return
        log.info("worker %s reattaches as %s: evicting the old connection", previous, conn.id)
        try:
            await asyncio.wait_for(self._cleanup(old), _REATTACH_WAIT)
        except TimeoutError:
            log.warning("cleanup of evicted worker %s took over %.0f s", previous, _REATTACH_WAIT)
        self.spawn(old.ws.close(1000, "replaced by a reattached connection"), name="evict")

    async def _on_trigger_result(self, conn: WorkerConnection, frame: TriggerRegistrationResult) -> None:
        self.triggers.on_provider_result(conn, frame)

    # -- registrations (applied once the namespace is known) ---------------------------------
    async def _register_function(self, conn: WorkerConnection, frame: RegisterFunction) -> None:
        namespace = conn.namespace or DEFAULT_NAMESPACE
        function_id = frame.id
        if function_id.startswith("engine::") and namespace != DEFAULT_NAMESPACE:
            await self._reject_function(conn, namespace, function_id, "")
            return
        invocation: dict[str, Any] | None = None
        if frame.invocation is not None:
            if self._http_invoker is None:
                log.warning(
                    "HTTP-invoked function %s from worker %s not registered: no built-in serves "
                    "HTTP-invoked functions",
                    function_id,
                    conn.id,
                )
                return
            invocation = frame.invocation.model_dump(mode="json", exclude_none=True)
            validator = self._http_validator
            problem = validator({**invocation, "function_id": function_id}) if validator else None
            if problem is not None:
                # The real engine only logs a refused HTTP-invoked registration (protocol.md §2.1).
                log.warning(
                    "HTTP-invoked function %s from worker %s not registered: %s",
                    function_id,
                    conn.id,
                    problem,
                )
                return
        key = (namespace, function_id)
        existing = self.functions.worker_entry(namespace, function_id)
        if existing is not None and existing.owner is not conn:
            owner = existing.owner
            if owner is not None and owner.live:
                await self._reject_function(conn, namespace, function_id, owner.id)
                return
            if owner is not None:
                owner.functions.discard(key)
        elif existing is not None:
            log.warning("worker %s re-registered function %s (overwritten)", conn.id, function_id)
        self.functions.put(
            FunctionEntry(
                id=function_id,
                namespace=namespace,
                description=frame.description,
                request_format=frame.request_format,
                response_format=frame.response_format,
                metadata=frame.metadata,
                owner=conn,
                invocation=invocation,
            )
        )
        conn.functions.add(key)

    async def _reject_function(
        self, conn: WorkerConnection, namespace: str, function_id: str, owner: str
    ) -> None:
        log.warning(
            "function %s in namespace %s from worker %s refused: FUNCTION_NAMESPACE_CONFLICT (owner %r)",
            function_id,
            namespace,
            conn.id,
            owner,
        )
        frame = RegistrationRejected(
            type="registrationrejected",
            code="FUNCTION_NAMESPACE_CONFLICT",
            namespace=namespace,
            function_id=function_id,
            owner_worker_id=owner,
        )
        await conn.send(codec.encode(frame))

    async def _unregister_function(self, conn: WorkerConnection, frame: UnregisterFunction) -> None:
        key = (conn.namespace or DEFAULT_NAMESPACE, frame.id)
        if self.functions.remove(key, conn):
            conn.functions.discard(key)

    async def _register_trigger_type(self, conn: WorkerConnection, frame: RegisterTriggerType) -> None:
        await self.triggers.register_type(conn, frame)

    async def _unregister_trigger_type(self, conn: WorkerConnection, frame: UnregisterTriggerType) -> None:
        await self.triggers.unregister_type(conn, frame)

    async def _register_trigger(self, conn: WorkerConnection, frame: RegisterTrigger) -> None:
        await self.triggers.register_from_worker(conn, frame)

    async def _unregister_trigger(self, conn: WorkerConnection, frame: UnregisterTrigger) -> None:
        await self.triggers.unregister_from_worker(conn, frame)

    async def _register_service(self, conn: WorkerConnection, frame: RegisterService) -> None:
        conn.services.add((conn.namespace or DEFAULT_NAMESPACE, frame.id))

    # ======================================================================================
    # engine::workers::register (§3.3)
    # ======================================================================================
    async def register_worker(self, conn: WorkerConnection, data: WorkersRegisterInput) -> bool:
        """Apply ``engine::workers::register`` for ``conn``.

        Returns:
            ``False`` when the worker name is held by another live connection in the namespace
            (``registrationrejected`` ``WORKER_NAMESPACE_CONFLICT`` was sent and the connection
            is being closed), else ``True``.
        """
        if conn.closing:
            return False
        namespace = conn.namespace if conn.namespace is not None else (data.namespace or DEFAULT_NAMESPACE)
        name = sanitize_text(data.name)
        if name is not None:
            key = (namespace, name)
            holder = self.names.get(key)
            if holder is not None and holder is not conn and holder.live:
                log.warning(
                    "worker %s refused: name %r is held by worker %s in namespace %s",
                    conn.id,
                    name,
                    holder.id,
                    namespace,
                )
                rejection = RegistrationRejected(
                    type="registrationrejected",
                    code="WORKER_NAMESPACE_CONFLICT",
                    namespace=namespace,
                    worker_name=name,
                    owner_worker_id=holder.id,
                )
                await conn.send(codec.encode(rejection))
                self.spawn(conn.ws.close(1008, "worker name conflict"), name="name-conflict-close")
                return False
            if (
                conn.name_lease is not None
                and conn.name_lease != key
                and self.names.get(conn.name_lease) is conn
            ):
                del self.names[conn.name_lease]
            self.names[key] = conn
            conn.name_lease = key
        telemetry = data.telemetry.model_dump(exclude_none=True) if data.telemetry is not None else None
        conn.info = {
            "name": name,
            "description": sanitize_text(data.description),
            "runtime": data.runtime,
            "version": data.version,
            "os": data.os,
            "pid": data.pid,
            "isolation": data.isolation,
            "telemetry": telemetry,
            "features": data.features,
        }
        conn.registered = True
        if conn.namespace is None:
            await self.set_namespace(conn, namespace)
        self._workers_available("worker_metadata_updated", conn.id)
        return True

    def _workers_available(self, event: str, worker_id: str) -> None:
        self.fire_all("engine::workers-available", {"event": event, "worker_id": worker_id})

    # ======================================================================================
    # EngineServices
    # ======================================================================================
    @property
    def config(self) -> EngineConfig:
        """The engine configuration."""
        return self._config

    @property
    def data_dir(self) -> Path | None:
        """Folder for persistent data, or ``None`` (in memory)."""
        return self._config.data_dir

    def section(self, name: str) -> Mapping[str, Any]:
        """The ``engine.toml`` table ``[name]``."""
        return self._config.section(name)

    async def invoke(
        self,
        function_id: str,
        data: Any,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        metadata: Any = None,
        timeout: float | None = None,
        traceparent: str | None = None,
        baggage: str | None = None,
    ) -> Any:
        """Engine-originated call through the internal path (§4.2; see ``EngineServices.invoke``).

        Without ``traceparent`` and ``baggage`` the call carries the context of the built-in
        call being served in this task, if any (§4.5).
        """
        if traceparent is None and baggage is None and (inherited := _CALL_TRACE.get()) is not None:
            traceparent, baggage = inherited
        if not namespace.strip():
            raise InvocationError("INVALID_NAMESPACE", INVALID_NAMESPACE_MESSAGE, function_id=function_id)
        entry = self._lookup(namespace, function_id)
        if entry is None:
            raise InvocationError(
                "function_not_found",
                f"Function {function_id} not found in namespace {namespace}",
                function_id=function_id,
            )
        callee = entry.owner
        if callee is None or entry.invocation is not None:
            ctx = CallContext(
                function_id=function_id,
                invocation_id=str(uuid4()),
                caller_worker_id=None,
                metadata=metadata,
                traceparent=traceparent,
                baggage=baggage,
                services=self,
            )
            token = None
            if self._observer is not None:
                kind = "builtin" if entry.builtin is not None else "http"
                token = self._started(function_id, namespace, kind, None, None, traceparent, baggage)
            error_code: str | None = "invocation_failed"
            try:
                coro = self._call_in_process(entry, data, ctx)
                value = await (asyncio.wait_for(coro, timeout) if timeout is not None else coro)
                error_code = None
            except BuiltinError as exc:
                error_code = exc.code
                raise InvocationError(exc.code, exc.message, function_id=function_id) from None
            except InvocationError as exc:
                error_code = exc.code
                raise
            except TimeoutError:
                error_code = "TIMEOUT"
                raise InvocationError(
                    "TIMEOUT",
                    f"invocation timed out after {int((timeout or 0) * 1000)}ms",
                    function_id=function_id,
                ) from None
            finally:
                if token is not None:
                    self._finished(None, error_code, token)
            return None if value is JSON_NULL else value
        invocation_id = uuid4()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        pending = callee.executing[invocation_id] = Pending(None, function_id, future=future)
        if self._observer is not None:
            pending.token = self._started(
                function_id, namespace, "worker", None, callee.id, traceparent, baggage
            )
        frame = InvokeFunction(
            type="invokefunction", invocation_id=invocation_id, function_id=function_id, data=data
        )
        if metadata is not None:
            frame.metadata = metadata
        if traceparent is not None:
            frame.traceparent = traceparent
        if baggage is not None:
            frame.baggage = baggage
        if not await callee.send(codec.encode(frame)):
            self._finished(callee.executing.pop(invocation_id, None), "invocation_stopped")
            raise InvocationError("invocation_stopped", _STOPPED, function_id=function_id)
        try:
            if timeout is None:
                return await future
            try:
                return await asyncio.wait_for(future, timeout)
            except TimeoutError:
                self._finished(callee.executing.pop(invocation_id, None), "TIMEOUT")
                raise InvocationError(
                    "TIMEOUT", f"invocation timed out after {int(timeout * 1000)}ms", function_id=function_id
                ) from None
        finally:
            if not future.done():
                self._finished(callee.executing.pop(invocation_id, None), "cancelled")

    async def check_condition(
        self,
        binding: TriggerBinding,
        payload: Any,
        *,
        traceparent: str | None = None,
        baggage: str | None = None,
    ) -> bool:
        """Run ``condition_function_id`` (§6 "Trigger firing"): exactly ``false`` or an error skips."""
        condition = binding.condition_function_id
        if condition is None:
            return True
        try:
            result = await self.invoke(
                condition, payload, namespace=binding.namespace, traceparent=traceparent, baggage=baggage
            )
        except InvocationError as exc:
            log.warning(
                "condition %s of trigger %s failed (%s: %s); the fire is skipped",
                condition,
                binding.id,
                exc.code,
                exc.message,
            )
            return False
        return result is not False

    async def fire(
        self,
        binding: TriggerBinding,
        payload: Any,
        *,
        metadata: Any = _UNSET,
        traceparent: str | None = None,
        baggage: str | None = None,
    ) -> bool:
        """Fire one binding: condition, then invoke the target; errors are logged."""
        if traceparent is None and baggage is None and (inherited := _CALL_TRACE.get()) is not None:
            traceparent, baggage = inherited  # the condition and the target share one context
        if not await self.check_condition(binding, payload, traceparent=traceparent, baggage=baggage):
            return False
        sidecar = binding.metadata if metadata is _UNSET else metadata
        try:
            await self.invoke(
                binding.function_id,
                payload,
                namespace=binding.namespace,
                metadata=sidecar,
                traceparent=traceparent,
                baggage=baggage,
            )
        except InvocationError as exc:
            log.warning(
                "trigger %s (%s) → %s failed: %s: %s",
                binding.id,
                binding.trigger_type,
                binding.function_id,
                exc.code,
                exc.message,
            )
        return True

    async def fire_result(
        self,
        binding: TriggerBinding,
        payload: Any,
        *,
        metadata: Any = _UNSET,
        traceparent: str | None = None,
        baggage: str | None = None,
    ) -> Any:
        """Invoke a binding's function (no condition check) and return the result."""
        sidecar = binding.metadata if metadata is _UNSET else metadata
        return await self.invoke(
            binding.function_id,
            payload,
            namespace=binding.namespace,
            metadata=sidecar,
            traceparent=traceparent,
            baggage=baggage,
        )

    def fire_all(
        self,
        trigger_type: str,
        payload: Any | Callable[[TriggerBinding], Any],
        *,
        predicate: Callable[[TriggerBinding], bool] | None = None,
        traceparent: str | None = None,
        baggage: str | None = None,
    ) -> int:
        """Fire every live binding of a built-in type, each in its own task.

        The fires carry ``traceparent``/``baggage``, or when both are ``None`` the context of the
        built-in call being served now (the spawned tasks would not see it).
        """
        if traceparent is None and baggage is None and (inherited := _CALL_TRACE.get()) is not None:
            traceparent, baggage = inherited
        bindings = self.triggers.builtin_bindings(trigger_type)
        count = 0
        for binding in bindings:
            if predicate is not None and not predicate(binding):
                continue
            value = payload(binding) if callable(payload) else payload
            self.spawn(
                self.fire(binding, value, traceparent=traceparent, baggage=baggage),
                name=f"fire:{trigger_type}",
            )
            count += 1
        return count

    def bindings(self, trigger_type: str) -> list[TriggerBinding]:
        """Live bindings of a built-in trigger type."""
        return self.triggers.builtin_bindings(trigger_type)

    def function_exists(self, function_id: str, namespace: str = DEFAULT_NAMESPACE) -> bool:
        """Whether ``(namespace, function_id)`` is served."""
        return self.functions.lookup(namespace, function_id) is not None

    def advertise(self, key: str, url: str) -> None:
        """Add ``key: url`` to the ready line."""
        self.advertised[key] = url

    def add_ws_route(self, route: WebSocketRoute) -> None:
        """Serve an extra WebSocket route on the worker port."""
        self.ws_routes.append(route)

    def set_telemetry_sink(
        self, sink: TelemetrySink, on_connection: TelemetryConnectionListener | None = None
    ) -> None:
        """Receive telemetry frames instead of dropping them (and hear ``/otel`` sockets)."""
        self._telemetry_sink = sink
        self._telemetry_listener = on_connection

    def set_invocation_observer(self, observer: InvocationObserver) -> None:
        """Hear about every invocation's start and end (engine-side telemetry)."""
        self._observer = observer

    def set_worker_metrics_source(self, source: WorkerMetricsSource) -> None:
        """Provide ``latest_metrics`` of ``engine::workers::info``."""
        self._worker_metrics = source

    def set_http_function_invoker(
        self, invoker: HttpFunctionInvoker, validator: HttpFunctionValidator | None = None
    ) -> None:
        """Serve HTTP-invoked functions through ``invoker``; ``validator`` checks registrations."""
        self._http_invoker = invoker
        self._http_validator = validator

    def add_health_component(self, name: str, probe: Callable[[], HealthComponent]) -> None:
        """Report a component in ``engine::health::check``."""
        self.health_probes[name] = probe

    def on_worker_disconnected(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(worker_id)`` during each disconnect cleanup."""
        self._disconnect_callbacks.append(callback)

    @contextmanager
    def trace_context(self, traceparent: str | None, baggage: str | None = None) -> Iterator[None]:
        """Calls made inside the block without an explicit context carry this one (§4.5).

        A missing or malformed ``traceparent`` (W3C layout, non-zero ids) changes nothing.
        """
        traceparent = traceparent.strip() if traceparent is not None else None
        if traceparent is None or not valid_traceparent(traceparent):
            yield
            return
        token = _CALL_TRACE.set((traceparent, baggage or None))
        try:
            yield
        finally:
            _CALL_TRACE.reset(token)

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str | None = None) -> asyncio.Task[Any]:
        """Run a tracked background task; its exception is logged.

        The task runs outside the trace context of the call being served (if any): it serves
        no call, so what it invokes without an explicit context starts a new trace.
        """
        loop = asyncio.get_running_loop()
        if _CALL_TRACE.get() is None:
            task = loop.create_task(coro, name=name)
        else:
            detached = contextvars.copy_context()
            detached.run(_CALL_TRACE.set, None)
            task = loop.create_task(coro, name=name, context=detached)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            exc = task.exception()
            if exc is not None:
                log.error("engine task %s failed", task.get_name(), exc_info=exc)

    async def cancel_tasks(self) -> None:
        """Cancel every background task (shutdown)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
