"""Invocation routing through a real engine process (protocol.md §4, §12b item 4)."""

from __future__ import annotations

import asyncio
import json
import uuid

from engine_raw import NO_REPLY, UUID_RE, unique
from support.waiting import wait_for_async
from websockets.asyncio.client import connect

from iii_typed.engine.router import NO_QUEUE_PROVIDER_MESSAGE


async def _pair(engine, workers, *, namespace=None):
    callee = await workers(engine.url, namespace=namespace)
    caller = await workers(engine.url)
    fid = f"{unique('svc')}::echo"
    await callee.send({"type": "registerfunction", "id": fid})
    await callee.sync()
    return callee, caller, fid


async def test_sync_call_reuses_the_invocation_id_and_passes_metadata(engine, workers):
    callee, caller, fid = await _pair(engine, workers)
    callee.serve(fid, lambda f: {"data": f["data"], "metadata": f.get("metadata")})
    reply = await caller.call(fid, {"x": [1, 2]}, metadata={"m": 1})
    frame = callee.calls[fid][0]
    assert frame["invocation_id"] == reply["invocation_id"]
    assert frame["metadata"] == {"m": 1}
    assert "namespace" not in frame and "action" not in frame
    assert reply["result"] == {
        "data": {"x": [1, 2], "_caller_worker_id": caller.worker_id},
        "metadata": {"m": 1},
    }


async def test_caller_id_is_injected_only_into_object_payloads(engine, workers):
    callee, caller, fid = await _pair(engine, workers)
    callee.serve(fid, lambda f: f["data"])
    for payload in ([1, 2], "text", 7, None, True):
        assert await caller.result(fid, payload) == payload
    assert await caller.result(fid, {}) == {"_caller_worker_id": caller.worker_id}


async def test_void_call_gets_a_fresh_id_and_nothing_goes_back(engine, workers):
    callee, caller, fid = await _pair(engine, workers)
    callee.serve(fid, lambda f: {"ignored": True})
    caller_id = str(uuid.uuid4())
    await caller.send(
        {
            "type": "invokefunction",
            "function_id": fid,
            "data": {"v": 1},
            "invocation_id": caller_id,
            "action": {"type": "void"},
        }
    )
    await caller.send({"type": "invokefunction", "function_id": fid, "data": {"v": 2}})  # no id, no action
    await wait_for_async(lambda: len(callee.calls.get(fid, [])) == 2, what="both void calls delivered")
    ids = [f["invocation_id"] for f in callee.calls[fid]]
    assert all(UUID_RE.match(i) for i in ids) and caller_id not in ids
    assert [f["data"]["v"] for f in callee.calls[fid]] == [1, 2]
    await callee.sync()  # the callee's results were processed by the engine
    await caller.sync()
    assert not caller.find(lambda f: f.get("function_id") == fid, type="invocationresult")


async def test_function_not_found_messages(engine, workers):
    caller = await workers(engine.url)
    missing = unique("nope") + "::x"
    reply = await caller.call(missing, {})
    assert reply["error"] == {
        "code": "function_not_found",
        "message": f"Function {missing} not found in namespace default.",
    }
    reply = await caller.call(missing, {}, namespace="billing")
    assert reply["error"]["message"] == f"Function {missing} not found in namespace billing."
    # A built-in lives in default only: the hint names it.
    reply = await caller.call("engine::health::check", {}, namespace="billing")
    assert reply["error"]["message"] == (
        "Function engine::health::check not found in namespace billing. "
        "It is registered in namespace(s): default."
    )


async def test_routing_by_namespace(engine, workers):
    fid = f"{unique('ns')}::who"
    in_default = await workers(engine.url)
    ns_a, ns_b = unique("a"), unique("b")
    in_a = await workers(engine.url, namespace=ns_a)
    in_b = await workers(engine.url, namespace=ns_b)
    for worker, label in ((in_default, "default"), (in_a, "a"), (in_b, "b")):
        await worker.send({"type": "registerfunction", "id": fid})
        await worker.sync()
        worker.serve(fid, lambda f, label=label: label)
    caller = await workers(engine.url, namespace=ns_a)
    assert await caller.result(fid, {}) == "default"  # absent namespace means default, not the caller's
    assert await caller.result(fid, {}, namespace=ns_a) == "a"
    assert await caller.result(fid, {}, namespace=ns_b) == "b"
    await in_default.close()
    reply = await caller.call(fid, {})
    assert reply["error"]["code"] == "function_not_found"
    hint = reply["error"]["message"].split("registered in namespace(s): ")[1].rstrip(".").split(", ")
    assert hint == sorted([ns_a, ns_b])


async def test_callee_disconnect_stops_every_pending_call(engine, workers):
    callee, caller, fid = await _pair(engine, workers)
    callee.serve(fid, lambda f: NO_REPLY)
    ids = [str(uuid.uuid4()) for _ in range(5)]
    for invocation_id in ids:
        await caller.send(
            {"type": "invokefunction", "function_id": fid, "data": {}, "invocation_id": invocation_id}
        )
    await wait_for_async(lambda: len(callee.calls.get(fid, [])) == 5, what="calls delivered")
    await callee.close()
    stopped = [await caller.expect(lambda f, i=i: f.get("invocation_id") == i) for i in ids]
    assert all(f["error"] == {"code": "invocation_stopped", "message": "Invocation stopped"} for f in stopped)
    reply = await caller.call(fid, {})
    assert reply["error"]["code"] == "function_not_found"


async def test_result_for_unknown_invocation_is_ignored(engine, workers):
    worker = await workers(engine.url)
    await worker.send(
        {"type": "invocationresult", "invocation_id": str(uuid.uuid4()), "function_id": "x", "result": 1}
    )
    await worker.sync()
    assert await worker.result("engine::health::check", {}) is not None


async def test_trace_context_is_echoed_from_the_request(engine, workers):
    callee, caller, fid = await _pair(engine, workers)
    callee.serve(fid, lambda f: 1)

    async def answer_with_own_traceparent(frame):
        await callee.send(
            {
                "type": "invocationresult",
                "invocation_id": frame["invocation_id"],
                "function_id": fid,
                "result": 1,
                "traceparent": "00-11111111111111111111111111111111-2222222222222222-01",
            }
        )
        return NO_REPLY

    callee.serve(fid, answer_with_own_traceparent)
    request_tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    reply = await caller.call(fid, {}, traceparent=request_tp, baggage="k=v")
    assert reply["traceparent"] == request_tp and reply["baggage"] == "k=v"
    assert callee.calls[fid][0]["traceparent"] == request_tp
    reply = await caller.call(fid, {})
    assert "traceparent" not in reply and "baggage" not in reply


async def test_builtin_input_is_parsed_strictly(engine, workers):
    caller = await workers(engine.url)
    reply = await caller.call("engine::triggers::info", {})
    assert reply["error"] == {
        "code": "deserialization_error",
        "message": "Failed to deserialize input for engine::triggers::info: missing field `id`",
    }
    reply = await caller.call("engine::triggers::info", {"id": 5})
    assert reply["error"]["code"] == "deserialization_error"
    assert "`id`" in reply["error"]["message"]
    reply = await caller.call("engine::functions::list", {"include_internal": "yes"})
    assert reply["error"]["code"] == "deserialization_error"
    # Unknown fields (like the injected _caller_worker_id) are ignored; null means {}.
    assert "functions" in await caller.result("engine::functions::list", {"unknown": 1})
    assert "functions" in await caller.result("engine::functions::list", None)


async def test_enqueue_without_a_queue_provider(engine_factory, tmp_path, workers):
    # The dev engine runs the queue built-in by default; without it, the real engine's error.
    (tmp_path / "engine.toml").write_text("[queue]\nenabled = false\n", encoding="utf-8")
    engine = engine_factory(config=tmp_path / "engine.toml")
    caller = await workers(engine.url)
    reply = await caller.call("anything::x", {"a": 4}, action={"type": "enqueue", "queue": "jobs"})
    assert reply["error"] == {"code": "enqueue_error", "message": NO_QUEUE_PROVIDER_MESSAGE}


async def test_enqueue_routes_through_the_provider(fresh_engine, workers):
    provider = await workers(fresh_engine.url)
    await provider.send({"type": "registerfunction", "id": "engine::queue::enqueue"})
    await provider.sync()
    provider.serve("engine::queue::enqueue", lambda f: None)
    caller = await workers(fresh_engine.url)
    reply = await caller.call(
        "remote::echo",
        {"a": 4},
        action={"type": "enqueue", "queue": "jobs"},
        namespace="orders",
        metadata={"m": 1},
    )
    receipt = reply["result"]["messageReceiptId"]
    assert UUID_RE.match(receipt)
    data = provider.calls["engine::queue::enqueue"][0]["data"]
    assert data == {
        "baggage": None,
        "data": {"a": 4},
        "function_id": "remote::echo",
        "messageReceiptId": receipt,
        "namespace": "orders",
        "queue": "jobs",
        "traceparent": None,
    }

    def refuse(frame):
        from engine_raw import HandlerError

        raise HandlerError("queue_full", "queue jobs is full")

    provider.serve("engine::queue::enqueue", refuse)
    reply = await caller.call("remote::echo", {"a": 5}, action={"type": "enqueue", "queue": "jobs"})
    assert reply["error"] == {"code": "enqueue_error", "message": "queue jobs is full"}


async def test_engine_ids_outside_default_are_refused(engine, workers):
    worker = await workers(engine.url, namespace=unique("ns"))
    await worker.send({"type": "registerfunction", "id": "engine::mine"})
    rejected = await worker.expect(type="registrationrejected")
    assert rejected["code"] == "FUNCTION_NAMESPACE_CONFLICT"
    assert rejected["owner_worker_id"] == ""
    assert rejected["function_id"] == "engine::mine"


async def test_binary_json_frames_and_telemetry_on_the_worker_route(engine, workers):
    worker = await workers(engine.url)
    await worker.send(b'{"type":"ping"}', text=False)
    await worker.expect(type="pong")
    await worker.send(b"OTLP" + json.dumps({"resourceSpans": []}).encode(), text=False)
    await worker.send(b"LOGS{}", text=False)
    await worker.send(b"MTRC{}", text=False)
    await worker.sync()


async def test_a_slow_worker_does_not_stall_others(engine, workers):
    """A worker that stops reading back-pressures only the calls sent to it."""
    slow_fid = f"{unique('slow')}::sink"
    slow = await connect(engine.url, compression=None, max_size=None, max_queue=4)
    await slow.recv()
    await slow.send(json.dumps({"type": "registerfunction", "id": slow_fid}))
    await slow.send(
        json.dumps(
            {
                "type": "invokefunction",
                "function_id": "engine::workers::register",
                "data": {"name": unique("slow"), "pid": 1},
                "invocation_id": str(uuid.uuid4()),
            }
        )
    )
    await slow.recv()  # the register result: the function is live now; from here on `slow` stops reading
    flooder = await workers(engine.url)
    blob = "x" * 65536
    count = 400  # ~26 MB: far beyond the engine's outbound bound plus the socket buffers

    async def flood():
        for i in range(count):
            await flooder.send(
                {"type": "invokefunction", "function_id": slow_fid, "data": {"i": i, "blob": blob}}
            )

    flood_task = asyncio.create_task(flood())
    try:
        callee, caller, fid = await _pair(engine, workers)
        callee.serve(fid, lambda f: f["data"]["n"])
        started = asyncio.get_running_loop().time()
        for n in range(50):
            assert await caller.result(fid, {"n": n}) == n
        assert asyncio.get_running_loop().time() - started < 10
        assert not flood_task.done(), "the flood should still be held back by the stalled worker"
        received = 0
        while received < count:  # the stalled worker reads again: nothing was lost
            frame = json.loads(await asyncio.wait_for(slow.recv(), 10))
            if frame.get("function_id") == slow_fid:
                assert frame["data"]["i"] == received
                received += 1
        await asyncio.wait_for(flood_task, 10)
    finally:
        flood_task.cancel()
        await slow.close()


async def test_an_invocation_id_already_in_flight_is_refused_not_hijacked(engine, workers):
    """A second call with an id still in flight at the same callee replaced the first: its result
    went to the second caller and the first waited forever. Invocation ids show up in traces, so
    any worker could take another's result that way. The newcomer is refused instead."""
    callee, caller, fid = await _pair(engine, workers)
    release = asyncio.Event()

    async def slow(frame):
        await release.wait()
        return {"for": frame["data"]["who"]}

    callee.serve(fid, slow)
    intruder = await workers(engine.url)
    invocation_id = str(uuid.uuid4())
    call = {"type": "invokefunction", "function_id": fid, "invocation_id": invocation_id}
    await caller.send({**call, "data": {"who": "caller"}})
    await wait_for_async(lambda: len(callee.calls.get(fid, [])) == 1, what="the first call delivered")
    await intruder.send({**call, "data": {"who": "intruder"}})
    refused = await intruder.expect(
        lambda f: f.get("invocation_id") == invocation_id, type="invocationresult"
    )
    assert refused["error"]["code"] == "DUPLICATE_INVOCATION_ID"
    assert invocation_id in refused["error"]["message"]
    await caller.send({**call, "data": {"who": "caller again"}})  # the same caller reusing it too
    again = await caller.expect(lambda f: f.get("invocation_id") == invocation_id, type="invocationresult")
    assert again["error"]["code"] == "DUPLICATE_INVOCATION_ID"
    assert len(callee.calls[fid]) == 1  # neither duplicate reached the callee
    release.set()
    answer = await caller.expect(lambda f: f.get("invocation_id") == invocation_id, type="invocationresult")
    assert answer["result"] == {"for": "caller"}
    await intruder.sync()
    assert not intruder.find(
        lambda f: f.get("result") is not None and f.get("invocation_id") == invocation_id
    )
    assert await caller.result(fid, {"who": "later"}) == {"for": "later"}  # the id is free again
