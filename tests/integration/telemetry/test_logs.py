"""Logs: every level with structured data, the filters of ``engine::logs::list``, the ``log``
trigger type and ``engine::log::*`` (protocol.md §6.8, §7)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from iii_typed import InvocationError
from tests.integration.telemetry.telemetry_support import fast_otel, unique
from tests.support.waiting import wait_for

PAYLOAD_KEYS = {
    "attributes",
    "body",
    "instrumentation_scope_name",
    "instrumentation_scope_version",
    "observed_timestamp_unix_nano",
    "resource",
    "service_name",
    "severity_number",
    "severity_text",
    "span_id",
    "timestamp_unix_nano",
    "trace_id",
}


class Inbox:
    """Collects trigger payloads delivered to a handler (thread-safe)."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._lock = threading.Lock()

    def __call__(self, data: Any) -> None:
        with self._lock:
            self.items.append(data)

    def of(self, service: str) -> list[Any]:
        with self._lock:
            return [i for i in self.items if i.get("service_name") == service]


def test_levels_filters_and_log_trigger(engine, apps, query):
    tag = unique("logs")
    service = f"{tag}-svc"
    client = query(engine)
    everything, errors = Inbox(), Inbox()
    client.register_function(f"{tag}::all", everything)
    client.register_function(f"{tag}::errors", errors)
    client.register_trigger({"type": "log", "function_id": f"{tag}::all", "config": {"level": "all"}})
    client.register_trigger({"type": "log", "function_id": f"{tag}::errors", "config": {"level": "error"}})
    refused = client.register_trigger(
        {"type": "log", "function_id": f"{tag}::all", "config": {"level": "loud"}}
    )
    assert refused.wait_for_error(5) is not None and "level" in refused.error.message

    app = apps(
        {
            "url": engine.url,
            "otel": fast_otel(),
            "worker_name": tag,
            "service": service,
            "functions": [
                {"id": f"{tag}::traced", "mode": "sync", "log": ["info", "traced record", {"k": "v"}]}
            ],
        }
    )
    before = app.command("logs")["at_ms"]
    client.trigger({"function_id": f"{tag}::traced", "payload": {}})

    def mine(**filters: Any) -> list[dict[str, Any]]:
        listed = client.trigger({"function_id": "engine::logs::list", "payload": {"limit": 1000, **filters}})
        return [r for r in listed["logs"] if r["service_name"] == service]

    wait_for(lambda: len(mine()) == 5, timeout=10, what="five records stored")
    records = {r["body"]: r for r in mine()}
    levels = {body: (r["severity_number"], r["severity_text"]) for body, r in records.items()}
    assert levels == {
        "debug record": (5, "DEBUG"),
        "info record": (9, "INFO"),
        "warn record": (13, "WARN"),
        "error record": (17, "ERROR"),
        "traced record": (9, "INFO"),
    }
    error = records["error record"]
    assert error["attributes"]["log.data"] == {"level": "error", "n": 4}
    assert error["attributes"]["n"] == 4 and error["attributes"]["service.name"] == service
    assert error["trace_id"] is None and error["span_id"] is None  # logged outside any span
    assert error["resource"]["telemetry.sdk.name"] == "iii-typed"
    traced = records["traced record"]
    assert traced["trace_id"] is not None and len(traced["trace_id"]) == 32

    # filters: severity, level text, trace id, time range, paging
    assert {r["body"] for r in mine(severity_min=13)} == {"warn record", "error record"}
    assert [r["body"] for r in mine(severity_text="warn")] == ["warn record"]
    assert [r["body"] for r in mine(trace_id=traced["trace_id"])] == ["traced record"]
    stamp_ms = error["timestamp_unix_nano"] // 1_000_000
    assert "error record" in {r["body"] for r in mine(start_time=stamp_ms, end_time=stamp_ms + 1)}
    assert mine(end_time=before - 60_000) == []
    page = client.trigger(
        {
            "function_id": "engine::logs::list",
            "payload": {"trace_id": traced["trace_id"], "limit": 1, "offset": 0},
        }
    )
    assert page["total"] == 1 and page["query"] == {"limit": 1, "offset": 0, "trace_id": traced["trace_id"]}
    assert list(page) == ["logs", "query", "timestamp", "total"]
    newest_first = [r["timestamp_unix_nano"] for r in mine()]
    assert newest_first == sorted(newest_first, reverse=True)

    # the log trigger: "all" gets every record, "error" only the error one
    wait_for(lambda: len(everything.of(service)) == 5, timeout=10, what="log trigger (all) fired 5 times")
    wait_for(lambda: len(errors.of(service)) == 1, timeout=10, what="log trigger (error) fired once")
    delivered = errors.of(service)[0]
    assert set(delivered) == PAYLOAD_KEYS
    assert delivered["body"] == "error record" and delivered["severity_text"] == "ERROR"
    assert {d["body"] for d in everything.of(service)} == set(records)


def test_engine_log_functions(engine, query):
    client = query(engine)
    tag = unique("elog")
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    for level in ("trace", "debug", "info", "warn", "error"):
        assert (
            client.trigger(
                {
                    "function_id": f"engine::log::{level}",
                    "payload": {"message": f"{tag} {level}", "data": {"tag": tag}, "service_name": tag},
                }
            )
            is None
        )
    client.trigger(
        {
            "function_id": "engine::log::info",
            "payload": {
                "message": f"{tag} traced",
                "trace_id": trace_id,
                "span_id": "b7ad6b7169203331",
                "service_name": tag,
            },
        }
    )
    listed = client.trigger({"function_id": "engine::logs::list", "payload": {"limit": 1000}})
    mine = {r["body"]: r for r in listed["logs"] if r["service_name"] == tag}
    assert {body: r["severity_number"] for body, r in mine.items()} == {
        f"{tag} trace": 1,
        f"{tag} debug": 5,
        f"{tag} info": 9,
        f"{tag} warn": 13,
        f"{tag} error": 17,
        f"{tag} traced": 9,
    }
    assert mine[f"{tag} info"]["attributes"] == {"log.data": {"tag": tag}, "tag": tag}
    assert (
        mine[f"{tag} traced"]["trace_id"] == trace_id
        and mine[f"{tag} traced"]["span_id"] == "b7ad6b7169203331"
    )
    with pytest.raises(InvocationError) as bad:
        client.trigger({"function_id": "engine::log::info", "payload": {"message": "x", "trace_id": "nope"}})
    assert bad.value.code == "INVALID_ARGUMENTS" and "trace_id" in bad.value.message
    with pytest.raises(InvocationError) as missing:
        client.trigger({"function_id": "engine::log::info", "payload": {"data": 1}})
    assert missing.value.code == "deserialization_error"
