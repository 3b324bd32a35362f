"""The iii-typed error hierarchy, and the one function that maps wire errors to exceptions.

Every exception the SDK raises on purpose derives from :class:`IIIError`. Errors that arrive on
the wire as an ``ErrorBody`` (``{"code", "message", "stacktrace"?}``, protocol.md §2.9, §4.7)
become :class:`InvocationError` through :func:`error_from_body`.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "EngineUnreachableError",
    "FrameDecodeError",
    "IIIError",
    "InvocationError",
    "InvocationTimeoutError",
    "RegistrationRejectedError",
    "ResponseValidationError",
    "error_from_body",
]


class IIIError(Exception):
    """Base class of every error raised by iii-typed."""


class InvocationError(IIIError):
    """A function invocation failed.

    Attributes:
        code: Machine-readable code from the wire (``function_not_found``, ``invocation_failed``,
            ``invocation_stopped``, ``TIMEOUT``, ``SHUTDOWN``, ``payload_too_large``, ``enqueue_error``,
            ``FORBIDDEN``, …; protocol.md §4.7) or ``UNKNOWN`` for a malformed wire error.
        message: Human-readable message.
        stacktrace: The callee's stack trace when it sent one, else ``None``.
        function_id: The function that was invoked, when known.
        invocation_id: The invocation id, when known.

    ``str(error)`` is ``"<code>: <message>"`` and never includes the stack trace.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        stacktrace: str | None = None,
        function_id: str | None = None,
        invocation_id: str | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.stacktrace = stacktrace
        self.function_id = function_id
        self.invocation_id = invocation_id

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild_invocation_error,
            (type(self), self.code, self.message, self.stacktrace, self.function_id, self.invocation_id),
        )


def _rebuild_invocation_error(
    cls: type[InvocationError],
    code: str,
    message: str,
    stacktrace: str | None,
    function_id: str | None,
    invocation_id: str | None,
) -> InvocationError:
    return cls(code, message, stacktrace=stacktrace, function_id=function_id, invocation_id=invocation_id)


class InvocationTimeoutError(InvocationError, TimeoutError):
    """The caller's timeout expired before a result arrived (code ``TIMEOUT``, protocol.md §4.6).

    Timeouts are client-side: the engine is not told and the callee's handler keeps running; a
    late result is dropped.
    """


class EngineUnreachableError(IIIError, ConnectionError):
    """No connection to the engine could be made within the connect budget (30 s) or before the
    reconnection retries ran out. The client has been shut down when this is raised."""


class RegistrationRejectedError(IIIError):
    """The engine refused this worker fatally (``registrationrejected`` with a code other than
    ``FUNCTION_NAMESPACE_CONFLICT``, protocol.md §2.11), or authentication failed.

    Attributes:
        code: The rejection code, e.g. ``WORKER_NAMESPACE_CONFLICT`` or ``AUTH_ERROR``.
        namespace: Namespace of the conflict, when known.
        worker_name: The contested worker name, when known.
        owner_worker_id: Worker id of the current owner, when known.
        function_id: The contested function id, when known.
    """

    def __init__(
        self,
        code: str,
        message: str | None = None,
        *,
        namespace: str | None = None,
        worker_name: str | None = None,
        owner_worker_id: str | None = None,
        function_id: str | None = None,
    ) -> None:
        text = message or _rejection_text(code, namespace, worker_name, owner_worker_id, function_id)
        super().__init__(text)
        self.code = code
        self.message = text
        self.namespace = namespace
        self.worker_name = worker_name
        self.owner_worker_id = owner_worker_id
        self.function_id = function_id


def _rejection_text(
    code: str,
    namespace: str | None,
    worker_name: str | None,
    owner_worker_id: str | None,
    function_id: str | None,
) -> str:
    parts = [f"registration rejected: {code}"]
    if worker_name is not None:
        parts.append(f"worker name {worker_name!r}")
    if function_id is not None:
        parts.append(f"function {function_id!r}")
    if namespace is not None:
        parts.append(f"in namespace {namespace!r}")
    if owner_worker_id:
        parts.append(f"is held by worker {owner_worker_id}")
    return " ".join(parts)


class ResponseValidationError(IIIError):
    """A generated stub received a result that does not match the function's response schema.

    Attributes:
        function_id: The function whose result failed validation.
        errors: pydantic's error list (each with ``loc``, ``msg``, ``type``).
    """

    def __init__(self, function_id: str, errors: list[dict[str, Any]], message: str | None = None) -> None:
        detail = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ())) or '<root>'}: {e.get('msg', '')}" for e in errors
        )
        super().__init__(message or f"response of {function_id} failed validation: {detail}")
        self.function_id = function_id
        self.errors = errors


class FrameDecodeError(IIIError, ValueError):
    """A WebSocket message is not a valid protocol frame (protocol.md §2.0).

    Attributes:
        reason: ``"json"`` (not JSON), ``"type"`` (missing or unknown ``type``), ``"fields"``
            (missing or wrongly typed fields), or ``"size"`` (over the size limit).
        frame_type: The ``type`` value when one could be read, else ``None``.
    """

    def __init__(self, reason: str, message: str, frame_type: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.frame_type = frame_type


def error_from_body(
    body: Any,
    *,
    function_id: str | None = None,
    invocation_id: str | None = None,
) -> InvocationError:
    """Map a wire ``ErrorBody`` to an exception (the only place this mapping happens).

    Args:
        body: The ``error`` value of an ``invocationresult``: a mapping with ``code`` and
            ``message`` (and optionally ``stacktrace``), or an ``ErrorBody`` model. Anything
            else maps to code ``UNKNOWN``.
        function_id: The invoked function, recorded on the error.
        invocation_id: The invocation id, recorded on the error.

    Returns:
        :class:`InvocationTimeoutError` for code ``TIMEOUT``, else :class:`InvocationError`.
    """
    if hasattr(body, "model_dump"):
        body = body.model_dump()
    if isinstance(body, dict) and isinstance(body.get("code"), str):
        code = body["code"]
        message = body.get("message")
        stack = body.get("stacktrace")
        cls = InvocationTimeoutError if code == "TIMEOUT" else InvocationError
        return cls(
            code,
            message if isinstance(message, str) else str(message),
            stacktrace=stack if isinstance(stack, str) else None,
            function_id=function_id,
            invocation_id=invocation_id,
        )
    return InvocationError("UNKNOWN", str(body), function_id=function_id, invocation_id=invocation_id)
