"""Telemetry off (``OTEL_ENABLED=false`` or ``OtelConfig(enabled=False)``): nothing reaches
``/otel``, ``Logger`` writes to ``logging``, OpenTelemetry is not even imported, and no thread is
left after shutdown. With telemetry on, shutdown leaves no thread either (the process-global
providers stay, their socket and thread do not)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.telemetry.telemetry_support import fast_otel, unique


def _otel_stats(client: Any) -> dict[str, Any]:
    stats: dict[str, Any] = client.trigger({"function_id": "engine::observability::stats", "payload": {}})
    return stats


@pytest.mark.parametrize("how", ["env", "option"])
def test_off_sends_nothing_and_falls_back_to_logging(fresh_engine, apps, query, how):
    tag = unique("off")
    config: dict[str, Any] = {
        "url": fresh_engine.url,
        "worker_name": tag,
        "service": tag,
        "functions": [{"id": f"{tag}::f", "mode": "sync", "log": ["info", "inside", {"k": 1}]}],
    }
    env = {"OTEL_ENABLED": "false"} if how == "env" else {"OTEL_ENABLED": "true"}
    if how == "option":
        config["otel"] = {"enabled": False}
    app = apps(config, env=env)
    client = query(fresh_engine)
    assert client.trigger({"function_id": f"{tag}::f", "payload": {}}) == {"ok": f"{tag}::f"}
    app.command("logs")
    stats = app.stats()
    assert stats["otel_imported"] is False
    assert stats["telemetry"] == {"connected": False, "clients": 0}
    fallback = [(r["level"], r["message"], r["data"]) for r in stats["fallback"]]
    assert fallback == [
        ("INFO", f"[{tag}] inside {{'k': 1}}", {"k": 1}),
        ("DEBUG", f"[{tag}] debug record {{'level': 'debug', 'n': 1}}", {"level": "debug", "n": 1}),
        ("INFO", f"[{tag}] info record {{'level': 'info', 'n': 2}}", {"level": "info", "n": 2}),
        ("WARNING", f"[{tag}] warn record {{'level': 'warn', 'n': 3}}", {"level": "warn", "n": 3}),
        ("ERROR", f"[{tag}] error record {{'level': 'error', 'n': 4}}", {"level": "error", "n": 4}),
    ]
    stopped = app.stop()
    assert stopped["threads"] == ["MainThread"]
    engine_side = _otel_stats(client)
    assert engine_side["connections_total"] == 0
    assert not any(key.startswith("frames_") for key in engine_side["counters"])
    assert engine_side["stored"]["logs"] == 0 and engine_side["stored"]["spans"] == 0


def test_on_leaves_no_thread_after_shutdown(fresh_engine, apps, query):
    tag = unique("on")
    app = apps(
        {
            "url": fresh_engine.url,
            "otel": fast_otel(),
            "worker_name": tag,
            "functions": [{"id": f"{tag}::f", "mode": "sync"}],
        }
    )
    client = query(fresh_engine)
    client.trigger({"function_id": f"{tag}::f", "payload": {}})
    running = app.stats()["threads"]
    assert any(name.startswith("iii-otel") for name in running)
    stopped = app.stop()
    assert stopped["threads"] == ["MainThread"]
    engine_side = _otel_stats(client)
    assert engine_side["connections_total"] == 1 and engine_side["connections"] == 0
    assert engine_side["counters"]["frames_OTLP"] >= 1  # the handler span was flushed at shutdown
