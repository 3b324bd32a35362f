"""Optional export to an OpenTelemetry collector over OTLP/HTTP with JSON bodies (off by default).

``[observability] exporter = "otlp"`` (or ``"both"``, which also keeps the in-memory store) sends
what the engine ingests — and its own metrics — to ``endpoint`` (default
``http://127.0.0.1:4318``): ``POST /v1/traces``, ``/v1/logs``, ``/v1/metrics`` with
``Content-Type: application/json`` every ``export_interval_ms``. The body is standard OTLP/JSON
(hex ids, OTLP span-kind numbers, 64-bit integers as strings), which the OpenTelemetry Collector's
``otlphttp`` receiver accepts; no protobuf package is needed (aiohttp is already a dependency).

Items wait in bounded queues (:data:`MAX_PENDING` each; the newest are dropped and counted when
the collector is slow or away); a failed POST is logged once per outage and its batch dropped.
Spans are grouped by ``service_name`` (the stored span keeps no other resource attribute).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import aiohttp

from ._otel_parse import ParsedSpan
from ._sqlite import dumps

__all__ = ["MAX_PENDING", "OtlpExporter", "otlp_any", "otlp_attributes"]

log = logging.getLogger("iii_typed.engine.observability")

#: Spans, logs and metric points waiting at most (each).
MAX_PENDING: Final = 10_000
_STATUS_CODES: Final = {"unset": 0, "ok": 1, "error": 2}


def otlp_any(value: Any) -> dict[str, Any]:
    """Standard OTLP/JSON ``AnyValue``."""
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, Mapping):
        return {"kvlistValue": {"values": otlp_attributes(value)}}
    if isinstance(value, list | tuple):
        return {"arrayValue": {"values": [otlp_any(v) for v in value]}}
    if value is None:
        return {}
    return {"stringValue": str(value)}


def otlp_attributes(attributes: Mapping[str, Any] | Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    """OTLP ``KeyValue`` list from ``{k: v}`` or ``[[k, v], ...]``."""
    pairs = attributes.items() if isinstance(attributes, Mapping) else ((p[0], p[1]) for p in attributes)
    return [{"key": str(k), "value": otlp_any(v)} for k, v in pairs]


def _span(span: ParsedSpan) -> dict[str, Any]:
    r = span.record
    out: dict[str, Any] = {
        "traceId": r["trace_id"],
        "spanId": r["span_id"],
        "name": r["name"],
        "kind": span.kind,
        "startTimeUnixNano": str(r["start_time_unix_nano"]),
        "endTimeUnixNano": str(r["end_time_unix_nano"]),
        "attributes": otlp_attributes(r["attributes"]),
        "events": [
            {
                "timeUnixNano": str(e["timestamp_unix_nano"]),
                "name": e["name"],
                "attributes": otlp_attributes(e["attributes"]),
            }
            for e in r["events"]
        ],
        "links": [
            {
                "traceId": link["trace_id"],
                "spanId": link["span_id"],
                "attributes": otlp_attributes(link["attributes"]),
            }
            for link in r["links"]
            if link.get("trace_id") and link.get("span_id")
        ],
        "status": {"code": _STATUS_CODES.get(r["status"], 0), "message": r.get("status_description") or ""},
    }
    if r.get("parent_span_id"):
        out["parentSpanId"] = r["parent_span_id"]
    if r.get("trace_state"):
        out["traceState"] = r["trace_state"]
    return out


def _log(record: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "timeUnixNano": str(record["timestamp_unix_nano"]),
        "observedTimeUnixNano": str(record["observed_timestamp_unix_nano"]),
        "severityNumber": record["severity_number"],
        "severityText": record["severity_text"],
        "body": {"stringValue": record["body"]},
        "attributes": otlp_attributes(record["attributes"]),
    }
    if record.get("trace_id"):
        out["traceId"] = record["trace_id"]
    if record.get("span_id"):
        out["spanId"] = record["span_id"]
    return out


def _metric_point(point: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "attributes": otlp_attributes(point["attributes"]),
        "startTimeUnixNano": str(point.get("start_time_unix_nano") or 0),
        "timeUnixNano": str(point["timestamp_unix_nano"]),
    }
    if point["type"] in ("sum", "gauge"):
        value = point["value"]
        if isinstance(value, int) and not isinstance(value, bool):
            out["asInt"] = str(value)
        else:
            out["asDouble"] = float(value)
    else:
        out["count"] = str(point.get("count", 0))
        for key in ("sum", "min", "max"):
            if key in point:
                out[key] = point[key]
        out["bucketCounts"] = [str(c) for c in point.get("bucket_counts", [])]
        out["explicitBounds"] = list(point.get("explicit_bounds", []))
    return out


def _metric(point: Mapping[str, Any]) -> dict[str, Any] | None:
    kind = point["type"]
    body: dict[str, Any] = {
        "name": point["name"],
        "description": point.get("description", ""),
        "unit": point.get("unit", ""),
    }
    data: dict[str, Any] = {"dataPoints": [_metric_point(point)]}
    if kind == "sum":
        data["aggregationTemporality"] = point.get("aggregation_temporality") or 2
        data["isMonotonic"] = bool(point.get("is_monotonic"))
        body["sum"] = data
    elif kind == "gauge":
        body["gauge"] = data
    elif kind == "histogram":
        data["aggregationTemporality"] = point.get("aggregation_temporality") or 2
        body["histogram"] = data
    else:
        return None
    return body


def _by_service(items: Sequence[Any], service_of: Callable[[Any], str]) -> dict[str, list[Any]]:
    groups: dict[str, list[Any]] = {}
    for item in items:
        groups.setdefault(service_of(item), []).append(item)
    return groups


def _resource(service: str) -> dict[str, Any]:
    return {"attributes": otlp_attributes({"service.name": service})}


class OtlpExporter:
    """Batches and POSTs spans, logs and metrics to an OTLP/HTTP endpoint (module docstring).

    Args:
        endpoint: Base URL, e.g. ``http://127.0.0.1:4318``.
        headers: Extra HTTP headers (e.g. an API key).
        interval_ms: Export period.
        engine_metrics: Returns the engine's own metric points at each export.
        timeout_s: Timeout of one POST.
    """

    def __init__(
        self,
        endpoint: str,
        headers: Mapping[str, str],
        interval_ms: int,
        engine_metrics: Callable[[], list[dict[str, Any]]],
        timeout_s: float = 10.0,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self._headers = {"Content-Type": "application/json", **headers}
        self._interval = interval_ms / 1000
        self._engine_metrics = engine_metrics
        self._timeout = timeout_s
        self._spans: collections.deque[ParsedSpan] = collections.deque()
        self._logs: collections.deque[Mapping[str, Any]] = collections.deque()
        self._points: collections.deque[Mapping[str, Any]] = collections.deque()
        self.counters = {
            "spans_exported": 0,
            "logs_exported": 0,
            "metrics_exported": 0,
            "dropped": 0,
            "failures": 0,
        }
        self.last_error: str | None = None
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None

    def _offer(self, queue: collections.deque[Any], items: Sequence[Any]) -> None:
        room = MAX_PENDING - len(queue)
        if room < len(items):
            self.counters["dropped"] += len(items) - max(0, room)
            items = items[: max(0, room)]
        queue.extend(items)

    def add_spans(self, spans: Sequence[ParsedSpan]) -> None:
        """Queue spans for the next export."""
        self._offer(self._spans, spans)

    def add_logs(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Queue log records for the next export."""
        self._offer(self._logs, records)

    def add_points(self, points: Sequence[Mapping[str, Any]]) -> None:
        """Queue metric points for the next export."""
        self._offer(self._points, points)

    def start(self) -> None:
        """Start the periodic export task (on the engine loop)."""
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout))
        self._task = asyncio.get_running_loop().create_task(self._run(), name="otlp-export")

    async def stop(self) -> None:
        """Export what is queued one last time, then close."""
        task = self._task
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        try:
            await asyncio.wait_for(self.export_once(), self._timeout)
        except (TimeoutError, Exception):
            pass
        if self._session is not None:
            await self._session.close()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.export_once()

    async def export_once(self) -> None:
        """POST everything queued (and the engine's metrics); failures are logged and counted."""
        spans, self._spans = list(self._spans), collections.deque()
        logs, self._logs = list(self._logs), collections.deque()
        points, self._points = list(self._points), collections.deque()
        if spans:
            body = {
                "resourceSpans": [
                    {
                        "resource": _resource(service),
                        "scopeSpans": [{"scope": {"name": "iii"}, "spans": [_span(s) for s in group]}],
                    }
                    for service, group in _by_service(spans, lambda s: s.service_name).items()
                ]
            }
            if await self._post("/v1/traces", body):
                self.counters["spans_exported"] += len(spans)
        if logs:
            body = {
                "resourceLogs": [
                    {
                        "resource": _resource(service),
                        "scopeLogs": [{"scope": {"name": "iii"}, "logRecords": [_log(r) for r in group]}],
                    }
                    for service, group in _by_service(logs, lambda r: r["service_name"]).items()
                ]
            }
            if await self._post("/v1/logs", body):
                self.counters["logs_exported"] += len(logs)
        points = [*points, *self._engine_metrics()]
        if points:
            body = {
                "resourceMetrics": [
                    {
                        "resource": _resource(service),
                        "scopeMetrics": [
                            {
                                "scope": {"name": "iii"},
                                "metrics": [m for m in (_metric(p) for p in group) if m is not None],
                            }
                        ],
                    }
                    for service, group in _by_service(
                        points, lambda p: p.get("service_name") or "iii"
                    ).items()
                ]
            }
            if await self._post("/v1/metrics", body):
                self.counters["metrics_exported"] += len(points)

    async def _post(self, path: str, body: Mapping[str, Any]) -> bool:
        session = self._session
        if session is None:
            return False
        try:
            async with session.post(
                self.endpoint + path, data=dumps(body).encode(), headers=self._headers
            ) as response:
                if response.status >= 300:
                    raise aiohttp.ClientResponseError(
                        response.request_info, (), status=response.status, message=await response.text()
                    )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self.counters["failures"] += 1
            if self.last_error is None:
                log.warning(
                    "OTLP export to %s%s failed: %s (further failures are counted)", self.endpoint, path, exc
                )
            self.last_error = f"{path}: {exc}"
            return False
        if self.last_error is not None:
            log.info("OTLP export to %s works again", self.endpoint)
        self.last_error = None
        return True
