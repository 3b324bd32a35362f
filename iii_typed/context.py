"""The invocation context a handler runs in: ``current_invocation()`` (protocol.md §4.2-§4.5).

While a handler runs (sync handlers on their own thread, async handlers as tasks on the SDK loop),
:func:`current_invocation` returns the :class:`InvocationContext` of that call; elsewhere it
returns ``None``. The context follows ``contextvars`` rules, so work the handler starts with
``asyncio.create_task`` or ``contextvars.copy_context().run`` sees it too.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any

__all__ = ["InvocationContext", "current_invocation"]


@dataclass(frozen=True)
class InvocationContext:
    """What the SDK knows about the invocation being handled.

    Attributes:
        function_id: The invoked function.
        invocation_id: The invocation id (a UUID string), or ``None`` when the engine sent none.
        metadata: The per-invocation metadata sidecar (protocol.md §4.4), or ``None``.
        traceparent: W3C trace context of the incoming call, when present.
        baggage: W3C baggage of the incoming call, when present.
        caller_worker_id: The calling worker's id, taken from the ``_caller_worker_id`` key the
            engine adds to object payloads sent by workers (protocol.md §4.3), when present.
    """

    function_id: str
    invocation_id: str | None = None
    metadata: Any = None
    traceparent: str | None = None
    baggage: str | None = None
    caller_worker_id: str | None = None


_CURRENT: ContextVar[InvocationContext | None] = ContextVar("iii_typed_invocation", default=None)


def current_invocation() -> InvocationContext | None:
    """The context of the invocation being handled in this thread/task, or ``None`` outside handlers."""
    return _CURRENT.get()


def _enter(context: InvocationContext) -> Token[InvocationContext | None]:
    return _CURRENT.set(context)


def _leave(token: Token[InvocationContext | None]) -> None:
    _CURRENT.reset(token)
