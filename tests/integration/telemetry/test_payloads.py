"""Payload capture on handler spans: redaction, the size cap, and turning it off
(``III_TRACE_PAYLOAD_MAX_BYTES``, ``III_DISABLE_TRACE_PAYLOADS``; protocol.md §8.2)."""

from __future__ import annotations

import json
from typing import Any

from tests.integration.telemetry.telemetry_support import fast_otel, unique
from tests.support.waiting import wait_for


def _span(client: Any, function_id: str) -> dict[str, Any]:
    def find() -> dict[str, Any] | None:
        listed = client.trigger({"function_id": "engine::traces::list", "payload": {"name": function_id}})
        return listed["spans"][0] if listed["spans"] else None

    return wait_for(find, timeout=10, what=f"the span of {function_id}")


def _events(span: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: dict(e["attributes"]) for e in span["events"]}


def test_payloads_are_redacted_and_capped(engine, apps, query):
    tag = unique("pay")
    apps(
        {
            "url": engine.url,
            "otel": fast_otel(),
            "worker_name": tag,
            "functions": [{"id": f"{tag}::f", "mode": "sync"}],
        },
        env={"III_TRACE_PAYLOAD_MAX_BYTES": "120"},
    )
    client = query(engine)
    payload = {
        "user": "ada",
        "password": "hunter2",
        "nested": {"api_key": "k", "Auth_Token": "t"},
        "pad": "é" * 200,
    }
    client.trigger({"function_id": f"{tag}::f", "payload": payload})
    events = _events(_span(client, f"{tag}::f"))
    captured = events["iii.invocation.input"]
    text = captured["iii.payload.json"]
    assert captured["iii.payload.truncated"] is True
    assert len(text.encode()) <= 120 and text.endswith("…[truncated]")
    assert "hunter2" not in text and '"password":"[REDACTED]"' in text
    assert '"api_key":"[REDACTED]","Auth_Token":"[REDACTED]"' in text
    output = events["iii.invocation.output"]
    assert json.loads(output["iii.payload.json"]) == {"ok": f"{tag}::f"} and output["iii.payload.ok"] is True


def test_payload_capture_can_be_turned_off(engine, apps, query):
    tag = unique("nopay")
    apps(
        {
            "url": engine.url,
            "otel": fast_otel(),
            "worker_name": tag,
            "functions": [{"id": f"{tag}::f", "mode": "async"}],
        },
        env={"III_DISABLE_TRACE_PAYLOADS": "true"},
    )
    client = query(engine)
    client.trigger({"function_id": f"{tag}::f", "payload": {"secret": "s"}})
    span = _span(client, f"{tag}::f")
    assert span["events"] == [] and span["status"] == "ok"
