"""The handler span: a lightweight OpenTelemetry API span recorded by iii-typed itself (§4.5, §8.2).

Every invocation runs in a span ``execute <function_id>``. Going through the OpenTelemetry SDK's
``Tracer.start_span`` → ``Span`` → processors costs about 25 µs per span plus ~5 µs per event on
this machine (``BoundedAttributes``, sampler, span limits, processor fan-out); with the two payload
events that alone would be a quarter of a round trip (perf.md §6 item 8). :class:`HandlerSpan`
implements the API's :class:`opentelemetry.trace.Span` directly — ids, times, attributes, events,
status — and is handed to the ``/otel`` sender when it ends. It is a real span for user code:
``trace.get_current_span()`` inside a handler returns it, ``set_attribute``/``add_event``/
``record_exception`` on it are recorded, and spans the application creates with its own tracer
become its children. Not applied to it: the SDK's sampler (a parent that is not sampled makes it
non-recording, like the SDK's default ``ParentBased`` sampler), span limits, and span processors
the application may have added to its own provider.
"""

from __future__ import annotations

import random
import time
import traceback
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Final

from opentelemetry import trace
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.util import types

__all__ = ["HandlerSpan", "new_span_id", "new_trace_id"]

_SAMPLED: Final = TraceFlags(TraceFlags.SAMPLED)
_getrandbits = random.getrandbits


def new_trace_id() -> int:
    """A random, non-zero 128-bit trace id."""
    value = 0
    while not value:
        value = _getrandbits(128)
    return value


def new_span_id() -> int:
    """A random, non-zero 64-bit span id."""
    value = 0
    while not value:
        value = _getrandbits(64)
    return value


class HandlerSpan(trace.Span):
    """An ``execute <function_id>`` span (see the module docstring).

    Args:
        name: Span name.
        parent: The remote parent's span context, or ``None`` for a root span.
        attributes: Initial attributes.
        on_end: Called once with the span when it ends (hands it to the sender).
        recording: ``False`` records nothing (parent not sampled).

    Attributes:
        name, kind, start_time, end_time, attributes, events, links, status_code,
        status_message, parent: What the encoder reads (:mod:`._encode`).
    """

    __slots__ = (
        "_context",
        "_on_end",
        "attributes",
        "end_time",
        "events",
        "kind",
        "links",
        "name",
        "parent",
        "start_time",
        "status_code",
        "status_message",
    )

    def __init__(
        self,
        name: str,
        parent: SpanContext | None,
        attributes: dict[str, Any],
        on_end: Callable[[HandlerSpan], None] | None,
        recording: bool = True,
    ) -> None:
        trace_id = parent.trace_id if parent is not None else new_trace_id()
        flags = parent.trace_flags if parent is not None else _SAMPLED
        self._context = SpanContext(
            trace_id,
            new_span_id(),
            is_remote=False,
            trace_flags=flags,
            trace_state=parent.trace_state if parent is not None else None,
        )
        self.parent = parent
        self.name = name
        self.kind = SpanKind.INTERNAL
        self.attributes = attributes
        self.events: list[tuple[str, Mapping[str, Any], int]] = []
        self.links: list[tuple[SpanContext, Mapping[str, Any]]] = []
        self.status_code = StatusCode.UNSET
        self.status_message = ""
        self.start_time = time.time_ns()
        self.end_time: int | None = None if recording else self.start_time
        self._on_end = on_end if recording else None

    # -- the Span API ------------------------------------------------------------------------
    def get_span_context(self) -> SpanContext:
        """This span's context."""
        return self._context

    def is_recording(self) -> bool:
        """Whether changes are still recorded (until :meth:`end`)."""
        return self.end_time is None

    def set_attributes(self, attributes: Mapping[str, types.AttributeValue]) -> None:
        """Set several attributes."""
        if self.end_time is None:
            self.attributes.update(attributes)

    def set_attribute(self, key: str, value: types.AttributeValue) -> None:
        """Set one attribute."""
        if self.end_time is None:
            self.attributes[key] = value

    def add_event(self, name: str, attributes: types.Attributes = None, timestamp: int | None = None) -> None:
        """Record an event (time in Unix ns, now by default)."""
        if self.end_time is None:
            self.events.append((name, dict(attributes) if attributes else {}, timestamp or time.time_ns()))

    def add_link(self, context: SpanContext, attributes: types.Attributes = None) -> None:
        """Record a link to another span."""
        if self.end_time is None and context.is_valid:
            self.links.append((context, dict(attributes) if attributes else {}))

    def update_name(self, name: str) -> None:
        """Rename the span."""
        if self.end_time is None:
            self.name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        """Set the status (an OK status is final, as in the SDK)."""
        if self.end_time is not None or self.status_code is StatusCode.OK:
            return
        if isinstance(status, Status):
            self.status_code = status.status_code
            self.status_message = status.description or ""
        else:
            self.status_code = status
            self.status_message = description or "" if status is StatusCode.ERROR else ""

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        """Record an ``exception`` event (type, message, stack trace)."""
        if self.end_time is not None:
            return
        event: dict[str, Any] = {
            "exception.type": type(exception).__qualname__,
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            "exception.escaped": str(escaped),
        }
        if attributes:
            event.update(attributes)
        self.events.append(("exception", event, timestamp or time.time_ns()))

    def end(self, end_time: int | None = None) -> None:
        """End the span (once) and hand it over."""
        if self.end_time is not None:
            return
        self.end_time = end_time or time.time_ns()
        on_end = self._on_end
        self._on_end = None
        if on_end is not None:
            on_end(self)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is not None and self.is_recording():
            self.record_exception(exc, escaped=True)
            self.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        self.end()

    def __repr__(self) -> str:
        return f"HandlerSpan({self.name!r}, {self._context.trace_id:032x}/{self._context.span_id:016x})"
