"""Metrics: worker resource gauges in ``engine::workers::info.latest_metrics``, application
metrics and the engine's own invocation metrics in ``engine::metrics::list`` (protocol.md §7, §8.2)."""

from __future__ import annotations

import time
from typing import Any

from tests.integration.telemetry.telemetry_support import fast_otel, unique
from tests.support.waiting import wait_for

INTERVAL_MS = 300


def _latest(client: Any, name: str) -> dict[str, Any] | None:
    info = client.trigger({"function_id": "engine::workers::info", "payload": {"name": name}})
    latest: dict[str, Any] | None = info["worker"].get("latest_metrics")
    return latest


def test_worker_metrics_appear_within_the_interval(engine, apps, query):
    tag = unique("mtr")
    client = query(engine)
    app = apps(
        {"url": engine.url, "otel": fast_otel(metrics_export_interval_ms=INTERVAL_MS), "worker_name": tag}
    )
    started = time.monotonic()
    first = wait_for(lambda: _latest(client, tag), timeout=5, what="latest_metrics of the worker")
    assert time.monotonic() - started < 2 * INTERVAL_MS / 1000 + 1.0
    assert set(first) >= {
        "cpu_percent",
        "cpu_user_micros",
        "cpu_system_micros",
        "memory_rss",
        "event_loop_lag_ms",
        "uptime_seconds",
        "timestamp_ms",
        "runtime",
    }
    assert first["runtime"] == "python" and first["memory_rss"] > 10_000_000
    assert first["event_loop_lag_ms"] >= 0 and first["uptime_seconds"] >= 0
    assert abs(first["timestamp_ms"] - time.time() * 1000) < 60_000
    # reported again every interval
    wait_for(
        lambda: (_latest(client, tag) or {}).get("timestamp_ms", 0) > first["timestamp_ms"],
        timeout=5 * INTERVAL_MS / 1000 + 2,
        what="a newer report",
    )
    assert app.stats()["telemetry"]["metrics_sent"] >= 2


def test_metrics_reporting_off_and_application_metrics(engine, apps, query):
    tag = unique("mtroff")
    client = query(engine)
    apps(
        {
            "url": engine.url,
            "otel": fast_otel(metrics_export_interval_ms=INTERVAL_MS, service_name=tag),
            "options": {"enable_metrics_reporting": False},
            "worker_name": tag,
            "counter": True,
            "functions": [{"id": f"{tag}::f", "mode": "sync"}],
        }
    )

    def app_points() -> list[dict[str, Any]]:
        listed = client.trigger(
            {"function_id": "engine::metrics::list", "payload": {"metric_name": "app.requests"}}
        )
        return [p for p in listed["sdk_metrics"] if p["service_name"] == tag]

    (point, *_) = wait_for(app_points, timeout=5, what="the application counter reaches the engine")
    assert point["type"] == "sum" and point["value"] == 3 and point["is_monotonic"] is True
    assert point["attributes"] == {"route": "/x"}
    # the frames carrying the counter would carry the gauges too: none were reported
    assert _latest(client, tag) is None

    for _ in range(3):
        client.trigger({"function_id": f"{tag}::f", "payload": {}})
    since = int(time.time() * 1000) - 60_000
    listed = client.trigger(
        {"function_id": "engine::metrics::list", "payload": {"start_time": since, "aggregate_interval": 60}}
    )
    assert listed["query"] == {"aggregate_interval": 60, "start_time": since}
    invocations = listed["engine_metrics"]["invocations"]
    assert invocations["by_function"][f"{tag}::f"] == 3
    assert invocations["total"] >= invocations["success"] >= 3
    performance = listed["engine_metrics"]["performance"]
    assert (
        0
        <= performance["min_duration_ms"]
        <= performance["p50_duration_ms"]
        <= performance["max_duration_ms"]
    )
    assert listed["engine_metrics"]["workers"]["active"] >= 2
    assert any(row["metric_name"] == "app.requests" for row in listed["aggregated_metrics"])
