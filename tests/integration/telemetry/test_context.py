"""Context handling of handler spans (cases.md B21): no "Failed to detach context", no span left
current on the SDK loop, each invocation span ended exactly once — async handlers that spawn
tasks, sync handlers on threads, and async handlers that are cancelled."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from iii_typed import InvocationError
from tests.integration.telemetry.telemetry_support import fast_otel, unique
from tests.support.waiting import wait_for


def test_no_detach_errors_no_leaked_span(engine, apps, query):
    tag = unique("ctx")
    spawner, plain, cancelled = f"{tag}::spawn", f"{tag}::sync", f"{tag}::cancel"
    app = apps(
        {
            "url": engine.url,
            "otel": fast_otel(),
            "worker_name": tag,
            "functions": [
                {"id": spawner, "mode": "async", "spawn": True, "sleep_ms": 1},
                {"id": plain, "mode": "sync"},
                {"id": cancelled, "mode": "async", "cancel": True},
            ],
        }
    )
    client = query(engine)

    async def burst() -> list[Any]:
        calls = [client.trigger_async({"function_id": spawner, "payload": {"i": i}}) for i in range(50)]
        calls += [client.trigger_async({"function_id": plain, "payload": {"i": i}}) for i in range(40)]
        calls += [
            client.trigger_async({"function_id": cancelled, "payload": {"i": i}, "timeout_ms": 500})
            for i in range(10)
        ]
        return await asyncio.gather(*calls, return_exceptions=True)

    results = asyncio.run(burst())
    assert results[:90] == [{"ok": spawner}] * 50 + [{"ok": plain}] * 40
    assert all(isinstance(r, InvocationError) and r.code == "TIMEOUT" for r in results[90:])

    def spans() -> list[dict[str, Any]] | None:
        listed = client.trigger(
            {"function_id": "engine::traces::list", "payload": {"name": tag, "limit": 1000}}
        )
        found = listed["spans"]
        return found if len(found) >= 100 else None

    found = wait_for(spans, timeout=10, what="100 invocation spans")
    assert len(found) == 100
    assert len({s["span_id"] for s in found}) == 100  # each span ended (exported) exactly once
    assert Counter(s["name"] for s in found) == {
        f"execute {spawner}": 50,
        f"execute {plain}": 40,
        f"execute {cancelled}": 10,
    }
    assert len({s["trace_id"] for s in found}) == 100  # every call started a trace of its own
    for span in found:
        if span["name"] == f"execute {cancelled}":
            assert span["status"] == "error" and "CancelledError" in span.get("status_description", "")
        else:
            assert span["status"] == "ok"

    stats = app.stats()
    assert stats["detach_errors"] == 0
    assert stats["loop_span_valid"] is False
