"""Spans the application makes inside a handler, and ``urllib`` client spans
(``fetch_instrumentation_enabled``, ``OTEL_FETCH_IGNORE_URLS``; protocol.md §8.2-§8.3)."""

from __future__ import annotations

from typing import Any

from tests.integration.telemetry.telemetry_support import fast_otel, unique
from tests.support.waiting import wait_for


def _trace_of(client: Any, name: str, count: int) -> list[dict[str, Any]]:
    def find() -> list[dict[str, Any]] | None:
        listed = client.trigger({"function_id": "engine::traces::list", "payload": {"name": name}})
        if not listed["spans"]:
            return None
        trace_id = listed["spans"][0]["trace_id"]
        spans = client.trigger({"function_id": "engine::traces::list", "payload": {"trace_id": trace_id}})[
            "spans"
        ]
        return spans if len(spans) >= count else None

    return wait_for(find, timeout=10, what=f"{count} spans in the trace of {name}")


def test_application_spans_nest_under_the_handler_span(engine, apps, query):
    tag = unique("app")
    apps(
        {
            "url": engine.url,
            "otel": fast_otel(),
            "worker_name": tag,
            "service": tag,
            "functions": [{"id": f"{tag}::f", "mode": "sync", "child": True}],
        }
    )
    client = query(engine)
    client.trigger({"function_id": f"{tag}::f", "payload": {}})
    spans = {s["name"]: s for s in _trace_of(client, f"execute {tag}::f", 2)}
    handler, child = spans[f"execute {tag}::f"], spans["child work"]
    assert child["parent_span_id"] == handler["span_id"]
    assert dict(handler["attributes"])["app.marker"] == f"{tag}::f"  # set through trace.get_current_span()
    assert dict(child["attributes"]) == {"app.step": 1}
    assert child["instrumentation_scope_name"] == "telemetry-app"
    logs = client.trigger({"function_id": "engine::logs::list", "payload": {"trace_id": handler["trace_id"]}})
    (record,) = [r for r in logs["logs"] if r["body"] == "in child"]
    assert record["span_id"] == child["span_id"]


def test_urllib_requests_get_client_spans(engine, apps, query):
    tag = unique("fetch")
    missing = f"{engine.http_url}/{tag}/missing"
    ignored = f"{engine.http_url}/{tag}/ignored"
    apps(
        {
            "url": engine.url,
            "otel": fast_otel(fetch_instrumentation_enabled=True),
            "worker_name": tag,
            "functions": [
                {"id": f"{tag}::get", "mode": "sync", "fetch": missing},
                {"id": f"{tag}::skip", "mode": "sync", "fetch": ignored},
            ],
        },
        env={"OTEL_FETCH_IGNORE_URLS": f"/{tag}/ignored"},
    )
    client = query(engine)
    assert client.trigger({"function_id": f"{tag}::get", "payload": {}}) == {"status": 404}
    assert client.trigger({"function_id": f"{tag}::skip", "payload": {}}) == {"status": 404}
    spans = {s["name"]: s for s in _trace_of(client, f"execute {tag}::get", 2)}
    get = spans["GET"]
    assert get["parent_span_id"] == spans[f"execute {tag}::get"]["span_id"]
    attributes = dict(get["attributes"])
    assert attributes["url.full"] == missing and attributes["http.response.status_code"] == 404
    assert attributes["http.request.method"] == "GET" and get["status"] == "error"
    skipped = _trace_of(client, f"execute {tag}::skip", 1)
    assert [s["name"] for s in skipped] == [f"execute {tag}::skip"]
