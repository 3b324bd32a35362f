"""Process-global OpenTelemetry setup and the per-client telemetry (protocol.md §4.5, §8; sdk.md §4).

:class:`TelemetryHub` is created once per process, by the first client whose telemetry is on, and
never torn down (OpenTelemetry providers are process-global; the first client's resource — service
name, version, instance id — applies to the whole process, as in the official SDK):

* **Traces.** When no tracer provider is installed yet, an SDK ``TracerProvider`` with our
  resource becomes the global one; when the application installed an SDK provider already, our
  span processor is added to it; otherwise (a foreign implementation) a private provider is used.
  The processor copies baggage entries to span attributes when a span starts and hands finished
  spans to the sender. (Spans the application creates go this way; handler spans do not.)
* **Logs.** The same rule for the logger provider (scope ``iii.logger`` for :class:`~iii_typed.Logger`).
  The SDK's own WARNING+ records (logger ``iii_typed``) are exported too, correlated with the
  active span (cases.md B22), except those of the engine and of telemetry itself.
* **Metrics.** A ``MeterProvider`` with a pull reader (global when none is installed) that the
  sender collects every ``metrics_export_interval_ms``; the worker resource gauges of
  :mod:`._resources` are registered on it.

The ``/otel`` socket (:class:`~._sender.OtelSender`) is shared by the clients of the process: the
first client that attaches starts it (with its URL, headers and intervals), the last one that
detaches flushes and stops it — no telemetry thread remains once every client is shut down.

Per client, :class:`ClientTelemetry` opens a span ``execute <function_id>`` (INTERNAL, a
lightweight :class:`~._span.HandlerSpan` handed straight to the sender, not an SDK span) around
every handler (:meth:`ClientTelemetry.handler_scope`), parented on the incoming ``traceparent`` /
``baggage``; the context is attached and detached in the same thread or task (cases.md B21), so no
"Failed to detach context" and no span left current. :meth:`ClientTelemetry.outgoing` gives the
``traceparent``/``baggage`` of the current context for outgoing ``invokefunction`` frames.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback
import weakref
from collections.abc import Iterable, Mapping
from importlib import metadata
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import baggage as otel_baggage
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.trace import SpanContext, Status, StatusCode

from . import _state
from ._config import ResolvedOtel
from ._payload import capture
from ._resources import GAUGES, ProcessSampler
from ._sender import OtelSender
from ._span import HandlerSpan, RemoteParent

if TYPE_CHECKING:
    import asyncio

    from opentelemetry.sdk._logs import LoggerProvider as SdkLoggerProvider
    from opentelemetry.sdk._logs import ReadWriteLogRecord
    from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider

    from ..protocol.frames import InvokeFunction

__all__ = [
    "LOGGER_SCOPE",
    "TRACER_SCOPE",
    "ClientTelemetry",
    "HandlerScope",
    "TelemetryHub",
    "current_hub",
    "format_traceparent",
    "hub_for",
    "severity_of",
]

log = logging.getLogger("iii_typed.telemetry")

#: Instrumentation scope of handler spans.
TRACER_SCOPE: Final = "iii-typed"
#: Instrumentation scope of :class:`~iii_typed.Logger` records (the official SDK's).
LOGGER_SCOPE: Final = "iii.logger"
#: Instrumentation scope of the SDK's own exported log records.
_SDK_LOG_SCOPE: Final = "iii_typed"
_BAGGAGE = W3CBaggagePropagator()
_EMPTY = Context()

#: ``level name -> (severity number, severity text)`` (OpenTelemetry log data model).
_SEVERITIES: Final = {
    "trace": (1, "TRACE"),
    "debug": (5, "DEBUG"),
    "info": (9, "INFO"),
    "warn": (13, "WARN"),
    "error": (17, "ERROR"),
    "fatal": (21, "FATAL"),
}


def _sdk_version() -> str:
    try:
        return metadata.version("iii-typed")
    except metadata.PackageNotFoundError:  # pragma: no cover - source checkout without install
        return "0.0.0"


def severity_of(level: str) -> tuple[int, str]:
    """``(severity_number, severity_text)`` of ``trace|debug|info|warn|error|fatal``."""
    return _SEVERITIES[level]


def _stdlib_severity(levelno: int) -> tuple[int, str]:
    if levelno >= logging.CRITICAL:
        return _SEVERITIES["fatal"]
    if levelno >= logging.ERROR:
        return _SEVERITIES["error"]
    if levelno >= logging.WARNING:
        return _SEVERITIES["warn"]
    if levelno >= logging.INFO:
        return _SEVERITIES["info"]
    return _SEVERITIES["debug"]


def format_traceparent(context: SpanContext) -> str:
    """The W3C ``traceparent`` header of a span context (``00-<trace>-<span>-<flags>``)."""
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


# ---------------------------------------------------------------------------------------------
# Processors and the metric reader
# ---------------------------------------------------------------------------------------------


class _SpanProcessor(SpanProcessor):
    """Baggage → span attributes on start; finished spans → the sender."""

    def __init__(self, hub: TelemetryHub) -> None:
        self._hub = hub

    def on_start(self, span: Any, parent_context: Context | None = None) -> None:
        entries = otel_baggage.get_all(parent_context)
        if entries:
            span.set_attributes({str(k): str(v) for k, v in entries.items()})

    def on_end(self, span: ReadableSpan) -> None:
        sender = self._hub.sender
        if sender is not None:
            sender.offer_span(span)

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _log_processor_class() -> type[Any]:
    from opentelemetry.sdk._logs import LogRecordProcessor

    class _LogProcessor(LogRecordProcessor):
        """Emitted log records → the sender."""

        def __init__(self, hub: TelemetryHub) -> None:
            self._hub = hub

        def on_emit(self, log_record: ReadWriteLogRecord) -> None:
            sender = self._hub.sender
            if sender is not None:
                sender.offer_log(log_record)

        def emit(self, log_record: ReadWriteLogRecord) -> None:  # older SDK name
            self.on_emit(log_record)

        def shutdown(self) -> None:
            return None

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return True

    return _LogProcessor


def _pull_reader_class() -> type[Any]:
    from opentelemetry.sdk.metrics.export import MetricReader, MetricsData

    from ._encode import encode_metrics

    class _PullReader(MetricReader):
        """A reader the sender collects on its own schedule (no thread of its own)."""

        def __init__(self) -> None:
            super().__init__()
            self._last: MetricsData | None = None
            self._lock = threading.Lock()

        def _receive_metrics(
            self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
        ) -> None:
            self._last = metrics_data

        def collect_encoded(self) -> bytes | None:
            with self._lock:
                self._last = None
                self.collect()
                data, self._last = self._last, None
            return encode_metrics(data) if data is not None else None

        def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
            return None

    return _PullReader


class _SdkLogBridge(logging.Handler):
    """Exports the SDK's WARNING+ ``logging`` records as OpenTelemetry log records (B22)."""

    _SKIP: Final = ("iii_typed.telemetry", "iii_typed.engine")

    def __init__(self, hub: TelemetryHub) -> None:
        super().__init__(logging.WARNING)
        self._hub = hub

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(self._SKIP):
            return
        hub = self._hub
        if hub.sender is None or hub.sdk_logger is None:
            return
        try:
            attributes: dict[str, Any] = {
                "logger.name": record.name,
                "code.function.name": record.funcName,
                "code.line.number": record.lineno,
            }
            if record.exc_info and record.exc_info[1] is not None:
                exc = record.exc_info[1]
                attributes["exception.type"] = type(exc).__name__
                attributes["exception.message"] = str(exc)
                attributes["exception.stacktrace"] = "".join(traceback.format_exception(exc))
            number, text = _stdlib_severity(record.levelno)
            hub.sdk_logger.emit(
                timestamp=int(record.created * 1e9),
                observed_timestamp=time.time_ns(),
                severity_number=_severity_number(number),
                severity_text=text,
                body=record.getMessage(),
                attributes=attributes,
            )
        except Exception:  # pragma: no cover - a log handler must never raise
            self.handleError(record)


def _severity_number(number: int) -> Any:
    from opentelemetry._logs import SeverityNumber

    return SeverityNumber(number)


# ---------------------------------------------------------------------------------------------
# The hub
# ---------------------------------------------------------------------------------------------

_HUB_LOCK = threading.Lock()


def current_hub() -> TelemetryHub | None:
    """The process's hub, or ``None`` when no client ever turned telemetry on."""
    return _state.HUB


class TelemetryHub:
    """Process-global providers, the shared sender and the attached clients (module docstring).

    Args:
        config: The first client's resolved settings (its resource applies process-wide).
    """

    def __init__(self, config: ResolvedOtel) -> None:
        self.config = config
        attributes: dict[str, Any] = {
            "service.name": config.service_name,
            "service.version": config.service_version,
            "service.instance.id": config.service_instance_id,
            "telemetry.sdk.name": "iii-typed",
            "telemetry.sdk.language": "python",
            "telemetry.sdk.version": _sdk_version(),
            "process.pid": os.getpid(),
        }
        if config.service_namespace:
            attributes["service.namespace"] = config.service_namespace
        self.resource = Resource.create(attributes)
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope

        #: Instrumentation scope of the handler spans.
        self.scope = InstrumentationScope(TRACER_SCOPE, _sdk_version())
        self.sender: OtelSender | None = None
        self.clients: list[ClientTelemetry] = []
        self._lock = threading.RLock()
        self.sampler = ProcessSampler()
        self.tracer_provider = self._install_tracer_provider()
        self.tracer = self.tracer_provider.get_tracer(TRACER_SCOPE, _sdk_version())
        self.logger_provider: SdkLoggerProvider | None = None
        self.logger: Any = None
        self.sdk_logger: Any = None
        self.meter_provider: SdkMeterProvider | None = None
        self._reader: Any = None
        self._bridge: _SdkLogBridge | None = None

    # -- providers -----------------------------------------------------------------------------
    def _install_tracer_provider(self) -> SdkTracerProvider:
        processor = _SpanProcessor(self)
        current = trace.get_tracer_provider()
        if isinstance(current, SdkTracerProvider):
            current.add_span_processor(processor)
            return current
        provider = SdkTracerProvider(resource=self.resource)
        provider.add_span_processor(processor)
        if isinstance(current, trace.ProxyTracerProvider):
            trace.set_tracer_provider(provider)
        return provider

    def _ensure_logs(self) -> None:
        if self.logger_provider is not None:
            return
        from opentelemetry import _logs
        from opentelemetry.sdk._logs import LoggerProvider

        processor = _log_processor_class()(self)
        current = _logs.get_logger_provider()
        if isinstance(current, LoggerProvider):
            current.add_log_record_processor(processor)
            provider = current
        else:
            provider = LoggerProvider(resource=self.resource)
            provider.add_log_record_processor(processor)
            if type(current).__name__ in ("ProxyLoggerProvider", "NoOpLoggerProvider"):
                _logs.set_logger_provider(provider)
        self.logger_provider = provider
        self.logger = provider.get_logger(LOGGER_SCOPE)
        self.sdk_logger = provider.get_logger(_SDK_LOG_SCOPE, _sdk_version())
        self._bridge = _SdkLogBridge(self)
        logging.getLogger("iii_typed").addHandler(self._bridge)

    def _ensure_metrics(self) -> None:
        if self.meter_provider is not None:
            return
        from opentelemetry import metrics
        from opentelemetry.metrics import CallbackOptions, Observation
        from opentelemetry.sdk.metrics import MeterProvider

        reader = _pull_reader_class()()
        provider = MeterProvider(resource=self.resource, metric_readers=[reader])
        current = metrics.get_meter_provider()
        if type(current).__name__ == "_ProxyMeterProvider":
            metrics.set_meter_provider(provider)
        self.meter_provider = provider
        self._reader = reader
        meter = provider.get_meter("iii-typed.worker", _sdk_version())

        def gauge(field: str) -> Any:
            def callback(options: CallbackOptions) -> Iterable[Observation]:
                return [Observation(value, {"worker.id": wid}) for wid, value in self._observe(field)]

            return callback

        for name, field, unit, description in GAUGES:
            meter.create_observable_gauge(name, callbacks=[gauge(field)], unit=unit, description=description)

    def _observe(self, field: str) -> list[tuple[str, float | int]]:
        clients = [c for c in list(self.clients) if c.reports_metrics and c.worker_id]
        if not clients:
            return []
        if field == "event_loop_lag_ms":
            return [(c.worker_id, c.loop_lag_ms()) for c in clients if c.worker_id]
        if field == "uptime_seconds":
            now = time.monotonic()
            return [(c.worker_id, round(now - c.started, 3)) for c in clients if c.worker_id]
        value = getattr(self.sampler.sample(), field)
        if value is None:
            return []
        return [(c.worker_id, value) for c in clients if c.worker_id]

    def collect_metrics(self) -> bytes | None:
        """Collect every instrument now; the encoded ``MTRC`` payload or ``None`` (sender thread)."""
        reader = self._reader
        if reader is None:
            return None
        payload: bytes | None = reader.collect_encoded()
        return payload

    # -- clients -------------------------------------------------------------------------------
    def attach(self, client: ClientTelemetry) -> None:
        """Add a client; start the sender when it is the first (with that client's settings)."""
        config = client.config
        with self._lock:
            if config.logs_enabled:
                self._ensure_logs()
            if config.metrics_enabled:
                self._ensure_metrics()
            self.clients.append(client)
            if self.sender is None:
                self.sender = OtelSender(
                    config.url,
                    config.headers,
                    config.reconnection,
                    spans_flush_ms=config.spans_flush_interval_ms,
                    logs_flush_ms=config.logs_flush_interval_ms,
                    logs_batch_size=config.logs_batch_size,
                    metrics_interval_ms=config.metrics_export_interval_ms if config.metrics_enabled else None,
                    collect_metrics=self.collect_metrics if self.meter_provider is not None else None,
                    resource=self.resource,
                    scope=self.scope,
                )

    def detach(self, client: ClientTelemetry, flush_timeout: float = 1.0) -> None:
        """Remove a client; the last one flushes and stops the sender (its thread ends)."""
        with self._lock:
            if client in self.clients:
                self.clients.remove(client)
            if self.clients or self.sender is None:
                return
            sender, self.sender = self.sender, None
        sender.stop(flush_timeout)

    def offer_span(self, span: HandlerSpan) -> None:
        """A handler span ended: hand it to the sender (dropped when none runs)."""
        sender = self.sender
        if sender is not None:
            sender.offer_span(span)

    @property
    def logs_active(self) -> bool:
        """Whether log records currently reach an engine (a sender runs and logs are on)."""
        return self.sender is not None and self.logger is not None

    def emit_log(self, level: str, message: str, attributes: Mapping[str, Any]) -> None:
        """Emit one :class:`~iii_typed.Logger` record in the current context (trace/span ids)."""
        number, text = _SEVERITIES[level]
        now = time.time_ns()
        self.logger.emit(
            timestamp=now,
            observed_timestamp=now,
            severity_number=_severity_number(number),
            severity_text=text,
            body=message,
            attributes=dict(attributes),
        )

    def stats(self) -> dict[str, Any]:
        """Sender counters plus the number of attached clients."""
        sender = self.sender
        out: dict[str, Any] = sender.stats() if sender is not None else {"connected": False}
        out["clients"] = len(self.clients)
        out["service_name"] = self.config.service_name
        return out


def hub_for(config: ResolvedOtel) -> TelemetryHub:
    """The process's hub, created by the first caller (its ``config`` sets the resource)."""
    with _HUB_LOCK:
        hub = _state.HUB
        if hub is None:
            hub = _state.HUB = TelemetryHub(config)
        return hub


# ---------------------------------------------------------------------------------------------
# Per client
# ---------------------------------------------------------------------------------------------


class HandlerScope:
    """The span of one handler run (``execute <function_id>``); a context manager.

    Entering starts the span, parented on the frame's ``traceparent``/``baggage`` (a new root
    otherwise), attaches it as the current context and records the input payload; leaving
    detaches that same context token and ends the span. :meth:`failed` / :meth:`succeeded`
    set the status and record the output.
    """

    __slots__ = ("_data", "_done", "_frame", "_owner", "_token", "span")

    def __init__(self, owner: ClientTelemetry, frame: InvokeFunction, data: Any) -> None:
        self._owner = owner
        self._frame = frame
        self._data = data
        self._token: object = None
        self._done = False
        self.span: HandlerSpan | None = None

    def __enter__(self) -> HandlerScope:
        frame = self._frame
        parent = _EMPTY
        remote = RemoteParent.parse(frame.traceparent)
        attributes: dict[str, Any] = {"iii.function.id": frame.function_id}
        if frame.invocation_id is not None:
            attributes["iii.invocation.id"] = frame.invocation_id  # a UUID: made text when encoded
        if frame.baggage:  # baggage travels on, and its entries become span attributes
            parent = _BAGGAGE.extract({"baggage": frame.baggage}, context=parent)
            for key, value in otel_baggage.get_all(parent).items():
                attributes.setdefault(str(key), str(value))
        recording = remote is None or bool(remote.flags & 1)
        owner = self._owner
        span = HandlerSpan(
            f"execute {frame.function_id}", remote, attributes, owner.hub.offer_span, recording
        )
        self.span = span
        self._token = otel_context.attach(trace.set_span_in_context(span, parent))
        config = owner.config
        if config.payloads and recording:
            text, cut = capture(self._data, config.payload_max_bytes)
            span.events.append(
                (
                    "iii.invocation.input",
                    {"iii.payload.json": text, "iii.payload.truncated": cut},
                    time.time_ns(),
                )
            )
        return self

    @property
    def traceparent(self) -> str | None:
        """``traceparent`` of this span, sent on the ``invocationresult`` (protocol.md §2.9)."""
        span = self.span
        return span.traceparent if span is not None else None

    def failed(self, exc: BaseException) -> None:
        """The handler raised ``exc``: status ERROR, an ``exception`` event, the error as output."""
        span = self.span
        self._done = True
        if span is None or not span.is_recording():
            return
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, str(exc) or type(exc).__name__))
        config = self._owner.config
        if config.payloads:
            text, cut = capture({"error": str(exc) or type(exc).__name__}, config.payload_max_bytes)
            span.events.append(
                (
                    "iii.invocation.output",
                    {"iii.payload.json": text, "iii.payload.truncated": cut, "iii.payload.ok": False},
                    time.time_ns(),
                )
            )

    def succeeded(self, value: Any) -> None:
        """The handler returned ``value``: status OK and the output payload."""
        span = self.span
        self._done = True
        if span is None or not span.is_recording():
            return
        span.set_status(StatusCode.OK)
        config = self._owner.config
        if config.payloads:
            text, cut = capture(value, config.payload_max_bytes)
            span.events.append(
                (
                    "iii.invocation.output",
                    {"iii.payload.json": text, "iii.payload.truncated": cut, "iii.payload.ok": True},
                    time.time_ns(),
                )
            )

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        span = self.span
        if exc is not None and not self._done and span is not None and span.is_recording():
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}".rstrip(": ")))
        try:
            otel_context.detach(self._token)  # type: ignore[arg-type]
        finally:
            if span is not None:
                span.end()


class ClientTelemetry:
    """Telemetry of one client: handler spans, outgoing context, its resource gauges.

    Args:
        hub: The process hub.
        config: This client's resolved settings.
        loop: The client's event loop (its lag is measured).
    """

    def __init__(self, hub: TelemetryHub, config: ResolvedOtel, loop: asyncio.AbstractEventLoop) -> None:
        self.hub = hub
        self.config = config
        self.worker_id: str | None = None
        self.started = time.monotonic()
        self.reports_metrics = config.metrics_reporting and config.metrics_enabled
        self._loop_ref = weakref.ref(loop)
        self._lag_ms = 0.0
        self._closed = False
        hub.attach(self)

    def handler_scope(self, frame: InvokeFunction, data: Any) -> HandlerScope:
        """A :class:`HandlerScope` for one handler run (use as ``with``)."""
        return HandlerScope(self, frame, data)

    @staticmethod
    def outgoing() -> tuple[str | None, str | None]:
        """``(traceparent, baggage)`` of the current context for an outgoing call (§4.5);
        ``(None, None)`` when no span is active."""
        current = otel_context.get_current()
        span = trace.get_current_span(current)
        if type(span) is HandlerSpan:  # the common case: no SpanContext to build and format
            traceparent = span.traceparent
        else:
            span_context = span.get_span_context()
            if not span_context.is_valid:
                return None, None
            traceparent = format_traceparent(span_context)
        entries = otel_baggage.get_all(current)
        header: str | None = None
        if entries:
            carrier: dict[str, str] = {}
            _BAGGAGE.inject(carrier, context=current)
            header = carrier.get("baggage")
        return traceparent, header

    def worker_registered(self, worker_id: str) -> None:
        """The engine assigned ``worker_id`` (gauges are tagged with it); report metrics now."""
        self.worker_id = worker_id
        sender = self.hub.sender
        if self.reports_metrics and sender is not None:
            sender.request_metrics()

    def loop_lag_ms(self) -> float:
        """The last measured loop lag (ms), and start a new measurement."""
        loop = self._loop_ref()
        if loop is not None and not loop.is_closed():
            posted = time.monotonic()
            try:
                loop.call_soon_threadsafe(self._lag_done, posted)
            except RuntimeError:
                pass
        return round(self._lag_ms, 3)

    def _lag_done(self, posted: float) -> None:
        self._lag_ms = (time.monotonic() - posted) * 1000

    def close(self, flush_timeout: float = 1.0) -> None:
        """Detach from the hub (idempotent); the last client stops the sender."""
        if self._closed:
            return
        self._closed = True
        self.hub.detach(self, flush_timeout)
