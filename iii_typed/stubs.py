"""Runtime of the typed client stubs that ``iii-typed codegen generate`` writes.

A generated module holds pydantic models and a tree of namespace classes whose leaves are
:class:`Function` descriptors, one per catalog function::

    class _OrdersNamespace(_stubs.Namespace[_stubs.Mode]):
        create: _stubs.Function[CreateOrderInput, Order] = _stubs.Function(
            "orders::create", CreateOrderInput, Order
        )

Reading a :class:`Function` through a namespace of a synchronous client gives a :class:`Call`,
through an asynchronous one an :class:`AsyncCall`; both are typed by the request and response
types, so ``client.orders.create(CreateOrderInput(...))`` is checked by mypy and returns an
``Order``. The generated code only names things: validation, the ``trigger`` request
(protocol.md §4.1: sync, ``void`` and ``enqueue`` routing) and error mapping live here.

Behaviour of every call:

* the request is validated into the request type (a model instance passes as is; a mapping is
  validated, so a bad field raises :class:`pydantic.ValidationError` naming it, before anything is
  sent) and dumped in JSON mode with wire names, leaving out fields that were never set (an
  absent optional field is omitted, not sent as ``null``);
* the result is validated into the response type; a mismatch raises
  :class:`~iii_typed.errors.ResponseValidationError` naming the function and each failing field;
* errors from the callee propagate as :class:`~iii_typed.errors.InvocationError` (from the SDK);
* routing actions are sent as plain dicts (``{"type": "void"}``, ``{"type": "enqueue", "queue": q}``),
  which ``III.trigger`` accepts like ``TriggerAction.Void()`` and the official ``iii`` client too.

A side of a function that registered no schema is typed ``Any`` and passed through unchanged
(pydantic models in it are still dumped in JSON mode).

Channel refs (protocol.md §5) in schemas are typed by who holds the value: a caller *sends* a
ref (:data:`ReaderRefArg`, :data:`WriterRefArg`: ``channel.reader_ref`` / ``channel.writer_ref``,
or the :class:`~iii_typed.ChannelReader` / :class:`~iii_typed.ChannelWriter` object itself, which
is sent as its ref), a caller *receives* one in a result (:data:`ReaderRef`, :data:`WriterRef`:
a :class:`~iii_typed.channels.StreamChannelRef`), and a handler receives the live object (the SDK
turns refs in a handler's payload into a ``ChannelReader`` / ``ChannelWriter``).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any, Generic, Literal, Protocol, TypeAlias, TypeVar, cast, overload

from pydantic import AfterValidator, BaseModel, ConfigDict, TypeAdapter, ValidationError

from .channels import ChannelReader, ChannelWriter, StreamChannelRef
from .errors import ResponseValidationError
from .models import EnqueueResult

__all__ = [
    "Async",
    "AsyncCall",
    "Call",
    "ChannelEndpoint",
    "ChannelRefArg",
    "Function",
    "Mode",
    "Namespace",
    "ReaderRef",
    "ReaderRefArg",
    "Runtime",
    "StubModel",
    "StubTarget",
    "Sync",
    "TriggerHelper",
    "TriggerHelperCall",
    "WriterRef",
    "WriterRefArg",
    "async_runtime",
    "sync_runtime",
]

Req = TypeVar("Req")
Res = TypeVar("Res")
Cfg = TypeVar("Cfg")
Pay = TypeVar("Pay")
Ret = TypeVar("Ret")

#: Type parameter of generated namespace classes: :class:`Sync` or :class:`Async`.
Mode = TypeVar("Mode")


class Sync:
    """Marker type: the namespace belongs to a synchronous client (calls block)."""


class Async:
    """Marker type: the namespace belongs to an asynchronous client (calls are awaited)."""


class StubModel(BaseModel):
    """Base class of every model in a generated stub module.

    It only widens pydantic's protected namespaces, so a schema property such as ``model_dump``
    (generated as ``model_dump_`` with the wire name as alias) imports without a warning.
    """

    model_config = ConfigDict(protected_namespaces=())


def _expect_direction(direction: Literal["read", "write"]) -> AfterValidator:
    side = "reader" if direction == "read" else "writer"

    def check(value: Any) -> Any:
        ref = value.ref if isinstance(value, ChannelReader | ChannelWriter) else value
        if ref.direction != direction:
            raise ValueError(
                f"a channel {side} is expected here (a {direction!r} ref such as"
                f" channel.{side}_ref), got a {ref.direction!r} ref"
            )
        return value

    return AfterValidator(check)


#: A channel ref a caller sends where the receiver reads: ``channel.reader_ref`` (or a ref dict,
#: or the ``ChannelReader`` itself, sent as its ref). Its direction must be ``read``.
ReaderRefArg: TypeAlias = Annotated[StreamChannelRef | ChannelReader, _expect_direction("read")]
#: A channel ref a caller sends where the receiver writes: ``channel.writer_ref`` (or a ref dict,
#: or the ``ChannelWriter`` itself). Its direction must be ``write``.
WriterRefArg: TypeAlias = Annotated[StreamChannelRef | ChannelWriter, _expect_direction("write")]
#: A channel ref a caller sends, of either direction (the schema does not say which).
ChannelRefArg: TypeAlias = StreamChannelRef | ChannelReader | ChannelWriter
#: A channel ref with direction ``read`` received in a result (open it with ``ChannelReader(iii, ref)``).
ReaderRef: TypeAlias = Annotated[StreamChannelRef, _expect_direction("read")]
#: A channel ref with direction ``write`` received in a result (``ChannelWriter(iii, ref)``).
WriterRef: TypeAlias = Annotated[StreamChannelRef, _expect_direction("write")]
#: What a handler receives for a channel ref of either direction: the live side.
ChannelEndpoint: TypeAlias = ChannelReader | ChannelWriter


class StubTarget(Protocol):
    """What a generated client needs from the SDK client: :class:`iii_typed.III` provides it.

    Any object with these methods works (the official ``iii`` client too).
    """

    def trigger(self, request: Any, /) -> Any:
        """Invoke a function and wait (see ``III.trigger``)."""

    async def trigger_async(self, request: Any, /) -> Any:
        """Async twin of :meth:`trigger`."""

    def register_function(
        self,
        function_id: str,
        handler_or_invocation: Any,
        /,
        *,
        description: str | None = None,
        request_format: Any = None,
        response_format: Any = None,
    ) -> Any:
        """Register a handler (used by trigger helpers)."""

    def register_trigger(self, trigger: Any, /) -> Any:
        """Bind a trigger to a function (used by trigger helpers)."""


class Runtime(Generic[Mode]):
    """The SDK client and call options shared by every namespace of one generated client.

    Build it with :func:`sync_runtime` or :func:`async_runtime` (the type parameter records which).

    Attributes:
        iii: The SDK client calls go through.
        namespace: Target namespace sent with every call (protocol.md §3.4), or ``None`` for the
            SDK's default (the caller's namespace).
        is_async: Whether calls are awaited (``trigger_async``) or blocking (``trigger``).
    """

    __slots__ = ("iii", "is_async", "namespace")

    def __init__(self, iii: StubTarget, *, namespace: str | None, is_async: bool) -> None:
        if namespace is not None and not namespace.strip():
            raise ValueError("namespace is blank: give it a value or omit it")
        self.iii = iii
        self.namespace = namespace
        self.is_async = is_async


def sync_runtime(iii: StubTarget, *, namespace: str | None = None) -> Runtime[Sync]:
    """Runtime of a blocking client (calls use ``iii.trigger``)."""
    return Runtime[Sync](iii, namespace=namespace, is_async=False)


def async_runtime(iii: StubTarget, *, namespace: str | None = None) -> Runtime[Async]:
    """Runtime of an asynchronous client (calls use ``iii.trigger_async``)."""
    return Runtime[Async](iii, namespace=namespace, is_async=True)


class Namespace(Generic[Mode]):
    """Base of the generated namespace classes and clients.

    It has no public attributes of its own, so every name on a generated namespace is a function,
    a trigger helper or a sub-namespace from the catalog.
    """

    def __init__(self, runtime: Runtime[Mode]) -> None:
        self._runtime = runtime


def _adapter(tp: Any) -> TypeAdapter[Any]:
    return TypeAdapter(tp)


class Function(Generic[Req, Res]):
    """Descriptor for one catalog function on a generated namespace class.

    Args:
        function_id: The function's id (``orders::create``).
        request_type: Type of the request payload: a pydantic model, a type alias, or ``Any``.
        response_type: Type of the result, likewise.
        doc: Docstring of the bound call (the function's description).

    Reading the attribute on a namespace instance gives a :class:`Call` (synchronous client) or an
    :class:`AsyncCall` (asynchronous client); reading it on the class gives the descriptor.
    """

    __slots__ = ("_request", "_response", "doc", "function_id", "request_type", "response_type")

    def __init__(
        self, function_id: str, request_type: Any, response_type: Any, doc: str | None = None
    ) -> None:
        self.function_id = function_id
        self.request_type = request_type
        self.response_type = response_type
        self.doc = doc
        self._request: TypeAdapter[Any] | None = None
        self._response: TypeAdapter[Any] | None = None

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Function[Req, Res]: ...

    @overload
    def __get__(self, obj: Namespace[Sync], owner: type[Any]) -> Call[Req, Res]: ...

    @overload
    def __get__(self, obj: Namespace[Async], owner: type[Any]) -> AsyncCall[Req, Res]: ...

    def __get__(
        self, obj: Namespace[Any] | None, owner: type[Any]
    ) -> Function[Req, Res] | Call[Req, Res] | AsyncCall[Req, Res]:
        if obj is None:
            return self
        runtime: Runtime[Any] = obj._runtime
        if runtime.is_async:
            return AsyncCall(self, runtime)
        return Call(self, runtime)

    def dump_request(self, request: Any) -> Any:
        """Validate ``request`` into the request type and dump it for the wire.

        Returns:
            JSON-compatible data (JSON mode, wire names, unset fields left out).

        Raises:
            pydantic.ValidationError: the request does not match the request type; the error
                names each offending field.
        """
        if self._request is None:
            self._request = _adapter(self.request_type)
        value = self._request.validate_python(request)
        return self._request.dump_python(value, mode="json", by_alias=True, exclude_unset=True)

    def load_response(self, result: Any) -> Res:
        """Validate a result into the response type.

        Raises:
            ResponseValidationError: the result does not match; names the function and fields.
        """
        if self._response is None:
            self._response = _adapter(self.response_type)
        try:
            return cast(Res, self._response.validate_python(result))
        except ValidationError as exc:
            errors = [dict(e) for e in exc.errors(include_url=False, include_context=False)]
            raise ResponseValidationError(self.function_id, errors) from exc

    def request_for(
        self,
        request: Any,
        runtime: Runtime[Any],
        *,
        action: Any = None,
        timeout_ms: int | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Build the ``trigger`` request dict (protocol.md §4.1) for one call."""
        out: dict[str, Any] = {"function_id": self.function_id, "payload": self.dump_request(request)}
        if action is not None:
            out["action"] = action
        if timeout_ms is not None:
            out["timeout_ms"] = timeout_ms
        if metadata is not None:
            out["metadata"] = dict(metadata)
        if runtime.namespace is not None:
            out["namespace"] = runtime.namespace
        return out

    def __repr__(self) -> str:
        return f"Function({self.function_id!r})"


def _enqueue_result(result: Any) -> EnqueueResult:
    if isinstance(result, EnqueueResult):
        return result
    return EnqueueResult.model_validate(result)


class _BoundBase(Generic[Req, Res]):
    __slots__ = ("_function", "_runtime")

    def __init__(self, function: Function[Req, Res], runtime: Runtime[Any]) -> None:
        self._function = function
        self._runtime = runtime

    @property
    def function_id(self) -> str:
        """The id of the function this call invokes."""
        return self._function.function_id

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._function.function_id}>"


class Call(_BoundBase[Req, Res]):
    """A catalog function bound to a synchronous client.

    ``call(request)`` invokes the function and waits; :meth:`void` fires and forgets;
    :meth:`enqueue` routes through a named queue (protocol.md §4.1).
    """

    __slots__ = ()

    def __call__(
        self,
        request: Req,
        /,
        *,
        timeout_ms: int | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Res:
        """Invoke the function and return its validated result.

        Args:
            request: The request (model instance, or a mapping validated into it).
            timeout_ms: Timeout of this call in milliseconds (default: the client's).
            metadata: Per-invocation sidecar for handlers that take ``metadata`` (protocol.md §4.4).

        Raises:
            pydantic.ValidationError: the request is invalid (nothing was sent).
            ResponseValidationError: the result does not match the response schema.
            InvocationError: the callee or the engine reported an error (``InvocationTimeoutError``
                when ``timeout_ms`` expired).
        """
        fn = self._function
        body = fn.request_for(request, self._runtime, timeout_ms=timeout_ms, metadata=metadata)
        return fn.load_response(self._runtime.iii.trigger(body))

    def void(self, request: Req, /, *, metadata: Mapping[str, Any] | None = None) -> None:
        """Invoke without waiting for, or receiving, a result (action ``void``).

        Raises:
            pydantic.ValidationError: the request is invalid (nothing was sent).
        """
        body = self._function.request_for(request, self._runtime, action={"type": "void"}, metadata=metadata)
        self._runtime.iii.trigger(body)

    def enqueue(
        self,
        request: Req,
        /,
        *,
        queue: str,
        timeout_ms: int | None = None,
    ) -> EnqueueResult:
        """Put the invocation on the named queue (action ``enqueue``) and return the receipt.

        Raises:
            pydantic.ValidationError: the request is invalid (nothing was sent).
            InvocationError: code ``enqueue_error`` when the engine has no queue provider.
        """
        body = self._function.request_for(
            request, self._runtime, action={"type": "enqueue", "queue": queue}, timeout_ms=timeout_ms
        )
        return _enqueue_result(self._runtime.iii.trigger(body))


class AsyncCall(_BoundBase[Req, Res]):
    """A catalog function bound to an asynchronous client; the awaitable twin of :class:`Call`."""

    __slots__ = ()

    async def __call__(
        self,
        request: Req,
        /,
        *,
        timeout_ms: int | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Res:
        """Invoke the function and return its validated result (see :meth:`Call.__call__`)."""
        fn = self._function
        body = fn.request_for(request, self._runtime, timeout_ms=timeout_ms, metadata=metadata)
        return fn.load_response(await self._runtime.iii.trigger_async(body))

    async def void(self, request: Req, /, *, metadata: Mapping[str, Any] | None = None) -> None:
        """Invoke without waiting for a result (see :meth:`Call.void`)."""
        body = self._function.request_for(request, self._runtime, action={"type": "void"}, metadata=metadata)
        await self._runtime.iii.trigger_async(body)

    async def enqueue(
        self,
        request: Req,
        /,
        *,
        queue: str,
        timeout_ms: int | None = None,
    ) -> EnqueueResult:
        """Put the invocation on the named queue (see :meth:`Call.enqueue`)."""
        body = self._function.request_for(
            request, self._runtime, action={"type": "enqueue", "queue": queue}, timeout_ms=timeout_ms
        )
        return _enqueue_result(await self._runtime.iii.trigger_async(body))


class TriggerHelper(Generic[Cfg, Pay, Ret]):
    """Descriptor for a typed trigger-registration helper of one trigger type.

    Args:
        trigger_type: The trigger type id (``email::new-mail``).
        config_type: Type of a binding's ``config`` (``Any`` when the type declares no schema).
        payload_type: Type of the payload handlers receive.
        return_type: Type of what handlers return.
        doc: Docstring of the bound helper.

    Reading it on a namespace instance gives a :class:`TriggerHelperCall`.
    """

    __slots__ = (
        "_config",
        "_payload",
        "_return",
        "config_type",
        "doc",
        "payload_type",
        "return_type",
        "trigger_type",
    )

    def __init__(
        self,
        trigger_type: str,
        config_type: Any,
        payload_type: Any,
        return_type: Any,
        doc: str | None = None,
    ) -> None:
        self.trigger_type = trigger_type
        self.config_type = config_type
        self.payload_type = payload_type
        self.return_type = return_type
        self.doc = doc
        self._config: TypeAdapter[Any] | None = None
        self._payload: TypeAdapter[Any] | None = None
        self._return: TypeAdapter[Any] | None = None

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> TriggerHelper[Cfg, Pay, Ret]: ...

    @overload
    def __get__(self, obj: Namespace[Any], owner: type[Any]) -> TriggerHelperCall[Cfg, Pay, Ret]: ...

    def __get__(
        self, obj: Namespace[Any] | None, owner: type[Any]
    ) -> TriggerHelper[Cfg, Pay, Ret] | TriggerHelperCall[Cfg, Pay, Ret]:
        if obj is None:
            return self
        return TriggerHelperCall(self, obj._runtime)

    def adapters(self) -> tuple[TypeAdapter[Any], TypeAdapter[Any], TypeAdapter[Any]]:
        """The (config, payload, return) adapters, built on first use."""
        if self._config is None or self._payload is None or self._return is None:
            self._config = _adapter(self.config_type)
            self._payload = _adapter(self.payload_type)
            self._return = _adapter(self.return_type)
        return self._config, self._payload, self._return


class TriggerHelperCall(Generic[Cfg, Pay, Ret]):
    """A trigger helper bound to a client: registers a typed handler and binds it to the type."""

    __slots__ = ("_helper", "_runtime")

    def __init__(self, helper: TriggerHelper[Cfg, Pay, Ret], runtime: Runtime[Any]) -> None:
        self._helper = helper
        self._runtime = runtime

    def __call__(
        self,
        function_id: str,
        handler: Callable[[Pay], Ret | Awaitable[Ret]],
        config: Cfg,
        *,
        description: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Any:
        """Register ``handler`` as ``function_id`` and bind it to this trigger type.

        The handler receives the payload validated into the payload type and may return the
        return type (or an awaitable of it, for an ``async def`` handler); its result is dumped in
        JSON mode. The registered function advertises the payload and return schemas.

        Args:
            function_id: Id to register the handler under.
            handler: Sync or async callable taking the typed payload.
            config: The binding's configuration (validated into the config type).
            description: Description of the registered function.
            metadata: Metadata of the trigger binding.

        Returns:
            The SDK's trigger handle (``unregister()`` removes the binding).

        Raises:
            pydantic.ValidationError: ``config`` is invalid (nothing was registered).
        """
        helper = self._helper
        config_adapter, payload_adapter, return_adapter = helper.adapters()
        config_value = config_adapter.dump_python(
            config_adapter.validate_python(config), mode="json", by_alias=True, exclude_unset=True
        )
        wrapped = _typed_handler(handler, payload_adapter, return_adapter)
        iii = self._runtime.iii
        iii.register_function(
            function_id,
            wrapped,
            description=description,
            request_format=_schema_or_none(helper.payload_type, payload_adapter),
            response_format=_schema_or_none(helper.return_type, return_adapter),
        )
        trigger: dict[str, Any] = {
            "type": helper.trigger_type,
            "function_id": function_id,
            "config": config_value,
        }
        if metadata is not None:
            trigger["metadata"] = dict(metadata)
        return iii.register_trigger(trigger)


def _schema_or_none(tp: Any, adapter: TypeAdapter[Any]) -> dict[str, Any] | None:
    # The registered function advertises the trigger type's schemas; an open side has none.
    return None if tp is Any else adapter.json_schema()


def _typed_handler(
    handler: Callable[[Any], Any], payload: TypeAdapter[Any], result: TypeAdapter[Any]
) -> Callable[[Any], Any]:
    def dump(value: Any) -> Any:
        return result.dump_python(result.validate_python(value), mode="json", by_alias=True)

    if inspect.iscoroutinefunction(handler):

        async def typed_async(data: Any) -> Any:
            return dump(await handler(payload.validate_python(data)))

        return typed_async

    def typed(data: Any) -> Any:
        value = handler(payload.validate_python(data))
        if inspect.isawaitable(value):
            raise TypeError("handler returned an awaitable: declare it with `async def`")
        return dump(value)

    return typed
