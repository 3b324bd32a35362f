"""OTLP/JSON encoding of spans, log records and metrics for the ``/otel`` socket (protocol.md §8.1).

Each export is one binary WebSocket frame: a 4-byte ASCII prefix (``OTLP`` spans, ``LOGS`` logs,
``MTRC`` metrics) followed by UTF-8 OTLP/JSON. The JSON follows the Python exporter's conventions
that the engine expects:

* trace and span ids in lower-case hex (32 and 16 characters), not base64;
* ``*UnixNano`` timestamps as decimal strings, ``intValue``/``asInt``/``count``/``bucketCounts``
  as decimal strings too;
* span ``kind`` numbered like Python's ``SpanKind`` (INTERNAL=0, SERVER=1, CLIENT=2, PRODUCER=3,
  CONSUMER=4 — not OTLP's +1 numbering);
* status ``{code: 0 unset | 1 ok | 2 error, message}``; ``parentSpanId`` only when there is one;
* attribute values as ``{stringValue|intValue|doubleValue|boolValue|arrayValue|kvlistValue|
  bytesValue(hex)}``.

The OTLP exporter packages encode protobuf (or protobuf-JSON with base64 ids and OTLP kind
numbers), which is not what the engine reads, so the encoding is done here from the SDK's
readable objects. Compact JSON (``orjson`` when installed).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from json.encoder import encode_basestring as _encode_basestring
from typing import TYPE_CHECKING, Any, Final
from uuid import UUID

from ..protocol.codec import uuid_text

if TYPE_CHECKING:
    from opentelemetry.sdk._logs import ReadableLogRecord, ReadWriteLogRecord
    from opentelemetry.sdk.metrics.export import MetricsData
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    from ._span import HandlerSpan

try:  # orjson is optional (the ``fast`` extra)
    import orjson as _orjson
except ImportError:  # pragma: no cover - depends on the installed extras
    _orjson = None  # type: ignore[assignment]

__all__ = [
    "LOGS_PREFIX",
    "METRICS_PREFIX",
    "SPANS_PREFIX",
    "any_value",
    "dumps",
    "encode_logs",
    "encode_metrics",
    "encode_spans",
    "key_values",
]

#: Frame prefixes (protocol.md §8.1).
SPANS_PREFIX: Final = b"OTLP"
LOGS_PREFIX: Final = b"LOGS"
METRICS_PREFIX: Final = b"MTRC"


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON (non-JSON values are written as their ``str``)."""
    if _orjson is not None:
        try:
            return _orjson.dumps(value, default=str, option=_orjson.OPT_NON_STR_KEYS)
        except TypeError:
            pass  # e.g. an int beyond 64 bits: fall back to the stdlib
    return json.dumps(value, default=str, ensure_ascii=False, separators=(",", ":")).encode()


def any_value(value: Any) -> dict[str, Any]:
    """An OTLP ``AnyValue`` for a Python value (bytes as hex, ints as strings)."""
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if value is None:
        return {}
    if isinstance(value, bytes | bytearray):
        return {"bytesValue": bytes(value).hex()}
    if isinstance(value, Mapping):
        return {"kvlistValue": {"values": key_values(value)}}
    if isinstance(value, Sequence):
        return {"arrayValue": {"values": [any_value(item) for item in value]}}
    return {"stringValue": str(value)}


def key_values(attributes: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """OTLP ``KeyValue`` list of an attribute mapping (common scalar types first: hot path)."""
    if not attributes:
        return []
    out = []
    for key, value in attributes.items():
        kind = type(value)
        if kind is str:
            encoded: dict[str, Any] = {"stringValue": value}
        elif kind is bool:
            encoded = {"boolValue": value}
        elif kind is int:
            encoded = {"intValue": str(value)}
        elif kind is float:
            encoded = {"doubleValue": value}
        else:
            encoded = any_value(value)
        out.append({"key": key if type(key) is str else str(key), "value": encoded})
    return out


def _resource(resource: Resource | None) -> dict[str, Any]:
    return {"attributes": key_values(resource.attributes if resource is not None else None)}


def _scope(scope: InstrumentationScope | None) -> dict[str, Any]:
    if scope is None:
        return {"name": "", "version": ""}
    return {"name": scope.name, "version": scope.version or ""}


def _group(items: Iterable[tuple[Any, Any, dict[str, Any]]]) -> list[tuple[Any, list[tuple[Any, list[Any]]]]]:
    """Group ``(resource, scope, encoded)`` by resource then scope, keeping first-seen order."""
    by_resource: dict[int, tuple[Any, dict[tuple[str, str], tuple[Any, list[Any]]]]] = {}
    for resource, scope, encoded in items:
        entry = by_resource.get(id(resource))
        if entry is None:
            entry = by_resource[id(resource)] = (resource, {})
        key = (scope.name, scope.version or "") if scope is not None else ("", "")
        scoped = entry[1].get(key)
        if scoped is None:
            scoped = entry[1][key] = (scope, [])
        scoped[1].append(encoded)
    return [(resource, list(scopes.values())) for resource, scopes in by_resource.values()]


# -- spans -----------------------------------------------------------------------------------
def _span(span: ReadableSpan) -> dict[str, Any]:
    context = span.get_span_context()
    assert context is not None
    status = span.status
    out: dict[str, Any] = {
        "traceId": f"{context.trace_id:032x}",
        "spanId": f"{context.span_id:016x}",
        "name": span.name,
        "kind": span.kind.value,
        "startTimeUnixNano": str(span.start_time or 0),
        "endTimeUnixNano": str(span.end_time or span.start_time or 0),
        "attributes": key_values(span.attributes),
        "events": [
            {
                "timeUnixNano": str(event.timestamp),
                "name": event.name,
                "attributes": key_values(event.attributes),
            }
            for event in span.events
        ],
        "links": [
            {
                "traceId": f"{link.context.trace_id:032x}",
                "spanId": f"{link.context.span_id:016x}",
                "attributes": key_values(link.attributes),
            }
            for link in span.links
        ],
        "status": {"code": status.status_code.value, "message": status.description or ""},
    }
    parent = span.parent
    if parent is not None and parent.span_id:
        out["parentSpanId"] = f"{parent.span_id:016x}"
    trace_state = context.trace_state
    if trace_state:
        out["traceState"] = trace_state.to_header()
    out["flags"] = int(context.trace_flags)
    return out


def _value_json(value: Any) -> str:
    kind = type(value)
    if kind is str:
        return '{"stringValue":' + _encode_basestring(value) + "}"
    if kind is bool:
        return '{"boolValue":true}' if value else '{"boolValue":false}'
    if kind is int:
        return '{"intValue":"' + str(value) + '"}'
    if kind is float and math.isfinite(value):
        return '{"doubleValue":' + repr(value) + "}"
    if kind is UUID:  # iii.invocation.id is kept as the frame's UUID until now
        return '{"stringValue":"' + uuid_text(value) + '"}'
    return dumps(any_value(value)).decode()


@functools.lru_cache(maxsize=1024)
def _key_json(key: str) -> str:
    """``{"key":<key>,"value":`` (keys repeat from span to span: cached)."""
    return '{"key":' + _encode_basestring(key) + ',"value":'


def _attributes_json(attributes: Mapping[str, Any]) -> str:
    if not attributes:
        return "[]"
    parts = []
    for key, value in attributes.items():
        kind = type(value)
        if kind is str:
            encoded = '{"stringValue":' + _encode_basestring(value) + "}"
        elif kind is bool:
            encoded = '{"boolValue":true}' if value else '{"boolValue":false}'
        else:
            encoded = _value_json(value)
        parts.append(_key_json(key if type(key) is str else str(key)) + encoded + "}")
    return "[" + ",".join(parts) + "]"


def _handler_span_json(span: HandlerSpan) -> str:
    """One span's OTLP/JSON written directly as text.

    Building the usual nested dicts and lists (~30 containers a span) on the telemetry thread
    triggered garbage collections that cost several times the encoding itself; strings are not
    tracked by the collector.
    """
    esc = _encode_basestring
    events = ",".join(
        f'{{"timeUnixNano":"{stamp}","name":{esc(name)},"attributes":{_attributes_json(attrs)}}}'
        for name, attrs, stamp in span.events
    )
    links = ",".join(
        f'{{"traceId":"{linked.trace_id:032x}","spanId":"{linked.span_id:016x}",'
        f'"attributes":{_attributes_json(attrs)}}}'
        for linked, attrs in span.links
    )
    parent = span.parent_hex
    parent_part = f',"parentSpanId":"{parent}"' if parent is not None else ""
    return (
        f'{{"traceId":"{span.trace_hex}","spanId":"{span.span_hex}",'
        f'"name":{esc(span.name)},"kind":{span.kind.value},'
        f'"startTimeUnixNano":"{span.start_time}","endTimeUnixNano":"{span.end_time or span.start_time}",'
        f'"attributes":{_attributes_json(span.attributes)},"events":[{events}],"links":[{links}],'
        f'"status":{{"code":{span.status_code.value},"message":{esc(span.status_message)}}}'
        f'{parent_part},"flags":{span.flags}}}'
    )


def _scope_json(scope: InstrumentationScope | None) -> str:
    if scope is None:
        return '{"name":"","version":""}'
    return f'{{"name":{_encode_basestring(scope.name)},"version":{_encode_basestring(scope.version or "")}}}'


def encode_spans(
    spans: Sequence[ReadableSpan | HandlerSpan],
    resource: Resource | None = None,
    scope: InstrumentationScope | None = None,
) -> bytes:
    """``{"resourceSpans": [...]}`` for finished spans (without the ``OTLP`` prefix).

    Args:
        spans: SDK spans (``ReadableSpan``) and :class:`~._span.HandlerSpan` objects.
        resource: Resource of the handler spans (SDK spans carry their own).
        scope: Instrumentation scope of the handler spans.
    """
    from ._span import HandlerSpan

    handler_spans: list[HandlerSpan] = []
    others: list[ReadableSpan] = []
    for span in spans:
        if type(span) is HandlerSpan:
            handler_spans.append(span)
        else:
            others.append(span)  # type: ignore[arg-type]
    parts: list[str] = []
    if handler_spans:
        attributes = _attributes_json(resource.attributes if resource is not None else {})
        encoded = ",".join(_handler_span_json(span) for span in handler_spans)
        parts.append(
            f'{{"resource":{{"attributes":{attributes}}},'
            f'"scopeSpans":[{{"scope":{_scope_json(scope)},"spans":[{encoded}]}}]}}'
        )
    if others:
        groups = _group((span.resource, span.instrumentation_scope, _span(span)) for span in others)
        for group_resource, scopes in groups:
            body = {
                "resource": _resource(group_resource),
                "scopeSpans": [{"scope": _scope(s), "spans": items} for s, items in scopes],
            }
            parts.append(dumps(body).decode())
    return ('{"resourceSpans":[' + ",".join(parts) + "]}").encode("utf-8", "replace")


# -- logs ------------------------------------------------------------------------------------
def _log(record: ReadWriteLogRecord | ReadableLogRecord) -> dict[str, Any]:
    log_record = record.log_record
    timestamp = log_record.timestamp or log_record.observed_timestamp or 0
    out: dict[str, Any] = {
        "timeUnixNano": str(timestamp),
        "observedTimeUnixNano": str(log_record.observed_timestamp or timestamp),
        "severityNumber": log_record.severity_number.value if log_record.severity_number is not None else 0,
        "severityText": log_record.severity_text or "",
        "body": any_value(log_record.body),
        "attributes": key_values(log_record.attributes),
    }
    if log_record.trace_id:
        out["traceId"] = f"{log_record.trace_id:032x}"
    if log_record.span_id:
        out["spanId"] = f"{log_record.span_id:016x}"
    if log_record.trace_flags is not None:
        out["flags"] = int(log_record.trace_flags)
    if log_record.event_name:
        out["eventName"] = log_record.event_name
    return out


def encode_logs(records: Sequence[ReadWriteLogRecord | ReadableLogRecord]) -> bytes:
    """``{"resourceLogs": [...]}`` for log records (without the ``LOGS`` prefix)."""
    groups = _group((record.resource, record.instrumentation_scope, _log(record)) for record in records)
    return dumps(
        {
            "resourceLogs": [
                {
                    "resource": _resource(resource),
                    "scopeLogs": [
                        {"scope": _scope(scope), "logRecords": encoded} for scope, encoded in scopes
                    ],
                }
                for resource, scopes in groups
            ]
        }
    )


# -- metrics ---------------------------------------------------------------------------------
def _number_point(point: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "attributes": key_values(point.attributes),
        "startTimeUnixNano": str(point.start_time_unix_nano or 0),
        "timeUnixNano": str(point.time_unix_nano),
    }
    value = point.value
    if isinstance(value, int) and not isinstance(value, bool):
        out["asInt"] = str(value)
    else:
        out["asDouble"] = float(value)
    return out


def _histogram_point(point: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "attributes": key_values(point.attributes),
        "startTimeUnixNano": str(point.start_time_unix_nano or 0),
        "timeUnixNano": str(point.time_unix_nano),
        "count": str(point.count),
        "sum": point.sum,
        "bucketCounts": [str(count) for count in point.bucket_counts],
        "explicitBounds": list(point.explicit_bounds),
    }
    if point.count:
        out["min"] = point.min
        out["max"] = point.max
    return out


def _metric(metric: Any) -> dict[str, Any] | None:
    from opentelemetry.sdk.metrics.export import Gauge, Histogram, Sum

    out: dict[str, Any] = {
        "name": metric.name,
        "description": metric.description or "",
        "unit": metric.unit or "",
    }
    data = metric.data
    if isinstance(data, Sum):
        out["sum"] = {
            "dataPoints": [_number_point(p) for p in data.data_points],
            "aggregationTemporality": int(data.aggregation_temporality),
            "isMonotonic": data.is_monotonic,
        }
    elif isinstance(data, Gauge):
        out["gauge"] = {"dataPoints": [_number_point(p) for p in data.data_points]}
    elif isinstance(data, Histogram):
        out["histogram"] = {
            "dataPoints": [_histogram_point(p) for p in data.data_points],
            "aggregationTemporality": int(data.aggregation_temporality),
        }
    else:
        return None  # exponential histograms are not sent
    return out


def encode_metrics(data: MetricsData) -> bytes | None:
    """``{"resourceMetrics": [...]}`` (without the ``MTRC`` prefix), or ``None`` when empty."""
    resource_metrics = []
    for rm in data.resource_metrics:
        scopes = []
        for sm in rm.scope_metrics:
            metrics = [m for m in (_metric(metric) for metric in sm.metrics) if m is not None]
            if metrics:
                scopes.append({"scope": _scope(sm.scope), "metrics": metrics})
        if scopes:
            resource_metrics.append({"resource": _resource(rm.resource), "scopeMetrics": scopes})
    if not resource_metrics:
        return None
    return dumps({"resourceMetrics": resource_metrics})
