"""Lenient OTLP/JSON parsing of the telemetry frames workers send (protocol.md §8.1, §7 shapes).

Accepted on input, whoever wrote it (the official Python SDK, iii-typed, a Node worker, a
collector's JSON):

* trace and span ids in hex (the Python exporter) or base64 (protobuf's JSON mapping);
* ``*UnixNano`` and ``intValue``/``asInt``/``count`` as decimal strings or numbers;
* span ``kind`` as a number — numbered like Python's ``SpanKind`` (INTERNAL=0 … CONSUMER=4) when the
  resource says ``telemetry.sdk.language = python``, like OTLP (UNSPECIFIED=0, INTERNAL=1 …)
  otherwise — or as ``SPAN_KIND_*`` text;
* status codes as numbers (0 unset, 1 ok, 2 error) or ``STATUS_CODE_*`` text;
* attributes as ``[{key, value: AnyValue}]`` lists (or plain objects), ``instrumentationLibrary*``
  spellings of older exporters.

One malformed span, record or data point is skipped and counted; a frame that is not JSON at all
raises :class:`ValueError` (the caller logs it and drops the frame). Nothing here raises anything
else.

Output shapes (protocol.md §7): ``StoredSpan`` (wrapped in :class:`ParsedSpan` with the values the
store filters on), ``StoredLog`` and metric points (see :func:`parse_metrics`).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

try:  # orjson is optional (the ``fast`` extra)
    import orjson as _orjson
except ImportError:  # pragma: no cover - depends on the installed extras
    _orjson = None  # type: ignore[assignment]

__all__ = [
    "INTERNAL_ATTRIBUTE",
    "KIND_NAMES",
    "ParseResult",
    "ParsedSpan",
    "any_value",
    "attributes_dict",
    "loads",
    "parse_logs",
    "parse_metrics",
    "parse_spans",
    "severity_level",
]

#: A span whose attributes hold this key with value ``true`` is engine-internal (hidden from
#: ``engine::traces::list`` unless ``include_internal``, never reported by ``trace`` triggers).
INTERNAL_ATTRIBUTE: Final = "iii.internal"
#: OTLP span kind numbers → names.
KIND_NAMES: Final = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}
_KIND_TEXT: Final = {
    "SPAN_KIND_UNSPECIFIED": 0,
    "SPAN_KIND_INTERNAL": 1,
    "SPAN_KIND_SERVER": 2,
    "SPAN_KIND_CLIENT": 3,
    "SPAN_KIND_PRODUCER": 4,
    "SPAN_KIND_CONSUMER": 5,
}
_STATUS_NAMES: Final = {0: "unset", 1: "ok", 2: "error"}
_STATUS_TEXT: Final = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}
_SEVERITY_TEXT: Final = ((21, "FATAL"), (17, "ERROR"), (13, "WARN"), (9, "INFO"), (5, "DEBUG"), (1, "TRACE"))


def _dumps(value: Any) -> bytes:
    if _orjson is not None:
        try:
            return _orjson.dumps(value)
        except TypeError:
            pass
    return json.dumps(value, separators=(",", ":"), default=str).encode()


def loads(payload: bytes) -> Any:
    """Parse JSON bytes.

    Raises:
        ValueError: not UTF-8 JSON.
    """
    if _orjson is not None:
        try:
            return _orjson.loads(payload)
        except _orjson.JSONDecodeError as exc:
            raise ValueError(str(exc)) from None
    try:
        return json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(str(exc)) from None


def _int(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError("boolean where a number was expected")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, str):
        return int(value.strip() or "0")
    if value is None:
        return 0
    raise TypeError(f"{type(value).__name__} where a number was expected")


def _hex_id(value: Any, size: int) -> str | None:
    """A lower-case hex id of ``size`` bytes from hex or base64 text; ``None`` for empty/zero ids.

    Raises:
        ValueError: neither form decodes to ``size`` bytes.
    """
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError("an id must be a string")
    text = value.strip()
    if len(text) == size * 2:
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raw = b""
        if raw:
            return None if not any(raw) else raw.hex()
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"malformed id {text!r}") from None
    if len(raw) != size:
        raise ValueError(f"malformed id {text!r}")
    return None if not any(raw) else raw.hex()


def any_value(value: Any) -> Any:
    """The Python value of an OTLP ``AnyValue`` (already-plain values pass through)."""
    if type(value) is not dict and not isinstance(value, Mapping):
        return value
    if "stringValue" in value:
        return value["stringValue"]
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "intValue" in value:
        try:
            return _int(value["intValue"])
        except (TypeError, ValueError):
            return value["intValue"]
    if "doubleValue" in value:
        raw = value["doubleValue"]
        try:
            return float(raw)
        except (TypeError, ValueError):
            return raw
    if "arrayValue" in value:
        inner = value["arrayValue"] or {}
        return [any_value(v) for v in (inner.get("values") or [])] if isinstance(inner, Mapping) else []
    if "kvlistValue" in value:
        inner = value["kvlistValue"] or {}
        return attributes_dict(inner.get("values")) if isinstance(inner, Mapping) else {}
    if "bytesValue" in value:
        return value["bytesValue"]
    if not value:
        return None
    return dict(value)


def attributes_dict(raw: Any) -> dict[str, Any]:
    """``{key: value}`` from an OTLP ``KeyValue`` list (or an already-plain object)."""
    if type(raw) is list:
        out: dict[str, Any] = {}
        for item in raw:
            if type(item) is dict:
                key = item.get("key")
                if type(key) is str:
                    out[key] = any_value(item.get("value"))
        return out
    if isinstance(raw, Mapping):
        return {str(k): any_value(v) for k, v in raw.items()}
    return {}


def _pairs(raw: Any) -> list[list[Any]]:
    return [[k, v] for k, v in attributes_dict(raw).items()]


def _scope_of(container: Mapping[str, Any]) -> tuple[str | None, str | None]:
    scope = container.get("scope") or container.get("instrumentationLibrary") or {}
    if not isinstance(scope, Mapping):
        return None, None
    name = scope.get("name")
    version = scope.get("version")
    return (
        name if isinstance(name, str) and name else None,
        version if isinstance(version, str) and version else None,
    )


def _list(container: Mapping[str, Any], *keys: str) -> list[Any]:
    for key in keys:
        value = container.get(key)
        if isinstance(value, list):
            return value
    return []


class ParsedSpan:
    """A stored span: the fields the store filters and indexes on, and its ``StoredSpan`` record.

    Ingestion reads only what indexing needs (ids, name, times, status, service, kind, whether it
    is internal); the rest of the span is kept as the worker sent it, as compact JSON bytes, and
    converted when a query reads :attr:`record` (protocol.md §7 ``StoredSpan``, keys sorted).
    Bytes rather than parsed objects: ten thousand stored spans would otherwise be hundreds of
    thousands of objects for the garbage collector to walk on every full collection, which
    doubled the ingestion cost.

    Attributes:
        kind: OTLP kind number (0 unspecified, 1 internal, 2 server, 3 client, 4 producer,
            5 consumer).
        internal: Engine-internal span (``iii.internal`` attribute).
        size: Approximate bytes (what ``hot_bytes`` sums).
    """

    __slots__ = (
        "_raw",
        "_record",
        "end",
        "internal",
        "kind",
        "name",
        "parent_span_id",
        "scope",
        "service_name",
        "size",
        "span_id",
        "start",
        "status",
        "status_description",
        "trace_id",
    )

    def __init__(
        self,
        *,
        trace_id: str,
        span_id: str,
        parent_span_id: str | None,
        name: str,
        start: int,
        end: int,
        status: str,
        status_description: str | None,
        service_name: str,
        scope: tuple[str | None, str | None],
        kind: int,
        internal: bool,
        size: int,
        raw: bytes | None = None,
        record: dict[str, Any] | None = None,
    ) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_span_id = parent_span_id
        self.name = name
        self.start = start
        self.end = end
        self.status = status
        self.status_description = status_description
        self.service_name = service_name
        self.scope = scope
        self.kind = kind
        self.internal = internal
        self.size = size
        self._raw = raw
        self._record = record

    @classmethod
    def from_record(cls, record: dict[str, Any], kind: int, internal: bool, size: int) -> ParsedSpan:
        """Wrap an already-built ``StoredSpan`` (engine spans, spans loaded from SQLite)."""
        return cls(
            trace_id=record["trace_id"],
            span_id=record["span_id"],
            parent_span_id=record.get("parent_span_id"),
            name=record.get("name", ""),
            start=int(record.get("start_time_unix_nano", 0)),
            end=int(record.get("end_time_unix_nano", 0)),
            status=record.get("status", "unset"),
            status_description=record.get("status_description"),
            service_name=record.get("service_name", "unknown_service"),
            scope=(record.get("instrumentation_scope_name"), record.get("instrumentation_scope_version")),
            kind=kind,
            internal=internal,
            size=size,
            record=record,
        )

    @property
    def duration_ns(self) -> int:
        """End minus start, ns (never negative)."""
        return max(0, self.end - self.start)

    @property
    def record(self) -> dict[str, Any]:
        """The ``StoredSpan`` object (built from the kept JSON at each read: not cached, see above)."""
        record = self._record
        if record is not None:
            return record
        try:
            raw = loads(self._raw) if self._raw else {}
        except ValueError:
            raw = {}
        return self._build(raw if isinstance(raw, dict) else {})

    def _build(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        record: dict[str, Any] = {
            "attributes": _pairs(raw.get("attributes")),
            "end_time_unix_nano": self.end,
            "events": [
                {
                    "attributes": _pairs(event.get("attributes")),
                    "name": str(event.get("name") or ""),
                    "timestamp_unix_nano": _lenient_int(event.get("timeUnixNano")),
                }
                for event in _as_list(raw.get("events"))
                if isinstance(event, dict)
            ],
        }
        flags = raw.get("flags")
        if flags is not None:
            record["flags"] = _lenient_int(flags)
        if self.scope[0] is not None:
            record["instrumentation_scope_name"] = self.scope[0]
        if self.scope[1] is not None:
            record["instrumentation_scope_version"] = self.scope[1]
        record["links"] = [
            {
                "attributes": _pairs(link.get("attributes")),
                "span_id": _lenient_id(link.get("spanId"), 8),
                "trace_id": _lenient_id(link.get("traceId"), 16),
            }
            for link in _as_list(raw.get("links"))
            if isinstance(link, dict)
        ]
        record["name"] = self.name
        record["parent_span_id"] = self.parent_span_id
        record["service_name"] = self.service_name
        record["span_id"] = self.span_id
        record["start_time_unix_nano"] = self.start
        record["status"] = self.status
        if self.status_description is not None:
            record["status_description"] = self.status_description
        record["trace_id"] = self.trace_id
        trace_state = raw.get("traceState")
        if isinstance(trace_state, str) and trace_state:
            record["trace_state"] = trace_state
        return record


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _lenient_int(value: Any) -> int:
    try:
        return _int(value)
    except (TypeError, ValueError):
        return 0


def _lenient_id(value: Any, size: int) -> str | None:
    try:
        return _hex_id(value, size)
    except ValueError:
        return None


@dataclass(slots=True)
class ParseResult:
    """What one frame yielded: the items and how many were skipped as malformed."""

    items: list[Any]
    rejected: int


def _kind(value: Any, python_numbering: bool) -> int:
    if isinstance(value, str):
        if value in _KIND_TEXT:
            return _KIND_TEXT[value]
        value = _int(value)
    number = _int(value) if value is not None else 0
    if python_numbering:
        number += 1
    return number if 0 <= number <= 5 else 0


def _status(raw: Any) -> tuple[str, str | None]:
    if not isinstance(raw, Mapping):
        return "unset", None
    code = raw.get("code", 0)
    if isinstance(code, str) and code in _STATUS_TEXT:
        number = _STATUS_TEXT[code]
    else:
        number = _int(code) if code is not None else 0
    message = raw.get("message")
    return _STATUS_NAMES.get(number, "unset"), message if isinstance(message, str) and message else None


def _is_internal(attributes: Any) -> bool:
    if not isinstance(attributes, list):
        return isinstance(attributes, dict) and attributes.get(INTERNAL_ATTRIBUTE) is True
    for item in attributes:
        if type(item) is dict and item.get("key") == INTERNAL_ATTRIBUTE:
            return any_value(item.get("value")) is True
    return False


def _span(
    raw: Mapping[str, Any], service: str, scope: tuple[str | None, str | None], python: bool, size: int
) -> ParsedSpan:
    trace_id = _hex_id(raw.get("traceId"), 16)
    span_id = _hex_id(raw.get("spanId"), 8)
    if trace_id is None or span_id is None:
        raise ValueError("span without a trace id or span id")
    name = raw.get("name")
    start = _int(raw.get("startTimeUnixNano"))
    end = _int(raw.get("endTimeUnixNano")) or start
    status, description = _status(raw.get("status"))
    return ParsedSpan(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=_hex_id(raw.get("parentSpanId"), 8),
        name=str(name) if name is not None else "",
        start=start,
        end=end,
        status=status,
        status_description=description,
        service_name=service,
        scope=scope,
        kind=_kind(raw.get("kind"), python),
        internal=_is_internal(raw.get("attributes")),
        size=size,
        raw=_dumps(raw),
    )


def parse_spans(doc: Any, payload_size: int = 0) -> ParseResult:
    """``StoredSpan`` records from ``{"resourceSpans": [...]}``.

    Args:
        doc: The parsed JSON document.
        payload_size: The frame's size in bytes (spread over its spans as their ``size``).
    """
    found: list[tuple[Mapping[str, Any], str, tuple[str | None, str | None], bool]] = []
    rejected = 0
    if not isinstance(doc, Mapping):
        return ParseResult([], 1)
    for resource_spans in _list(doc, "resourceSpans", "resource_spans"):
        if not isinstance(resource_spans, Mapping):
            rejected += 1
            continue
        resource = attributes_dict((resource_spans.get("resource") or {}).get("attributes"))
        service = str(resource.get("service.name") or "unknown_service")
        python = resource.get("telemetry.sdk.language") == "python"
        for scope_spans in _list(resource_spans, "scopeSpans", "instrumentationLibrarySpans", "scope_spans"):
            if not isinstance(scope_spans, Mapping):
                rejected += 1
                continue
            scope = _scope_of(scope_spans)
            for raw in _list(scope_spans, "spans"):
                found.append((raw, service, scope, python))
    size = payload_size // len(found) if found else 0
    spans: list[ParsedSpan] = []
    for raw, service, scope, python in found:
        try:
            if not isinstance(raw, Mapping):
                raise TypeError("a span must be an object")
            spans.append(_span(raw, service, scope, python, size))
        except (TypeError, ValueError, AttributeError, KeyError):
            rejected += 1
    return ParseResult(spans, rejected)


def severity_level(number: int, text: str | None) -> str:
    """The lower-case level a ``log`` trigger matches: the severity text (``WARNING`` → ``warn``,
    ``CRITICAL`` → ``fatal``), else derived from the number."""
    if text:
        lowered = text.strip().lower()
        return {"warning": "warn", "critical": "fatal", "information": "info"}.get(lowered, lowered)
    for floor, name in _SEVERITY_TEXT:
        if number >= floor:
            return name.lower()
    return "info"


def _severity_text(number: int) -> str:
    for floor, name in _SEVERITY_TEXT:
        if number >= floor:
            return name
    return ""


def _body(raw: Any) -> str:
    value = any_value(raw)
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)


def _log(
    raw: Mapping[str, Any], resource: dict[str, Any], service: str, scope: tuple[str | None, str | None]
) -> dict[str, Any]:
    timestamp = _int(raw.get("timeUnixNano"))
    observed = _int(raw.get("observedTimeUnixNano"))
    if not timestamp:
        timestamp = observed
    if not observed:
        observed = timestamp
    number = _int(raw.get("severityNumber"))
    text = raw.get("severityText")
    attributes = attributes_dict(raw.get("attributes"))
    named = attributes.get("service.name")
    record: dict[str, Any] = {
        "attributes": attributes,
        "body": _body(raw.get("body")),
    }
    if scope[0] is not None:
        record["instrumentation_scope_name"] = scope[0]
    if scope[1] is not None:
        record["instrumentation_scope_version"] = scope[1]
    record.update(
        {
            "observed_timestamp_unix_nano": observed,
            "resource": resource,
            "service_name": named if isinstance(named, str) and named else service,
            "severity_number": number,
            "severity_text": text if isinstance(text, str) and text else _severity_text(number),
            "span_id": _hex_id(raw.get("spanId"), 8),
            "timestamp_unix_nano": timestamp,
            "trace_id": _hex_id(raw.get("traceId"), 16),
        }
    )
    return record


def parse_logs(doc: Any) -> ParseResult:
    """``StoredLog`` records from ``{"resourceLogs": [...]}`` (``trace_id``/``span_id`` null when
    absent or all-zero; ``service_name`` from the record's ``service.name`` attribute when set,
    else the resource's)."""
    records: list[dict[str, Any]] = []
    rejected = 0
    if not isinstance(doc, Mapping):
        return ParseResult([], 1)
    for resource_logs in _list(doc, "resourceLogs", "resource_logs"):
        if not isinstance(resource_logs, Mapping):
            rejected += 1
            continue
        resource = attributes_dict((resource_logs.get("resource") or {}).get("attributes"))
        service = str(resource.get("service.name") or "unknown_service")
        for scope_logs in _list(resource_logs, "scopeLogs", "instrumentationLibraryLogs", "scope_logs"):
            if not isinstance(scope_logs, Mapping):
                rejected += 1
                continue
            scope = _scope_of(scope_logs)
            for raw in _list(scope_logs, "logRecords", "log_records"):
                try:
                    if not isinstance(raw, Mapping):
                        raise TypeError("a log record must be an object")
                    records.append(_log(raw, resource, service, scope))
                except (TypeError, ValueError, AttributeError, KeyError):
                    rejected += 1
    return ParseResult(records, rejected)


def _number(point: Mapping[str, Any]) -> float | int | None:
    if "asInt" in point:
        return _int(point["asInt"])
    if "asDouble" in point:
        return float(point["asDouble"])
    return None


def _point(
    kind: str,
    raw: Mapping[str, Any],
    metric: Mapping[str, Any],
    common: dict[str, Any],
    data: Mapping[str, Any],
) -> dict[str, Any]:
    point: dict[str, Any] = {
        **common,
        "attributes": attributes_dict(raw.get("attributes")),
        "start_time_unix_nano": _int(raw.get("startTimeUnixNano")),
        "timestamp_unix_nano": _int(raw.get("timeUnixNano")),
        "type": kind,
    }
    if kind in ("sum", "gauge"):
        value = _number(raw)
        if value is None:
            raise ValueError("a number data point without asInt/asDouble")
        point["value"] = value
        if kind == "sum":
            point["is_monotonic"] = bool(data.get("isMonotonic", False))
            point["aggregation_temporality"] = _int(data.get("aggregationTemporality", 0))
    else:
        point["count"] = _int(raw.get("count"))
        if raw.get("sum") is not None:
            point["sum"] = float(raw["sum"])
        for key in ("min", "max"):
            if raw.get(key) is not None:
                point[key] = float(raw[key])
        if kind == "histogram":
            point["bucket_counts"] = [_int(c) for c in (raw.get("bucketCounts") or [])]
            point["explicit_bounds"] = [float(b) for b in (raw.get("explicitBounds") or [])]
        point["aggregation_temporality"] = _int(data.get("aggregationTemporality", 0))
    return point


def parse_metrics(doc: Any) -> ParseResult:
    """Metric points from ``{"resourceMetrics": [...]}``.

    Each point: ``{name, description, unit, type ("sum"|"gauge"|"histogram"|
    "exponential_histogram"|"summary"), attributes {k: v}, start_time_unix_nano,
    timestamp_unix_nano, service_name, instrumentation_scope_name, runtime}`` plus ``value``
    (sum, gauge; sums also ``is_monotonic`` and ``aggregation_temporality``) or ``count``,
    ``sum``, ``min``, ``max`` (and for histograms ``bucket_counts``, ``explicit_bounds``).
    ``runtime`` is the resource's ``telemetry.sdk.language``.
    """
    points: list[dict[str, Any]] = []
    rejected = 0
    if not isinstance(doc, Mapping):
        return ParseResult([], 1)
    for resource_metrics in _list(doc, "resourceMetrics", "resource_metrics"):
        if not isinstance(resource_metrics, Mapping):
            rejected += 1
            continue
        resource = attributes_dict((resource_metrics.get("resource") or {}).get("attributes"))
        service = str(resource.get("service.name") or "unknown_service")
        runtime = resource.get("telemetry.sdk.language")
        for scope_metrics in _list(resource_metrics, "scopeMetrics", "instrumentationLibraryMetrics"):
            if not isinstance(scope_metrics, Mapping):
                rejected += 1
                continue
            scope_name = _scope_of(scope_metrics)[0]
            for metric in _list(scope_metrics, "metrics"):
                if not isinstance(metric, Mapping) or not isinstance(metric.get("name"), str):
                    rejected += 1
                    continue
                common = {
                    "description": str(metric.get("description") or ""),
                    "instrumentation_scope_name": scope_name,
                    "name": metric["name"],
                    "runtime": runtime if isinstance(runtime, str) else None,
                    "service_name": service,
                    "unit": str(metric.get("unit") or ""),
                }
                for kind, key in (
                    ("sum", "sum"),
                    ("gauge", "gauge"),
                    ("histogram", "histogram"),
                    ("exponential_histogram", "exponentialHistogram"),
                    ("summary", "summary"),
                ):
                    data = metric.get(key)
                    if not isinstance(data, Mapping):
                        continue
                    for raw in _list(data, "dataPoints", "data_points"):
                        try:
                            if not isinstance(raw, Mapping):
                                raise TypeError("a data point must be an object")
                            points.append(_point(kind, raw, metric, common, data))
                        except (TypeError, ValueError, AttributeError, KeyError):
                            rejected += 1
    return ParseResult(points, rejected)
