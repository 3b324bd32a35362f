"""The built-in worker interface: what every in-process worker of the dev engine implements.

A built-in worker (engine functions, state, streams, queue, pubsub, cron, http, …) is one module
under ``iii_typed/engine/builtins/`` that defines a subclass of :class:`BuiltinWorker` and exposes
it as the module attribute ``BUILTIN``. The engine discovers the modules, instantiates the
workers the configuration enables and wires them in:

* **Functions** (:meth:`BuiltinWorker.functions`) live in namespace ``default`` (protocol.md §6,
  general rule). Each is a :class:`BuiltinFunction`: an id, an ``async handler(data, ctx)``, a
  description and an optional pydantic ``input_model``/``output_model``. When ``input_model`` is
  set the engine parses the payload strictly before calling the handler (missing required field
  or wrong type → error ``deserialization_error`` with the message
  ``Failed to deserialize input for <id>: <reason>``; unknown fields such as the injected
  ``_caller_worker_id`` are ignored) and the handler receives the model instance. Both models'
  JSON Schemas are published as the function's ``request_format``/``response_format`` so
  ``engine::functions::info`` shows a complete catalog. A handler returns a JSON-compatible value
  (dicts, lists, pydantic models…); ``None`` means "no value" (the ``invocationresult`` omits
  ``result``) and :data:`JSON_NULL` means an explicit ``"result": null``. It raises
  :class:`BuiltinError` to answer with a specific error code.
* **Trigger types** (:meth:`BuiltinWorker.trigger_types`) are :class:`BuiltinTriggerType`\\ s in
  namespace ``default``. The engine keeps the bindings (protocol.md §2.5-§2.7); when a binding of
  the type becomes live it awaits ``register(binding)`` (raise :class:`TriggerRegistrationError`
  to refuse it: the registering worker receives ``trigger_registration_failed`` with your
  message), and when it goes away it awaits ``unregister(binding)``. To fire, call
  :meth:`EngineServices.fire` for one binding or :meth:`EngineServices.fire_all` for every live
  binding of the type; both honour ``condition_function_id`` (protocol.md §6, "Trigger firing").
* **Trace context** (protocol.md §4.5): what the engine invokes *because of a call* continues that
  call's trace. While a built-in handler runs, :meth:`EngineServices.invoke`,
  :meth:`~EngineServices.fire`, :meth:`~EngineServices.fire_all` and the condition checks send the
  handler's ``ctx.traceparent``/``ctx.baggage`` unless given a context explicitly, so a ``state``
  trigger fired by ``state::set`` joins the setter's trace without the built-in doing anything.
  Work deferred past the handler (a stored queue message, a task started with
  :meth:`EngineServices.spawn`, which runs outside any call) must keep the context itself and pass
  it explicitly; work started by no call (cron ticks, socket events) starts no trace.
* **Lifecycle**: :meth:`BuiltinWorker.start` runs once before the engine prints its ready line
  (bind extra listeners there and :meth:`EngineServices.advertise` them); :meth:`BuiltinWorker.stop`
  runs at shutdown in reverse order.
* **Configuration**: the ``engine.toml`` table named :attr:`BuiltinWorker.section` is available as
  :meth:`EngineServices.section`; every table may set ``enabled = true|false``.

The engine side of the contract is :class:`EngineServices`, the only engine API a built-in uses.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Final, Protocol

from pydantic import BaseModel, ValidationError

if TYPE_CHECKING:
    import asyncio

    from websockets.asyncio.server import ServerConnection

    from ..config import EngineConfig

__all__ = [
    "JSON_NULL",
    "BuiltinError",
    "BuiltinFunction",
    "BuiltinHandler",
    "BuiltinTriggerType",
    "BuiltinWorker",
    "CallContext",
    "EngineServices",
    "HealthComponent",
    "HttpFunctionInvoker",
    "HttpFunctionValidator",
    "InvocationObserver",
    "TelemetryConnectionListener",
    "TelemetrySink",
    "TriggerBinding",
    "TriggerRegistrationError",
    "WebSocketRoute",
    "WorkerMetricsSource",
    "deserialization_message",
    "parse_input",
    "valid_traceparent",
]

#: A W3C ``traceparent`` (version 00 layout; all-zero ids are invalid and checked separately).
_TRACEPARENT: Final = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")


class _JsonNull:
    """Type of :data:`JSON_NULL`."""

    _instance: ClassVar[_JsonNull | None] = None

    def __new__(cls) -> _JsonNull:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "JSON_NULL"


#: Return this from a built-in handler to answer ``"result": null`` (a Rust ``()`` result, e.g.
#: ``stream::send``); returning ``None`` omits ``result`` instead (protocol.md §6 general rule).
JSON_NULL: Final = _JsonNull()


class BuiltinError(Exception):
    """Raised by a built-in handler to answer with an error ``{code, message}`` (protocol.md §4.7).

    Args:
        code: The wire error code, e.g. ``NOT_FOUND``, ``INVALID_ARGUMENTS``.
        message: Human-readable message.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class TriggerRegistrationError(Exception):
    """Raised by :attr:`BuiltinTriggerType.register` to refuse a binding (protocol.md §2.5).

    The registering worker receives a ``triggerregistrationresult`` with code
    ``trigger_registration_failed`` and this exception's message; the binding is not kept.
    """


@dataclass(eq=False, slots=True)
class TriggerBinding:
    """One binding of a function to a trigger type, as the engine keeps it (protocol.md §2.5).

    Attributes:
        id: Trigger id (chosen by the worker, or a uuid4 for ``engine::register_trigger``).
        trigger_type: Trigger type id, e.g. ``cron``.
        function_id: Target function.
        config: The binding's configuration (any JSON value, usually an object).
        metadata: Sidecar delivered to the handler on each fire, or ``None``.
        namespace: Namespace the target function resolves in (``default`` when not given).
        trigger_namespace: Provider namespace when the worker named one (strict), else ``None``.
        owner_worker_id: Worker id of the connection that registered it; ``None`` for durable
            bindings made with ``engine::register_trigger`` (they survive disconnects).
        owner_namespace: Namespace of that connection (``default`` for durable bindings); the
            provider is looked up there first, then in ``default``.
        created_at_ms: Registration time, Unix milliseconds.
        status: ``"active"`` when delivered to a provider, ``"pending"`` when parked.
        error: The provider's last rejection ``{"code", "message"}`` while parked, else ``None``.
    """

    id: str
    trigger_type: str
    function_id: str
    config: Any
    metadata: Any = None
    namespace: str = "default"
    trigger_namespace: str | None = None
    owner_worker_id: str | None = None
    owner_namespace: str = "default"
    created_at_ms: int = 0
    status: str = "pending"
    error: dict[str, Any] | None = None

    @property
    def condition_function_id(self) -> str | None:
        """``config.condition_function_id`` when the config is an object that names one."""
        config = self.config
        if isinstance(config, dict):
            value = config.get("condition_function_id")
            if isinstance(value, str) and value:
                return value
        return None


@dataclass(frozen=True, slots=True)
class CallContext:
    """What a built-in handler knows about the call it serves.

    Attributes:
        function_id: The invoked function.
        invocation_id: The invocation id (a UUID string), or ``None`` for void calls.
        caller_worker_id: Worker id of the calling connection; ``None`` for engine-originated
            calls (trigger fires, other built-ins).
        metadata: The invocation's metadata sidecar (protocol.md §4.4), or ``None``.
        traceparent: W3C trace context of the call, when sent.
        baggage: W3C baggage of the call, when sent.
        services: The engine services.
    """

    function_id: str
    invocation_id: str | None
    caller_worker_id: str | None
    metadata: Any
    traceparent: str | None
    baggage: str | None
    services: EngineServices


#: ``async handler(data, ctx) -> result``; ``data`` is the parsed ``input_model`` instance when the
#: function has one, else the raw payload.
BuiltinHandler = Callable[[Any, CallContext], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class BuiltinFunction:
    """A function served by a built-in worker (namespace ``default``).

    Attributes:
        id: Function id, e.g. ``state::get``.
        handler: ``async handler(data, ctx) -> result`` (see the module docstring).
        description: Shown by ``engine::functions::list|info``.
        input_model: Pydantic model the payload is parsed into (strictly), or ``None`` to pass
            the raw payload through. A ``null`` payload is parsed as ``{}``.
        output_model: Pydantic model describing the result (documentation only).
        metadata: Function metadata, e.g. ``{"internal": True}`` hides it from listings.
        strict: Parse ``input_model`` in pydantic strict mode (no ``"1"`` → ``1`` coercion),
            which matches the real engine's serde parsing.
        inline: Run a worker's call inside that connection's read loop, so its effects are in
            place before the worker's next frame is processed (``engine::workers::register``);
            only for quick handlers. Other calls run in a task of their own.
    """

    id: str
    handler: BuiltinHandler
    description: str | None = None
    input_model: type[BaseModel] | None = None
    output_model: type[BaseModel] | None = None
    metadata: Any = None
    strict: bool = True
    inline: bool = False
    request_format: Any = field(default=None, compare=False)
    response_format: Any = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.request_format is None and self.input_model is not None:
            object.__setattr__(self, "request_format", self.input_model.model_json_schema())
        if self.response_format is None and self.output_model is not None:
            object.__setattr__(self, "response_format", self.output_model.model_json_schema())


async def _accept_binding(binding: TriggerBinding) -> None:
    return None


@dataclass(frozen=True, slots=True)
class BuiltinTriggerType:
    """A trigger type provided by a built-in worker (namespace ``default``).

    Attributes:
        id: Trigger type id, e.g. ``cron``.
        description: Shown by ``engine::triggers::list|info``.
        register: ``async register(binding)``, awaited when a binding becomes live; raise
            :class:`TriggerRegistrationError` to refuse it.
        unregister: ``async unregister(binding)``, awaited when a live binding is removed.
        trigger_request_format: JSON Schema of a binding's ``config``.
        call_request_format: JSON Schema of the payload the target function receives.
    """

    id: str
    description: str
    register: Callable[[TriggerBinding], Awaitable[None]] = _accept_binding
    unregister: Callable[[TriggerBinding], Awaitable[None]] = _accept_binding
    trigger_request_format: Any = None
    call_request_format: Any = None


@dataclass(frozen=True, slots=True)
class HealthComponent:
    """One entry of ``engine::health::check.components`` (protocol.md §7).

    Attributes:
        status: ``healthy``, ``degraded``, ``disabled`` or ``unhealthy``.
        details: Component details, or ``None``.
    """

    status: str
    details: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class WebSocketRoute:
    """An extra WebSocket route on the worker port (the seam for ``/ws/channels/<id>``).

    Attributes:
        prefix: Path prefix, e.g. ``/ws/channels/``.
        accept: ``accept(path, query) -> None | (status, body)``: ``None`` upgrades the
            connection, a tuple refuses it with that HTTP status (e.g. ``(404, "Channel not
            found")``). ``query`` maps each parameter to its values.
        handle: ``async handle(connection, path, query)`` serves an upgraded connection.
    """

    prefix: str
    accept: Callable[[str, Mapping[str, list[str]]], tuple[int, str] | None]
    handle: Callable[[ServerConnection, str, Mapping[str, list[str]]], Awaitable[None]]


#: ``sink(kind, payload)`` receives telemetry frames; ``kind`` is ``b"OTLP"``, ``b"MTRC"`` or
#: ``b"LOGS"`` and ``payload`` the bytes after that prefix (protocol.md §8).
TelemetrySink = Callable[[bytes, bytes], None]

#: ``listener(opened)`` hears each ``/otel`` socket open (``True``) and close (``False``).
TelemetryConnectionListener = Callable[[bool], None]

#: ``source(worker_id) -> WorkerMetrics | None``: the latest resource metrics a worker reported
#: (``engine::workers::info.worker.latest_metrics``, protocol.md §7).
WorkerMetricsSource = Callable[[str], Mapping[str, Any] | None]


class InvocationObserver(Protocol):
    """Hears about every invocation the engine routes (engine-side telemetry, protocol.md §7-§8).

    Called on the engine loop; both methods must be quick and must not raise.
    """

    def invocation_started(
        self,
        function_id: str,
        namespace: str,
        *,
        kind: str,
        caller_worker_id: str | None,
        callee_worker_id: str | None,
        traceparent: str | None,
        baggage: str | None,
    ) -> object:
        """An invocation starts. ``kind`` is ``worker`` (routed to a worker), ``builtin`` or
        ``http`` (HTTP-invoked); ``caller_worker_id`` is ``None`` for engine-originated calls.

        Returns:
            A token handed back to :meth:`invocation_finished`.
        """
        ...

    def invocation_finished(self, token: object, error_code: str | None) -> None:
        """The invocation ended: ``error_code`` is ``None`` on success, else the error's code
        (``invocation_stopped`` when its worker went away, ``TIMEOUT``…)."""
        ...

    def worker_connected(self, worker_id: str) -> None:
        """A worker socket was accepted on ``/`` (its disconnect: ``on_worker_disconnected``)."""
        ...


#: ``async invoker(function, data, metadata) -> result`` for HTTP-invoked functions (protocol.md §6.7);
#: ``function`` is the registration's ``invocation`` object as a dict plus ``function_id``.
HttpFunctionInvoker = Callable[[Mapping[str, Any], Any, Any], Awaitable[Any]]

#: ``validator(function) -> None | reason``: checks an HTTP-invoked registration (URL policy, auth
#: variables); a reason refuses it (logged only, like the real engine, protocol.md §2.1).
HttpFunctionValidator = Callable[[Mapping[str, Any]], str | None]


class EngineServices(Protocol):
    """The engine API available to built-in workers."""

    @property
    def config(self) -> EngineConfig:
        """The engine configuration (ports, data folder, sections)."""
        ...

    @property
    def data_dir(self) -> Path | None:
        """Folder for persistent data (SQLite files), or ``None`` to keep everything in memory."""
        ...

    def section(self, name: str) -> Mapping[str, Any]:
        """The ``engine.toml`` table ``[name]`` (empty when absent)."""
        ...

    async def invoke(
        self,
        function_id: str,
        data: Any,
        *,
        namespace: str = "default",
        metadata: Any = None,
        timeout: float | None = None,
        traceparent: str | None = None,
        baggage: str | None = None,
    ) -> Any:
        """Call a function through the engine's internal call path (protocol.md §4.2).

        The target gets a fresh invocation id and no ``_caller_worker_id``.

        Args:
            function_id: Function to call.
            data: Payload (any JSON value).
            namespace: Namespace the function resolves in.
            metadata: Metadata sidecar for the handler.
            timeout: Seconds to wait for the result (``None`` waits without limit).
            traceparent: W3C trace context the target receives (``invokefunction.traceparent``,
                protocol.md §4.5), so its ``execute`` span joins that trace.
            baggage: W3C baggage the target receives. When both ``traceparent`` and ``baggage``
                are ``None``, the context of the built-in call being served on this task is
                used (none in a task started with :meth:`spawn`: a new trace).

        Returns:
            The result value (``None`` when the function returned nothing).

        Raises:
            InvocationError: ``function_not_found`` (message ``Function <id> not found in
                namespace <ns>``, no period), ``invocation_stopped``, ``TIMEOUT``, or the
                function's own error.
        """
        ...

    async def check_condition(
        self,
        binding: TriggerBinding,
        payload: Any,
        *,
        traceparent: str | None = None,
        baggage: str | None = None,
    ) -> bool:
        """Run the binding's ``condition_function_id`` (if any) with ``payload``.

        ``traceparent``/``baggage`` go with the condition call as in :meth:`invoke`.

        Returns:
            ``False`` when the condition returned exactly ``false`` or failed (logged), else
            ``True`` (protocol.md §6, "Trigger firing").
        """
        ...

    async def fire(
        self,
        binding: TriggerBinding,
        payload: Any,
        *,
        metadata: Any = ...,
        traceparent: str | None = None,
        baggage: str | None = None,
    ) -> bool:
        """Fire one binding: check its condition, then invoke its function with ``payload``.

        The binding's ``metadata`` is the sidecar unless ``metadata`` is given. Errors are
        logged, results ignored. ``traceparent``/``baggage`` go with both calls as in
        :meth:`invoke`.

        Returns:
            Whether the function was invoked.
        """
        ...

    async def fire_result(
        self,
        binding: TriggerBinding,
        payload: Any,
        *,
        metadata: Any = ...,
        traceparent: str | None = None,
        baggage: str | None = None,
    ) -> Any:
        """Invoke a binding's function (no condition check) and return its result.

        For trigger types that use the result (e.g. ``http``). ``traceparent``/``baggage`` as in
        :meth:`invoke`.

        Raises:
            InvocationError: as :meth:`invoke`.
        """
        ...

    def fire_all(
        self,
        trigger_type: str,
        payload: Any | Callable[[TriggerBinding], Any],
        *,
        predicate: Callable[[TriggerBinding], bool] | None = None,
        traceparent: str | None = None,
        baggage: str | None = None,
    ) -> int:
        """Fire every live binding of a built-in trigger type, each in its own task.

        Args:
            trigger_type: The type id.
            payload: The payload, or a function computing it per binding.
            predicate: Only bindings for which it returns ``True``.
            traceparent: Trace context of the fires (conditions included). When both are
                ``None``, the context of the built-in call being served is taken now (so
                triggers fired by a call continue its trace).
            baggage: Baggage of the fires.

        Returns:
            The number of bindings fired (their conditions are still checked).
        """
        ...

    def bindings(self, trigger_type: str) -> list[TriggerBinding]:
        """Live bindings of a built-in trigger type (namespace ``default``)."""
        ...

    def function_exists(self, function_id: str, namespace: str = "default") -> bool:
        """Whether a function is registered (by a worker or a built-in)."""
        ...

    def trace_context(
        self, traceparent: str | None, baggage: str | None = None
    ) -> AbstractContextManager[None]:
        """Serve a request that arrived with a W3C trace context (e.g. HTTP headers).

        Inside the ``with`` block (and in tasks created there with ``asyncio.create_task``, not
        :meth:`spawn`) calls without an explicit context carry ``traceparent``/``baggage``
        (protocol.md §4.5). A missing or malformed ``traceparent`` changes nothing: the work starts
        a new trace.
        """
        ...

    def advertise(self, key: str, url: str) -> None:
        """Add ``key: url`` to the ready line (``http``, ``streams``); call it from ``start``."""
        ...

    def add_ws_route(self, route: WebSocketRoute) -> None:
        """Serve an extra WebSocket route on the worker port (e.g. ``/ws/channels/``)."""
        ...

    def set_telemetry_sink(
        self, sink: TelemetrySink, on_connection: TelemetryConnectionListener | None = None
    ) -> None:
        """Receive the telemetry frames of ``/`` and ``/otel`` (dropped by default), and hear
        ``/otel`` sockets open and close through ``on_connection``."""
        ...

    def set_invocation_observer(self, observer: InvocationObserver) -> None:
        """Hear about every invocation (start and end); one observer (the telemetry built-in)."""
        ...

    def set_worker_metrics_source(self, source: WorkerMetricsSource) -> None:
        """Provide ``latest_metrics`` of ``engine::workers::info`` (protocol.md §7)."""
        ...

    def set_http_function_invoker(
        self, invoker: HttpFunctionInvoker, validator: HttpFunctionValidator | None = None
    ) -> None:
        """Accept HTTP-invoked function registrations and serve their calls (protocol.md §6.7).

        ``validator`` (optional) is called with each registration's ``invocation`` plus
        ``function_id``; a returned reason refuses it with a WARNING log.
        """
        ...

    def add_health_component(self, name: str, probe: Callable[[], HealthComponent]) -> None:
        """Report a component in ``engine::health::check``."""
        ...

    def on_worker_disconnected(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(worker_id)`` during a worker's disconnect cleanup (protocol.md §3.6)."""
        ...

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str | None = None) -> asyncio.Task[Any]:
        """Run a background task owned by the engine (cancelled at shutdown; errors logged).

        The task serves no call: calls it makes without an explicit trace context start new
        traces, even when it was spawned from a built-in handler (a queue lane or a cron job must
        not keep the trace of the call that happened to create it).
        """
        ...


class BuiltinWorker(abc.ABC):
    """Base class of the engine's in-process workers (see the module docstring).

    Class attributes:
        name: The real engine's config entry name, e.g. ``iii-state``; also the worker's id and
            name in ``engine::workers::list``.
        section: The ``engine.toml`` table of this worker and its name in ``[engine] builtins``,
            e.g. ``state``.
        description: One line shown in ``engine::workers::list``.
        default_enabled: Runs when the configuration does not say otherwise.
        mandatory: Always runs (cannot be disabled).
        order: Start order (lower first); stop runs in reverse.
    """

    name: ClassVar[str]
    section: ClassVar[str]
    description: ClassVar[str] = ""
    default_enabled: ClassVar[bool] = True
    mandatory: ClassVar[bool] = False
    order: ClassVar[int] = 100

    def __init__(self, services: EngineServices) -> None:
        self.services = services

    def functions(self) -> Sequence[BuiltinFunction]:
        """The functions this worker serves (namespace ``default``)."""
        return ()

    def trigger_types(self) -> Sequence[BuiltinTriggerType]:
        """The trigger types this worker provides (namespace ``default``)."""
        return ()

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Start background work and listeners (before the ready line is printed)."""

    async def stop(self) -> None:  # noqa: B027 - optional hook
        """Stop background work and close listeners."""


def deserialization_message(function_id: str, exc: ValidationError) -> str:
    """The real engine's message for a payload a built-in cannot parse (protocol.md §4.7).

    Returns:
        ``Failed to deserialize input for <id>: <reason>``, where the reason names the field,
        e.g. ``missing field `key``` or ``invalid type for `limit`: Input should be a valid
        integer``.
    """
    errors = exc.errors(include_url=False, include_input=False)
    if not errors:
        return f"Failed to deserialize input for {function_id}: {exc}"
    first = errors[0]
    loc = ".".join(str(part) for part in first.get("loc", ()))
    if first.get("type") == "missing":
        reason = f"missing field `{loc}`"
    elif loc:
        reason = f"invalid type for `{loc}`: {first.get('msg', '')}"
    else:
        reason = f"invalid type: {first.get('msg', '')}"
    return f"Failed to deserialize input for {function_id}: {reason}"


def parse_input(function: BuiltinFunction, data: Any) -> Any:
    """Parse ``data`` for ``function`` (strictly, unknown fields ignored).

    Returns:
        The ``input_model`` instance, or ``data`` untouched when the function has no model.

    Raises:
        BuiltinError: code ``deserialization_error`` with the real engine's message shape.
    """
    model = function.input_model
    if model is None:
        return data
    if data is None:
        data = {}
    try:
        return model.model_validate(data, strict=function.strict)
    except ValidationError as exc:
        raise BuiltinError("deserialization_error", deserialization_message(function.id, exc)) from None


def valid_traceparent(value: str) -> bool:
    """A W3C ``traceparent`` an OpenTelemetry propagator accepts (lower-case hex, ids not zero).

    The one check for the engine: a call's context is continued (router) and an engine span or a
    log joins a trace (observability) only when it passes. ``value`` is taken as is (strip it
    first if surrounding whitespace is tolerated).
    """
    if _TRACEPARENT.fullmatch(value) is None or value.startswith("ff"):
        return False
    _, trace_id, span_id, _ = value.split("-")
    return trace_id != "0" * 32 and span_id != "0" * 16
