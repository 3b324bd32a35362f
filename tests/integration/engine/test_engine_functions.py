"""``engine::*`` results have the shapes of protocol.md §7 (validated against schema/engine models too)."""

from __future__ import annotations

import os

from engine_raw import unique

from iii_typed.protocol._generated import engine as models

SUMMARY_KEYS = {
    "active_invocations",
    "connected_at_ms",
    "description",
    "function_count",
    "id",
    "ip_address",
    "isolation",
    "name",
    "namespace",
    "os",
    "runtime",
    "status",
    "version",
}


async def _setup(engine, workers):
    name = unique("probe")
    worker = await workers(engine.url, name=name, description="A probe worker")
    prefix = unique("fx")
    schema = {"type": "object", "properties": {"name": {"type": "string"}}}
    await worker.send(
        {
            "type": "registerfunction",
            "id": f"{prefix}::typed",
            "description": "typed fn",
            "request_format": schema,
            "response_format": {"type": "string"},
            "metadata": {"public": True},
        }
    )
    await worker.send({"type": "registerfunction", "id": f"{prefix}::plain"})
    await worker.send({"type": "registerfunction", "id": f"{prefix}::hidden", "metadata": {"internal": True}})
    await worker.send({"type": "registertriggertype", "id": f"{prefix}-tt", "description": "probe type"})
    await worker.send(
        {
            "type": "registertrigger",
            "id": f"{prefix}-t1",
            "trigger_type": f"{prefix}-tt",
            "function_id": f"{prefix}::typed",
            "config": {"long": "x" * 100},
            "metadata": {"m": 1},
        }
    )
    await worker.expect(type="registertrigger")
    return worker, name, prefix, schema


async def test_functions_list_and_info(engine, workers):
    worker, name, prefix, schema = await _setup(engine, workers)
    listed = await worker.result("engine::functions::list", {"prefix": prefix})
    models.FunctionsListResult.model_validate(listed)
    assert listed["functions"] == [
        {"function_id": f"{prefix}::plain", "namespace": "default", "worker_name": name},
        {
            "description": "typed fn",
            "function_id": f"{prefix}::typed",
            "metadata": {"public": True},
            "namespace": "default",
            "worker_name": name,
        },
    ]
    hidden = await worker.result("engine::functions::list", {"prefix": prefix, "include_internal": True})
    assert [f["function_id"] for f in hidden["functions"]] == [
        f"{prefix}::{n}" for n in ("hidden", "plain", "typed")
    ]
    searched = await worker.result("engine::functions::list", {"search": "TYPED FN", "worker": name})
    assert [f["function_id"] for f in searched["functions"]] == [f"{prefix}::typed"]
    by_workers = await worker.result("engine::functions::list", {"workers": [name, "nobody"]})
    assert {f["function_id"] for f in by_workers["functions"]} == {f"{prefix}::plain", f"{prefix}::typed"}
    everything = await worker.result("engine::functions::list", {})
    # engine::* is hidden except engine::queue::* (protocol.md §7), which the queue built-in serves
    assert not any(
        f["function_id"].startswith("engine::") and not f["function_id"].startswith("engine::queue::")
        for f in everything["functions"]
    )
    internal = await worker.result(
        "engine::functions::list", {"include_internal": True, "prefix": "engine::"}
    )
    ids = [f["function_id"] for f in internal["functions"]]
    assert ids == sorted(ids) and "engine::workers::register" in ids
    assert all(f["worker_name"] == "engine" for f in internal["functions"])

    detail = await worker.result("engine::functions::info", {"function_id": f"{prefix}::typed"})
    models.FunctionDetail.model_validate(detail)
    assert detail == {
        "description": "typed fn",
        "function_id": f"{prefix}::typed",
        "metadata": {"public": True},
        "namespace": "default",
        "registered_triggers": [
            {"config": {"long": "x" * 100}, "id": f"{prefix}-t1", "trigger_type": f"{prefix}-tt"}
        ],
        "request_schema": schema,
        "response_schema": {"type": "string"},
        "worker_name": name,
    }
    builtin = await worker.result("engine::functions::info", {"function_id": "engine::triggers::info"})
    assert builtin["request_schema"]["required"] == ["id"]
    assert "instance_count" in builtin["response_schema"]["properties"]
    batch = await worker.result(
        "engine::functions::info", {"function_ids": [f"{prefix}::plain", "no::such", f"{prefix}::plain"]}
    )
    models.FunctionsInfoBatchResult.model_validate(batch)
    assert [row.get("function_id") for row in batch["functions"]] == [f"{prefix}::plain", "no::such"]
    assert batch["functions"][1] == {"error": "not_found", "function_id": "no::such"}


async def test_functions_info_errors(engine, workers):
    worker = await workers(engine.url)
    for data in ({}, {"function_id": "a", "function_ids": ["a"]}):
        assert (await worker.call("engine::functions::info", data))["error"]["code"] == "INVALID_ARGUMENTS"
    too_many = {"function_ids": [f"f{i}" for i in range(33)]}
    assert (await worker.call("engine::functions::info", too_many))["error"]["code"] == "INVALID_ARGUMENTS"
    reply = await worker.call("engine::functions::info", {"function_id": "no::such"})
    assert reply["error"] == {"code": "NOT_FOUND", "message": "Function 'no::such' is not registered."}
    fid = f"{unique('amb')}::fn"
    ns1, ns2 = unique("n1"), unique("n2")
    for ns in (ns1, ns2):
        owner = await workers(engine.url, namespace=ns)
        await owner.send({"type": "registerfunction", "id": fid})
        await owner.sync()
    reply = await worker.call("engine::functions::info", {"function_id": fid})
    assert reply["error"]["code"] == "NOT_FOUND"
    assert ", ".join(sorted([ns1, ns2])) in reply["error"]["message"]
    assert (await worker.result("engine::functions::info", {"function_id": fid, "namespace": ns2}))[
        "namespace"
    ] == ns2


async def test_workers_list_and_info(engine, workers):
    worker, name, prefix, _ = await _setup(engine, workers)
    anonymous = await workers(engine.url, register=False)
    listed = await worker.result("engine::workers::list", {})
    models.WorkersListResult.model_validate(listed)
    rows = listed["workers"]
    assert rows == sorted(rows, key=lambda r: (r["name"] or "", r["id"]))
    assert all(set(row) == SUMMARY_KEYS for row in rows)
    assert anonymous.worker_id not in {row["id"] for row in rows}  # never reported a pid
    mine = next(row for row in rows if row["id"] == worker.worker_id)
    assert mine["name"] == name and mine["description"] == "A probe worker"
    assert mine["function_count"] == 3 and mine["status"] == "connected" and mine["runtime"] == "python"
    assert mine["ip_address"] == "127.0.0.1" and mine["namespace"] == "default" and mine["os"] == "test"
    builtin = next(row for row in rows if row["id"] == "iii-engine-functions")
    assert builtin["runtime"] == "engine" and builtin["status"] == "available"
    assert builtin["isolation"] == "in-process" and builtin["function_count"] == 12
    engines = await worker.result("engine::workers::list", {"runtime": "engine"})
    assert {row["runtime"] for row in engines["workers"]} == {"engine"}
    found = await worker.result("engine::workers::list", {"search": name.upper()})
    assert [row["id"] for row in found["workers"]] == [worker.worker_id]

    info = await worker.result("engine::workers::info", {"name": name})
    models.WorkersInfoResult.model_validate(info)
    assert set(info["worker"]) == SUMMARY_KEYS | {"internal", "pid"}
    assert info["worker"]["internal"] is False and info["worker"]["pid"] == os.getpid()
    assert [f["function_id"] for f in info["functions"]] == [
        f"{prefix}::{n}" for n in ("hidden", "plain", "typed")
    ]
    assert info["trigger_types"] == [
        {"description": "probe type", "id": f"{prefix}-tt", "namespace": "default", "worker_name": name}
    ]
    [binding] = info["registered_triggers"]
    assert binding["id"] == f"{prefix}-t1" and binding["worker_name"] == name
    own = await worker.result("engine::workers::info", {"name": "iii-engine-functions"})
    assert own["worker"]["internal"] is True and len(own["functions"]) == 12
    assert {t["id"] for t in own["trigger_types"]} == {
        "engine::functions-available",
        "engine::workers-available",
    }
    reply = await worker.call("engine::workers::info", {"name": "nobody-here"})
    assert reply["error"] == {"code": "NOT_FOUND", "message": "Worker 'nobody-here' is not connected."}


async def test_triggers_and_registered_triggers(engine, workers):
    worker, name, prefix, _ = await _setup(engine, workers)
    listed = await worker.result("engine::triggers::list", {"prefix": prefix})
    models.TriggersListResult.model_validate(listed)
    assert listed == {
        "triggers": [
            {"description": "probe type", "id": f"{prefix}-tt", "namespace": "default", "worker_name": name}
        ]
    }
    everything = await worker.result("engine::triggers::list", {})
    assert not any(t["id"].startswith("engine::") for t in everything["triggers"])
    internal = await worker.result("engine::triggers::list", {"include_internal": True, "prefix": "engine::"})
    assert [t["id"] for t in internal["triggers"]] == [
        "engine::functions-available",
        "engine::workers-available",
    ]
    assert internal["triggers"][0]["worker_name"] == "iii-engine-functions"

    info = await worker.result("engine::triggers::info", {"id": f"{prefix}-tt"})
    models.TriggerTypeDetail.model_validate(info)
    assert info == {
        "description": "probe type",
        "id": f"{prefix}-tt",
        "instance_count": 1,
        "namespace": "default",
        "worker_name": name,
    }
    reply = await worker.call("engine::triggers::info", {"id": f"{prefix}-tt", "namespace": "orders"})
    assert reply["error"] == {
        "code": "NOT_FOUND",
        "message": f"Trigger type '{prefix}-tt' is not registered in namespace 'orders'.",
    }
    builtin = await worker.result("engine::triggers::info", {"id": "engine::workers-available"})
    assert builtin["request_schema"]["properties"]["event"]["enum"][0] == "worker_connected"

    rows = await worker.result("engine::registered-triggers::list", {"trigger_type": f"{prefix}-tt"})
    models.RegisteredTriggersListResult.model_validate(rows)
    [row] = rows["registered_triggers"]
    summary = '{"long":"' + "x" * 71 + "…"
    assert row == {
        "config": {"long": "x" * 100},
        "config_summary": summary,
        "function_id": f"{prefix}::typed",
        "id": f"{prefix}-t1",
        "trigger_type": f"{prefix}-tt",
        "worker_name": name,
    }
    assert len(summary) == 81
    searched = await worker.result("engine::registered-triggers::list", {"search": f"{prefix}::TYPED"})
    assert [r["id"] for r in searched["registered_triggers"]] == [f"{prefix}-t1"]
    assert (await worker.result("engine::registered-triggers::list", {"worker": "nobody"}))[
        "registered_triggers"
    ] == []

    detail = await worker.result("engine::registered-triggers::info", {"id": f"{prefix}-t1"})
    models.RegisteredTriggerDetail.model_validate(detail)
    assert list(detail) == [
        "config",
        "function",
        "function_id",
        "id",
        "metadata",
        "trigger",
        "trigger_type",
        "worker_name",
    ]
    assert detail["function"]["function_id"] == f"{prefix}::typed"
    assert detail["trigger"]["id"] == f"{prefix}-tt" and detail["metadata"] == {"m": 1}
    reply = await worker.call("engine::registered-triggers::info", {"id": "nope"})
    assert reply["error"] == {"code": "NOT_FOUND", "message": "Trigger 'nope' is not registered."}


async def test_health_check(engine, workers):
    worker = await workers(engine.url)
    health = await worker.result("engine::health::check", {})
    models.HealthCheckResult.model_validate(health)
    assert list(health) == ["components", "status", "timestamp", "version"]
    assert sorted(health["components"]) == ["logs", "metrics", "otel", "spans"]
    assert all(set(c) == {"details", "status"} for c in health["components"].values())
    assert health["status"] == "healthy" and isinstance(health["timestamp"], int)


async def test_workers_register_reports_success_and_metadata(engine, workers):
    worker = await workers(engine.url, register=False)
    name = unique("meta")
    reply = await worker.register(
        "  " + name + "\u202e\x07  ", description="d" * 400, features=["x"], telemetry={"language": "en"}
    )
    assert reply["result"] == {"success": True}
    info = await worker.result("engine::workers::info", {"name": name})
    assert info["worker"]["name"] == name
    assert info["worker"]["description"] == "d" * 280
