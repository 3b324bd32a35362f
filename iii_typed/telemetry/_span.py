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
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.util import types

__all__ = ["HandlerSpan", "RemoteParent", "new_span_id", "new_trace_id"]

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


class RemoteParent:
    """The incoming ``traceparent``, kept as the hex text it arrived in (protocol.md §4.5).

    Attributes:
        trace_hex: 32 lower-case hex digits.
        span_hex: 16 lower-case hex digits (the caller's span).
        flags: Trace flags (bit 0: sampled).
    """

    __slots__ = ("flags", "span_hex", "trace_hex")

    def __init__(self, trace_hex: str, span_hex: str, flags: int) -> None:
        self.trace_hex = trace_hex
        self.span_hex = span_hex
        self.flags = flags

    @classmethod
    def parse(cls, value: str | None) -> RemoteParent | None:
        """Parse a W3C ``traceparent`` (version-00 layout); ``None`` when absent or malformed."""
        if not value or len(value) < 55:
            return None
        if value[2] != "-" or value[35] != "-" or value[52] != "-" or value[:2] == "ff":
            return None
        trace_hex, span_hex = value[3:35].lower(), value[36:52].lower()
        try:
            if not int(trace_hex, 16) or not int(span_hex, 16):
                return None
            flags = int(value[53:55], 16)
        except ValueError:
            return None
        return cls(trace_hex, span_hex, flags)


class HandlerSpan(trace.Span):
    """An ``execute <function_id>`` span (see the module docstring).

    Ids are kept as hex text (what ``traceparent`` and the encoder need); the API's
    :class:`~opentelemetry.trace.SpanContext` is built only when user code asks for it.

    Args:
        name: Span name.
        parent: The remote parent, or ``None`` for a root span.
        attributes: Initial attributes.
        on_end: Called once with the span when it ends (hands it to the sender).
        recording: ``False`` records nothing (parent not sampled).

    Attributes:
        name, kind, start_time, end_time, attributes, events, links, status_code,
        status_message, trace_hex, span_hex, parent_hex, flags: What the encoder reads
        (:mod:`._encode`).
    """

    __slots__ = (
        "_context",
        "_on_end",
        "attributes",
        "end_time",
        "events",
        "flags",
        "kind",
        "links",
        "name",
        "parent_hex",
        "span_hex",
        "start_time",
        "status_code",
        "status_message",
        "trace_hex",
    )

    def __init__(
        self,
        name: str,
        parent: RemoteParent | None,
        attributes: dict[str, Any],
        on_end: Callable[[HandlerSpan], None] | None,
        recording: bool = True,
    ) -> None:
        if parent is not None:
            self.trace_hex = parent.trace_hex
            self.parent_hex: str | None = parent.span_hex
            self.flags = parent.flags
        else:
            self.trace_hex = f"{new_trace_id():032x}"
            self.parent_hex = None
            self.flags = 1
        self.span_hex = f"{new_span_id():016x}"
        self._context: SpanContext | None = None
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

    @property
    def traceparent(self) -> str:
        """This span's W3C ``traceparent``."""
        return f"00-{self.trace_hex}-{self.span_hex}-{self.flags:02x}"

    # -- the Span API ------------------------------------------------------------------------
    def get_span_context(self) -> SpanContext:
        """This span's context (built on first use)."""
        context = self._context
        if context is None:
            context = self._context = SpanContext(
                int(self.trace_hex, 16),
                int(self.span_hex, 16),
                is_remote=False,
                trace_flags=TraceFlags(self.flags),
            )
        return context

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
        return f"HandlerSpan({self.name!r}, {self.trace_hex}/{self.span_hex})"
