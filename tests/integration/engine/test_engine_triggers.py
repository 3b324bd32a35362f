"""The trigger-type registry: parking, replay, provider errors, conditions (protocol.md §2.3-§2.7, §6;
cases.md B06, B07)."""

from __future__ import annotations

import asyncio

from engine_raw import HandlerError, unique
from support.waiting import wait_for_async


async def _rows(worker, **query):
    result = await worker.result("engine::registered-triggers::list", query)
    return {row["id"]: row for row in result["registered_triggers"]}


async def _bind(worker, trigger_id, trigger_type, function_id, config=None, **extra):
    await worker.send(
        {
            "type": "registertrigger",
            "id": trigger_id,
            "trigger_type": trigger_type,
            "function_id": function_id,
            "config": {} if config is None else config,
            **extra,
        }
    )


async def test_b06_parked_binding_is_replayed_to_each_provider_start(engine, workers):
    ticker = unique("ticker")
    consumer = await workers(engine.url)
    fid = f"{unique('c')}::on_tick"
    tid = unique("t-1")
    await consumer.send({"type": "registerfunction", "id": fid})
    await _bind(consumer, tid, ticker, fid, {"every_ms": 100})
    await consumer.sync()
    ticks: list[dict] = []
    consumer.serve(fid, lambda f: ticks.append(f["data"]))
    assert not consumer.find(type="triggerregistrationresult")
    rows = await _rows(consumer, include_pending=True, trigger_type=ticker)
    assert rows[tid]["status"] == "pending"
    assert rows[tid]["worker_id"] == consumer.worker_id
    assert tid not in await _rows(consumer, trigger_type=ticker)  # default listing: live only

    for start in range(2):
        provider = await workers(engine.url)
        await provider.send({"type": "registertriggertype", "id": ticker, "description": "test ticker"})
        bind = await provider.expect(type="registertrigger", timeout=1)
        assert (bind["id"], bind["function_id"], bind["config"]) == (tid, fid, {"every_ms": 100})
        assert (await _rows(consumer, trigger_type=ticker))[tid]["config_summary"] == '{"every_ms":100}'
        # The provider fires the binding by invoking the target.
        await provider.result(fid, {"tick": start})
        assert ticks[-1]["tick"] == start
        await provider.close()

        async def parked():
            return (await _rows(consumer, include_pending=True, trigger_type=ticker))[tid][
                "status"
            ] == "pending"

        await wait_for_async(parked, what="binding parked after the provider left")
    assert [t["tick"] for t in ticks] == [0, 1]


async def test_b07_each_binding_reports_its_own_status(engine, workers):
    hook = unique("hook::pre")
    mem = await workers(engine.url, name=unique("memory"))
    web = await workers(engine.url, name=unique("web"))
    await mem.send({"type": "registerfunction", "id": "mem::pre"})
    await _bind(mem, "mem-binding-" + hook, hook, "mem::pre")
    await mem.sync()
    provider = await workers(engine.url)
    await provider.send({"type": "registertriggertype", "id": hook, "description": "pre hook"})
    first = await provider.expect(type="registertrigger")
    assert first["id"] == "mem-binding-" + hook
    # The provider refuses mem's binding and accepts web's.
    await provider.send(
        {
            "type": "triggerregistrationresult",
            "id": first["id"],
            "trigger_type": hook,
            "function_id": "mem::pre",
            "error": {"code": "trigger_type_not_found", "message": "hook not ready"},
        }
    )
    refused = await mem.expect(type="triggerregistrationresult")
    assert refused["id"] == first["id"]
    assert refused["error"] == {"code": "trigger_type_not_found", "message": "hook not ready"}
    await web.send({"type": "registerfunction", "id": "web::pre"})
    await _bind(web, "web-binding-" + hook, hook, "web::pre")
    second = await provider.expect(type="registertrigger")
    await provider.send(
        {
            "type": "triggerregistrationresult",
            "id": second["id"],
            "trigger_type": hook,
            "function_id": "web::pre",
        }
    )
    await provider.sync()
    rows = await _rows(web, include_pending=True, trigger_type=hook)
    assert rows["mem-binding-" + hook]["status"] == "pending"
    assert rows["mem-binding-" + hook]["worker_id"] == mem.worker_id
    assert rows["mem-binding-" + hook]["error"]["code"] == "trigger_type_not_found"
    assert rows["web-binding-" + hook]["status"] == "active"
    assert rows["web-binding-" + hook]["worker_id"] == web.worker_id
    assert "error" not in rows["web-binding-" + hook]
    info = await web.result("engine::triggers::info", {"id": hook})
    assert info["instance_count"] == 1
    # The provider comes back: the parked binding is retried with the same id.
    await provider.close()
    again = await workers(engine.url)
    await again.send({"type": "registertriggertype", "id": hook, "description": "pre hook"})
    replayed = {(await again.expect(type="registertrigger"))["id"] for _ in range(2)}
    assert replayed == {"mem-binding-" + hook, "web-binding-" + hook}


async def test_triggerregistrationresult_from_a_non_provider_is_ignored(engine, workers):
    tt = unique("tt")
    provider = await workers(engine.url)
    consumer = await workers(engine.url)
    stranger = await workers(engine.url)
    await provider.send({"type": "registertriggertype", "id": tt, "description": "d"})
    await provider.sync()
    tid = unique("t")
    await _bind(consumer, tid, tt, "c::f")
    await provider.expect(type="registertrigger")
    await stranger.send(
        {
            "type": "triggerregistrationresult",
            "id": tid,
            "trigger_type": tt,
            "function_id": "c::f",
            "error": {"code": "x", "message": "y"},
        }
    )
    await stranger.sync()
    await consumer.sync()
    assert not consumer.find(type="triggerregistrationresult")
    assert (await _rows(consumer, trigger_type=tt))[tid]["trigger_type"] == tt


async def test_owner_disconnect_unregisters_at_the_provider(engine, workers):
    tt = unique("tt")
    provider = await workers(engine.url)
    await provider.send({"type": "registertriggertype", "id": tt, "description": "d"})
    await provider.sync()
    consumer = await workers(engine.url)
    tid = unique("t")
    await _bind(consumer, tid, tt, "c::f", metadata={"m": 1}, namespace="orders")
    bind = await provider.expect(type="registertrigger")
    assert bind["metadata"] == {"m": 1} and bind["namespace"] == "orders"
    assert "trigger_namespace" not in bind
    await consumer.close()
    gone = await provider.expect(type="unregistertrigger")
    assert gone == {"type": "unregistertrigger", "id": tid, "trigger_type": tt}
    assert tid not in await _rows(provider, include_pending=True, trigger_type=tt)


async def test_provider_resolution_prefers_the_owner_namespace_then_default(engine, workers):
    tt = unique("tt")
    ns = unique("orders")
    default_provider = await workers(engine.url)
    await default_provider.send({"type": "registertriggertype", "id": tt, "description": "default one"})
    await default_provider.sync()
    ns_provider = await workers(engine.url, namespace=ns)
    await ns_provider.send({"type": "registertriggertype", "id": tt, "description": "orders one"})
    await ns_provider.sync()
    consumer = await workers(engine.url, namespace=ns)
    tid = unique("t")
    await _bind(consumer, tid, tt, "c::f")
    bind = await ns_provider.expect(type="registertrigger")
    assert bind["id"] == tid and bind["trigger_namespace"] == ns
    strict = unique("strict")
    await _bind(consumer, strict, tt, "c::f", trigger_namespace="default")
    assert (await default_provider.expect(type="registertrigger"))["id"] == strict
    # The namespaced provider leaves: its binding falls back to the default provider.
    await ns_provider.close()
    assert (await default_provider.expect(type="registertrigger"))["id"] == tid
    # A strict namespace with no provider parks.
    parked = unique("parked")
    await _bind(consumer, parked, tt, "c::f", trigger_namespace=unique("nowhere"))
    await consumer.sync()
    rows = await _rows(consumer, include_pending=True, trigger_type=tt)
    assert rows[parked]["status"] == "pending"
    assert rows[tid]["status"] == "active"


async def test_unregistertriggertype_parks_bindings(engine, workers):
    tt = unique("tt")
    provider = await workers(engine.url)
    await provider.send({"type": "registertriggertype", "id": tt, "description": "d"})
    await provider.send(
        {"type": "registertriggertype", "id": unique("blank"), "description": "d", "namespace": " "}
    )
    consumer = await workers(engine.url)
    tid = unique("t")
    await _bind(consumer, tid, tt, "c::f")
    await provider.expect(type="registertrigger")
    await provider.send({"type": "unregistertriggertype", "id": tt})
    await provider.sync()
    rows = await _rows(consumer, include_pending=True, trigger_type=tt)
    assert rows[tid]["status"] == "pending"
    listed = await consumer.result("engine::triggers::list", {"prefix": "blank"})
    assert all(not t["id"].startswith("blank-") for t in listed["triggers"])


async def test_engine_register_trigger_is_durable(engine, workers):
    tt = unique("tt")
    caller = await workers(engine.url)
    parked = await caller.result(
        "engine::register_trigger", {"trigger_type": tt, "function_id": "d::f", "config": {"k": 1}}
    )
    provider = await workers(engine.url)
    await provider.send({"type": "registertriggertype", "id": tt, "description": "d"})
    bind = await provider.expect(type="registertrigger")
    assert bind["id"] == parked["id"] and bind["config"] == {"k": 1}
    await caller.close()  # durable: survives its creator
    watcher = await workers(engine.url)
    assert parked["id"] in await _rows(watcher, trigger_type=tt)

    async def accept_next():
        frame = await provider.expect(type="registertrigger")
        await provider.send(
            {
                "type": "triggerregistrationresult",
                "id": frame["id"],
                "trigger_type": tt,
                "function_id": "d::f",
            }
        )

    acceptor = asyncio.create_task(accept_next())
    accepted = await watcher.result(
        "engine::register_trigger", {"trigger_type": tt, "function_id": "d::f", "metadata": {"m": 2}}
    )
    await acceptor
    frame = provider.find(lambda f: f["id"] == accepted["id"], type="registertrigger")[0]
    assert frame["config"] is None and frame["metadata"] == {"m": 2}

    async def refuse_next():
        frame = await provider.expect(type="registertrigger")
        await provider.send(
            {
                "type": "triggerregistrationresult",
                "id": frame["id"],
                "trigger_type": tt,
                "function_id": "d::f",
                "error": {"code": "bad_config", "message": "no thanks"},
            }
        )

    refuser = asyncio.create_task(refuse_next())
    reply = await watcher.call("engine::register_trigger", {"trigger_type": tt, "function_id": "d::f"})
    await refuser
    assert reply["error"] == {"code": "trigger_registration_failed", "message": "no thanks"}

    assert await watcher.result("engine::unregister_trigger", {"id": accepted["id"]}) == {"removed": True}
    assert (await provider.expect(type="unregistertrigger"))["id"] == accepted["id"]
    assert await watcher.result("engine::unregister_trigger", {"id": accepted["id"]}) == {"removed": False}
    pending = await watcher.result(
        "engine::register_trigger", {"trigger_type": unique("none"), "function_id": "x"}
    )
    assert await watcher.result("engine::unregister_trigger", {"id": pending["id"]}) == {"removed": True}


async def test_condition_function_gates_builtin_fires(engine, workers):
    watcher = await workers(engine.url)
    target, cond, broken = (f"{unique('w')}::{n}" for n in ("target", "cond", "broken"))
    for fid in (target, cond, broken):
        await watcher.send({"type": "registerfunction", "id": fid})
    await watcher.sync()
    watcher.serve(target, lambda f: None)
    watcher.serve(cond, lambda f: f["data"]["event"] == "worker_disconnected")

    def fail(frame):
        raise HandlerError("boom", "condition crashed")

    watcher.serve(broken, fail)
    await _bind(
        watcher,
        unique("t"),
        "engine::workers-available",
        target,
        {"condition_function_id": cond},
        metadata={"source": "test"},
    )
    never = f"{unique('w')}::never"
    await watcher.send({"type": "registerfunction", "id": never})
    await _bind(watcher, unique("t"), "engine::workers-available", never, {"condition_function_id": broken})
    await watcher.sync()
    visitor = await workers(engine.url)
    await visitor.close()

    def disconnects():
        return [
            f
            for f in watcher.calls.get(target, [])
            if f["data"] == {"event": "worker_disconnected", "worker_id": visitor.worker_id}
        ]

    await wait_for_async(disconnects, what="the disconnect passed the condition")
    assert disconnects()[0]["metadata"] == {"source": "test"}
    assert "_caller_worker_id" not in disconnects()[0]["data"]
    assert any(f["data"]["worker_id"] == visitor.worker_id for f in watcher.calls[cond])
    assert all(f["data"]["event"] == "worker_disconnected" for f in watcher.calls[target])
    await wait_for_async(lambda: len(watcher.calls.get(broken, [])) >= 3, what="broken condition consulted")
    await watcher.sync()
    assert not watcher.find(lambda f: f.get("function_id") == never, type="invokefunction")


async def test_functions_available_fires_on_change(engine_factory, workers):
    engine = engine_factory(env={"III_FUNCTIONS_POLL_MS": "50"})
    watcher = await workers(engine.url, name="watcher")
    await watcher.send({"type": "registerfunction", "id": "watch::fn"})
    await _bind(watcher, "fa", "engine::functions-available", "watch::fn")
    await watcher.sync()
    watcher.serve("watch::fn", lambda f: None)
    other = await workers(engine.url, name="probe-worker")
    await other.send({"type": "registerfunction", "id": "py::plain"})

    def fired():
        return [
            f
            for f in watcher.calls.get("watch::fn", [])
            if any(s["function_id"] == "py::plain" for s in f["data"]["functions"])
        ]

    await wait_for_async(fired, what="functions-available fired")
    payload = fired()[0]["data"]
    assert payload["event"] == "functions_changed"
    plain = next(s for s in payload["functions"] if s["function_id"] == "py::plain")
    assert plain == {"function_id": "py::plain", "namespace": "default", "worker_name": "probe-worker"}  # X05
    assert any(s["function_id"] == "engine::functions::list" for s in payload["functions"])  # unfiltered
