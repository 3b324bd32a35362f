"""``iii-observability``: telemetry ingestion, storage and queries (protocol.md §6.8, §7, §8).

Ingestion. Binary frames ``OTLP`` (spans), ``LOGS`` and ``MTRC`` (metrics) arriving on ``/otel``
or on a worker socket ``/`` are parsed leniently (:mod:`._otel_parse`); a frame that is not JSON is
logged and skipped, a malformed span/record/point inside a good frame is skipped and counted —
the engine keeps serving either way.

Storage. Ring buffers with configured maxima (:mod:`._otel_store`): spans (indexed by trace id),
log records, metric points, and each worker's latest resource metrics (``engine::workers::info``
shows them as ``latest_metrics``, two-minute lookback). With ``persist = true`` and a data folder,
spans and logs are also kept in ``observability.sqlite3`` and reloaded at start.

Engine-side telemetry. Every invocation the engine routes is counted — ``iii.invocations.total``,
``iii.invocation.errors.total``, ``iii.invocation.duration`` (histogram, ms) per function — and
worker gauges ``iii.workers.active``, ``iii.workers.spawns.total``, ``iii.workers.deaths.total``
are kept; ``engine::metrics::list`` reports them as ``engine_metrics``. A call to a built-in or
HTTP-invoked function that carries a ``traceparent`` gets an engine span ``call <function_id>``
(service ``iii``) in the caller's trace; ``engine::*`` ones are marked internal. Calls routed to a
worker get no engine span (the worker's ``execute`` span is the child of the caller's), as in
the real engine.

Functions (namespace ``default``): ``engine::logs::list|clear``, ``engine::traces::list|tree|clear``,
``engine::metrics::list``, ``engine::log::{trace,debug,info,warn,error}``,
``engine::baggage::get|set|get_all`` and the extension ``engine::observability::stats``. Trigger
types ``log`` (config ``{level}``) and ``trace`` (config ``{service_name?, status?}``, trace ids
coalesced every 300 ms). Health components ``logs``, ``metrics``, ``otel``, ``spans`` (X03).

Configuration, table ``[observability]`` (every key optional):

======================== =========================== ===========================================
key                      default                     meaning
======================== =========================== ===========================================
``service_name``         ``"iii"``                   service of engine spans and logs
``exporter``             ``"memory"``                ``memory``, ``otlp`` or ``both``
``endpoint``             ``http://127.0.0.1:4318``   OTLP/HTTP collector (``otlp``/``both``)
``headers``              ``{}``                      extra HTTP headers of the export
``export_interval_ms``   1000                        export period
``memory_max_spans``     10000                       spans kept
``logs_max_count``       10000                       log records kept
``metrics_max_count``    10000                       metric points kept
``persist``              ``false``                   SQLite copy of spans and logs (data folder)
``engine_spans``         ``true``                    engine ``call <fn>`` spans for built-ins
``trace_coalesce_ms``    300                         ``trace`` trigger batching period
======================== =========================== ===========================================
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import gc
import logging
import os
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Final, Literal
from urllib.parse import unquote

from pydantic import BaseModel, Field

from ..config import ConfigError
from ._otel_export import OtlpExporter
from ._otel_parse import (
    INTERNAL_ATTRIBUTE,
    ParsedSpan,
    loads,
    parse_logs,
    parse_metrics,
    parse_spans,
    severity_level,
)
from ._otel_store import LogStore, MetricStore, Persistence, SpanStore, aggregate
from ._settings import check_section, check_trigger_config
from .base import (
    BuiltinError,
    BuiltinFunction,
    BuiltinTriggerType,
    BuiltinWorker,
    CallContext,
    EngineServices,
    HealthComponent,
    TriggerBinding,
    TriggerRegistrationError,
    valid_traceparent,
)

__all__ = [
    "BUILTIN",
    "DURATION_BOUNDS_MS",
    "EngineMetrics",
    "LogInput",
    "LogsListInput",
    "MetricsListInput",
    "ObservabilityWorker",
    "TracesListInput",
    "TracesTreeInput",
]

#: A hexadecimal id of a log record (``trace_id``, ``span_id``): ASCII hex digits only.
_HEX: Final = re.compile(r"[0-9a-fA-F]+")

log = logging.getLogger("iii_typed.engine.observability")

#: Bucket bounds of the ``iii.invocation.duration`` histogram, ms.
DURATION_BOUNDS_MS: Final = (1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0)
_SEVERITY: Final = {
    "trace": (1, "TRACE"),
    "debug": (5, "DEBUG"),
    "info": (9, "INFO"),
    "warn": (13, "WARN"),
    "error": (17, "ERROR"),
}
_LEVELS: Final = ("all", "trace", "debug", "info", "warn", "error", "fatal")
_STATUSES: Final = ("ok", "error", "unset")
_SECTION_SPEC: Final = {
    "service_name": str,
    "exporter": str,
    "endpoint": str,
    "headers": dict,
    "export_interval_ms": int,
    "memory_max_spans": int,
    "logs_max_count": int,
    "metrics_max_count": int,
    "persist": bool,
    "engine_spans": bool,
    "trace_coalesce_ms": int,
}
_EXPORTER_NAMES: Final = {"memory": "Some(Memory)", "otlp": "Some(Otlp)", "both": "Some(Both)"}


# -- inputs ----------------------------------------------------------------------------------
class LogsListInput(BaseModel):
    """``engine::logs::list`` input (times in Unix ms)."""

    start_time: int | None = Field(default=None, description="Only records at or after this time (ms).")
    end_time: int | None = Field(default=None, description="Only records at or before this time (ms).")
    trace_id: str | None = Field(default=None, description="Only records of this trace.")
    span_id: str | None = Field(default=None, description="Only records of this span.")
    severity_min: int | None = Field(
        default=None, description="Only records at or above this severity number."
    )
    severity_text: str | None = Field(
        default=None, description="Only records of this level (debug, info, warn…)."
    )
    offset: int | None = Field(default=None, ge=0, description="Records to skip (newest first).")
    limit: int | None = Field(default=None, ge=0, description="Records to return at most (default 100).")


class TracesListInput(BaseModel):
    """``engine::traces::list`` input (times in Unix ms; every filter optional)."""

    trace_id: str | None = None
    trace_ids: list[str] | None = None
    offset: int | None = Field(default=None, ge=0)
    limit: int | None = Field(default=None, ge=0, description="Spans to return at most (default 100).")
    service_name: str | None = None
    name: str | None = Field(default=None, description="Case-insensitive part of the span name.")
    status: str | None = Field(default=None, description="ok, error or unset.")
    min_duration_ms: float | None = None
    max_duration_ms: float | None = None
    start_time: int | None = None
    end_time: int | None = None
    sort_by: Literal["start_time", "end_time", "duration", "name", "service_name"] | None = None
    sort_order: Literal["asc", "desc"] | None = None
    attributes: list[list[Any]] | None = Field(
        default=None, description="[[key, value]] every span must have."
    )
    exclude_attributes: list[Any] | None = Field(
        default=None, description="[[key, value]] or [key] to exclude."
    )
    include_internal: bool | None = Field(default=None, description="Also engine-internal spans.")
    search_all_spans: bool | None = Field(default=None, description="Accepted; every span is searched.")


class TracesTreeInput(BaseModel):
    """``engine::traces::tree`` input."""

    trace_id: str


class MetricsListInput(BaseModel):
    """``engine::metrics::list`` input (times in Unix ms)."""

    start_time: int | None = None
    end_time: int | None = None
    metric_name: str | None = None
    aggregate_interval: int | None = Field(default=None, gt=0, description="Bucket width in seconds.")


class LogInput(BaseModel):
    """``engine::log::*`` input."""

    message: str
    data: Any = None
    trace_id: str | None = None
    span_id: str | None = None
    service_name: str | None = None


class BaggageGetInput(BaseModel):
    """``engine::baggage::get`` input."""

    key: str


class BaggageSetInput(BaseModel):
    """``engine::baggage::set`` input."""

    key: str
    value: str


class _Empty(BaseModel):
    pass


# -- engine metrics --------------------------------------------------------------------------
class _Call:
    """Token of one observed invocation."""

    __slots__ = ("function_id", "kind", "parent", "span_id", "start_ns", "started", "trace_id")

    def __init__(self, function_id: str, kind: str) -> None:
        self.function_id = function_id
        self.kind = kind
        self.started = time.perf_counter()
        self.start_ns = time.time_ns()
        self.trace_id: str | None = None
        self.parent: str | None = None
        self.span_id: str | None = None


class EngineMetrics:
    """Invocation counters, durations and worker gauges (``engine_metrics``, OTLP export)."""

    _WINDOW: Final = 10_000

    def __init__(self) -> None:
        self.total = 0
        self.success = 0
        self.error = 0
        self.deferred = 0
        self.by_function: collections.Counter[str] = collections.Counter()
        self.errors_by_function: collections.Counter[str] = collections.Counter()
        self.durations: collections.deque[float] = collections.deque(maxlen=self._WINDOW)
        self.histograms: dict[str, list[float]] = {}  # [count, sum, min, max, *buckets]
        self.spawns = 0
        self.deaths = 0
        self.started_ns = time.time_ns()

    def record(self, function_id: str, duration_ms: float, error_code: str | None) -> None:
        """Count one finished invocation."""
        self.total += 1
        self.by_function[function_id] += 1
        if error_code is None:
            self.success += 1
        else:
            self.error += 1
            self.errors_by_function[function_id] += 1
        if function_id == "engine::queue::enqueue":
            self.deferred += 1
        self.durations.append(duration_ms)
        hist = self.histograms.get(function_id)
        if hist is None:
            hist = self.histograms[function_id] = [0, 0.0, duration_ms, duration_ms] + [0] * (
                len(DURATION_BOUNDS_MS) + 1
            )
        hist[0] += 1
        hist[1] += duration_ms
        hist[2] = min(hist[2], duration_ms)
        hist[3] = max(hist[3], duration_ms)
        hist[4 + bisect.bisect_left(DURATION_BOUNDS_MS, duration_ms)] += 1

    def snapshot(self) -> dict[str, Any]:
        """``engine_metrics`` of ``engine::metrics::list`` (performance over the last 10 000 calls)."""
        values = sorted(self.durations)

        def pct(p: float) -> float:
            if not values:
                return 0.0
            return round(values[min(len(values) - 1, int(p * len(values)))], 3)

        return {
            "invocations": {
                "by_function": dict(sorted(self.by_function.items())),
                "deferred": self.deferred,
                "error": self.error,
                "success": self.success,
                "total": self.total,
            },
            "performance": {
                "avg_duration_ms": round(sum(values) / len(values), 3) if values else 0.0,
                "max_duration_ms": round(values[-1], 3) if values else 0.0,
                "min_duration_ms": round(values[0], 3) if values else 0.0,
                "p50_duration_ms": pct(0.50),
                "p95_duration_ms": pct(0.95),
                "p99_duration_ms": pct(0.99),
            },
            "workers": {"active": self.spawns - self.deaths, "deaths": self.deaths, "spawns": self.spawns},
        }

    def points(self, service_name: str) -> list[dict[str, Any]]:
        """The engine's metrics as metric points (cumulative), for the OTLP export."""
        now = time.time_ns()
        common = {
            "service_name": service_name,
            "start_time_unix_nano": self.started_ns,
            "timestamp_unix_nano": now,
        }
        out: list[dict[str, Any]] = []
        for function_id, count in self.by_function.items():
            attrs = {"function_id": function_id}
            out.append(
                {
                    **common,
                    "name": "iii.invocations.total",
                    "type": "sum",
                    "unit": "1",
                    "value": count,
                    "is_monotonic": True,
                    "aggregation_temporality": 2,
                    "attributes": attrs,
                    "description": "Invocations",
                }
            )
            errors = self.errors_by_function.get(function_id, 0)
            out.append(
                {
                    **common,
                    "name": "iii.invocation.errors.total",
                    "type": "sum",
                    "unit": "1",
                    "value": errors,
                    "is_monotonic": True,
                    "aggregation_temporality": 2,
                    "attributes": attrs,
                    "description": "Failed invocations",
                }
            )
            hist = self.histograms[function_id]
            out.append(
                {
                    **common,
                    "name": "iii.invocation.duration",
                    "type": "histogram",
                    "unit": "ms",
                    "count": int(hist[0]),
                    "sum": hist[1],
                    "min": hist[2],
                    "max": hist[3],
                    "bucket_counts": [int(c) for c in hist[4:]],
                    "explicit_bounds": list(DURATION_BOUNDS_MS),
                    "aggregation_temporality": 2,
                    "attributes": attrs,
                    "description": "Invocation duration",
                }
            )
        for name, value, kind in (
            ("iii.workers.active", self.spawns - self.deaths, "gauge"),
            ("iii.workers.spawns.total", self.spawns, "sum"),
            ("iii.workers.deaths.total", self.deaths, "sum"),
        ):
            point: dict[str, Any] = {
                **common,
                "name": name,
                "type": kind,
                "unit": "1",
                "value": value,
                "attributes": {},
                "description": "",
            }
            if kind == "sum":
                point.update(is_monotonic=True, aggregation_temporality=2)
            out.append(point)
        return out


def _parse_baggage(header: str | None) -> dict[str, str]:
    entries: dict[str, str] = {}
    for member in (header or "").split(","):
        key, sep, rest = member.partition("=")
        if not sep or not key.strip():
            continue
        entries[unquote(key.strip())] = unquote(rest.split(";", 1)[0].strip())
    return entries


def _trace_context(traceparent: str | None) -> tuple[str, str] | None:
    """``(trace id, parent span id)`` of a valid ``traceparent`` (the router's check), else ``None``."""
    if not traceparent:
        return None
    value = traceparent.strip()
    if not valid_traceparent(value):
        return None
    _, trace_id, span_id, _ = value.split("-")
    return trace_id, span_id


def _data_attributes(data: Any) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    if data is None:
        return attributes
    attributes["log.data"] = data
    if isinstance(data, Mapping):
        for key, value in data.items():
            if isinstance(key, str) and key not in ("service.name", "log.data") and value is not None:
                attributes[key] = value
    return attributes


class ObservabilityWorker(BuiltinWorker):
    """The ``iii-observability`` built-in (see the module docstring)."""

    name: ClassVar[str] = "iii-observability"
    section: ClassVar[str] = "observability"
    description: ClassVar[str] = "Telemetry: logs, traces and metrics"
    mandatory: ClassVar[bool] = True
    order: ClassVar[int] = 3

    def __init__(self, services: EngineServices) -> None:
        super().__init__(services)
        table = services.section(self.section)
        check_section(self.section, table, _SECTION_SPEC)
        self.service_name: str = table.get("service_name", "iii")
        exporter = table.get("exporter", "memory")
        if exporter not in _EXPORTER_NAMES:
            raise ConfigError(
                f"[observability] exporter must be 'memory', 'otlp' or 'both', got {exporter!r}"
            )
        self.exporter_name: str = exporter
        for key in (
            "export_interval_ms",
            "memory_max_spans",
            "logs_max_count",
            "metrics_max_count",
            "trace_coalesce_ms",
        ):
            if key in table and table[key] <= 0:
                raise ConfigError(f"[observability] {key} must be a positive integer, got {table[key]}")
        headers = table.get("headers", {})
        if not all(isinstance(v, str) for v in headers.values()):
            raise ConfigError("[observability] headers must map names to strings")
        self.memory = exporter in ("memory", "both")
        self.engine_spans: bool = table.get("engine_spans", True)
        self._coalesce = table.get("trace_coalesce_ms", 300) / 1000
        self.spans = SpanStore(table.get("memory_max_spans", 10_000))
        self.logs = LogStore(table.get("logs_max_count", 10_000))
        self.metrics = MetricStore(table.get("metrics_max_count", 10_000))
        self.engine = EngineMetrics()
        self.persistence: Persistence | None = None
        if table.get("persist", False) and services.data_dir is not None:
            self.persistence = Persistence(services.data_dir, self.spans.max_spans, self.logs.max_logs)
        self.exporter: OtlpExporter | None = None
        if exporter in ("otlp", "both"):
            self.exporter = OtlpExporter(
                table.get("endpoint", "http://127.0.0.1:4318"),
                headers,
                table.get("export_interval_ms", 1000),
                lambda: self.engine.points(self.service_name),
            )
        self.counters: collections.Counter[str] = collections.Counter()
        self.connections = 0
        self._log_bindings: dict[str, tuple[TriggerBinding, str]] = {}
        self._trace_bindings: dict[str, tuple[TriggerBinding, str | None, str | None]] = {}
        self._pending_traces: dict[str, dict[str, None]] = {}  # ids in arrival order (dict as an ordered set)
        self._flush_handle: asyncio.TimerHandle | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        """Install the telemetry sink, the invocation observer, health probes; load persisted data."""
        services = self.services
        services.set_telemetry_sink(self._sink, self._on_connection)
        services.set_invocation_observer(self)
        services.set_worker_metrics_source(self.metrics.latest_worker_metrics)
        services.on_worker_disconnected(self._worker_gone)
        services.add_health_component("logs", self._health_logs)
        services.add_health_component("metrics", self._health_metrics)
        services.add_health_component("otel", self._health_otel)
        services.add_health_component("spans", self._health_spans)
        if self.persistence is not None:
            for kind, record in self.persistence.load_spans():
                internal = any(
                    p[0] == INTERNAL_ATTRIBUTE and p[1] is True for p in record.get("attributes", [])
                )
                self.spans.add(ParsedSpan.from_record(record, kind, internal, 0))
            for record in self.persistence.load_logs():
                self.logs.add(record)
            log.info("observability: loaded %d spans and %d logs", len(self.spans), len(self.logs))
        if self.exporter is not None:
            self.exporter.start()

    async def stop(self) -> None:
        """Export what is pending, close the database."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        if self.exporter is not None:
            await self.exporter.stop()
        if self.persistence is not None:
            self.persistence.close()

    # -- declarations --------------------------------------------------------------------------
    def functions(self) -> Sequence[BuiltinFunction]:
        """The ``engine::logs|traces|metrics|log|baggage`` functions."""
        fns = [
            BuiltinFunction(
                "engine::logs::list",
                self._logs_list,
                "Stored log records, newest first",
                input_model=LogsListInput,
            ),
            BuiltinFunction(
                "engine::logs::clear", self._logs_clear, "Delete the stored log records", input_model=_Empty
            ),
            BuiltinFunction(
                "engine::traces::list", self._traces_list, "Stored spans", input_model=TracesListInput
            ),
            BuiltinFunction(
                "engine::traces::tree",
                self._traces_tree,
                "A trace's spans as a tree",
                input_model=TracesTreeInput,
            ),
            BuiltinFunction(
                "engine::traces::clear", self._traces_clear, "Delete the stored spans", input_model=_Empty
            ),
            BuiltinFunction(
                "engine::metrics::list",
                self._metrics_list,
                "Engine and worker metrics",
                input_model=MetricsListInput,
            ),
            BuiltinFunction(
                "engine::baggage::get",
                self._baggage_get,
                "A baggage entry of the call",
                input_model=BaggageGetInput,
            ),
            BuiltinFunction(
                "engine::baggage::set", self._baggage_set, "Baggage (diagnostic)", input_model=BaggageSetInput
            ),
            BuiltinFunction(
                "engine::baggage::get_all", self._baggage_all, "The call's baggage", input_model=_Empty
            ),
            BuiltinFunction(
                "engine::observability::stats",
                self._stats,
                "Telemetry ingestion counters (iii-typed)",
                input_model=_Empty,
            ),
        ]
        for level in ("trace", "debug", "info", "warn", "error"):
            fns.append(
                BuiltinFunction(
                    f"engine::log::{level}",
                    self._log_function(level),
                    f"Log at {level} level",
                    input_model=LogInput,
                )
            )
        return fns

    def trigger_types(self) -> Sequence[BuiltinTriggerType]:
        """``log`` and ``trace``."""
        return (
            BuiltinTriggerType(
                "log",
                "Fires for each stored log record (config: level = all|trace|debug|info|warn|error|fatal)",
                register=self._register_log,
                unregister=self._unregister,
                trigger_request_format={
                    "type": "object",
                    "properties": {
                        "level": {"enum": list(_LEVELS)},
                        "condition_function_id": {"type": "string"},
                    },
                },
            ),
            BuiltinTriggerType(
                "trace",
                "Fires with the ids of traces that received spans (coalesced every 300 ms)",
                register=self._register_trace,
                unregister=self._unregister,
                trigger_request_format={
                    "type": "object",
                    "properties": {
                        "service_name": {"type": "string"},
                        "status": {"enum": list(_STATUSES)},
                        "condition_function_id": {"type": "string"},
                    },
                },
            ),
        )

    # -- ingestion -----------------------------------------------------------------------------
    def _on_connection(self, opened: bool) -> None:
        if opened:
            self.connections += 1
            self.counters["connections_total"] += 1
        else:
            self.connections -= 1

    def _sink(self, kind: bytes, payload: bytes) -> None:
        name = kind.decode("ascii", "replace")
        self.counters[f"frames_{name}"] += 1
        # A frame's JSON tree is thousands of short-lived containers freed by reference counting
        # (no cycles): collecting during the parse only walks them (about a third of the cost).
        collecting = gc.isenabled()
        if collecting:
            gc.disable()
        try:
            try:
                doc = loads(payload)
            except ValueError as exc:
                self.counters["frames_rejected"] += 1
                size = len(payload)
                log.warning("dropped a %s telemetry frame of %d bytes: not JSON (%s)", name, size, exc)
                return
            if kind == b"OTLP":
                result = parse_spans(doc, len(payload))
            elif kind == b"LOGS":
                result = parse_logs(doc)
            else:
                result = parse_metrics(doc)
            del doc
        finally:
            if collecting:
                gc.enable()
        if kind == b"OTLP":
            self.ingest_spans(result.items)
        elif kind == b"LOGS":
            self.ingest_logs(result.items)
        else:
            self.ingest_points(result.items)
        if result.rejected:
            self.counters["items_rejected"] += result.rejected
            log.warning("skipped %d malformed item(s) in a %s telemetry frame", result.rejected, name)

    def ingest_spans(self, spans: Sequence[ParsedSpan]) -> None:
        """Store spans, persist/export them, note their traces for ``trace`` triggers."""
        if not spans:
            return
        self.counters["spans"] += len(spans)
        if self.memory:
            add = self.spans.add
            for span in spans:
                add(span)
            if self.persistence is not None:
                self.persistence.add_spans(spans)
        if self.exporter is not None:
            self.exporter.add_spans(spans)
        if self._trace_bindings:
            self._note_traces(spans)

    def ingest_logs(self, records: Sequence[dict[str, Any]]) -> None:
        """Store log records, persist/export them, fire ``log`` triggers."""
        if not records:
            return
        self.counters["logs"] += len(records)
        if self.memory:
            for record in records:
                self.logs.add(record)
            if self.persistence is not None:
                self.persistence.add_logs(records)
        if self.exporter is not None:
            self.exporter.add_logs(records)
        if self._log_bindings:
            for record in records:
                self._fire_log(record)

    def ingest_points(self, points: Sequence[dict[str, Any]]) -> None:
        """Store metric points (and workers' latest resource metrics), export them."""
        if not points:
            return
        self.counters["metric_points"] += len(points)
        for point in points:
            self.metrics.add(point)
        if self.exporter is not None:
            self.exporter.add_points(points)

    # -- invocation observer (engine-side telemetry) -------------------------------------------
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
        """Start timing; built-in calls in a trace also get an engine span."""
        call = _Call(function_id, kind)
        if kind != "worker" and self.engine_spans and traceparent and not traceparent.endswith("-00"):
            context = _trace_context(traceparent)  # a caller's unsampled trace gets no engine span
            if context is not None:
                call.trace_id, call.parent = context
                call.span_id = os.urandom(8).hex()
        return call

    def invocation_finished(self, token: object, error_code: str | None) -> None:
        """Count the invocation; store its engine span, if any."""
        if not isinstance(token, _Call):
            return
        duration_ms = (time.perf_counter() - token.started) * 1000
        self.engine.record(token.function_id, duration_ms, error_code)
        if token.span_id is None or token.trace_id is None:
            return
        internal = token.function_id.startswith("engine::")
        attributes: list[list[Any]] = [
            ["iii.function.id", token.function_id],
            ["iii.invocation.kind", token.kind],
        ]
        if internal:
            attributes.append([INTERNAL_ATTRIBUTE, True])
        record: dict[str, Any] = {
            "attributes": attributes,
            "end_time_unix_nano": token.start_ns + int(duration_ms * 1_000_000),
            "events": [],
            "instrumentation_scope_name": "iii-engine",
            "links": [],
            "name": f"call {token.function_id}",
            "parent_span_id": token.parent,
            "service_name": self.service_name,
            "span_id": token.span_id,
            "start_time_unix_nano": token.start_ns,
            "status": "ok" if error_code is None else "error",
        }
        if error_code is not None:
            record["status_description"] = error_code
        record["trace_id"] = token.trace_id
        self.ingest_spans([ParsedSpan.from_record(record, 2, internal, 400)])

    def worker_connected(self, worker_id: str) -> None:
        """Count a worker spawn."""
        self.engine.spawns += 1

    def _worker_gone(self, worker_id: str) -> None:
        self.engine.deaths += 1
        self.metrics.forget_worker(worker_id)

    # -- triggers ------------------------------------------------------------------------------
    async def _register_log(self, binding: TriggerBinding) -> None:
        config = check_trigger_config("log", binding.config, {"level": str, "condition_function_id": str})
        level = str(config.get("level", "all")).lower()
        if level not in _LEVELS:
            raise TriggerRegistrationError(
                f"log trigger level must be one of {', '.join(_LEVELS)}, got {config['level']!r}"
            )
        self._log_bindings[binding.id] = (binding, level)

    async def _register_trace(self, binding: TriggerBinding) -> None:
        config = check_trigger_config(
            "trace", binding.config, {"service_name": str, "status": str, "condition_function_id": str}
        )
        status = config.get("status")
        if status is not None and status.lower() not in _STATUSES:
            raise TriggerRegistrationError(f"trace trigger status must be ok, error or unset, got {status!r}")
        self._trace_bindings[binding.id] = (
            binding,
            config.get("service_name"),
            status.lower() if status else None,
        )

    async def _unregister(self, binding: TriggerBinding) -> None:
        self._log_bindings.pop(binding.id, None)
        self._trace_bindings.pop(binding.id, None)
        self._pending_traces.pop(binding.id, None)

    def _fire_log(self, record: Mapping[str, Any]) -> None:
        level = severity_level(record["severity_number"], record["severity_text"])
        payload: dict[str, Any] | None = None
        services = self.services
        for binding, wanted in list(self._log_bindings.values()):
            if wanted != "all" and wanted != level:
                continue
            if payload is None:
                payload = dict(record)
                payload.setdefault("instrumentation_scope_name", None)
                payload.setdefault("instrumentation_scope_version", None)
                payload = dict(sorted(payload.items()))
            services.spawn(services.fire(binding, payload), name="fire:log")

    def _note_traces(self, spans: Sequence[ParsedSpan]) -> None:
        for binding_id, (_, service, status) in self._trace_bindings.items():
            ids = None
            for span in spans:
                if span.internal:
                    continue
                if service is not None and span.service_name != service:
                    continue
                if status is not None and span.status != status:
                    continue
                if ids is None:
                    ids = self._pending_traces.setdefault(binding_id, {})
                ids[span.trace_id] = None
        if self._pending_traces and self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_later(self._coalesce, self._flush_traces)

    def _flush_traces(self) -> None:
        self._flush_handle = None
        pending, self._pending_traces = self._pending_traces, {}
        services = self.services
        for binding_id, ids in pending.items():
            entry = self._trace_bindings.get(binding_id)
            if entry is not None and ids:
                services.spawn(services.fire(entry[0], {"trace_ids": list(ids)}), name="fire:trace")

    # -- functions -----------------------------------------------------------------------------
    async def _logs_list(self, data: LogsListInput, ctx: CallContext) -> dict[str, Any]:
        query = data.model_dump(exclude_none=True)
        total, logs = self.logs.query(query)
        result: dict[str, Any] = {"logs": logs}
        if query:
            result["query"] = dict(sorted(query.items()))
        result["timestamp"] = int(time.time() * 1000)
        result["total"] = total
        return result

    async def _logs_clear(self, data: _Empty, ctx: CallContext) -> dict[str, Any]:
        count = self.logs.clear()
        if self.persistence is not None:
            self.persistence.clear("logs")
        return {"message": f"cleared {count} log record(s)", "success": True}

    def _require_memory(self) -> None:
        if not self.memory:
            raise BuiltinError(
                "memory_exporter_not_enabled",
                'span storage is off: set [observability] exporter = "memory" or "both"',
            )

    def _storage(self) -> dict[str, Any]:
        persistence = self.persistence
        dropped = self.spans.evicted
        return {
            "archive": "sqlite" if persistence is not None else "disabled",
            "completeness": "partial" if dropped else "complete",
            "known_dropped_spans": dropped,
            "last_error": persistence.last_error if persistence is not None else None,
            "max_disk_bytes": 0,
            "physical_bytes": persistence.size_bytes() if persistence is not None else 0,
        }

    async def _traces_list(self, data: TracesListInput, ctx: CallContext) -> dict[str, Any]:
        self._require_memory()
        query = data.model_dump(exclude_none=True)
        total, spans = self.spans.query(query)
        return {
            "limit": query.get("limit", 100),
            "offset": query.get("offset", 0),
            "spans": spans,
            "storage": self._storage(),
            "total": total,
        }

    async def _traces_tree(self, data: TracesTreeInput, ctx: CallContext) -> dict[str, Any]:
        self._require_memory()
        return {"roots": self.spans.tree(data.trace_id.lower()), "storage": self._storage()}

    async def _traces_clear(self, data: _Empty, ctx: CallContext) -> dict[str, Any]:
        count = self.spans.clear()
        if self.persistence is not None:
            self.persistence.clear("spans")
        return {"message": f"cleared {count} span(s)", "success": True}

    async def _metrics_list(self, data: MetricsListInput, ctx: CallContext) -> dict[str, Any]:
        query = data.model_dump(exclude_none=True)
        points = self.metrics.query(query)
        result: dict[str, Any] = {}
        if data.aggregate_interval is not None:
            result["aggregated_metrics"] = aggregate(points, data.aggregate_interval)
        result["engine_metrics"] = self.engine.snapshot()
        if query:
            result["query"] = dict(sorted(query.items()))
        result["sdk_metrics"] = points
        result["timestamp"] = int(time.time() * 1000)
        return result

    def _log_function(self, level: str) -> Any:
        number, text = _SEVERITY[level]

        async def handler(data: LogInput, ctx: CallContext) -> None:
            trace_id = data.trace_id
            span_id = data.span_id
            if trace_id is not None and (len(trace_id) != 32 or not _is_hex(trace_id)):
                raise BuiltinError(
                    "INVALID_ARGUMENTS", f"trace_id must be 32 hex characters, got {trace_id!r}"
                )
            if span_id is not None and (len(span_id) != 16 or not _is_hex(span_id)):
                raise BuiltinError("INVALID_ARGUMENTS", f"span_id must be 16 hex characters, got {span_id!r}")
            if trace_id is None and ctx.traceparent:  # the caller's context when none is given
                context = _trace_context(ctx.traceparent)
                if context is not None:
                    trace_id, span_id = context[0], span_id or context[1]
            service = data.service_name or self.service_name
            now = time.time_ns()
            self.ingest_logs(
                [
                    {
                        "attributes": _data_attributes(data.data),
                        "body": data.message,
                        "instrumentation_scope_name": "iii-engine",
                        "observed_timestamp_unix_nano": now,
                        "resource": {"service.name": service},
                        "service_name": service,
                        "severity_number": number,
                        "severity_text": text,
                        "span_id": span_id.lower() if span_id else None,
                        "timestamp_unix_nano": now,
                        "trace_id": trace_id.lower() if trace_id else None,
                    }
                ]
            )

        return handler

    async def _baggage_get(self, data: BaggageGetInput, ctx: CallContext) -> dict[str, Any]:
        return {"value": _parse_baggage(ctx.baggage).get(data.key)}

    async def _baggage_set(self, data: BaggageSetInput, ctx: CallContext) -> dict[str, Any]:
        return {
            "note": "baggage travels with the invocation: set it in the caller's context (diagnostic only)",
            "success": True,
        }

    async def _baggage_all(self, data: _Empty, ctx: CallContext) -> dict[str, Any]:
        return {"baggage": dict(sorted(_parse_baggage(ctx.baggage).items()))}

    async def _stats(self, data: _Empty, ctx: CallContext) -> dict[str, Any]:
        counters = dict(self.counters)
        out: dict[str, Any] = {
            "connections": self.connections,
            "connections_total": counters.pop("connections_total", 0),
            "counters": dict(sorted(counters.items())),
            "evicted": {
                "logs": self.logs.evicted,
                "metrics": self.metrics.evicted,
                "spans": self.spans.evicted,
            },
            "export": dict(self.exporter.counters, last_error=self.exporter.last_error)
            if self.exporter
            else None,
            "stored": {"logs": len(self.logs), "metrics": len(self.metrics), "spans": len(self.spans)},
        }
        return out

    # -- health --------------------------------------------------------------------------------
    def _health_logs(self) -> HealthComponent:
        return HealthComponent("healthy", {"stored_logs": len(self.logs)})

    def _health_metrics(self) -> HealthComponent:
        return HealthComponent("healthy", {"stored_metrics": len(self.metrics)})

    def _health_otel(self) -> HealthComponent:
        exporter = self.exporter
        status = "degraded" if exporter is not None and exporter.last_error is not None else "healthy"
        return HealthComponent(
            status,
            {
                "enabled": True,
                "exporter": _EXPORTER_NAMES[self.exporter_name],
                "service_name": self.service_name,
            },
        )

    def _health_spans(self) -> HealthComponent:
        if not self.memory:
            return HealthComponent("disabled", None)
        return HealthComponent(
            "healthy",
            {"archive": self._storage(), "hot_bytes": self.spans.hot_bytes, "stored_spans": len(self.spans)},
        )


def _is_hex(text: str) -> bool:
    """Only ASCII hex digits (``int(text, 16)`` also takes ``0x``, ``+``, ``_`` and other digits)."""
    return _HEX.fullmatch(text) is not None


BUILTIN = ObservabilityWorker
