"""Connection lifecycle: namespace buffering, ownership, names, reattach (protocol.md §3, cases.md B03)."""

from __future__ import annotations

import asyncio
import json

from engine_raw import open_worker, unique
from support.waiting import wait_for_async

from iii_typed.engine.triggers import invalid_namespace_message


async def test_registrations_wait_for_workers_register(engine, workers):
    worker = await workers(engine.url, register=False)
    caller = await workers(engine.url)
    ns = unique("orders")
    fid = f"{unique('buf')}::fn"
    await worker.send({"type": "registerfunction", "id": fid})
    await worker.send({"type": "registerfunction", "id": fid + "_gone"})
    await worker.send({"type": "unregisterfunction", "id": fid + "_gone"})
    await worker.sync()
    worker.serve(fid, lambda f: "ok")
    assert (await caller.call(fid, {}, namespace=ns))["error"]["code"] == "function_not_found"
    assert (await worker.register(unique("late"), ns))["result"] == {"success": True}
    assert await caller.result(fid, {}, namespace=ns) == "ok"
    assert (await caller.call(fid, {}))["error"]["code"] == "function_not_found"  # not in default
    assert (await caller.call(fid + "_gone", {}, namespace=ns))["error"]["code"] == "function_not_found"


async def test_grace_timer_falls_back_to_default(engine_factory, workers):
    engine = engine_factory(env={"III_NAMESPACE_GRACE_MS": "300"})
    worker = await workers(engine.url, register=False)
    caller = await workers(engine.url)
    await worker.send({"type": "registerfunction", "id": "grace::fn"})
    worker.serve("grace::fn", lambda f: "ok")
    await worker.sync()
    assert (await caller.call("grace::fn", {}))["error"]["code"] == "function_not_found"

    async def callable_now():
        return "result" in await caller.call("grace::fn", {})

    await wait_for_async(callable_now, timeout=5, what="grace fallback to default")
    # A late engine::workers::register keeps the namespace already fixed.
    assert (await worker.register(unique("late"), "orders"))["result"] == {"success": True}
    assert await caller.result("grace::fn", {}) == "ok"
    assert (await caller.call("grace::fn", {}, namespace="orders"))["error"]["code"] == "function_not_found"
    assert "did not call engine::workers::register" in engine.stderr_tail()


async def test_blank_namespaces_are_refused(engine, workers):
    worker = await workers(engine.url, register=False)
    reply = await worker.register(unique("blank"), "  ")
    assert reply["error"] == {"code": "INVALID_NAMESPACE", "message": invalid_namespace_message()}
    await worker.register(unique("ok"))
    for field in ("namespace", "trigger_namespace"):
        tid = unique("t")
        await worker.send(
            {
                "type": "registertrigger",
                "id": tid,
                "trigger_type": "engine::workers-available",
                "function_id": "x::y",
                "config": {},
                field: " ",
            }
        )
        result = await worker.expect(type="triggerregistrationresult")
        assert result["id"] == tid
        assert result["error"] == {"code": "INVALID_NAMESPACE", "message": invalid_namespace_message(field)}


async def test_function_owner_conflict_and_takeover(engine, workers):
    fid = f"{unique('own')}::fn"
    owner = await workers(engine.url)
    rival = await workers(engine.url)
    caller = await workers(engine.url)
    await owner.send({"type": "registerfunction", "id": fid})
    await owner.send({"type": "registerfunction", "id": fid, "description": "again"})  # same owner: overwrite
    await owner.sync()
    assert not owner.find(type="registrationrejected")
    owner.serve(fid, lambda f: "owner")
    rival.serve(fid, lambda f: "rival")
    await rival.send({"type": "registerfunction", "id": fid})
    assert (await rival.expect(type="registrationrejected"))["owner_worker_id"] == owner.worker_id
    assert await caller.result(fid, {}) == "owner"
    await owner.close()
    await rival.send({"type": "registerfunction", "id": fid})
    await rival.sync()
    assert await caller.result(fid, {}) == "rival"
    other_ns = await workers(engine.url, namespace=unique("ns"))
    await other_ns.send({"type": "registerfunction", "id": fid})  # same id, other namespace: allowed
    await other_ns.sync()
    assert not other_ns.find(type="registrationrejected")


async def test_worker_name_is_free_again_after_disconnect(engine, workers):
    name = unique("named")
    first = await workers(engine.url, name=name)
    await first.close()
    second = await workers(engine.url, register=False)
    assert (await second.register(name))["result"] == {"success": True}


async def test_reattach_evicts_the_old_connection_first(engine, workers):
    """cases.md B03: the replay lands on a clean slate; no ownership flips afterwards."""
    fid = f"{unique('sm')}::watch"
    name = unique("sm")
    old = await workers(engine.url, name=name)
    await old.send({"type": "registerfunction", "id": fid})
    await old.send({"type": "registertriggertype", "id": fid + "-type", "description": "d"})
    await old.sync()
    old.serve(fid, lambda f: {"ok": "old"})
    caller = await workers(engine.url)
    pending = asyncio.create_task(caller.call(fid, {"in": "flight"}))

    async def hold(frame):
        await asyncio.Event().wait()

    old.serve(fid, hold)
    await wait_for_async(lambda: old.calls.get(fid), what="call in flight on the old connection")

    new = await workers(engine.url, register=False)
    await new.send(
        {"type": "reattach", "previous_worker_id": old.worker_id, "reattach_token": old.reattach_token}
    )
    await new.send({"type": "registertriggertype", "id": fid + "-type", "description": "d"})
    await new.send({"type": "registerfunction", "id": fid})
    assert (await new.register(name))["result"] == {"success": True}
    new.serve(fid, lambda f: {"ok": True})
    await asyncio.wait_for(old.closed.wait(), 3)
    stopped = await pending
    assert stopped["error"]["code"] == "invocation_stopped"
    assert not new.find(type="registrationrejected")
    for _ in range(100):
        assert await caller.result(fid, {}) == {"ok": True}
    info = await caller.result("engine::workers::info", {"name": name})
    assert info["worker"]["id"] == new.worker_id
    assert [f["function_id"] for f in info["functions"]] == [fid]
    assert [t["id"] for t in info["trigger_types"]] == [fid + "-type"]


async def test_reattach_with_a_wrong_token_is_ignored(engine, workers):
    fid = f"{unique('sm')}::watch"
    old = await workers(engine.url)
    await old.send({"type": "registerfunction", "id": fid})
    await old.sync()
    new = await workers(engine.url, register=False)
    for token in ("00000000-0000-4000-8000-000000000000", None):
        frame = {"type": "reattach", "previous_worker_id": old.worker_id}
        if token is not None:
            frame["reattach_token"] = token
        await new.send(frame)
    await new.send({"type": "reattach", "previous_worker_id": "not-a-uuid", "reattach_token": "x"})
    await new.register(unique("new"))
    await new.send({"type": "registerfunction", "id": fid})
    assert (await new.expect(type="registrationrejected"))["owner_worker_id"] == old.worker_id
    await old.sync()
    assert not old.closed.is_set()


async def test_disconnect_fires_and_cleans_everything(engine, workers):
    watcher = await workers(engine.url)
    wfid = f"{unique('watch')}::events"
    await watcher.send({"type": "registerfunction", "id": wfid})
    await watcher.send(
        {
            "type": "registertrigger",
            "id": unique("t"),
            "trigger_type": "engine::workers-available",
            "function_id": wfid,
            "config": {},
        }
    )
    await watcher.sync()
    watcher.serve(wfid, lambda f: None)
    leaving = await open_worker(engine.url, name=unique("leaving"))
    fid = f"{unique('gone')}::fn"
    await leaving.send({"type": "registerfunction", "id": fid})
    await leaving.sync()
    await leaving.close()

    def events():
        return [
            (f["data"]["event"], f["data"]["worker_id"])
            for f in watcher.calls.get(wfid, [])
            if f["data"]["worker_id"] == leaving.worker_id
        ]

    await wait_for_async(
        lambda: ("worker_disconnected", leaving.worker_id) in events(), what="disconnect event"
    )
    seen = events()
    assert sorted(event for event, _ in seen) == [
        "worker_connected",
        "worker_disconnected",
        "worker_metadata_updated",
    ]
    assert seen[-1][0] == "worker_disconnected"
    payload = watcher.calls[wfid][-1]["data"]
    assert sorted(payload) == ["event", "worker_id"]
    listed = await watcher.result("engine::functions::list", {"prefix": fid})
    assert listed == {"functions": []}


async def test_ping_and_strict_frames_keep_the_connection(engine, workers):
    worker = await workers(engine.url)
    await worker.send(json.dumps({"type": "pong"}))
    await worker.send(json.dumps({"type": "workerregistered", "worker_id": "x"}))
    await worker.sync()
