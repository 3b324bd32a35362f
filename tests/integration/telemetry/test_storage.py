"""Bounded storage, SQLite persistence and the optional OTLP export of the engine's telemetry
(``[observability]`` table; protocol.md §7)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from iii_typed.engine.process import EngineStartError
from tests.integration.telemetry.telemetry_support import unique
from tests.integration.telemetry.test_ingest import _frame, _hex, _send, python_span
from tests.support.waiting import wait_for, wait_for_async


def _config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "engine.toml"
    path.write_text(body, encoding="utf-8")
    return path


def _log_doc(service: str, body: str) -> dict[str, Any]:
    now = time.time_ns()
    record = {
        "timeUnixNano": str(now),
        "severityNumber": 17,
        "severityText": "ERROR",
        "body": {"stringValue": body},
    }
    return {
        "resourceLogs": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
                "scopeLogs": [{"scope": {"name": "t"}, "logRecords": [record]}],
            }
        ]
    }


async def test_ring_buffer_bound_and_sqlite_persistence(engine_factory, tmp_path, query):
    config = _config(tmp_path, "[observability]\npersist = true\nmemory_max_spans = 5\nlogs_max_count = 3\n")
    engine = engine_factory(data_dir=tmp_path / "data", config=config)
    service = unique("per")
    ids = [_hex(8) for _ in range(8)]
    now = time.time_ns()
    frames = [
        _frame(b"OTLP", python_span(service, f"s{i}", trace_id=_hex(16), span_id=span_id, start=now + i))
        for i, span_id in enumerate(ids)
    ]
    frames += [_frame(b"LOGS", _log_doc(service, f"log {i}")) for i in range(5)]
    await _send(engine.url, *frames)
    client = query(engine)

    def listed() -> dict[str, Any]:
        return dict(client.trigger({"function_id": "engine::traces::list", "payload": {}}))

    result = wait_for(lambda: (r := listed())["storage"]["known_dropped_spans"] == 3 and r, what="eviction")
    assert [s["span_id"] for s in result["spans"]] == ids[3:]
    assert result["storage"]["completeness"] == "partial" and result["storage"]["archive"] == "sqlite"
    assert result["storage"]["physical_bytes"] > 0
    logs = client.trigger({"function_id": "engine::logs::list", "payload": {}})["logs"]
    assert [r["body"] for r in logs] == ["log 4", "log 3", "log 2"]
    client.shutdown()

    engine.restart()
    client = query(engine)
    after = client.trigger({"function_id": "engine::traces::list", "payload": {}})
    assert [s["span_id"] for s in after["spans"]] == ids[3:]
    assert [
        r["body"] for r in client.trigger({"function_id": "engine::logs::list", "payload": {}})["logs"]
    ] == [
        "log 4",
        "log 3",
        "log 2",
    ]
    client.trigger({"function_id": "engine::logs::clear", "payload": {}})
    client.shutdown()
    engine.restart()
    client = query(engine)
    assert client.trigger({"function_id": "engine::logs::list", "payload": {}})["total"] == 0


def test_bad_observability_settings_stop_the_engine(engine_factory, tmp_path):
    with pytest.raises(EngineStartError) as failed:
        engine_factory(config=_config(tmp_path, '[observability]\nexporter = "disk"\n'))
    assert "[observability] exporter" in str(failed.value)
    with pytest.raises(EngineStartError) as unknown:
        engine_factory(config=_config(tmp_path, "[observability]\nmax_spans = 5\n"))
    assert "unknown key 'max_spans'" in str(unknown.value)


async def test_otlp_export_to_a_collector(engine_factory, tmp_path, query):
    received: dict[str, list[Any]] = {"/v1/traces": [], "/v1/logs": [], "/v1/metrics": []}

    async def collect(request: web.Request) -> web.Response:
        assert request.content_type == "application/json"
        assert request.headers.get("x-api-key") == "k"
        received[request.path].append(json.loads(await request.read()))
        return web.json_response({})

    app = web.Application()
    for path in received:
        app.router.add_post(path, collect)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        config = _config(
            tmp_path,
            f'[observability]\nexporter = "both"\nendpoint = "http://127.0.0.1:{port}"\n'
            'export_interval_ms = 100\nheaders = {"x-api-key" = "k"}\n',
        )
        engine = await asyncio.to_thread(engine_factory, config=config)
        service = unique("exp")
        trace_id, span_id = _hex(16), _hex(8)
        await _send(
            engine.url,
            _frame(b"OTLP", python_span(service, "execute x", trace_id=trace_id, span_id=span_id, kind=1)),
            _frame(b"LOGS", _log_doc(service, "exported log")),
        )
        client = await asyncio.to_thread(query, engine)
        await client.trigger_async({"function_id": "engine::health::check", "payload": {}})

        def spans() -> list[Any]:
            return [
                span
                for body in received["/v1/traces"]
                for rs in body["resourceSpans"]
                for ss in rs["scopeSpans"]
                for span in ss["spans"]
                if span["traceId"] == trace_id
            ]

        (span,) = await wait_for_async(spans, what="the span reaches the collector")
        assert span["spanId"] == span_id and span["kind"] == 2  # Python SERVER (1) is OTLP SERVER (2)
        assert span["startTimeUnixNano"].isdigit()
        await wait_for_async(
            lambda: any(
                r["body"] == {"stringValue": "exported log"}
                for body in received["/v1/logs"]
                for rl in body["resourceLogs"]
                for sl in rl["scopeLogs"]
                for r in sl["logRecords"]
            ),
            what="the log reaches the collector",
        )
        names = await wait_for_async(
            lambda: (
                {
                    m["name"]
                    for body in received["/v1/metrics"]
                    for rm in body["resourceMetrics"]
                    for sm in rm["scopeMetrics"]
                    for m in sm["metrics"]
                }
                >= {
                    "iii.invocations.total",
                    "iii.invocation.duration",
                    "iii.invocation.errors.total",
                    "iii.workers.active",
                }
            ),
            what="the engine's metrics reach the collector",
        )
        assert names
        health = await client.trigger_async({"function_id": "engine::health::check", "payload": {}})
        assert health["components"]["otel"]["details"]["exporter"] == "Some(Both)"
        stored = await client.trigger_async(
            {"function_id": "engine::traces::list", "payload": {"trace_id": trace_id}}
        )
        assert len(stored["spans"]) == 1  # "both" keeps the in-memory store too
    finally:
        await runner.cleanup()
