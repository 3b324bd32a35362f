"""A deterministic demo session (every screen has data, plus malformed records).

``python -m tests.tui.sessions`` rewrites ``tests/tui/data/session.jsonl``; a test checks the
committed file equals :func:`build_events`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from iii_tui.session import write_session
from iii_tui.store import Event

__all__ = ["SESSION", "T0", "build_events", "span"]

T0 = 1_800_000_000.0
SESSION = Path(__file__).parent / "data" / "session.jsonl"
W1 = "4f6c2a1e-8b1d-4c55-9a51-6f0e2b7c9d11"
W2 = "9b3e7d20-1c4a-4e6f-8d2b-3a5c7e9f1b22"
LONG_ID = "orders::" + "very-long-function-name-" * 8 + "end"


def span(
    trace: str,
    sid: str,
    name: str,
    start_ms: float,
    dur_ms: float | None,
    status: str = "ok",
    parent: str | None = None,
    service: str = "orders-worker",
    error: str | None = None,
) -> dict[str, Any]:
    """A StoredSpan (protocol.md §7)."""
    start = int((T0 + start_ms / 1000) * 1e9)
    rec: dict[str, Any] = {
        "trace_id": trace,
        "span_id": sid,
        "parent_span_id": parent,
        "name": name,
        "start_time_unix_nano": start,
        "end_time_unix_nano": None if dur_ms is None else start + int(dur_ms * 1e6),
        "status": status,
        "attributes": [["iii.function_id", name], ["iii.worker", service]],
        "service_name": service,
        "events": [],
        "links": [],
    }
    if error:
        rec["status_description"] = error
    if dur_ms is None:
        rec["pending"] = True
    return rec


def build_events() -> list[Event]:
    """Every event of the demo session, in order."""
    ev: list[Event] = []

    def add(offset: float, kind: str, data: Any) -> None:
        ev.append(Event(round(T0 + offset, 6), kind, data))

    add(0, "conn", {"state": "connecting", "url": "ws://127.0.0.1:49134"})
    add(0.05, "conn", {"state": "connected", "url": "ws://127.0.0.1:49134"})
    add(
        0.1,
        "health",
        {
            "status": "healthy",
            "version": "0.1.0",
            "timestamp": 1,
            "components": {
                n: {"status": "healthy", "details": None} for n in ("logs", "metrics", "otel", "spans")
            },
        },
    )
    functions = [
        {
            "function_id": "orders::create",
            "namespace": "default",
            "worker_name": "orders-worker",
            "description": "Create an order",
        },
        {"function_id": "orders::get", "namespace": "default", "worker_name": "orders-worker"},
        {"function_id": "orders::cancel", "namespace": "default", "worker_name": "orders-worker"},
        {
            "function_id": "billing::charge",
            "namespace": "default",
            "worker_name": "billing",
            "description": "Charge a card\x1b[31m (escape codes are shown, not run)",
        },
        {"function_id": LONG_ID, "namespace": "default", "worker_name": "orders-worker"},
        {"function_id": "engine::workers::list", "namespace": "default", "worker_name": "engine"},
        {"namespace": "default"},  # malformed: no function_id
    ]
    add(0.2, "functions", {"functions": functions})
    add(
        0.25,
        "function_info",
        {
            "function_id": "orders::create",
            "namespace": "default",
            "worker_name": "orders-worker",
            "registered_triggers": [
                {"id": "t-http", "trigger_type": "http", "config": {"api_path": "/orders"}}
            ],
            "request_schema": {
                "type": "object",
                "required": ["item"],
                "properties": {
                    "item": {"type": "string", "description": "what to order"},
                    "qty": {"type": "integer", "default": 1, "minimum": 1},
                    "speed": {"enum": ["standard", "express"], "default": "standard"},
                },
            },
            "response_schema": {"type": "object", "properties": {"id": {"type": "string"}}},
        },
    )
    workers = [
        {
            "id": "iii-state",
            "name": "iii-state",
            "runtime": "engine",
            "version": "0.1.0",
            "status": "available",
            "function_count": 6,
            "active_invocations": 0,
            "connected_at_ms": int(T0 * 1000) - 60_000,
            "namespace": "default",
            "isolation": "in-process",
            "os": None,
            "ip_address": None,
            "description": None,
        },
        {
            "id": W1,
            "name": "orders-worker",
            "runtime": "python",
            "version": "0.1.0",
            "status": "connected",
            "function_count": 4,
            "active_invocations": 1,
            "connected_at_ms": int(T0 * 1000) - 3_600_000,
            "namespace": "default",
            "isolation": None,
            "os": "Linux",
            "ip_address": "127.0.0.1",
            "description": None,
        },
        {
            "id": W2,
            "name": "billing",
            "runtime": "python",
            "version": "0.1.0",
            "status": "connected",
            "function_count": 1,
            "active_invocations": 0,
            "connected_at_ms": int(T0 * 1000) - 120_000,
            "namespace": "default",
            "isolation": None,
            "os": "Linux",
            "ip_address": "127.0.0.1",
            "description": None,
        },
        {"name": None},  # malformed: no id
    ]
    add(0.3, "workers", {"workers": workers})
    for i in range(6):
        add(
            0.3 + i,
            "worker_info",
            {
                "worker": {
                    **workers[1],
                    "pid": 4242,
                    "internal": False,
                    "latest_metrics": {
                        "cpu_percent": [3.0, 12.5, 40.0, 22.0, 8.0, 15.5][i],
                        "memory_rss": 48_000_000 + i * 1_000_000,
                        "event_loop_lag_ms": [0.5, 0.7, 2.0, 1.1, 0.4, 0.6][i],
                        "timestamp_ms": int(T0 * 1000) + i * 1000,
                        "runtime": "python",
                    },
                },
                "functions": [
                    {"function_id": f} for f in ("orders::create", "orders::get", "orders::cancel")
                ],
                "registered_triggers": [],
                "trigger_types": [],
            },
        )
    add(
        0.4,
        "triggers",
        {
            "registered_triggers": [
                {
                    "id": "t-http",
                    "trigger_type": "http",
                    "function_id": "orders::create",
                    "worker_name": "orders-worker",
                    "config": {"api_path": "/orders", "http_method": "POST"},
                    "config_summary": '{"api_path":"/orders","http_method":"POST"}',
                    "status": "active",
                },
                {
                    "id": "t-cron",
                    "trigger_type": "cron",
                    "function_id": "billing::charge",
                    "worker_name": "billing",
                    "config": {"expression": "0 */5 * * * *"},
                    "config_summary": '{"expression":"0 */5 * * * *"}',
                    "status": "active",
                },
                {
                    "id": "t-parked",
                    "trigger_type": "webhook",
                    "function_id": "orders::get",
                    "worker_name": "orders-worker",
                    "config": {},
                    "config_summary": "{}",
                    "status": "pending",
                },
            ]
        },
    )
    add(
        0.45,
        "trigger_types",
        {
            "triggers": [
                {
                    "id": "http",
                    "worker_name": "iii-http",
                    "description": "HTTP requests",
                    "namespace": "default",
                },
                {
                    "id": "cron",
                    "worker_name": "iii-cron",
                    "description": "Cron schedules",
                    "namespace": "default",
                },
                {
                    "id": "engine::functions-available",
                    "worker_name": "iii-engine-functions",
                    "description": "Registry changes",
                    "namespace": "default",
                },
            ]
        },
    )
    add(
        0.5,
        "metrics",
        {
            "engine_metrics": {
                "invocations": {"total": 40, "success": 36, "error": 4, "deferred": 0, "by_function": {}},
                "workers": {"spawns": 3, "deaths": 0, "active": 3},
                "performance": {
                    "avg_duration_ms": 12.0,
                    "p50_duration_ms": 8.0,
                    "p95_duration_ms": 40.0,
                    "p99_duration_ms": 80.0,
                    "min_duration_ms": 1.0,
                    "max_duration_ms": 90.0,
                },
            }
        },
    )
    # 40 invocations over 20 s; every 10th fails; the last is still running
    for i in range(40):
        trace = f"{i + 1:032x}"
        name = ("orders::create", "orders::get", "billing::charge")[i % 3]
        dur = None if i == 39 else float(5 + (i * 7) % 50)
        status = "error" if i % 10 == 9 else "ok"
        spans = [
            span(
                trace,
                f"{i + 1:016x}",
                name,
                1000 + i * 500,
                dur,
                status,
                service="billing" if name.startswith("billing") else "orders-worker",
                error="card declined" if status == "error" else None,
            )
        ]
        if i == 37:
            spans += [
                span(
                    trace,
                    "c1",
                    "billing::charge",
                    1000 + i * 500 + 2,
                    20.0,
                    "ok",
                    parent=f"{i + 1:016x}",
                    service="billing",
                ),
                span(
                    trace, "c2", "state::set", 1000 + i * 500 + 5, 3.0, "ok", parent="c1", service="iii-state"
                ),
                span(
                    trace,
                    "c3",
                    "orders::notify",
                    1000 + i * 500 + 24,
                    8.0,
                    "error",
                    parent=f"{i + 1:016x}",
                    error="smtp down",
                ),
            ]
        add(1 + i * 0.5, "spans", {"spans": spans})
    add(20.5, "spans", {"spans": [{"trace_id": 5}, "not a span", {"span_id": "x"}]})  # malformed
    levels = [(9, "INFO"), (13, "WARN"), (17, "ERROR"), (5, "DEBUG")]
    logs = []
    for i in range(30):
        sev, text = levels[i % 4]
        logs.append(
            {
                "timestamp_unix_nano": int((T0 + 1 + i * 0.6) * 1e9),
                "observed_timestamp_unix_nano": 0,
                "severity_number": sev,
                "severity_text": text,
                "body": f"order {i} processed",
                "attributes": {},
                "trace_id": f"{(i % 40) + 1:032x}",
                "span_id": f"{(i % 40) + 1:016x}",
                "resource": {},
                "service_name": "orders-worker",
            }
        )
    logs.append(
        {
            "timestamp_unix_nano": int((T0 + 19) * 1e9),
            "severity_number": 17,
            "body": "bad bytes \udcff\udcfe here",
            "service_name": "billing",
        }
    )
    logs.append(
        {
            "timestamp_unix_nano": int((T0 + 19.1) * 1e9),
            "severity_number": 13,
            "body": "huge " + "x" * 100_000,
            "service_name": "billing",
        }
    )
    logs.append(
        {
            "timestamp_unix_nano": int((T0 + 19.2) * 1e9),
            "severity_text": "INFO",
            "body": "ansi \x1b[2J\x1b[31mred\x1b[0m and\nnewline",
            "service_name": "billing",
        }
    )
    logs.append({"body": {"structured": True, "n": 1}})  # missing every other field
    add(20.6, "logs", {"logs": logs})
    add(
        20.7,
        "channels",
        {
            "channels": [
                {
                    "channel_id": "0c8e7f6a-1b2c-4d3e-9f8a-7b6c5d4e3f21",
                    "state": "open",
                    "reader_connected": True,
                    "writer_connected": True,
                    "messages": 12,
                    "bytes": 786_432,
                    "owner_worker_name": "orders-worker",
                    "created_at_ms": int(T0 * 1000) + 5000,
                },
                {
                    "channel_id": "5d4c3b2a-1f0e-4d9c-8b7a-6f5e4d3c2b10",
                    "state": "waiting",
                    "reader_connected": False,
                    "writer_connected": True,
                    "messages": 0,
                    "bytes": 0,
                    "created_at_ms": int(T0 * 1000) + 15_000,
                },
            ]
        },
    )
    add(
        20.8,
        "streams",
        {
            "count": 2,
            "stream": [
                {"id": "chat", "groups": ["room-1", "room-2"]},
                {"id": "presence", "groups": ["lobby"]},
            ],
        },
    )
    add(20.85, "state_groups", {"groups": ["carts", "sessions"]})
    add(
        20.86,
        "state_items",
        {"scope": "carts", "items": [{"id": "c1", "total": 10}, {"id": "c2", "total": 3}]},
    )
    add(
        20.9,
        "queues",
        {
            "topics": [
                {"topic": "emails", "depth": 3, "consumers": 2},
                {"topic": "invoices", "depth": 0, "consumers": 1},
            ]
        },
    )
    add(20.92, "dlq", {"topics": [{"topic": "emails", "count": 2}]})
    add(
        20.95,
        "dlq_messages",
        {
            "topic": "emails",
            "messages": [
                {
                    "message_id": "m-1",
                    "attempts": 3,
                    "error": "smtp timeout",
                    "payload": {"to": "a@example.com"},
                },
                {"message_id": "m-2", "attempts": 3, "error": "bounced", "payload": {"to": "b@example.com"}},
            ],
        },
    )
    add(21.0, "registry", {"event": "worker_connected", "worker_id": W2})
    return ev


if __name__ == "__main__":
    write_session(SESSION, build_events(), url="ws://127.0.0.1:49134")
    print(f"wrote {SESSION}")
