"""One trace across three workers (protocol.md §4.5, §8; issue 6 acceptance).

A (iii-typed, ``async def``) → B (the official ``iii-sdk`` 0.25, ``async def``) → C (iii-typed,
``def`` on a handler thread), each in a process of its own with telemetry on. The engine must
hold one trace whose tree is A → B → C, and each handler's ``Logger`` record must carry that trace
id and the span id of its own ``execute`` span.
"""

from __future__ import annotations

from typing import Any

from tests.integration.telemetry.telemetry_support import fast_otel, unique
from tests.support.waiting import wait_for


def _functions_ready(client: Any, ids: list[str]) -> bool:
    listed = client.trigger({"function_id": "engine::functions::list", "payload": {}})
    return set(ids) <= {f["function_id"] for f in listed["functions"]}


def test_a_b_c_is_one_trace_with_correlated_logs(engine, apps, query):
    tag = unique("chain")
    a, b, c = f"{tag}::a", f"{tag}::b", f"{tag}::c"
    base = {"url": engine.url, "otel": fast_otel()}
    apps(
        {
            **base,
            "worker_name": f"{tag}-c",
            "service": f"{tag}-svc-c",
            "functions": [{"id": c, "mode": "sync", "log": ["info", "in c", {"hop": "c", "tag": tag}]}],
        }
    )
    apps(
        {
            **base,
            "sdk": "official",
            "worker_name": f"{tag}-b",
            "service": f"{tag}-svc-b",
            "functions": [
                {"id": b, "mode": "async", "call": c, "log": ["info", "in b", {"hop": "b", "tag": tag}]}
            ],
        }
    )
    app_a = apps(
        {
            **base,
            "worker_name": f"{tag}-a",
            "service": f"{tag}-svc-a",
            "functions": [
                {"id": a, "mode": "async", "call": b, "log": ["warn", "in a", {"hop": "a", "tag": tag}]}
            ],
        }
    )
    client = query(engine)
    wait_for(
        lambda: _functions_ready(client, [a, b, c]), timeout=10, what="the chain's functions are registered"
    )

    result = client.trigger({"function_id": a, "payload": {"n": 1}})
    assert result == {"ok": c}

    def chain_spans() -> list[dict[str, Any]] | None:
        listed = client.trigger(
            {"function_id": "engine::traces::list", "payload": {"name": tag, "limit": 50}}
        )
        spans = [s for s in listed["spans"] if s["name"] in (f"execute {a}", f"execute {b}", f"execute {c}")]
        return spans if len(spans) == 3 else None

    spans = wait_for(chain_spans, timeout=10, what="the three execute spans reach the engine")
    by_name = {s["name"]: s for s in spans}
    trace_ids = {s["trace_id"] for s in spans}
    assert len(trace_ids) == 1, trace_ids
    trace_id = trace_ids.pop()
    span_a, span_b, span_c = by_name[f"execute {a}"], by_name[f"execute {b}"], by_name[f"execute {c}"]
    assert span_a["parent_span_id"] is None
    assert span_b["parent_span_id"] == span_a["span_id"]
    assert span_c["parent_span_id"] == span_b["span_id"]
    assert all(s["status"] == "ok" for s in spans)
    assert span_b["instrumentation_scope_name"] == "iii-python-sdk"  # B is the official SDK's span
    assert span_a["instrumentation_scope_name"] == span_c["instrumentation_scope_name"] == "iii-typed"

    tree = client.trigger({"function_id": "engine::traces::tree", "payload": {"trace_id": trace_id}})
    roots = [r for r in tree["roots"] if r["name"] == f"execute {a}"]
    assert len(roots) == 1
    (child_b,) = [n for n in roots[0]["children"] if n["name"] == f"execute {b}"]
    (child_c,) = [n for n in child_b["children"] if n["name"] == f"execute {c}"]
    assert child_c["children"] == []
    assert tree["storage"]["completeness"] in ("complete", "partial")

    def chain_logs() -> dict[str, dict[str, Any]] | None:
        listed = client.trigger({"function_id": "engine::logs::list", "payload": {"trace_id": trace_id}})
        found = {r["body"]: r for r in listed["logs"] if r["body"] in ("in a", "in b", "in c")}
        return found if len(found) == 3 else None

    logs = wait_for(chain_logs, timeout=10, what="the three handlers' log records reach the engine")
    assert logs["in a"]["span_id"] == span_a["span_id"]
    assert logs["in b"]["span_id"] == span_b["span_id"]
    assert logs["in c"]["span_id"] == span_c["span_id"]
    assert {r["trace_id"] for r in logs.values()} == {trace_id}
    assert logs["in a"]["severity_text"] == "WARN" and logs["in a"]["severity_number"] == 13
    assert logs["in c"]["attributes"]["log.data"] == {"hop": "c", "tag": tag}
    assert logs["in c"]["attributes"]["hop"] == "c"  # structured data as attributes of their own
    assert logs["in c"]["service_name"] == f"{tag}-svc-c"

    # the payload of each handler was captured on its span (input, then output)
    events = [e["name"] for e in span_c["events"]]
    assert events == ["iii.invocation.input", "iii.invocation.output"]
    output = dict(span_c["events"][1]["attributes"])
    assert output["iii.payload.ok"] is True and output["iii.payload.json"] == f'{{"ok":"{c}"}}'
    assert app_a.stats()["telemetry"]["frames_dropped"] == 0
