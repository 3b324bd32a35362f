"""The SDK's OTLP/JSON encoding against the engine's lenient parser, payload capture and option
resolution (protocol.md §8.1-§8.3). No sockets: private providers only, nothing process-global."""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any

import pytest
from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from pydantic import BaseModel, Field

from iii_typed import InitOptions, Logger, OtelConfig
from iii_typed.engine.builtins._otel_parse import (
    loads,
    parse_logs,
    parse_metrics,
    parse_spans,
    severity_level,
)
from iii_typed.logger import _attribute_value
from iii_typed.telemetry._config import DEFAULT_PAYLOAD_MAX_BYTES, otel_url, resolve_otel
from iii_typed.telemetry._encode import encode_logs, encode_metrics, encode_spans
from iii_typed.telemetry._payload import TRUNCATED_MARK, capture, is_sensitive

RESOURCE = Resource.create({"service.name": "enc", "telemetry.sdk.language": "python"})


def _spans() -> list[Any]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("iii-typed", "1.0")
    with tracer.start_as_current_span("parent", kind=SpanKind.SERVER) as parent:
        parent.set_attributes({"s": "x", "i": 7, "f": 1.5, "b": True, "list": [1, 2], "raw": b"\x01\xff"})
        with tracer.start_as_current_span("child", kind=SpanKind.CONSUMER) as child:
            child.add_event("evt", {"k": "v"})
            child.set_status(Status(StatusCode.ERROR, "bad"))
    provider.shutdown()
    return list(exporter.get_finished_spans())


def test_spans_use_the_python_exporter_dialect_and_round_trip():
    spans = _spans()
    payload = encode_spans(spans)
    doc = json.loads(payload)
    (resource_spans,) = doc["resourceSpans"]
    (scope_spans,) = resource_spans["scopeSpans"]
    assert scope_spans["scope"] == {"name": "iii-typed", "version": "1.0"}
    wire = {s["name"]: s for s in scope_spans["spans"]}
    child, parent = wire["child"], wire["parent"]
    assert parent["kind"] == 1 and child["kind"] == 4  # Python numbering: SERVER 1, CONSUMER 4
    assert (
        len(child["traceId"]) == 32
        and len(child["spanId"]) == 16
        and child["parentSpanId"] == parent["spanId"]
    )
    assert "parentSpanId" not in parent
    assert isinstance(child["startTimeUnixNano"], str) and child["startTimeUnixNano"].isdigit()
    assert child["status"] == {"code": 2, "message": "bad"} and parent["status"] == {"code": 0, "message": ""}
    attributes = {a["key"]: a["value"] for a in parent["attributes"]}
    assert attributes == {
        "s": {"stringValue": "x"},
        "i": {"intValue": "7"},
        "f": {"doubleValue": 1.5},
        "b": {"boolValue": True},
        "list": {"arrayValue": {"values": [{"intValue": "1"}, {"intValue": "2"}]}},
        "raw": {"bytesValue": "01ff"},
    }

    parsed = parse_spans(loads(payload), len(payload))
    assert parsed.rejected == 0
    stored = {p.record["name"]: p for p in parsed.items}
    assert stored["parent"].kind == 2 and stored["child"].kind == 5  # back to OTLP numbering
    record = stored["child"].record
    assert record["parent_span_id"] == stored["parent"].record["span_id"]
    assert record["status"] == "error" and record["status_description"] == "bad"
    assert record["events"][0]["attributes"] == [["k", "v"]]
    assert dict(stored["parent"].record["attributes"])["raw"] == "01ff"
    assert record["start_time_unix_nano"] == spans[0].start_time or record["start_time_unix_nano"] > 0


def test_handler_spans_are_written_as_json_text_and_round_trip():
    from opentelemetry.trace import SpanContext, StatusCode

    from iii_typed.telemetry._span import HandlerSpan, RemoteParent

    ended: list[Any] = []
    parent = RemoteParent.parse(f"00-{0xABC:032x}-{0xDEF:016x}-01")
    assert parent is not None
    assert RemoteParent.parse("00-" + "0" * 32 + "-" + "1" * 16 + "-01") is None  # a zero trace id
    assert RemoteParent.parse("garbage") is None and RemoteParent.parse(None) is None
    span = HandlerSpan(
        'execute "quoted" é', parent, {"iii.function.id": "f", "n": 3, "ok": True}, ended.append
    )
    span.add_event("iii.invocation.input", {"iii.payload.json": '{"a":"\\n"}', "f": 0.5, "nan": float("nan")})
    span.add_link(SpanContext(0x1, 0x2, is_remote=False), {"why": "batch"})
    span.record_exception(ValueError("nope"))
    span.set_status(StatusCode.ERROR, "nope")
    span.end()
    span.set_attribute("late", 1)  # ignored after end
    assert ended == [span]
    assert span.traceparent == f"00-{0xABC:032x}-{span.span_hex}-01"
    assert span.get_span_context().trace_id == 0xABC and span.get_span_context().span_id == int(
        span.span_hex, 16
    )
    root = HandlerSpan("root", None, {}, ended.append)
    root.end()
    payload = encode_spans(ended, RESOURCE)
    doc = json.loads(payload)  # valid JSON despite quotes, non-ASCII, NaN
    (group,) = doc["resourceSpans"]
    assert {a["key"] for a in group["resource"]["attributes"]} >= {"service.name"}
    wire = {s["name"]: s for s in group["scopeSpans"][0]["spans"]}
    first = wire['execute "quoted" é']
    assert (
        first["traceId"] == f"{0xABC:032x}"
        and first["parentSpanId"] == f"{0xDEF:016x}"
        and first["flags"] == 1
    )
    assert "parentSpanId" not in wire["root"] and len(wire["root"]["traceId"]) == 32
    parsed = {p.name: p for p in parse_spans(loads(payload)).items}
    record = parsed['execute "quoted" é'].record
    assert dict(record["attributes"]) == {"iii.function.id": "f", "n": 3, "ok": True}
    assert record["status"] == "error" and record["status_description"] == "nope"
    events = {e["name"]: dict(e["attributes"]) for e in record["events"]}
    assert events["iii.invocation.input"]["iii.payload.json"] == '{"a":"\\n"}'
    assert events["iii.invocation.input"]["f"] == 0.5
    assert events["exception"]["exception.type"] == "ValueError"
    assert record["links"] == [
        {"attributes": [["why", "batch"]], "span_id": f"{2:016x}", "trace_id": f"{1:032x}"}
    ]
    assert parsed['execute "quoted" é'].kind == 1  # INTERNAL, Python numbering 0 on the wire


def test_logs_and_metrics_round_trip():
    records: list[Any] = []

    class Keep(LogRecordProcessor):
        def on_emit(self, log_record: Any) -> None:
            records.append(log_record)

        def shutdown(self) -> None:
            pass

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return True

    provider = LoggerProvider(resource=RESOURCE)
    provider.add_log_record_processor(Keep())
    from opentelemetry._logs import SeverityNumber

    provider.get_logger("iii.logger").emit(
        severity_number=SeverityNumber.WARN,
        severity_text="WARN",
        body="hi",
        attributes={"log.data": {"a": [1, "x"]}},
    )
    payload = encode_logs(records)
    parsed = parse_logs(loads(payload))
    (stored,) = parsed.items
    assert stored["body"] == "hi" and stored["severity_number"] == 13 and stored["severity_text"] == "WARN"
    assert stored["attributes"] == {"log.data": {"a": [1, "x"]}}
    assert stored["trace_id"] is None and stored["instrumentation_scope_name"] == "iii.logger"

    reader = InMemoryMetricReader()
    meters = MeterProvider(resource=RESOURCE, metric_readers=[reader])
    meter = meters.get_meter("m")
    meter.create_counter("c").add(5, {"k": "v"})
    meter.create_histogram("h", unit="ms").record(3.0)
    meter.create_observable_gauge(
        "g", callbacks=[lambda _: [__import__("opentelemetry.metrics").metrics.Observation(2.5)]]
    )
    data = reader.get_metrics_data()
    assert data is not None
    encoded = encode_metrics(data)
    assert encoded is not None
    points = {p["name"]: p for p in parse_metrics(loads(encoded)).items}
    assert (
        points["c"]["value"] == 5 and points["c"]["type"] == "sum" and points["c"]["attributes"] == {"k": "v"}
    )
    assert points["h"]["type"] == "histogram" and points["h"]["count"] == 1 and points["h"]["sum"] == 3.0
    assert points["g"]["type"] == "gauge" and points["g"]["value"] == 2.5
    assert all(p["runtime"] == "python" and p["service_name"] == "enc" for p in points.values())
    meters.shutdown()


def test_parser_is_lenient_and_skips_malformed_items():
    good = {
        "traceId": "AQIDBAUGBwgJCgsMDQ4PEA==",
        "spanId": "AQIDBAUGBwg=",
        "name": "x",
        "kind": 2,
        "startTimeUnixNano": 5,
        "status": {"code": "STATUS_CODE_OK"},
    }
    zero = {"traceId": "0" * 32, "spanId": "1" * 16, "name": "zero trace id"}
    doc = {"resourceSpans": [{"scopeSpans": [{"spans": [good, zero, {"traceId": 3}]}]}]}
    parsed = parse_spans(doc)
    assert parsed.rejected == 2
    (span,) = parsed.items
    assert (
        span.record["trace_id"] == "0102030405060708090a0b0c0d0e0f10"
        and span.record["span_id"] == "0102030405060708"
    )
    assert span.kind == 2 and span.record["status"] == "ok"  # OTLP numbering without a python resource
    assert span.record["end_time_unix_nano"] == 5 and span.record["service_name"] == "unknown_service"
    assert parse_spans([1, 2]).rejected == 1 and parse_logs("x").rejected == 1
    with pytest.raises(ValueError):
        loads(b"{nope")
    assert (
        severity_level(13, "WARNING") == "warn"
        and severity_level(17, "") == "error"
        and severity_level(0, None) == "info"
    )


def test_payload_capture_redacts_and_cuts_on_a_character_boundary():
    assert is_sensitive("Password") and is_sensitive("refresh_token") and is_sensitive("x-api-key")
    assert not is_sensitive("monkey") and not is_sensitive("author")
    assert is_sensitive("token") and not is_sensitive("tokens_used")
    text, cut = capture({"a": [{"secret": 1}], "b": "ok"}, None)
    assert json.loads(text) == {"a": [{"secret": "[REDACTED]"}], "b": "ok"} and cut is False
    text, cut = capture("é" * 100, 21)
    assert cut is True and len(text.encode()) <= 21 and text.endswith(TRUNCATED_MARK)
    assert text[: -len(TRUNCATED_MARK)].strip('"é') == ""
    text, _ = capture({"obj": object()}, None)
    assert json.loads(text)["obj"].startswith("<object object")


def test_payload_capture_never_raises_and_never_leaks_a_secret():
    """A handler's input or result is captured after the handler ran: if capture raised, the
    caller's answer was lost (it waited for its timeout). Cycles, deep nesting, lone surrogates and
    unprintable objects are described instead, and redaction still applies."""

    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no str")

    cyclic: dict[str, Any] = {"password": "hunter2"}
    cyclic["self"] = cyclic
    deep: list[Any] = []
    node = deep
    for _ in range(3000):
        node.append([])
        node = node[0]
    deep_secret: dict[str, Any] = {"api_key": "k-123"}
    inner = deep_secret
    for _ in range(3000):
        inner["next"] = {"token": "t-456"}
        inner = inner["next"]
    values = [cyclic, deep, deep_secret, "\ud800 lone", {"\udfff": 1}, Unprintable(), [Unprintable()]]
    for value in values:
        text, _ = capture(value, None)
        text.encode("utf-8")  # valid UTF-8 text
        assert "hunter2" not in text and "k-123" not in text and "t-456" not in text
    assert "[REDACTED]" in capture(cyclic, None)[0]
    assert "ud800" in capture("\ud800 lone", None)[0]


def test_payload_capture_redacts_models_and_dataclasses():
    """A handler returning a pydantic model or a dataclass had its fields captured unredacted (the
    model was written as its ``str``): they are captured in their JSON form, as on the wire."""

    class Account(BaseModel):
        user: str
        password: str
        key: str = Field(alias="apiKey")

    @dataclasses.dataclass
    class Login:
        user: str
        access_token: str

    account = Account(user="ada", password="hunter2", apiKey="k-123")
    text, _ = capture({"accounts": [account], "login": Login("ada", "t-456")}, None)
    assert json.loads(text) == {
        "accounts": [{"user": "ada", "password": "[REDACTED]", "apiKey": "[REDACTED]"}],
        "login": {"user": "ada", "access_token": "[REDACTED]"},
    }
    assert json.loads(capture(account, None)[0])["password"] == "[REDACTED]"


def test_options_resolve_against_the_environment(monkeypatch, caplog):
    for name in ("OTEL_ENABLED", "OTEL_SERVICE_NAME", "SERVICE_VERSION", "OTEL_SPANS_FLUSH_INTERVAL_MS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("III_TOKEN", "")
    for value in ("false", "0", "No", " off "):
        monkeypatch.setenv("OTEL_ENABLED", value)
        assert resolve_otel(InitOptions(), "ws://h:1", {}).enabled is False
    monkeypatch.setenv("OTEL_ENABLED", "false")
    assert (
        resolve_otel(InitOptions(otel={"enabled": True}), "ws://h:1", {}).enabled is True
    )  # the option wins
    monkeypatch.setenv("OTEL_ENABLED", "true")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    monkeypatch.setenv("SERVICE_VERSION", "9")
    monkeypatch.setenv("OTEL_SPANS_FLUSH_INTERVAL_MS", "soon")
    with caplog.at_level(logging.WARNING, logger="iii_typed.telemetry"):
        resolved = resolve_otel(
            InitOptions(enable_metrics_reporting=False), "ws://h:1/x?t=1", {"Authorization": "B"}
        )
    assert "OTEL_SPANS_FLUSH_INTERVAL_MS='soon'" in caplog.text
    assert resolved.enabled and resolved.service_name == "from-env" and resolved.service_version == "9"
    assert resolved.spans_flush_interval_ms == 100 and resolved.logs_batch_size == 1
    assert resolved.url == "ws://h:1/x/otel?t=1" and resolved.headers == {"Authorization": "B"}
    assert resolved.metrics_reporting is False and resolved.payload_max_bytes == DEFAULT_PAYLOAD_MAX_BYTES
    explicit = resolve_otel(
        InitOptions(otel=OtelConfig(service_name="svc", engine_ws_url="ws://other:2", engine_ws_headers={})),
        "ws://h:1",
        {"A": "b"},
    )
    assert explicit.service_name == "svc" and explicit.url == "ws://other:2/otel" and explicit.headers == {}
    assert otel_url("ws://h:1/otel") == "ws://h:1/otel"
    monkeypatch.setenv("III_TRACE_PAYLOAD_MAX_BYTES", "unlimited")
    assert resolve_otel(InitOptions(), "ws://h:1", {}).payload_max_bytes is None


def test_otel_config_rejects_bad_values():
    with pytest.raises(ValueError, match="spans_flush_interval_ms"):
        OtelConfig(spans_flush_interval_ms=0)
    with pytest.raises(ValueError, match="logs_batch_size"):
        InitOptions(otel={"logs_batch_size": -1})
    with pytest.raises(TypeError, match="unknown option"):
        InitOptions(otel={"sample_rate": 1})


def test_logger_calls_never_raise_whatever_the_data(caplog):
    """``Logger.info("…", data)`` with a cyclic or very deep structure raised RecursionError, and
    an object whose ``str`` fails raised that error, into the caller (failing a handler that only
    wanted to log). The data is converted down to a bounded depth and odd objects are described."""

    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no str")

        __repr__ = __str__

    cyclic: dict[str, Any] = {"k": 1}
    cyclic["self"] = cyclic
    deep: list[Any] = []
    node = deep
    for _ in range(3000):
        node.append([])
        node = node[0]
    caplog.set_level(logging.DEBUG, logger="iii_typed.logger")
    logger = Logger("svc")
    for data in (cyclic, deep, Unprintable(), {"nested": [Unprintable()]}, "\ud800"):
        logger.info("message", data)  # the fallback path (telemetry is off in this process)
    assert len([r for r in caplog.records if r.name == "iii_typed.logger"]) == 5
    converted = _attribute_value(cyclic)  # the telemetry path's conversion
    depth = 0
    while isinstance(converted, dict) and "self" in converted:
        converted, depth = converted["self"], depth + 1
    assert converted == "[too deep]" and depth < 100
    assert _attribute_value(Unprintable()) == "<Unprintable without a text form>"
