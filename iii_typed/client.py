"""The worker client: :func:`register_worker` and :class:`III` (the seed's documented API).

Threading model (sdk.md §2.1, perf.md §2.4, §6): each client owns one private event loop on a
daemon thread. The async methods are the real implementation and run on that loop (they may be
awaited from any event loop; the SDK hops over). Each sync method is a thin shell that prepares
the call on the calling thread, submits the coroutine to the SDK loop and waits; calling one *on*
the SDK loop thread (from an async handler) raises ``RuntimeError``. Sync handlers each run on a
thread of their own (idle threads are reused), so a sync handler may call ``trigger()``
synchronously, nested to any depth. Async handlers run as tasks on the SDK loop.

Wire behaviour follows protocol.md §2-§4 and §10; see ``docs/sdk.md`` for the user guide.
"""

from __future__ import annotations

import asyncio
import atexit
import copy
import inspect
import json
import logging
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from types import FrameType, TracebackType
from typing import Any, Final, Generic, Literal, TypeVar, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticSerializationError

from . import _handlers
from ._connection import Connection, build_headers
from ._handlers import HandlerSpec, build_error_result, validation_message
from ._ids import uuid4_str
from ._loop import HandlerCapacityError, HandlerThreads, Handoff, LoopThread, is_own_cancellation
from ._wire import check_size, encode_frame, find_unserialisable
from ._worker_info import allocate_unnamed_suffix, resolve_namespace, resolve_worker_name, worker_metadata
from .channels import Channel, ChannelFactory, create_request
from .context import InvocationContext
from .context import current_invocation as _current_invocation
from .errors import (
    EngineUnreachableError,
    FrameDecodeError,
    IIIError,
    InvocationError,
    InvocationTimeoutError,
    RegistrationRejectedError,
    error_from_body,
)
from .formats import extract_request_format, extract_response_format, resolve_format
from .models import (
    EnqueueResult,
    HttpInvocationConfig,
    IIIConnectionState,
    RegisterFunctionFormat,
    RegisterServiceInput,
    RegisterTriggerInput,
    RegisterTriggerTypeInput,
    TriggerActionVoid,
    TriggerConfig,
    TriggerHandler,
    TriggerRequest,
)
from .options import DEFAULT_ENGINE_URL, InitOptions
from .protocol import codec
from .protocol.frames import (
    DEFAULT_NAMESPACE,
    ErrorBody,
    ErrorFrame,
    FrameModel,
    HttpInvocationRef,
    InvocationResult,
    InvokeFunction,
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
from .streams import IStream, register_stream
from .telemetry import client_telemetry

__all__ = [
    "CONNECT_BUDGET_S",
    "III",
    "FunctionRef",
    "Trigger",
    "TriggerTypeRef",
    "register_worker",
    "resolve_engine_url",
]

log = logging.getLogger("iii_typed")

C = TypeVar("C")
T = TypeVar("T")

#: Seconds ``register_worker`` / ``connect_async`` wait for a connection (decisions "Errors").
CONNECT_BUDGET_S: Final = 30.0

#: A loop stall longer than this (seconds) is logged at WARNING (cases.md B13).
STALL_WARNING_S: Final = 1.0

_TICK_S: Final = 0.25

#: Cheap engine function called once after connecting, as a barrier behind the worker registration.
BARRIER_FUNCTION: Final = "engine::health::check"

#: Function-id prefixes always routed to the ``default`` namespace (protocol.md §3.4).
_DEFAULT_NS_PREFIXES: Final = ("engine::", "configuration::")

_SHUTDOWN_MESSAGE: Final = "iii is shutting down"

#: Keys of a trigger request dict prepared without validating it into a TriggerRequest.
_PLAIN_REQUEST_KEYS: Final = frozenset({"function_id", "payload"})


def resolve_engine_url(address: str | None = None) -> str:
    """The engine address: ``address``, else ``III_URL``, else ``ws://127.0.0.1:49134``.

    Raises:
        ValueError: the address is not a ``ws://`` or ``wss://`` URL.
    """
    url = address if address else (os.environ.get("III_URL", "").strip() or DEFAULT_ENGINE_URL)
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"engine address {url!r} is not a ws:// or wss:// URL")
    return url


# --------------------------------------------------------------------------------------------
# Handles returned to user code
# --------------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Entry:
    """A registration kept for replay: its frame and the connection it was last sent on."""

    key: str
    frame: bytes
    sent_generation: int = 0
    active: bool = True


@dataclass(eq=False)
class _FunctionEntry(_Entry):
    spec: HandlerSpec | None = None  # None for HTTP-invoked functions
    ref: FunctionRef | None = None


@dataclass(eq=False)
class _TriggerEntry(_Entry):
    handle: Trigger | None = None
    unregister_frame: bytes = b""


@dataclass(eq=False)
class _TriggerTypeEntry(_Entry):
    handler: TriggerHandler[Any] | None = None
    config_model: type[BaseModel] | None = None
    bindings: dict[str, TriggerConfig[Any]] = field(default_factory=dict)
    unregister_frame: bytes = b""


class FunctionRef:
    """Handle of a registered function (returned by :meth:`III.register_function`).

    Attributes:
        id: The function id.
        rejection: Set when the engine refused this function with ``FUNCTION_NAMESPACE_CONFLICT``
            (another live worker owns the id in this namespace), else ``None``.
    """

    def __init__(self, client: III, function_id: str) -> None:
        self._client = client
        self.id = function_id
        self.rejection: RegistrationRejectedError | None = None

    def unregister(self) -> None:
        """Remove the function (sends ``unregisterfunction`` when connected; idempotent)."""
        self._client._unregister_function(self.id)

    def __repr__(self) -> str:
        return f"FunctionRef(id={self.id!r})"


TriggerStatus = Literal["pending", "sent", "failed", "unregistered"]


class Trigger:
    """Handle of a trigger binding (returned by :meth:`III.register_trigger`).

    Attributes:
        id: Trigger id (a UUID, kept across reconnects).
        trigger_type: The trigger type.
        function_id: The bound function.
        status: ``pending`` (not yet sent on the current connection), ``sent``, ``failed`` (the
            engine answered with an error, see :attr:`error`) or ``unregistered``. The engine
            does not acknowledge successful bindings (protocol.md §2.5).
        error: The registration error reported by the engine (``triggerregistrationresult``
            with ``error``), else ``None``.
    """

    def __init__(self, client: III, trigger_id: str, trigger_type: str, function_id: str) -> None:
        self._client = client
        self.id = trigger_id
        self.trigger_type = trigger_type
        self.function_id = function_id
        self.status: TriggerStatus = "pending"
        self.error: InvocationError | None = None
        self._changed = threading.Condition()

    def unregister(self) -> None:
        """Remove the binding (sends ``unregistertrigger`` when connected; idempotent)."""
        self._client._unregister_trigger(self.id)

    def wait_for_error(self, timeout: float) -> InvocationError | None:
        """Block up to ``timeout`` seconds for a registration error; return it or ``None``."""
        with self._changed:
            self._changed.wait_for(lambda: self.error is not None, timeout)
        return self.error

    def _set(self, status: TriggerStatus, error: InvocationError | None = None) -> None:
        with self._changed:
            self.status = status
            self.error = error
            self._changed.notify_all()

    def __repr__(self) -> str:
        return (
            f"Trigger(id={self.id!r}, type={self.trigger_type!r}, "
            f"function_id={self.function_id!r}, status={self.status!r})"
        )


class TriggerTypeRef(Generic[C]):
    """Handle of a custom trigger type this worker provides (see :meth:`III.register_trigger_type`).

    Attributes:
        id: The trigger type id.
    """

    def __init__(self, client: III, trigger_type_id: str) -> None:
        self._client = client
        self.id = trigger_type_id

    def register_trigger(self, function_id: str, config: C | Any, metadata: Any = None) -> Trigger:
        """Bind ``function_id`` to this trigger type (``config`` may be a pydantic model)."""
        if isinstance(config, BaseModel):
            config = config.model_dump(mode="json", by_alias=True)
        return self._client.register_trigger(
            RegisterTriggerInput(type=self.id, function_id=function_id, config=config, metadata=metadata)
        )

    def register_function(
        self, function_id: str, handler: Callable[..., Any], description: str | None = None
    ) -> FunctionRef:
        """Register a function meant to be bound to this trigger type."""
        return self._client.register_function(function_id, handler, description=description)

    def unregister(self) -> None:
        """Stop providing this trigger type."""
        self._client._unregister_trigger_type(self.id, None)

    def __repr__(self) -> str:
        return f"TriggerTypeRef(id={self.id!r})"


# --------------------------------------------------------------------------------------------
# Calls
# --------------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Call:
    """A prepared ``trigger`` call: the encoded frame and how to wait for it."""

    function_id: str
    invocation_id: str | None
    kind: Literal["sync", "void", "enqueue"]
    timeout_ms: int
    data: bytes


@dataclass(eq=False)
class _Pending:
    future: asyncio.Future[Any] | Handoff  # Handoff: the caller waits on another thread
    call: _Call
    started: float
    timer: asyncio.TimerHandle | None = None
    generation: int | None = None  # the connection the call was written on


class _Hooks:
    """Adapter giving the connection access to the client's internals."""

    def __init__(self, client: III) -> None:
        self._client = client

    def replay_frames(self, generation: int) -> list[bytes]:
        return self._client._replay_frames(generation)

    def registration_frame(self) -> bytes:
        return self._client._registration_frame

    def handle_message(self, message: bytes) -> None:
        self._client._handle_message(message)

    def on_failed(self, error: IIIError) -> None:
        self._client._on_failed(error)

    def on_disconnected(self, generation: int) -> None:
        self._client._on_disconnected(generation)


# --------------------------------------------------------------------------------------------
# The client
# --------------------------------------------------------------------------------------------


class III:
    """A worker connected to an iii engine.

    The constructor starts connecting in the background and returns at once; use
    :func:`register_worker` to block until the connection is up. Registrations made before the
    connection opens are sent as soon as it does, and again after every reconnect.

    Args:
        address: Engine URL (default ``III_URL``, then ``ws://127.0.0.1:49134``).
        options: :class:`~iii_typed.InitOptions`.

    Raises:
        ValueError: a malformed address, or a blank namespace.
    """

    def __init__(self, address: str | None = None, options: InitOptions | None = None) -> None:
        self._address = resolve_engine_url(address)
        self._options = options if options is not None else InitOptions()
        self._namespace = resolve_namespace(self._options)
        unnamed = not os.environ.get("III_WORKER_NAME", "").strip() and not (
            self._options.worker_name and self._options.worker_name.strip()
        )
        self._worker_name = resolve_worker_name(self._options, allocate_unnamed_suffix() if unnamed else 0)
        self._registration_frame = encode_frame(
            InvokeFunction(
                type="invokefunction",
                function_id="engine::workers::register",
                data=worker_metadata(self._options, self._worker_name, self._namespace),
                action={"type": "void"},
            )
        )
        self._reg_lock = threading.RLock()
        self._services: dict[str, _Entry] = {}
        self._trigger_types: dict[str, _TriggerTypeEntry] = {}
        self._functions: dict[str, _FunctionEntry] = {}
        self._triggers: dict[str, _TriggerEntry] = {}
        self._pending: dict[str, _Pending] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        self._shutdown_lock = threading.Lock()
        self._stop_events: set[threading.Event] = set()
        self._threads = HandlerThreads()
        self._loop = LoopThread()
        self._channels = ChannelFactory(self._address, self._options, self._loop)
        # OpenTelemetry (protocol.md §8; iii_typed.telemetry): None when OTEL_ENABLED=false
        self._telemetry = client_telemetry(
            self._options, self._address, build_headers(self._options), self._loop.loop
        )
        self._conn = Connection(self._address, self._options, _Hooks(self))
        self._conn.add_listener(self._on_state)
        self._last_tick = time.monotonic()
        self._loop.call_soon(self._conn.start)
        self._loop.call_soon(self._watchdog_tick)
        atexit.register(self._atexit)
        log.info(
            "iii worker %r (namespace %s) connecting to %s",
            self._worker_name,
            self._namespace or DEFAULT_NAMESPACE,
            self._address,
        )

    # -- properties --------------------------------------------------------------------------
    @property
    def worker_id(self) -> str | None:
        """The engine-assigned worker id of the current connection (``None`` before the first)."""
        return self._conn.worker_id

    @property
    def worker_name(self) -> str:
        """The name reported to the engine (decisions "Worker name")."""
        return self._worker_name

    @property
    def namespace(self) -> str | None:
        """This worker's namespace (``None`` means the engine's ``default``)."""
        return self._namespace

    def get_address(self) -> str:
        """The engine URL this client connects to."""
        return self._address

    def get_connection_state(self) -> IIIConnectionState:
        """The current connection state (``disconnected``, ``connecting``, ``connected``,
        ``reconnecting`` or ``failed``; protocol.md §10)."""
        return self._conn.state

    def add_connection_state_listener(
        self, handler: Callable[[IIIConnectionState], None]
    ) -> Callable[[], None]:
        """Call ``handler(state)`` now with the current state, then on every change.

        Changes are reported on the SDK loop thread (so the listener must not call blocking SDK
        methods); an exception in a listener is logged and does not affect others.

        Returns:
            An idempotent function removing this registration.
        """
        unsubscribe = self._conn.add_listener(handler)
        try:
            handler(self._conn.state)
        except Exception:
            log.exception("connection-state listener %r raised", handler)
        return unsubscribe

    def current_invocation(self) -> InvocationContext | None:
        """The context of the invocation being handled by the calling thread/task, else ``None``."""
        return _current_invocation()

    # -- connection --------------------------------------------------------------------------
    async def connect_async(self) -> None:
        """Connect (or reconnect after a ``failed`` that was not fatal) and wait until connected.

        Called automatically by the constructor; use it to wait for the connection from async
        code, or to start again after the reconnection retries ran out.

        Raises:
            EngineUnreachableError: no connection within 30 s or the retries ran out.
            RegistrationRejectedError: the engine refused this worker (fatal).
        """
        await self._loop.run_async(self._connect())

    async def _connect(self) -> None:
        if self._closed:
            raise RuntimeError("the iii client is shut down")
        self._conn.start()
        state = await self._conn.wait_for_state(frozenset({"connected", "failed"}), CONNECT_BUDGET_S)
        if state == "connected":
            await self._registration_barrier()
            return
        if self._conn.fatal_error is not None:
            raise self._conn.fatal_error
        raise EngineUnreachableError(
            f"not connected to the iii engine at {self._address} (state {state!r}; "
            f"{self._conn.attempts} connection attempt(s))"
        )

    async def _registration_barrier(self) -> None:
        """Wait until the engine has processed our worker registration.

        ``engine::workers::register`` is a void call: the engine answers only a refusal
        (``registrationrejected``, then a close; protocol.md §2.11). One round trip on the same
        connection, sent after it, lets such a refusal arrive first; any answer will do.

        Raises:
            RegistrationRejectedError: the engine refused this worker.
        """
        call = self._prepare_call({"function_id": BARRIER_FUNCTION, "payload": {}, "timeout_ms": 5000})
        try:
            await self._dispatch(call)
        except RegistrationRejectedError:
            raise
        except IIIError as exc:
            log.debug("registration barrier answered %s", exc)
        if self._conn.fatal_error is not None:
            raise self._conn.fatal_error

    def _on_state(self, state: IIIConnectionState) -> None:
        if state == "failed":
            for event in list(self._stop_events):
                event.set()

    # -- registries and replay -----------------------------------------------------------------
    def _replay_frames(self, generation: int) -> list[bytes]:
        frames: list[bytes] = []
        with self._reg_lock:
            groups: list[list[_Entry]] = [
                list(self._services.values()),
                list(self._trigger_types.values()),
                list(self._functions.values()),
                list(self._triggers.values()),
            ]
        for group in groups:
            for entry in group:
                if entry.active and entry.sent_generation != generation:
                    entry.sent_generation = generation
                    frames.append(entry.frame)
                    if isinstance(entry, _TriggerEntry) and entry.handle is not None:
                        entry.handle._set("sent")
        return frames

    def _schedule(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Run a registration coroutine: wait for it from user threads, fire-and-forget on the loop."""
        if self._closed or not self._loop.is_running():
            coro.close()
            raise RuntimeError(f"{name}(): the iii client is shut down")
        if self._loop.on_loop_thread():
            self._track(asyncio.get_running_loop().create_task(coro))
        else:
            self._loop.run_sync(coro, name)

    def _track(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish(self, entry: _Entry) -> None:
        if entry.active and self._conn.ready and entry.sent_generation != self._conn.generation:
            entry.sent_generation = self._conn.generation
            sent = await self._conn.send_now(entry.frame)
            if sent and isinstance(entry, _TriggerEntry) and entry.handle is not None:
                entry.handle._set("sent")

    async def _unpublish(self, entry: _Entry, frame: bytes) -> None:
        if self._conn.ready and entry.sent_generation == self._conn.generation:
            await self._conn.send_now(frame)

    # -- functions ---------------------------------------------------------------------------
    def register_function(
        self,
        function_id: str,
        handler_or_invocation: Callable[..., Any] | HttpInvocationConfig,
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
        request_format: RegisterFunctionFormat | dict[str, Any] | type[BaseModel] | None = None,
        response_format: RegisterFunctionFormat | dict[str, Any] | type[BaseModel] | None = None,
    ) -> FunctionRef:
        """Register a function this worker serves (``registerfunction``, protocol.md §2.1).

        Args:
            function_id: Unique id, e.g. ``orders::create``.
            handler_or_invocation: A sync or async callable taking the payload (first
                parameter; annotate it with a pydantic model to receive a validated instance,
                add a parameter named ``metadata`` to receive the sidecar), or an
                :class:`~iii_typed.HttpInvocationConfig` for an HTTP-invoked function.
            description: Human-readable description.
            metadata: Arbitrary JSON metadata (copied).
            request_format: Input schema (``RegisterFunctionFormat``, dict or pydantic class);
                ``None`` extracts it from the handler's type hints (protocol.md §9).
            response_format: Output schema; same rules, from the return annotation.

        Returns:
            A :class:`FunctionRef` with ``id`` and ``unregister()``.

        Raises:
            TypeError: ``function_id`` or ``description`` is not a str, the handler is not
                callable, or ``metadata`` or a format has no JSON form.
            ValueError: ``function_id`` is blank or already registered on this client.
        """
        if not isinstance(function_id, str):
            raise TypeError(f"function_id must be a str, not {type(function_id).__name__}")
        if not function_id.strip():
            raise ValueError("function_id is required (got a blank string)")
        frame = RegisterFunction(type="registerfunction", id=function_id)
        spec: HandlerSpec | None = None
        if isinstance(handler_or_invocation, HttpInvocationConfig):
            frame.invocation = HttpInvocationRef.model_validate(
                handler_or_invocation.model_dump(mode="json", exclude_none=True)
            )
        elif callable(handler_or_invocation):
            localns = _caller_locals()
            spec = HandlerSpec.of(function_id, handler_or_invocation, localns)
            if request_format is None:
                request_format = extract_request_format(handler_or_invocation, localns)
            if response_format is None:
                response_format = extract_response_format(handler_or_invocation, localns)
        else:
            raise TypeError(
                f"handler_or_invocation of {function_id!r} must be callable or an HttpInvocationConfig, "
                f"not {type(handler_or_invocation).__name__}"
            )
        if description is not None:
            if not isinstance(description, str):  # the engine drops the whole registration
                raise TypeError(
                    f"description of {function_id!r} must be a str, not {type(description).__name__}"
                )
            frame.description = description
        if request_format is not None:
            frame.request_format = resolve_format(request_format)
        if response_format is not None:
            frame.response_format = resolve_format(response_format)
        if metadata is not None:
            frame.metadata = copy.deepcopy(metadata)
        data = _encode_registration(frame, f"registration of {function_id!r}")
        ref = FunctionRef(self, function_id)
        entry = _FunctionEntry(key=function_id, frame=data, spec=spec, ref=ref)
        with self._reg_lock:
            if function_id in self._functions:
                raise ValueError(f"function id {function_id!r} already registered")
            self._functions[function_id] = entry
        self._schedule(self._publish(entry), "register_function")
        return ref

    def _unregister_function(self, function_id: str) -> None:
        with self._reg_lock:
            entry = self._functions.pop(function_id, None)
        if entry is None:
            return
        entry.active = False
        frame = encode_frame(UnregisterFunction(type="unregisterfunction", id=function_id))
        self._schedule_quietly(self._unpublish(entry, frame))

    def _schedule_quietly(self, coro: Coroutine[Any, Any, None]) -> None:
        """Like :meth:`_schedule` for unregistrations: a no-op once the client is shut down."""
        try:
            self._schedule(coro, "unregister")
        except RuntimeError:
            pass

    # -- services ----------------------------------------------------------------------------
    def register_service(self, service: RegisterServiceInput | dict[str, Any]) -> None:
        """Register a service grouping (``registerservice``, protocol.md §2.14).

        Services are replayed on reconnect (after ``reattach``, before trigger types).

        Raises:
            pydantic.ValidationError: the dict is not a valid service (names the field).
        """
        svc = (
            service
            if isinstance(service, RegisterServiceInput)
            else RegisterServiceInput.model_validate(service)
        )
        frame = RegisterService(type="registerservice", id=svc.id)
        for name in ("name", "description", "parent_service_id"):
            value = getattr(svc, name)
            if value is not None:
                setattr(frame, name, value)
        entry = _Entry(key=svc.id, frame=_encode_registration(frame, f"service {svc.id!r}"))
        with self._reg_lock:
            self._services[svc.id] = entry
        self._schedule(self._publish(entry), "register_service")

    # -- triggers ----------------------------------------------------------------------------
    def register_trigger(self, trigger: RegisterTriggerInput | dict[str, Any]) -> Trigger:
        """Bind a function to a trigger type (``registertrigger``, protocol.md §2.5).

        The binding gets a fresh UUID, kept across reconnects. The engine answers only errors:
        they are logged at WARNING and recorded on the returned handle (``error``, ``status``).

        Raises:
            pydantic.ValidationError: the dict is not a valid trigger (names the field), e.g. a
                blank ``type``, ``function_id`` or namespace.
        """
        req = (
            trigger
            if isinstance(trigger, RegisterTriggerInput)
            else RegisterTriggerInput.model_validate(trigger)
        )
        config = req.config
        if isinstance(config, BaseModel):
            config = config.model_dump(mode="json", by_alias=True)
        trigger_id = str(uuid.uuid4())
        frame = RegisterTrigger(
            type="registertrigger",
            id=trigger_id,
            trigger_type=req.type,
            function_id=req.function_id,
            config={} if config is None else copy.deepcopy(config),
        )
        if req.metadata is not None:
            frame.metadata = copy.deepcopy(req.metadata)
        namespace = req.namespace if req.namespace is not None else self._namespace
        if namespace is not None:
            frame.namespace = namespace
        if req.trigger_namespace is not None:
            frame.trigger_namespace = req.trigger_namespace
        handle = Trigger(self, trigger_id, req.type, req.function_id)
        entry = _TriggerEntry(
            key=trigger_id,
            frame=_encode_registration(frame, f"trigger for {req.function_id!r}"),
            handle=handle,
            unregister_frame=encode_frame(
                UnregisterTrigger(type="unregistertrigger", id=trigger_id, trigger_type=req.type)
            ),
        )
        with self._reg_lock:
            self._triggers[trigger_id] = entry
        self._schedule(self._publish(entry), "register_trigger")
        return handle

    def _unregister_trigger(self, trigger_id: str) -> None:
        with self._reg_lock:
            entry = self._triggers.pop(trigger_id, None)
        if entry is None:
            return
        entry.active = False
        if entry.handle is not None:
            entry.handle._set("unregistered", entry.handle.error)
        self._schedule_quietly(self._unpublish(entry, entry.unregister_frame))

    # -- trigger types -----------------------------------------------------------------------
    def register_trigger_type(
        self, trigger_type: RegisterTriggerTypeInput | dict[str, Any], handler: TriggerHandler[Any]
    ) -> TriggerTypeRef[Any]:
        """Provide a custom trigger type (``registertriggertype``, protocol.md §2.3).

        The engine then sends ``registertrigger``/``unregistertrigger`` for bindings of this type;
        the SDK calls ``handler.register_trigger(config)`` / ``handler.unregister_trigger(config)``
        and answers ``triggerregistrationresult`` (an exception → ``trigger_registration_failed``).

        Raises:
            TypeError: ``handler`` is not a :class:`~iii_typed.TriggerHandler`.
            pydantic.ValidationError: the dict is not a valid trigger type.
        """
        tt = (
            trigger_type
            if isinstance(trigger_type, RegisterTriggerTypeInput)
            else RegisterTriggerTypeInput.model_validate(trigger_type)
        )
        if not isinstance(handler, TriggerHandler):
            raise TypeError(f"handler must be a TriggerHandler instance, not {type(handler).__name__}")
        frame = RegisterTriggerType(type="registertriggertype", id=tt.id, description=tt.description)
        if tt.trigger_request_format is not None:
            frame.trigger_request_format = resolve_format(tt.trigger_request_format)
        if tt.call_request_format is not None:
            frame.call_request_format = resolve_format(tt.call_request_format)
        if tt.namespace is not None:
            frame.namespace = tt.namespace
        unregister = UnregisterTriggerType(type="unregistertriggertype", id=tt.id)
        if tt.namespace is not None:
            unregister.namespace = tt.namespace
        entry = _TriggerTypeEntry(
            key=tt.id,
            frame=_encode_registration(frame, f"trigger type {tt.id!r}"),
            handler=handler,
            config_model=_config_model_of(handler),
            unregister_frame=encode_frame(unregister),
        )
        with self._reg_lock:
            self._trigger_types[tt.id] = entry
        self._schedule(self._publish(entry), "register_trigger_type")
        return TriggerTypeRef(self, tt.id)

    def unregister_trigger_type(self, trigger_type: RegisterTriggerTypeInput | dict[str, Any]) -> None:
        """Stop providing a trigger type (``unregistertriggertype``, protocol.md §2.4).

        Only ``id`` (and ``namespace``) matter; a dict ``{"id": ...}`` is enough.
        """
        if isinstance(trigger_type, RegisterTriggerTypeInput):
            type_id, namespace = trigger_type.id, trigger_type.namespace
        else:
            if not isinstance(trigger_type, dict) or not isinstance(trigger_type.get("id"), str):
                raise TypeError("trigger_type must be a RegisterTriggerTypeInput or a dict with a str 'id'")
            type_id, namespace = trigger_type["id"], trigger_type.get("namespace")
        self._unregister_trigger_type(type_id, namespace)

    def _unregister_trigger_type(self, type_id: str, namespace: str | None) -> None:
        with self._reg_lock:
            entry = self._trigger_types.pop(type_id, None)
        if entry is None:
            return
        entry.active = False
        frame = entry.unregister_frame
        if namespace is not None:
            frame = encode_frame(
                UnregisterTriggerType(type="unregistertriggertype", id=type_id, namespace=namespace)
            )
        self._schedule_quietly(self._unpublish(entry, frame))

    # -- trigger -----------------------------------------------------------------------------
    def _call_namespace(self, function_id: str, explicit: str | None) -> str | None:
        if explicit is not None:
            return explicit
        if function_id.startswith(_DEFAULT_NS_PREFIXES):
            return DEFAULT_NAMESPACE
        return self._namespace

    def _prepare_call(self, request: TriggerRequest | dict[str, Any]) -> _Call:
        if type(request) is dict:
            function_id = request.get("function_id")
            if (
                type(function_id) is str
                and request.keys() <= _PLAIN_REQUEST_KEYS
                and function_id.strip()  # TriggerRequest's own check
            ):
                # ``{"function_id": ..., "payload": ...}``: the TriggerRequest it validates into
                # has these two values as they are, and every other field unset.
                return self._prepare_plain(function_id, request.get("payload"))
            req = TriggerRequest.model_validate(request)
        elif isinstance(request, TriggerRequest):
            req = request
        elif isinstance(request, dict):
            req = TriggerRequest.model_validate(request)
        else:
            raise TypeError(f"request must be a TriggerRequest or a dict, not {type(request).__name__}")
        action = req.action
        kind: Literal["sync", "void", "enqueue"] = (
            "void" if isinstance(action, TriggerActionVoid) else "enqueue" if action is not None else "sync"
        )
        invocation_id: str | None = None
        if kind != "void":
            invocation_id = uuid4_str()  # no system call per id (_ids)
        namespace = self._call_namespace(req.function_id, req.namespace)
        traceparent = baggage = None
        if self._telemetry is not None:  # the caller's trace context (protocol.md §4.5)
            traceparent, baggage = self._telemetry.outgoing()
        try:
            if action is None:  # the frame of every plain call, written without its model
                data = codec.encode_invoke(
                    req.function_id,
                    req.payload,
                    invocation_id,
                    traceparent=traceparent,
                    baggage=baggage,
                    metadata=req.metadata,
                    namespace=namespace,
                )
            else:
                fields: dict[str, Any] = {
                    "type": "invokefunction",
                    "function_id": req.function_id,
                    "data": req.payload,
                    "action": action.model_dump(),
                }
                for name, value in (
                    ("invocation_id", invocation_id),
                    ("metadata", req.metadata),
                    ("namespace", namespace),
                    ("traceparent", traceparent),
                    ("baggage", baggage),
                ):
                    if value is not None:
                        fields[name] = value
                data = encode_frame(InvokeFunction.model_validate(fields))
        except (PydanticSerializationError, ValueError, TypeError) as exc:
            where = find_unserialisable(req.payload, "payload") or find_unserialisable(
                req.metadata, "metadata"
            )
            raise TypeError(
                f"trigger {req.function_id!r}: {where or 'the request'} is not JSON-serialisable ({exc})"
            ) from None
        check_size(data, f"the request to {req.function_id!r}", req.function_id)
        return _Call(
            function_id=req.function_id,
            invocation_id=invocation_id,
            kind=kind,
            timeout_ms=req.timeout_ms or self._options.invocation_timeout_ms,
            data=data,
        )

    def _prepare_plain(self, function_id: str, payload: Any) -> _Call:
        """:meth:`_prepare_call` of a request with only ``function_id`` and ``payload``."""
        invocation_id = uuid4_str()
        traceparent = baggage = None
        if self._telemetry is not None:
            traceparent, baggage = self._telemetry.outgoing()
        try:
            data = codec.encode_invoke(
                function_id,
                payload,
                invocation_id,
                traceparent=traceparent,
                baggage=baggage,
                namespace=self._call_namespace(function_id, None),
            )
        except (PydanticSerializationError, ValueError, TypeError) as exc:
            where = find_unserialisable(payload, "payload")
            raise TypeError(
                f"trigger {function_id!r}: {where or 'the request'} is not JSON-serialisable ({exc})"
            ) from None
        check_size(data, f"the request to {function_id!r}", function_id)
        return _Call(function_id, invocation_id, "sync", self._options.invocation_timeout_ms, data)

    def trigger(self, request: TriggerRequest | dict[str, Any]) -> Any:
        """Invoke a function and, without an action, wait for its result (protocol.md §4).

        Args:
            request: A :class:`~iii_typed.TriggerRequest` or a dict with ``function_id``,
                ``payload`` and optional ``action``, ``timeout_ms``, ``metadata``, ``namespace``.
                The payload may contain pydantic models (written in JSON mode).

        Returns:
            The function's result (decoded JSON); ``None`` at once for
            ``TriggerAction.Void()``; an :class:`~iii_typed.EnqueueResult` for
            ``TriggerAction.Enqueue(queue=…)``.

        Raises:
            InvocationTimeoutError: no result within ``timeout_ms`` (code ``TIMEOUT``).
            InvocationError: the engine or the handler reported an error (``code``, ``message``,
                ``stacktrace``), ``SHUTDOWN``, or ``payload_too_large`` (over 64 MiB, before
                sending).
            TypeError: the payload is not JSON-serialisable (before anything is sent).
            pydantic.ValidationError: the request dict is invalid (names the field).
            RegistrationRejectedError: the engine refused this worker (fatal).
            EngineUnreachableError: the reconnection retries ran out.
            RuntimeError: called on the SDK's event-loop thread (use ``trigger_async``).
        """
        call = self._prepare_call(request)
        self._check_usable()
        if call.kind == "void":
            return self._loop.run_sync(self._dispatch(call), "trigger")
        return self._finish(call, self._loop.call_blocking(self._begin, call, "trigger", self._abandon))

    async def trigger_async(self, request: TriggerRequest | dict[str, Any]) -> Any:
        """Async twin of :meth:`trigger`; may be awaited from any event loop."""
        call = self._prepare_call(request)
        self._check_usable()
        loop = asyncio.get_running_loop()
        if call.kind == "void" or loop is self._loop.loop:
            return await self._loop.run_async(self._dispatch(call))
        # From another thread's loop: the SDK loop starts the call without a task and hands the
        # outcome back (one wakeup each way, shared by the calls of a burst; _loop).
        handoff = self._loop.start_call(self._begin, call, loop)
        future: asyncio.Future[Any] = handoff.future  # type: ignore[assignment]
        try:
            result = await future
        except asyncio.CancelledError:
            handoff.abandoned = True
            self._loop.call_soon(self._abandon, handoff)
            raise
        return self._finish(call, result)

    def _check_usable(self) -> None:
        if self._closed:
            raise InvocationError("SHUTDOWN", _SHUTDOWN_MESSAGE)
        if self._conn.state == "failed":
            if self._conn.fatal_error is not None:
                raise self._conn.fatal_error
            raise EngineUnreachableError(
                f"the iii engine at {self._address} is unreachable (reconnection retries exhausted); "
                "call connect_async() to try again"
            )

    def _check_dispatch(self, call: _Call) -> None:
        """On the SDK loop, before a call is sent: the client is usable, and the offline policy."""
        self._check_usable()
        if self._options.offline_calls == "fail" and not self._conn.ready:
            raise InvocationError(
                "DISCONNECTED",
                f"the call to {call.function_id!r} was not sent: not connected to the iii engine "
                f"(state {self._conn.state!r}) and InitOptions.offline_calls is 'fail'",
                function_id=call.function_id,
                invocation_id=call.invocation_id,
            )

    async def _dispatch(self, call: _Call) -> Any:
        """Send ``call`` and wait for its outcome (on the SDK loop)."""
        self._check_dispatch(call)
        if call.kind == "void":
            await self._conn.send(call.data)
            return None
        invocation_id = call.invocation_id
        assert invocation_id is not None
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        pending = self._start_pending(call, future)
        try:
            result = await future
        finally:
            assert pending.timer is not None
            pending.timer.cancel()
            self._pending.pop(invocation_id, None)
        return self._finish(call, result)

    def _begin(self, call: _Call, handoff: Handoff) -> None:
        """Start ``call`` (which waits for an answer) for a caller on another thread (SDK loop)."""
        try:
            self._check_dispatch(call)
        except IIIError as exc:
            handoff.set_exception(exc)
            return
        self._start_pending(call, handoff)

    def _abandon(self, handoff: Handoff) -> None:
        """The caller of a started call stopped waiting (cancelled): forget the call (SDK loop).
        Its frame may still be sent; a late result is dropped."""
        call: _Call = handoff.arg
        assert call.invocation_id is not None
        pending = self._pending.get(call.invocation_id)
        if pending is not None and pending.future is handoff:
            del self._pending[call.invocation_id]
            if pending.timer is not None:
                pending.timer.cancel()

    def _start_pending(self, call: _Call, future: asyncio.Future[Any] | Handoff) -> _Pending:
        """Register a call waiting for its answer in ``future``, arm its timeout and send it:
        written at once in the common case, else by a task (SDK loop)."""
        invocation_id = call.invocation_id
        assert invocation_id is not None
        pending = _Pending(future, call, time.monotonic())
        pending.timer = self._loop.loop.call_later(call.timeout_ms / 1000, self._expire, invocation_id)
        self._pending[invocation_id] = pending
        conn = self._conn
        if conn.write_now(call.data):
            pending.generation = conn.generation
        else:
            self._track(self._loop.loop.create_task(self._send_pending(pending)))
        return pending

    async def _send_pending(self, pending: _Pending) -> None:
        call = pending.call
        invocation_id = call.invocation_id
        assert invocation_id is not None

        def on_sent() -> None:
            pending.generation = self._conn.generation

        try:
            if await self._conn.send(call.data, on_drop=lambda: self._drop(invocation_id), on_sent=on_sent):
                on_sent()
        except BaseException as exc:  # the connection failed for good, or shutdown cancelled us
            if self._pending.get(invocation_id) is pending:
                del self._pending[invocation_id]
                if pending.timer is not None:
                    pending.timer.cancel()
            if not pending.future.done():
                if isinstance(exc, asyncio.CancelledError):
                    pending.future.set_exception(
                        InvocationError(
                            "SHUTDOWN",
                            _SHUTDOWN_MESSAGE,
                            function_id=call.function_id,
                            invocation_id=invocation_id,
                        )
                    )
                else:
                    pending.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise

    @staticmethod
    def _finish(call: _Call, result: Any) -> Any:
        """The caller's view of a call's result (an :class:`EnqueueResult` for enqueue calls)."""
        if call.kind != "enqueue":
            return result
        try:
            return EnqueueResult.model_validate(result)
        except ValidationError:
            raise InvocationError(
                "UNKNOWN",
                f"unexpected enqueue result for {call.function_id!r}: {result!r}",
                function_id=call.function_id,
                invocation_id=call.invocation_id,
            ) from None

    def _expire(self, invocation_id: str) -> None:
        pending = self._pending.pop(invocation_id, None)
        if pending is None or pending.future.done():
            return
        elapsed = round((time.monotonic() - pending.started) * 1000)
        call = pending.call
        pending.future.set_exception(
            InvocationTimeoutError(
                "TIMEOUT",
                f"invocation of {call.function_id!r} timed out after {elapsed}ms "
                f"(timeout_ms={call.timeout_ms})",
                function_id=call.function_id,
                invocation_id=invocation_id,
            )
        )

    def _drop(self, invocation_id: str) -> None:
        pending = self._pending.pop(invocation_id, None)
        if pending is None or pending.future.done():
            return
        if pending.timer is not None:
            pending.timer.cancel()
        pending.future.set_exception(
            InvocationError(
                "DISCONNECTED",
                f"the call to {pending.call.function_id!r} was dropped before it could be sent: "
                f"the offline queue is full or the client stopped",
                function_id=pending.call.function_id,
                invocation_id=invocation_id,
            )
        )

    def _on_disconnected(self, generation: int) -> None:
        """Fail the calls written on the socket that ended: their results can never arrive (the
        engine answers on the caller's connection only and halts it at cleanup, protocol.md §3.6).
        Calls still queued keep waiting for the next connection."""
        lost = [(key, p) for key, p in self._pending.items() if p.generation == generation]
        for invocation_id, pending in lost:
            del self._pending[invocation_id]
            if pending.timer is not None:
                pending.timer.cancel()
            if not pending.future.done():
                pending.future.set_exception(
                    InvocationError(
                        "DISCONNECTED",
                        f"the connection to the iii engine ended before the result of "
                        f"{pending.call.function_id!r} arrived (the call may or may not have run)",
                        function_id=pending.call.function_id,
                        invocation_id=invocation_id,
                    )
                )

    def _on_failed(self, error: IIIError) -> None:
        pending = list(self._pending.values())
        self._pending.clear()
        for item in pending:
            if item.timer is not None:
                item.timer.cancel()
            if not item.future.done():
                item.future.set_exception(error)

    # -- channels and streams ------------------------------------------------------------------
    def create_channel(self, buffer_size: int | None = None) -> Channel:
        """Create a channel through the engine (``engine::channels::create``, protocol.md §5.1).

        Args:
            buffer_size: Messages the engine buffers between writer and reader (default 64, at
                most 1024); a faster writer waits when it is full.

        Returns:
            A :class:`~iii_typed.Channel`: local ``writer`` / ``reader`` and their refs
            ``writer_ref`` / ``reader_ref`` to put in payloads (see :mod:`iii_typed.channels`).

        Raises:
            TypeError / ValueError: ``buffer_size`` is not a non-negative int.
            InvocationError: the engine refused (e.g. no channel support).
            RuntimeError: called on the SDK's event-loop thread (use :meth:`create_channel_async`).
        """
        return self._channels.channel(self.trigger(create_request(buffer_size)))

    async def create_channel_async(self, buffer_size: int | None = None) -> Channel:
        """Async twin of :meth:`create_channel`."""
        return self._channels.channel(await self.trigger_async(create_request(buffer_size)))

    def create_stream(self, stream_name: str, stream: IStream[Any]) -> None:
        """Serve the stream ``stream_name`` from ``stream`` (protocol.md §6.2 overrides).

        Registers ``stream::get|set|delete|list|list_groups(<stream_name>)``; the engine calls
        them instead of its own storage (updates go through ``get`` and ``set``). See
        :mod:`iii_typed.streams`.

        Raises:
            TypeError: ``stream`` is not an :class:`~iii_typed.IStream`.
            ValueError: a blank name, or one with spaces or parentheses.
        """
        register_stream(self, stream_name, stream)

    # -- incoming frames ---------------------------------------------------------------------
    def _handle_message(self, message: bytes) -> None:
        try:
            frame = codec.decode(message)
        except FrameDecodeError as exc:
            if exc.reason == "type":
                log.debug("ignoring a frame of unknown type %r from the engine", exc.frame_type)
            elif exc.frame_type == "invocationresult":
                self._on_malformed_result(message, exc)
            elif message.strip():
                log.warning("skipping a malformed frame from the engine: %s", exc)
            return
        try:
            self._dispatch_frame(frame)
        except Exception:
            log.exception("error while handling a %s frame", getattr(frame, "type", "?"))

    def _dispatch_frame(self, frame: FrameModel) -> None:
        if isinstance(frame, InvocationResult):
            self._on_result(frame)
        elif isinstance(frame, InvokeFunction):
            self._on_invoke(frame)
        elif isinstance(frame, RegisterTrigger):
            self._on_bind(frame)
        elif isinstance(frame, UnregisterTrigger):
            self._on_unbind(frame)
        elif isinstance(frame, TriggerRegistrationResult):
            self._on_trigger_result(frame)
        elif isinstance(frame, WorkerRegistered):
            self._conn.worker_id = frame.worker_id
            self._conn.reattach_token = frame.reattach_token
            self._conn.engine_features = frame.features
            log.debug("engine assigned worker id %s", frame.worker_id)
            if self._telemetry is not None:
                self._telemetry.worker_registered(frame.worker_id)
        elif isinstance(frame, RegistrationRejected):
            self._on_rejected(frame)
        elif isinstance(frame, ErrorFrame):
            if frame.error.code == "AUTH_ERROR":
                self._conn.fail(
                    RegistrationRejectedError("AUTH_ERROR", f"authentication failed: {frame.error.message}")
                )
            else:
                log.warning("engine error %s: %s", frame.error.code, frame.error.message)
        # ping/pong and engine-bound frames are ignored (as the official SDK does; protocol.md §1.2)

    def _on_result(self, frame: InvocationResult) -> None:
        invocation_id = codec.uuid_text(frame.invocation_id)
        pending = self._pending.pop(invocation_id, None)
        if pending is None or pending.future.done():
            log.debug(
                "dropping the result of unknown or timed-out invocation %s (%s)",
                invocation_id,
                frame.function_id,
            )
            return
        if pending.timer is not None:
            pending.timer.cancel()
        if frame.error is not None:
            pending.future.set_exception(
                error_from_body(
                    frame.error, function_id=pending.call.function_id, invocation_id=invocation_id
                )
            )
        else:
            pending.future.set_result(frame.result)

    def _on_malformed_result(self, message: bytes, exc: FrameDecodeError) -> None:
        try:
            raw = json.loads(message)
            pending = self._pending.pop(str(uuid.UUID(str(raw.get("invocation_id")))), None)
        except (ValueError, TypeError, AttributeError):
            pending = None
        if pending is None or pending.future.done():
            log.warning("skipping a malformed invocationresult from the engine: %s", exc)
            return
        if pending.timer is not None:
            pending.timer.cancel()
        error = raw.get("error")
        pending.future.set_exception(
            InvocationError(
                "UNKNOWN",
                f"malformed result from the engine: {error if error is not None else exc}",
                function_id=pending.call.function_id,
                invocation_id=pending.call.invocation_id,
            )
        )

    def _on_invoke(self, frame: InvokeFunction) -> None:
        entry = self._functions.get(frame.function_id)
        if entry is None or entry.spec is None:
            if frame.invocation_id is None:
                log.warning("void invocation of unknown function %r ignored", frame.function_id)
                return
            if entry is None:
                code, message = "function_not_found", f"Function '{frame.function_id}' not found"
            else:
                code, message = (
                    "function_not_invokable",
                    "Function is HTTP-invoked and cannot be invoked locally",
                )
            self._send_soon(build_error_result(frame.function_id, frame.invocation_id, code, message))
            return
        spec = entry.spec
        data = _handlers.transform_incoming_payload(frame.data, self._channels)
        if spec.is_async:
            self._track(asyncio.get_running_loop().create_task(self._run_async_handler(spec, frame, data)))
        else:
            try:
                self._threads.submit(lambda: self._run_sync_handler(spec, frame, data))
            except HandlerCapacityError as exc:
                log.error("cannot run the handler of %r: %s", frame.function_id, exc)
                if frame.invocation_id is not None:
                    message = f"the worker could not run the handler of {frame.function_id!r}: {exc}"
                    self._send_soon(
                        build_error_result(
                            frame.function_id, frame.invocation_id, "invocation_failed", message
                        )
                    )
            except RuntimeError:
                log.debug("invocation of %r after shutdown ignored", frame.function_id)

    async def _run_async_handler(self, spec: HandlerSpec, frame: InvokeFunction, data: Any) -> None:
        telemetry = self._telemetry
        if telemetry is None:
            out = await _handlers.run_async(spec, frame, data)
        else:  # the span is entered and left in this task (cases.md B21)
            with telemetry.handler_scope(frame, data) as scope:
                out = await _handlers.run_async(spec, frame, data, scope)
        stalled = time.monotonic() - self._last_tick
        if stalled > STALL_WARNING_S + _TICK_S:
            # No watchdog tick ran while this handler's last step did: it blocked the loop.
            self._last_tick = time.monotonic()
            log.warning(
                "the async handler of %r blocked the SDK event loop for about %.1f s: blocking work "
                "stalls every call and the keepalive; make the handler a plain `def` (it then runs on "
                "its own thread) or await non-blocking APIs",
                spec.function_id,
                stalled,
            )
        if out is not None and not self._conn.write_now(out):
            await self._conn.send(out)

    def _watchdog_tick(self) -> None:
        """Notice event-loop stalls (cases.md B13): a tick every 250 ms; a late one means the
        loop was blocked (by an async handler, a listener, …)."""
        now = time.monotonic()
        stalled = now - self._last_tick - _TICK_S
        self._last_tick = now
        if stalled > STALL_WARNING_S:
            log.warning(
                "the SDK event loop was blocked for about %.1f s (blocking code on the loop?)", stalled
            )
        if not self._closed:
            asyncio.get_running_loop().call_later(_TICK_S, self._watchdog_tick)

    def _run_sync_handler(self, spec: HandlerSpec, frame: InvokeFunction, data: Any) -> None:
        telemetry = self._telemetry
        if telemetry is None:
            out = _handlers.run_sync(spec, frame, data, self._await_on_loop)
        else:  # the span is entered and left on this handler thread (cases.md B21)
            with telemetry.handler_scope(frame, data) as scope:
                out = _handlers.run_sync(spec, frame, data, self._await_on_loop, scope)
        if out is not None:
            self._loop.call_soon(self._send_soon, out)

    def _await_on_loop(self, awaitable: Awaitable[Any]) -> Any:
        async def wrap() -> Any:
            return await awaitable

        return self._loop.submit(wrap()).result()

    def _send_soon(self, data: bytes) -> None:
        if self._closed or self._conn.write_now(data):
            return
        self._track(asyncio.get_running_loop().create_task(self._conn.send(data)))

    def _on_bind(self, frame: RegisterTrigger) -> None:
        entry = self._trigger_types.get(frame.trigger_type)
        if entry is None or entry.handler is None:
            log.warning(
                "engine asked to bind trigger %s of type %r, which this worker does not provide",
                frame.id,
                frame.trigger_type,
            )
            return
        self._track(asyncio.get_running_loop().create_task(self._bind(entry, frame)))

    async def _bind(self, entry: _TriggerTypeEntry, frame: RegisterTrigger) -> None:
        assert entry.handler is not None
        reply = TriggerRegistrationResult(
            type="triggerregistrationresult",
            id=frame.id,
            trigger_type=frame.trigger_type,
            function_id=frame.function_id,
        )
        try:
            config: Any = frame.config
            if entry.config_model is not None:
                try:
                    config = entry.config_model.model_validate(config)
                except ValidationError as exc:
                    raise ValueError(validation_message(entry.config_model, exc)) from None
            binding: TriggerConfig[Any] = TriggerConfig(
                id=frame.id,
                function_id=frame.function_id,
                config=config,
                metadata=frame.metadata,
                namespace=frame.namespace,
            )
            entry.bindings[frame.id] = binding
            result = entry.handler.register_trigger(binding)
            if inspect.isawaitable(result):
                await result
        except BaseException as exc:  # SystemExit & co. too: raised out of this task, they stop the loop
            if is_own_cancellation(exc):
                raise
            entry.bindings.pop(frame.id, None)
            log.warning("trigger %s of type %r refused: %s", frame.id, frame.trigger_type, exc)
            reply.error = ErrorBody(
                code="trigger_registration_failed", message=str(exc) or type(exc).__name__
            )
        await self._conn.send(encode_frame(reply))

    def _on_unbind(self, frame: UnregisterTrigger) -> None:
        with self._reg_lock:
            entries = list(self._trigger_types.values())
        target: _TriggerTypeEntry | None = None
        binding: TriggerConfig[Any] | None = None
        for entry in entries:
            if frame.id in entry.bindings:
                target, binding = entry, entry.bindings.pop(frame.id)
                break
        if target is None:
            target = next((e for e in entries if e.key == frame.trigger_type), None)
            binding = TriggerConfig(id=frame.id, function_id="", config=None)
        if target is None or binding is None:
            log.debug("engine asked to unbind unknown trigger %s", frame.id)
            return
        self._track(asyncio.get_running_loop().create_task(self._unbind(target, binding)))

    async def _unbind(self, entry: _TriggerTypeEntry, binding: TriggerConfig[Any]) -> None:
        assert entry.handler is not None
        try:
            result = entry.handler.unregister_trigger(binding)
            if inspect.isawaitable(result):
                await result
        except BaseException as exc:
            if is_own_cancellation(exc):
                raise
            log.exception("unregister_trigger of %r failed for trigger %s", entry.key, binding.id)

    def _on_trigger_result(self, frame: TriggerRegistrationResult) -> None:
        with self._reg_lock:
            entry = self._triggers.get(frame.id)
        if frame.error is None:
            return
        error = error_from_body(frame.error, function_id=frame.function_id)
        log.warning(
            "trigger %s (%s -> %s) registration failed: %s",
            frame.id,
            frame.trigger_type,
            frame.function_id,
            error,
        )
        if entry is not None and entry.handle is not None:
            entry.handle._set("failed", error)

    def _on_rejected(self, frame: RegistrationRejected) -> None:
        error = RegistrationRejectedError(
            frame.code,
            namespace=frame.namespace,
            worker_name=frame.worker_name,
            owner_worker_id=frame.owner_worker_id,
            function_id=frame.function_id,
        )
        if frame.code == "FUNCTION_NAMESPACE_CONFLICT":
            log.warning("%s", error)
            with self._reg_lock:
                entry = self._functions.get(frame.function_id or "")
            if entry is not None and entry.ref is not None:
                entry.ref.rejection = error
            return
        self._conn.fail(error)

    # -- lifecycle ---------------------------------------------------------------------------
    async def _shutdown_on_loop(self) -> None:
        error = InvocationError("SHUTDOWN", _SHUTDOWN_MESSAGE)
        pending = list(self._pending.values())
        self._pending.clear()
        for item in pending:
            if item.timer is not None:
                item.timer.cancel()
            if not item.future.done():
                item.future.set_exception(
                    InvocationError(
                        error.code,
                        error.message,
                        function_id=item.call.function_id,
                        invocation_id=item.call.invocation_id,
                    )
                )
        self._channels.abort_all()
        await self._conn.close()
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current and not task.done():
                task.cancel()

    def _begin_shutdown(self) -> bool:
        with self._shutdown_lock:
            if self._closed:
                return False
            self._closed = True
        for event in list(self._stop_events):
            event.set()
        atexit.unregister(self._atexit)
        return True

    def shutdown(self) -> None:
        """Shut down: reject pending calls (``SHUTDOWN``), send a close frame, stop the loop
        thread and the idle handler threads. Idempotent; the instance cannot be reused.

        Raises:
            RuntimeError: called on the SDK's event-loop thread (use ``shutdown_async``).
        """
        if self._loop.on_loop_thread():
            raise RuntimeError(
                "shutdown() cannot be called on the iii SDK's event-loop thread; "
                "use `await iii.shutdown_async()`"
            )
        if not self._begin_shutdown():
            return
        try:
            if self._loop.is_running():
                self._loop.submit(self._shutdown_on_loop()).result(CONNECT_BUDGET_S)
        except Exception:
            log.debug("error during shutdown", exc_info=True)
        finally:
            self._loop.stop()
            self._threads.shutdown()
            if self._telemetry is not None:
                self._telemetry.close()
        log.info("iii worker %r shut down", self._worker_name)

    async def shutdown_async(self) -> None:
        """Async twin of :meth:`shutdown`; may be awaited from any event loop (also the SDK's)."""
        if not self._begin_shutdown():
            return
        try:
            if self._loop.is_running():
                await self._loop.run_async(self._shutdown_on_loop())
        finally:
            self._threads.shutdown()
            telemetry = self._telemetry
            if self._loop.on_loop_thread():
                self._loop.loop.call_soon(self._loop.loop.stop)
                if telemetry is not None:  # its flush may wait: not on this loop
                    threading.Thread(target=telemetry.close, name="iii-otel-close", daemon=True).start()
            else:
                await asyncio.to_thread(self._loop.stop)
                if telemetry is not None:
                    await asyncio.to_thread(telemetry.close)

    def _atexit(self) -> None:
        try:
            self.shutdown()
        except Exception:  # pragma: no cover - interpreter teardown
            pass

    def run_forever(self) -> None:
        """Block until SIGINT or SIGTERM (or until the client is shut down or fails), then shut down.

        Signal handlers are installed only when called from the main thread (and restored after).

        Raises:
            RegistrationRejectedError: the engine refused this worker (fatal).
            EngineUnreachableError: the reconnection retries ran out.
        """
        stop = threading.Event()
        self._stop_events.add(stop)
        if self._closed or self._conn.state == "failed":
            stop.set()
        previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():

            def on_signal(signum: int, _frame: FrameType | None) -> None:
                log.info("received signal %d: shutting down", signum)
                stop.set()

            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, on_signal)
            log.info("iii worker %r running until SIGINT or SIGTERM", self._worker_name)
        try:
            while not stop.wait(1.0):
                pass
        finally:
            for signum, old_handler in previous.items():
                signal.signal(signum, old_handler)
            self._stop_events.discard(stop)
            failure = self._conn.fatal_error if self._conn.state == "failed" else None
            unreachable = self._conn.state == "failed" and failure is None
            self.shutdown()
        if failure is not None:
            raise failure
        if unreachable:
            raise EngineUnreachableError(
                f"the iii engine at {self._address} is unreachable (retries exhausted)"
            )

    def __enter__(self) -> III:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.shutdown()

    async def __aenter__(self) -> III:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.shutdown_async()

    def __repr__(self) -> str:
        return (
            f"III(address={self._address!r}, worker_name={self._worker_name!r}, state={self._conn.state!r})"
        )


def _caller_locals() -> dict[str, Any] | None:
    """Local names of the user code that called into the client (for string annotations that
    name classes defined inside a function, as pydantic resolves them)."""
    frame = sys._getframe(1)
    package = __name__.rsplit(".", 1)[0] + "."
    while frame is not None and frame.f_globals.get("__name__", "").startswith(package):
        frame = frame.f_back  # type: ignore[assignment]
    if frame is None or frame.f_locals is frame.f_globals:
        return None
    return dict(frame.f_locals)


def _encode_registration(frame: FrameModel, what: str) -> bytes:
    try:
        data = encode_frame(frame)
    except (PydanticSerializationError, ValueError, TypeError) as exc:
        raise TypeError(f"{what} is not JSON-serialisable: {exc}") from None
    return check_size(data, what)


def _config_model_of(handler: TriggerHandler[Any]) -> type[BaseModel] | None:
    """The pydantic model ``M`` of a handler class declared as ``TriggerHandler[M]``."""
    for klass in type(handler).__mro__:
        for base in getattr(klass, "__orig_bases__", ()):
            if get_origin(base) is TriggerHandler:
                args = get_args(base)
                if args and isinstance(args[0], type) and issubclass(args[0], BaseModel):
                    return args[0]
                return None
    return None


def register_worker(address: str | None = None, options: InitOptions | None = None) -> III:
    """Create a client and block until it is connected (protocol.md §3.2, §10).

    Args:
        address: Engine URL (default ``III_URL``, then ``ws://127.0.0.1:49134``).
        options: :class:`~iii_typed.InitOptions`.

    Returns:
        A connected :class:`III`.

    Raises:
        EngineUnreachableError: no connection within 30 s, or as soon as the reconnection retries
            are exhausted (the client is shut down first).
        RegistrationRejectedError: the engine refused the worker fatally (e.g. HTTP 401/403,
            ``AUTH_ERROR``, ``WORKER_NAMESPACE_CONFLICT``); the client is shut down first.
        ValueError: a malformed address or a blank namespace.
    """
    client = III(address, options)
    try:
        state = client._loop.run_sync(
            client._conn.wait_for_state(frozenset({"connected", "failed"}), CONNECT_BUDGET_S),
            "register_worker",
        )
        if state == "connected":
            client._loop.run_sync(client._registration_barrier(), "register_worker")
            return client
    except BaseException:
        client.shutdown()
        raise
    fatal = client._conn.fatal_error
    attempts = client._conn.attempts
    client.shutdown()
    if fatal is not None:
        raise fatal
    if state == "failed":
        raise EngineUnreachableError(
            f"could not connect to the iii engine at {client.get_address()}: reconnection retries exhausted "
            f"after {attempts} attempt(s)"
        )
    raise EngineUnreachableError(
        f"could not connect to the iii engine at {client.get_address()} within {CONNECT_BUDGET_S:.0f} s "
        f"({attempts} attempt(s))"
    )
