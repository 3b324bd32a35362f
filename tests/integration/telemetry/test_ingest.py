"""Engine-side ingestion, storage and queries (protocol.md §1.2, §6.8, §7, §8.1, §13 T01-T03, X03).

Frames are written by hand on bare sockets, in the official Python exporter's dialect (hex ids,
string nanos, Python span-kind numbers, ``json.dumps`` with spaces) and in the standard OTLP/JSON
one (base64 ids, OTLP kind numbers), plus malformed ones the engine must log and skip.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from typing import Any

import pytest
from websockets.asyncio.client import connect

from iii_typed import InvocationError
from tests.integration.telemetry.telemetry_support import unique
from tests.support.waiting import wait_for, wait_for_async

SPAN_KEYS = {
    "attributes",
    "end_time_unix_nano",
    "events",
    "instrumentation_scope_name",
    "instrumentation_scope_version",
    "links",
    "name",
    "parent_span_id",
    "service_name",
    "span_id",
    "start_time_unix_nano",
    "status",
    "trace_id",
}
LOG_KEYS = {
    "attributes",
    "body",
    "instrumentation_scope_name",
    "observed_timestamp_unix_nano",
    "resource",
    "service_name",
    "severity_number",
    "severity_text",
    "span_id",
    "timestamp_unix_nano",
    "trace_id",
}


def _hex(n: int) -> str:
    return os.urandom(n).hex()


def _kv(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    return {"key": key, "value": {"stringValue": str(value)}}


def python_span(
    service: str,
    name: str,
    *,
    trace_id: str,
    span_id: str,
    parent: str | None = None,
    kind: int = 0,
    status: int = 1,
    start: int | None = None,
    duration_ns: int = 2_000_000,
    attributes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``resourceSpans`` document as the Python exporter writes it (T01)."""
    start = start if start is not None else time.time_ns()
    span: dict[str, Any] = {
        "traceId": trace_id,
        "spanId": span_id,
        "name": name,
        "kind": kind,
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(start + duration_ns),
        "attributes": [_kv(k, v) for k, v in (attributes or {}).items()],
        "events": [
            {
                "timeUnixNano": str(start + 1),
                "name": "iii.invocation.input",
                "attributes": [_kv("iii.payload.json", "{}")],
            }
        ],
        "links": [],
        "status": {"code": status, "message": "boom" if status == 2 else ""},
    }
    if parent is not None:
        span["parentSpanId"] = parent
    return {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [_kv("service.name", service), _kv("telemetry.sdk.language", "python")]
                },
                "scopeSpans": [{"scope": {"name": "iii-python-sdk", "version": "0.25.0"}, "spans": [span]}],
            }
        ]
    }


async def _send(url: str, *frames: bytes | str, path: str = "/otel") -> None:
    async with connect(url + path, compression=None) as ws:
        for frame in frames:
            await ws.send(frame)


def _frame(prefix: bytes, doc: Any) -> bytes:
    return prefix + json.dumps(doc).encode()  # the Python exporter's json.dumps, with spaces


def _spans(client: Any, **query: Any) -> list[dict[str, Any]]:
    listed = client.trigger({"function_id": "engine::traces::list", "payload": {"limit": 1000, **query}})
    return list(listed["spans"])


async def test_python_exporter_frames_are_stored_in_the_protocol_shapes(engine, query):
    client = query(engine)
    service = unique("ing")
    trace_id, root, child = _hex(16), _hex(8), _hex(8)
    now = time.time_ns()
    await _send(
        engine.url,
        _frame(b"OTLP", python_span(service, "execute root", trace_id=trace_id, span_id=root, start=now)),
        _frame(
            b"OTLP",
            python_span(
                service,
                "GET",
                trace_id=trace_id,
                span_id=child,
                parent=root,
                kind=2,
                status=2,
                start=now + 1000,
                attributes={"http.response.status_code": 500, "ok": False},
            ),
        ),
        _frame(
            b"LOGS",
            {
                "resourceLogs": [
                    {
                        "resource": {"attributes": [_kv("service.name", service)]},
                        "scopeLogs": [
                            {
                                "scope": {"name": "iii.logger", "version": ""},
                                "logRecords": [
                                    {
                                        "timeUnixNano": str(now),
                                        "observedTimeUnixNano": str(now + 5),
                                        "severityNumber": 9,
                                        "severityText": "INFO",
                                        "body": {"stringValue": "hello log"},
                                        "attributes": [
                                            _kv("service.name", ""),
                                            {
                                                "key": "log.data",
                                                "value": {"kvlistValue": {"values": [_kv("k", "v")]}},
                                            },
                                        ],
                                        "traceId": trace_id,
                                        "spanId": root,
                                    }
                                ],
                            }
                        ],
                    }
                ]
            },
        ),
        _frame(
            b"MTRC",
            {
                "resourceMetrics": [
                    {
                        "resource": {"attributes": [_kv("service.name", service)]},
                        "scopeMetrics": [
                            {
                                "scope": {"name": "probe-meter", "version": ""},
                                "metrics": [
                                    {
                                        "name": f"{service}.requests",
                                        "description": "reqs",
                                        "unit": "1",
                                        "sum": {
                                            "dataPoints": [
                                                {
                                                    "attributes": [_kv("route", "/x")],
                                                    "startTimeUnixNano": str(now - 10),
                                                    "timeUnixNano": str(now),
                                                    "asInt": "3",
                                                }
                                            ],
                                            "aggregationTemporality": 2,
                                            "isMonotonic": True,
                                        },
                                    },
                                    {
                                        "name": f"{service}.latency",
                                        "histogram": {
                                            "dataPoints": [
                                                {
                                                    "attributes": [],
                                                    "startTimeUnixNano": str(now - 10),
                                                    "timeUnixNano": str(now),
                                                    "count": "2",
                                                    "sum": 3.5,
                                                    "bucketCounts": ["1", "1"],
                                                    "explicitBounds": [2.0],
                                                    "min": 1.0,
                                                    "max": 2.5,
                                                }
                                            ],
                                            "aggregationTemporality": 2,
                                        },
                                    },
                                ],
                            }
                        ],
                    }
                ]
            },
        ),
    )
    spans = wait_for(lambda: len(s := _spans(client, trace_id=trace_id)) == 2 and s, what="both spans stored")
    by_id = {s["span_id"]: s for s in spans}
    stored_root, stored_child = by_id[root], by_id[child]
    assert set(stored_root) == SPAN_KEYS
    assert list(stored_root) == sorted(stored_root)  # keys sorted like the real engine's serde maps
    assert stored_root["parent_span_id"] is None and stored_child["parent_span_id"] == root
    assert stored_root["start_time_unix_nano"] == now and stored_root["end_time_unix_nano"] == now + 2_000_000
    assert stored_root["status"] == "ok" and stored_root["service_name"] == service
    assert stored_root["instrumentation_scope_name"] == "iii-python-sdk"
    assert stored_root["events"] == [
        {
            "attributes": [["iii.payload.json", "{}"]],
            "name": "iii.invocation.input",
            "timestamp_unix_nano": now + 1,
        }
    ]
    assert stored_child["status"] == "error" and stored_child["status_description"] == "boom"
    assert stored_child["attributes"] == [["http.response.status_code", 500], ["ok", False]]

    tree = client.trigger({"function_id": "engine::traces::tree", "payload": {"trace_id": trace_id}})
    assert [r["span_id"] for r in tree["roots"]] == [root]
    assert [c["span_id"] for c in tree["roots"][0]["children"]] == [child]

    logs = client.trigger({"function_id": "engine::logs::list", "payload": {"trace_id": trace_id}})["logs"]
    assert len(logs) == 1
    (record,) = logs
    assert set(record) == LOG_KEYS and list(record) == sorted(record)
    assert record["body"] == "hello log" and record["span_id"] == root
    assert record["service_name"] == service  # an empty service.name attribute falls back to the resource
    assert record["attributes"] == {"log.data": {"k": "v"}, "service.name": ""}
    assert record["observed_timestamp_unix_nano"] == now + 5

    metrics = client.trigger({"function_id": "engine::metrics::list", "payload": {}})["sdk_metrics"]
    mine = {p["name"]: p for p in metrics if p["service_name"] == service}
    assert mine[f"{service}.requests"]["value"] == 3 and mine[f"{service}.requests"]["type"] == "sum"
    histogram = mine[f"{service}.latency"]
    assert (
        histogram["count"] == 2
        and histogram["bucket_counts"] == [1, 1]
        and histogram["explicit_bounds"] == [2.0]
    )


async def test_standard_otlp_json_and_frames_on_the_worker_socket(engine, query):
    client = query(engine)
    service = unique("std")
    trace_id, span_id = _hex(16), _hex(8)
    now = time.time_ns()
    doc = {
        "resourceSpans": [
            {
                "resource": {"attributes": [_kv("service.name", service)]},
                "scopeSpans": [
                    {
                        "scope": {"name": "node"},
                        "spans": [
                            {
                                "traceId": base64.b64encode(bytes.fromhex(trace_id)).decode(),
                                "spanId": base64.b64encode(bytes.fromhex(span_id)).decode(),
                                "parentSpanId": "",
                                "name": "handler",
                                "kind": "SPAN_KIND_SERVER",
                                "startTimeUnixNano": now,
                                "endTimeUnixNano": now + 5,
                                "status": {"code": "STATUS_CODE_ERROR"},
                            }
                        ],
                    }
                ],
            }
        ]
    }
    await _send(engine.url, b"OTLP" + json.dumps(doc, separators=(",", ":")).encode(), path="/")
    (span,) = wait_for(lambda: _spans(client, service_name=service), what="the span sent on /")
    assert span["trace_id"] == trace_id and span["span_id"] == span_id
    assert span["parent_span_id"] is None and span["status"] == "error"
    assert span["instrumentation_scope_name"] == "node" and "instrumentation_scope_version" not in span


async def test_malformed_frames_are_skipped_and_the_engine_keeps_serving(engine, query):
    client = query(engine)
    before = client.trigger({"function_id": "engine::observability::stats", "payload": {}})["counters"]
    service = unique("bad")
    good_trace, good_span = _hex(16), _hex(8)
    mixed = python_span(service, "good", trace_id=good_trace, span_id=good_span)
    bad_spans = [
        {"traceId": "not-hex", "spanId": _hex(8), "name": "bad id"},
        {"traceId": _hex(16), "spanId": _hex(8), "name": "bad time", "startTimeUnixNano": "soon"},
        "not an object",
    ]
    mixed["resourceSpans"][0]["scopeSpans"][0]["spans"].extend(bad_spans)
    empty_point = {"name": "m", "sum": {"dataPoints": [{}]}}  # a data point without a value
    await _send(
        engine.url,
        b"OTLP{not json",
        b"LOGS\xff\xfe",
        b"NOPE" + b"{}",
        "a text frame is ignored on /otel",
        b"MTRC" + json.dumps({"resourceMetrics": [{"scopeMetrics": [{"metrics": [empty_point]}]}]}).encode(),
        _frame(b"OTLP", mixed),
    )
    (span,) = wait_for(lambda: _spans(client, service_name=service), what="the good span of the mixed frame")
    assert span["span_id"] == good_span
    after = client.trigger({"function_id": "engine::observability::stats", "payload": {}})["counters"]
    assert after.get("frames_rejected", 0) - before.get("frames_rejected", 0) == 2
    assert after.get("items_rejected", 0) - before.get("items_rejected", 0) == 4
    health = client.trigger({"function_id": "engine::health::check", "payload": {}})
    assert health["status"] == "healthy"


def test_health_check_components_have_the_x03_shape(engine, query):
    client = query(engine)
    health = client.trigger({"function_id": "engine::health::check", "payload": {}})
    components = health["components"]
    assert components["logs"]["status"] == "healthy" and set(components["logs"]["details"]) == {"stored_logs"}
    assert set(components["metrics"]["details"]) == {"stored_metrics"}
    assert components["otel"] == {
        "details": {"enabled": True, "exporter": "Some(Memory)", "service_name": "iii"},
        "status": "healthy",
    }
    spans = components["spans"]
    assert set(spans["details"]) == {"archive", "hot_bytes", "stored_spans"}
    assert set(spans["details"]["archive"]) == {
        "archive",
        "completeness",
        "known_dropped_spans",
        "last_error",
        "max_disk_bytes",
        "physical_bytes",
    }


async def test_traces_list_filters_sorting_paging_and_clear(fresh_engine, query):
    client = query(fresh_engine)
    service = unique("flt")
    trace_a, trace_b = _hex(16), _hex(8 * 2)
    now = time.time_ns()
    fast = python_span(
        service, "execute fast", trace_id=trace_a, span_id=_hex(8), start=now, attributes={"route": "/a"}
    )
    slow = python_span(service, "execute slow", trace_id=trace_b, span_id=_hex(8), start=now + 10)
    slow_span = slow["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    slow_span["endTimeUnixNano"] = str(now + 10 + 50_000_000)
    slow_span["status"] = {"code": 2, "message": "slow"}
    slow_span["attributes"] = [_kv("route", "/b")]
    other = python_span("other", "execute fast", trace_id=_hex(16), span_id=_hex(8), start=now + 20)
    internal = python_span(
        service,
        "call engine::x",
        trace_id=trace_a,
        span_id=_hex(8),
        start=now + 30,
        attributes={"iii.internal": True},
    )
    frames = [_frame(b"OTLP", doc) for doc in (fast, slow, other, internal)]
    await _send(fresh_engine.url, *frames)
    wait_for(lambda: len(_spans(client, include_internal=True)) == 4, what="four spans")

    def names(**q: Any) -> list[str]:
        return [s["name"] for s in _spans(client, **q)]

    assert names(service_name=service) == ["execute fast", "execute slow"]  # internal hidden, start order
    assert names(service_name=service, include_internal=True) == [
        "execute fast",
        "execute slow",
        "call engine::x",
    ]
    assert names(name="SLOW") == ["execute slow"]
    assert names(status="error") == ["execute slow"]
    assert names(min_duration_ms=10) == ["execute slow"]
    assert names(service_name=service, max_duration_ms=10) == ["execute fast"]
    assert names(attributes=[["route", "/b"]]) == ["execute slow"]
    assert names(service_name=service, exclude_attributes=[["route", "/b"]]) == ["execute fast"]
    assert names(service_name=service, exclude_attributes=["route"]) == []
    assert names(trace_ids=[trace_a, trace_b]) == ["execute fast", "execute slow"]
    assert names(service_name=service, sort_by="duration", sort_order="desc") == [
        "execute slow",
        "execute fast",
    ]
    assert names(start_time=now // 1_000_000 + 60_000) == []
    page = client.trigger({"function_id": "engine::traces::list", "payload": {"offset": 1, "limit": 1}})
    assert page["offset"] == 1 and page["limit"] == 1 and page["total"] == 3 and len(page["spans"]) == 1
    assert list(page) == ["limit", "offset", "spans", "storage", "total"]
    with pytest.raises(InvocationError) as bad:
        client.trigger({"function_id": "engine::traces::list", "payload": {"limit": "ten"}})
    assert bad.value.code == "deserialization_error"

    assert client.trigger({"function_id": "engine::traces::clear", "payload": {}})["success"] is True
    assert _spans(client, include_internal=True) == []


async def test_trace_trigger_coalesces_trace_ids(fresh_engine, query):
    client = query(fresh_engine)
    service = unique("trg")
    every: list[Any] = []
    errors: list[Any] = []
    lock = threading.Lock()

    def collect(into: list[Any]) -> Any:
        def handler(data: Any) -> None:
            with lock:
                into.append(data)

        return handler

    client.register_function(f"{service}::every", collect(every))
    client.register_function(f"{service}::errors", collect(errors))
    client.register_trigger(
        {"type": "trace", "function_id": f"{service}::every", "config": {"service_name": service}}
    )
    client.register_trigger(
        {"type": "trace", "function_id": f"{service}::errors", "config": {"status": "ERROR"}}
    )
    refused = client.register_trigger(
        {"type": "trace", "function_id": f"{service}::every", "config": {"status": "meh"}}
    )
    assert refused.wait_for_error(5) is not None

    def bindings() -> int:
        listed = client.trigger(
            {"function_id": "engine::registered-triggers::list", "payload": {"trigger_type": "trace"}}
        )
        return len(listed["registered_triggers"])

    wait_for(lambda: bindings() == 2, what="both bindings active")
    # Sorted order would put the error trace first: the batch must keep arrival order.
    ok_trace, error_trace = "f" + _hex(16)[1:], "0" + _hex(16)[1:]
    await _send(
        fresh_engine.url,
        _frame(b"OTLP", python_span(service, "a", trace_id=ok_trace, span_id=_hex(8))),
        _frame(b"OTLP", python_span(service, "b", trace_id=ok_trace, span_id=_hex(8))),
        _frame(b"OTLP", python_span(service, "c", trace_id=error_trace, span_id=_hex(8), status=2)),
        _frame(
            b"OTLP",
            python_span(service, "d", trace_id=_hex(16), span_id=_hex(8), attributes={"iii.internal": True}),
        ),
    )

    def ids(into: list[Any]) -> set[str]:
        with lock:
            return {i for batch in into for i in batch["trace_ids"]}

    await wait_for_async(lambda: ids(every) == {ok_trace, error_trace}, what="the service's traces")
    await wait_for_async(lambda: ids(errors) == {error_trace}, what="the error trace only")
    with lock:
        assert all(set(batch) == {"trace_ids"} for batch in every)
        assert len(every) <= 2  # coalesced, not one fire per span
        assert [i for batch in every for i in batch["trace_ids"]] == [ok_trace, error_trace]
