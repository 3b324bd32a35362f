"""Running a function handler for an incoming ``invokefunction`` (protocol.md §4.2-§4.8).

A :class:`HandlerSpec` is computed once at registration: sync or async, whether the first
parameter is a pydantic model (typed handler: the payload is validated into it), and whether the
handler takes the ``metadata`` sidecar. :func:`run_sync` and :func:`run_async` call the handler
in an :class:`~iii_typed.context.InvocationContext` and return the encoded ``invocationresult``
frame (or ``None`` when the engine sent no ``invocation_id``).

:func:`transform_incoming_payload` is the single seam through which every incoming payload
passes before it reaches a handler (channel references become live readers and writers there,
:mod:`iii_typed.channels`).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol
from uuid import UUID

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticSerializationError

from . import context as _context
from ._wire import encode_frame, too_large_error
from .channels import ChannelFactory, resolve_channel_refs
from .formats import first_parameter_annotation, unresolved_hints
from .protocol import codec
from .protocol.frames import MAX_MESSAGE_BYTES, ErrorBody, InvocationResult, InvokeFunction

__all__ = [
    "HandlerScope",
    "HandlerSpec",
    "build_error_result",
    "invocation_context",
    "run_async",
    "run_sync",
    "transform_incoming_payload",
    "validation_message",
]

log = logging.getLogger("iii_typed")

CALLER_KEY = "_caller_worker_id"


@dataclass(frozen=True)
class HandlerSpec:
    """How to call one registered handler.

    Attributes:
        function_id: The function id it serves.
        fn: The user's callable.
        is_async: ``True`` for coroutine functions (run on the SDK loop), else run on a thread.
        model: The pydantic model of the first parameter (typed handler), or ``None``.
        metadata: How the metadata sidecar is passed: ``"positional"`` (second positional
            parameter named ``metadata``), ``"keyword"``, or ``None`` (not passed).
    """

    function_id: str
    fn: Callable[..., Any]
    is_async: bool
    model: type[BaseModel] | None
    metadata: Literal["positional", "keyword"] | None

    @classmethod
    def of(
        cls, function_id: str, fn: Callable[..., Any], localns: dict[str, Any] | None = None
    ) -> HandlerSpec:
        """Inspect ``fn`` (raises ``TypeError`` when it is not callable).

        ``localns`` helps resolve string annotations naming classes defined in a local scope; when
        they still cannot be resolved a WARNING says so (the payload then arrives as plain JSON).
        """
        if not callable(fn):
            raise TypeError(f"handler of {function_id!r} must be callable, not {type(fn).__name__}")
        problem = unresolved_hints(fn, localns)
        if problem is not None:
            log.warning(
                "type hints of the handler of %r cannot be resolved (%s): its payload arrives as plain "
                "JSON and no formats are extracted; define the models at module level",
                function_id,
                problem,
            )
        call = fn if inspect.isroutine(fn) or isinstance(fn, type) else getattr(fn, "__call__", fn)  # noqa: B004
        is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call)
        present, annotation = first_parameter_annotation(fn, localns)
        model = (
            annotation
            if present and isinstance(annotation, type) and issubclass(annotation, BaseModel)
            else None
        )
        return cls(function_id, fn, is_async, model, _metadata_mode(fn))


def _metadata_mode(fn: Callable[..., Any]) -> Literal["positional", "keyword"] | None:
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return None
    for index, param in enumerate(params):
        if param.name != "metadata":
            continue
        if param.kind is inspect.Parameter.KEYWORD_ONLY:
            return "keyword"
        if param.kind is inspect.Parameter.POSITIONAL_ONLY:
            return "positional" if index == 1 else None
        if param.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD:
            return "positional" if index == 1 else "keyword"
    return None


class HandlerScope(Protocol):
    """What a telemetry scope around a handler run offers (``iii_typed.telemetry``, protocol.md §4.5).

    The caller enters the scope (starting the span and making it current) around
    :func:`run_sync`/:func:`run_async`, which report the outcome to it and put its
    ``traceparent`` on the ``invocationresult``.
    """

    @property
    def traceparent(self) -> str | None:
        """The handler span's W3C ``traceparent``."""
        ...

    def failed(self, exc: BaseException) -> None:
        """The handler (or its input validation) failed with ``exc``."""
        ...

    def succeeded(self, value: Any) -> None:
        """The handler returned ``value``."""
        ...


def transform_incoming_payload(data: Any, channels: ChannelFactory | None = None) -> Any:
    """The seam every incoming payload passes through before validation and the handler call.

    Channel refs (``{"channel_id", "access_key", "direction"}`` objects at any depth) become live
    :class:`~iii_typed.ChannelReader` / :class:`~iii_typed.ChannelWriter` objects of the client
    that owns ``channels`` (protocol.md §4.8); without it ``data`` is returned unchanged.
    """
    if channels is None:
        return data
    return resolve_channel_refs(data, channels)


def validation_message(model: type[BaseModel], exc: ValidationError) -> str:
    """``validation failed for <Model>: <loc>: <msg>; …`` (decisions "Errors")."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in error.get("loc", ())) or "<root>"
        parts.append(f"{loc}: {error.get('msg', '')}")
    return f"validation failed for {model.__name__}: " + "; ".join(parts)


class _HandlerInputError(Exception):
    """The payload does not validate against a typed handler's model."""


#: Whether an InvocationContext can be made by filling its ``__dict__`` (a plain frozen dataclass):
#: a frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``, which makes
#: it cost as much as decoding the frame.
_FILL_CONTEXT = not hasattr(_context.InvocationContext, "__slots__") and not hasattr(
    _context.InvocationContext, "__post_init__"
)


def invocation_context(frame: InvokeFunction) -> _context.InvocationContext:
    """The :class:`~iii_typed.context.InvocationContext` for an incoming call."""
    data = frame.data
    caller = data.get(CALLER_KEY) if isinstance(data, dict) else None
    invocation_id = frame.invocation_id
    fields: dict[str, Any] = {
        "function_id": frame.function_id,
        "invocation_id": codec.uuid_text(invocation_id) if invocation_id is not None else None,
        "metadata": frame.metadata,
        "traceparent": frame.traceparent,
        "baggage": frame.baggage,
        "caller_worker_id": caller if isinstance(caller, str) else None,
    }
    if not _FILL_CONTEXT:
        return _context.InvocationContext(**fields)
    context = object.__new__(_context.InvocationContext)
    context.__dict__.update(fields)
    return context


def _arguments(spec: HandlerSpec, data: Any, metadata: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if spec.model is not None:
        if isinstance(data, dict) and CALLER_KEY in data and CALLER_KEY not in spec.model.model_fields:
            data = {k: v for k, v in data.items() if k != CALLER_KEY}
        try:
            data = spec.model.model_validate(data)
        except ValidationError as exc:
            raise _HandlerInputError(validation_message(spec.model, exc)) from None
    if spec.metadata == "positional":
        return (data, metadata), {}
    if spec.metadata == "keyword":
        return (data,), {"metadata": metadata}
    return (data,), {}


def build_error_result(
    function_id: str,
    invocation_id: UUID,
    code: str,
    message: str,
    stacktrace: str | None = None,
    traceparent: str | None = None,
) -> bytes:
    """An ``invocationresult`` frame carrying ``error`` (and ``traceparent`` when given; §2.9).

    Texts that cannot be written as UTF-8 (an exception message with a lone surrogate) are sent
    with those characters escaped (``\\ud800``): the caller always gets its answer.
    """
    error = ErrorBody(code=code, message=message)
    if stacktrace is not None:
        error.stacktrace = stacktrace
    frame = InvocationResult(
        type="invocationresult", invocation_id=invocation_id, function_id=function_id, error=error
    )
    if traceparent is not None:
        frame.traceparent = traceparent
    try:
        return encode_frame(frame)
    except (PydanticSerializationError, ValueError):
        error.code, error.message = _utf8_text(code), _utf8_text(message)
        if stacktrace is not None:
            error.stacktrace = _utf8_text(stacktrace)
        return encode_frame(frame)


def _utf8_text(text: str) -> str:
    """``text`` with what UTF-8 cannot encode (lone surrogates) written as backslash escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _exception_message(exc: BaseException) -> str:
    if isinstance(exc, Exception):
        return str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {exc}"  # KeyboardInterrupt, SystemExit: keep the kind visible


def _result_frame(
    function_id: str,
    invocation_id: UUID,
    value: Any,
    traceparent: str | None = None,
    id_text: str | None = None,
) -> bytes:
    try:
        data = codec.encode_result(
            invocation_id if id_text is None else id_text, function_id, value, traceparent
        )
    except (PydanticSerializationError, ValueError, TypeError) as exc:
        return build_error_result(
            function_id,
            invocation_id,
            "invocation_failed",
            f"result of {function_id!r} is not JSON-serialisable: {exc}",
            traceparent=traceparent,
        )
    if len(data) > MAX_MESSAGE_BYTES:
        err = too_large_error(len(data), f"the result of {function_id!r}", function_id)
        return build_error_result(function_id, invocation_id, err.code, err.message, traceparent=traceparent)
    return data


def _tell_scope(scope: HandlerScope, outcome: Callable[[Any], None], value: Any) -> str | None:
    """Report the handler's outcome to its telemetry scope; return the ``traceparent`` for the
    result. Telemetry never costs the caller its answer: a failure here is only logged."""
    try:
        outcome(value)
        return scope.traceparent
    except Exception:
        log.exception("telemetry of a handler failed (the invocation is answered anyway)")
        return None


def _failure_frame(
    spec: HandlerSpec, frame: InvokeFunction, exc: BaseException, scope: HandlerScope | None = None
) -> bytes | None:
    traceparent = None
    if scope is not None:
        traceparent = _tell_scope(scope, scope.failed, exc)
    if isinstance(exc, _HandlerInputError):
        log.warning("invocation of %r refused: %s", spec.function_id, exc)
        if frame.invocation_id is None:
            return None
        return build_error_result(
            spec.function_id, frame.invocation_id, "invocation_failed", str(exc), traceparent=traceparent
        )
    log.error("handler of %r raised %s", spec.function_id, type(exc).__name__, exc_info=exc)
    if frame.invocation_id is None:
        return None
    stack = "".join(traceback.format_exception(exc))
    return build_error_result(
        spec.function_id,
        frame.invocation_id,
        "invocation_failed",
        _exception_message(exc),
        stack,
        traceparent,
    )


def run_sync(
    spec: HandlerSpec,
    frame: InvokeFunction,
    data: Any,
    await_on_loop: Callable[[Any], Any],
    scope: HandlerScope | None = None,
) -> bytes | None:
    """Run a sync handler on the current (handler) thread.

    Args:
        spec: The handler.
        frame: The incoming ``invokefunction``.
        data: The transformed payload.
        await_on_loop: Runs an awaitable on the SDK loop and returns its result (used when a
            "sync" callable returns an awaitable).
        scope: The telemetry scope the caller entered around this run, if any: it is told the
            outcome, and its ``traceparent`` goes on the result frame (protocol.md §2.9).

    Returns:
        The encoded ``invocationresult``, or ``None`` when no result is wanted.
    """
    context = invocation_context(frame)
    token = _context._enter(context)
    try:
        args, kwargs = _arguments(spec, data, context.metadata)
        value = spec.fn(*args, **kwargs)
        if inspect.isawaitable(value):
            value = await_on_loop(value)
    except BaseException as exc:
        return _failure_frame(spec, frame, exc, scope)
    finally:
        _context._leave(token)
    return _success_frame(spec, frame, value, scope, context.invocation_id)


def _success_frame(
    spec: HandlerSpec,
    frame: InvokeFunction,
    value: Any,
    scope: HandlerScope | None,
    id_text: str | None = None,
) -> bytes | None:
    traceparent = None
    if scope is not None:
        traceparent = _tell_scope(scope, scope.succeeded, value)
    if frame.invocation_id is None:
        return None
    return _result_frame(spec.function_id, frame.invocation_id, value, traceparent, id_text)


async def run_async(
    spec: HandlerSpec, frame: InvokeFunction, data: Any, scope: HandlerScope | None = None
) -> bytes | None:
    """Run an async handler on the SDK loop; same contract as :func:`run_sync`.

    Like a sync handler's, any exception the handler raises — ``SystemExit``,
    ``KeyboardInterrupt`` and other ``BaseException`` subclasses included — answers
    ``invocation_failed``: raised out of a task, the first two would stop the SDK's event loop.
    Only the cancellation of this task itself (at shutdown) propagates.
    """
    context = invocation_context(frame)
    token = _context._enter(context)
    try:
        args, kwargs = _arguments(spec, data, context.metadata)
        value = spec.fn(*args, **kwargs)
        if inspect.isawaitable(value):
            value = await value
    except asyncio.CancelledError as exc:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        return _failure_frame(spec, frame, exc, scope)
    except BaseException as exc:
        return _failure_frame(spec, frame, exc, scope)
    finally:
        _context._leave(token)
    return _success_frame(spec, frame, value, scope, context.invocation_id)
