"""Error path (cases.md B22): a failing handler's span has status ERROR and one ``exception``
event, and the logs written on that path keep the invocation's trace id and span id."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from websockets.asyncio.client import connect

from tests.integration.telemetry.telemetry_support import fast_otel, unique
from tests.support.waiting import wait_for, wait_for_async

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"


async def _raw_call(url: str, function_id: str, traceparent: str) -> dict[str, Any]:
    """Invoke ``function_id`` over a bare socket with a ``traceparent``; return the result frame."""
    async with connect(url, compression=None) as ws:
        invocation_id = str(uuid.uuid4())
        frame = {
            "type": "invokefunction",
            "invocation_id": invocation_id,
            "function_id": function_id,
            "data": {},
            "traceparent": traceparent,
        }
        await ws.send(json.dumps(frame))
        results: list[dict[str, Any]] = []

        async def result() -> dict[str, Any] | None:
            message = json.loads(await ws.recv())
            if message.get("type") == "invocationresult" and message.get("invocation_id") == invocation_id:
                results.append(message)
            return results[0] if results else None

        return await wait_for_async(result, timeout=10, what="the invocation result")


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_failing_handler_span_and_logs_keep_the_trace(engine, apps, query, mode):
    tag = unique("err")
    bad = f"{tag}::bad"
    apps(
        {
            "url": engine.url,
            "otel": fast_otel(),
            "worker_name": tag,
            "service": tag,
            "functions": [
                {"id": bad, "mode": mode, "fail": "nope", "log": ["error", "about to fail", {"tag": tag}]}
            ],
        }
    )
    result = await _raw_call(engine.url, bad, f"00-{TRACE_ID}-{PARENT}-01")
    assert result["error"]["code"] == "invocation_failed" and result["error"]["message"] == "nope"

    client = query(engine)

    def span() -> dict[str, Any] | None:
        listed = client.trigger({"function_id": "engine::traces::list", "payload": {"trace_id": TRACE_ID}})
        found = [s for s in listed["spans"] if s["name"] == f"execute {bad}"]
        return found[0] if found else None

    failed = wait_for(span, timeout=10, what="the failed handler's span")
    assert failed["parent_span_id"] == PARENT
    assert failed["status"] == "error" and failed["status_description"] == "nope"
    exceptions = [e for e in failed["events"] if e["name"] == "exception"]
    assert len(exceptions) == 1
    assert dict(exceptions[0]["attributes"])["exception.type"] == "ValueError"
    output = [dict(e["attributes"]) for e in failed["events"] if e["name"] == "iii.invocation.output"]
    assert output == [
        {"iii.payload.json": '{"error":"nope"}', "iii.payload.truncated": False, "iii.payload.ok": False}
    ]

    def logs() -> dict[str, dict[str, Any]] | None:
        listed = client.trigger(
            {"function_id": "engine::logs::list", "payload": {"trace_id": TRACE_ID, "limit": 1000}}
        )
        found = {r["body"]: r for r in listed["logs"] if r["span_id"] == failed["span_id"]}
        return found if len(found) == 2 else None

    records = wait_for(logs, timeout=10, what="the handler's log and the SDK's error log")
    handler_log = records["about to fail"]
    sdk_log = records[f"handler of '{bad}' raised ValueError"]
    assert handler_log["severity_text"] == "ERROR" and handler_log["trace_id"] == TRACE_ID
    assert sdk_log["severity_text"] == "ERROR" and sdk_log["trace_id"] == TRACE_ID
    assert sdk_log["attributes"]["exception.type"] == "ValueError"
    assert sdk_log["attributes"]["exception.message"] == "nope"
