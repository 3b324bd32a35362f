"""Trace context on the wire, seen from a scripted engine that records every frame
(protocol.md §2.9, §4.5, §8.1): the worker's result carries its handler span's ``traceparent``,
its outgoing calls carry the handler's context and baggage, and the same span reaches ``/otel``."""

from __future__ import annotations

import json
import uuid

from tests.integration.telemetry.telemetry_support import fast_otel, unique
from tests.support.fake_engine import FakeEngine
from tests.support.waiting import wait_for

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


def test_result_and_outgoing_calls_carry_the_handler_context(apps):
    tag = unique("wire")
    with FakeEngine() as fake:
        fake.functions["engine::health::check"] = lambda data: {"status": "healthy"}
        fake.functions[f"{tag}::next"] = lambda data: {"next": True}
        apps(
            {
                "url": fake.url,
                "otel": fast_otel(),
                "worker_name": tag,
                "functions": [{"id": f"{tag}::f", "mode": "sync", "call": f"{tag}::next"}],
            }
        )
        worker = next(c for c in fake.connections if c.path == "/")
        invocation_id = str(uuid.uuid4())
        fake.send(
            {
                "type": "invokefunction",
                "invocation_id": invocation_id,
                "function_id": f"{tag}::f",
                "data": {"x": 1},
                "traceparent": f"00-{TRACE_ID}-{PARENT}-01",
                "baggage": "tenant=acme,plan=pro",
            },
            conn=worker.index,
        )
        result = fake.wait_for_frame(
            lambda r: r.type == "invocationresult" and r.frame.get("invocation_id") == invocation_id,
            conn=worker.index,
        ).frame
        assert result["result"] == {"next": True}
        version, trace_id, span_id, flags = result["traceparent"].split("-")
        assert (version, trace_id, flags) == ("00", TRACE_ID, "01") and span_id != PARENT
        assert "baggage" not in result  # results carry traceparent only (protocol.md §2.9)

        outgoing = fake.wait_for_frame(
            lambda r: r.type == "invokefunction" and r.frame.get("function_id") == f"{tag}::next",
            conn=worker.index,
        ).frame
        assert outgoing["traceparent"] == f"00-{TRACE_ID}-{span_id}-01"
        assert set(outgoing["baggage"].split(",")) == {"tenant=acme", "plan=pro"}

        otel = wait_for(lambda: next((c for c in fake.connections if c.path == "/otel"), None), what="/otel")
        received = fake.wait_for_frame(
            lambda r: r.raw.startswith(b"OTLP") and span_id.encode() in r.raw, conn=otel.index
        )
        assert not received.is_text  # binary frames (protocol.md §8.1)
        doc = json.loads(received.raw[4:])
        (resource_spans,) = doc["resourceSpans"]
        resource = {a["key"]: a["value"] for a in resource_spans["resource"]["attributes"]}
        assert resource["telemetry.sdk.language"] == {"stringValue": "python"}
        spans = {s["spanId"]: s for ss in resource_spans["scopeSpans"] for s in ss["spans"]}
        span = spans[span_id]
        assert span["traceId"] == TRACE_ID and span["parentSpanId"] == PARENT and span["kind"] == 0
        attributes = {a["key"]: a["value"] for a in span["attributes"]}
        assert attributes["tenant"] == {"stringValue": "acme"} and attributes["plan"] == {
            "stringValue": "pro"
        }
        assert attributes["iii.invocation.id"] == {"stringValue": invocation_id}
        assert span["startTimeUnixNano"].isdigit() and span["status"] == {"code": 1, "message": ""}
