"""Every engine→worker frame the core produces matches its golden frame (protocol.md §13).

Scenarios reproduce the golden values (ids, namespaces, payloads) so everything but run-specific
UUIDs is compared exactly; top-level key order is checked too.
"""

from __future__ import annotations

import asyncio
import uuid

from engine_raw import NO_REPLY, HandlerError, assert_golden
from support.waiting import wait_for_async


async def test_e01_workerregistered(module_engine, workers):
    worker = await workers(module_engine.url, register=False)
    assert_golden(worker.find(type="workerregistered")[0], "E01")
    assert worker.worker_id != worker.reattach_token


async def test_e03_invoke_to_worker(module_engine, workers):
    callee = await workers(module_engine.url, name="probe-worker")
    caller = await workers(module_engine.url)
    await callee.send({"type": "registerfunction", "id": "py::typed"})
    await callee.sync()
    callee.serve("py::typed", lambda f: {"message": "hi Ada"})
    invocation_id = str(uuid.uuid4())
    await caller.send(
        {
            "function_id": "py::typed",
            "data": {"name": "Ada"},
            "metadata": {"tenant": "acme"},
            "invocation_id": invocation_id,
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "baggage": "k1=v1",
            "type": "invokefunction",
        }
    )
    reply = await caller.expect(type="invocationresult")
    forwarded = callee.calls["py::typed"][0]
    assert_golden(forwarded, "E03")
    assert forwarded["invocation_id"] == invocation_id  # the caller's id is reused (§4.2)
    assert forwarded["data"]["_caller_worker_id"] == caller.worker_id
    assert reply["result"] == {"message": "hi Ada"}


async def test_e08_result_success(module_engine, workers):
    callee = await workers(module_engine.url)
    caller = await workers(module_engine.url)
    await callee.send({"type": "registerfunction", "id": "remote::echo"})
    await callee.sync()
    callee.serve("remote::echo", lambda f: {"echo": {"a": f["data"]["a"]}})
    reply = await caller.call("remote::echo", {"a": 1})
    assert_golden(reply, "E08")


async def test_e09_result_without_value_is_omitted(module_engine, workers):
    callee = await workers(module_engine.url)
    caller = await workers(module_engine.url)
    await callee.send({"type": "registerfunction", "id": "state::get"})
    await callee.sync()
    callee.serve("state::get", lambda f: None)  # the callee sends "result": null
    reply = await caller.call("state::get", {"scope": "s", "key": "k"})
    assert_golden(reply, "E09")
    assert "result" not in reply


async def test_e10_function_not_found_with_namespace_hint(module_engine, workers):
    owner = await workers(module_engine.url, namespace="orders")
    caller = await workers(module_engine.url)
    await owner.send({"type": "registerfunction", "id": "svc::x"})
    await owner.sync()
    reply = await caller.call("svc::x", {})
    assert_golden(reply, "E10")


async def test_e11_invocation_stopped(module_engine, workers):
    callee = await workers(module_engine.url)
    caller = await workers(module_engine.url)
    await callee.send({"type": "registerfunction", "id": "remote::slow"})
    await callee.sync()
    callee.serve("remote::slow", lambda f: NO_REPLY)
    invocation_id = str(uuid.uuid4())
    await caller.send(
        {"type": "invokefunction", "function_id": "remote::slow", "data": {}, "invocation_id": invocation_id}
    )
    await wait_for_async(lambda: callee.calls.get("remote::slow"), what="callee received the call")
    await callee.close()
    reply = await caller.expect(type="invocationresult")
    assert_golden(reply, "E11")
    assert reply["invocation_id"] == invocation_id


async def test_e13_invalid_namespace(module_engine, workers):
    caller = await workers(module_engine.url)
    reply = await caller.call("remote::echo", {"a": 2}, namespace="   ", metadata={"m": "x"})
    assert_golden(reply, "E13")


async def test_e18_e19_e20_trigger_frames(module_engine, workers):
    provider = await workers(module_engine.url)
    consumer = await workers(module_engine.url)
    await provider.send({"type": "registertriggertype", "id": "probe::tt", "description": "probe type"})
    await provider.sync()
    await consumer.send({"type": "registerfunction", "id": "py::plain"})
    await consumer.send(
        {
            "type": "registertrigger",
            "id": "trig-1",
            "trigger_type": "probe::tt",
            "function_id": "py::plain",
            "config": {"a": 1},
            "metadata": {"m": 1},
        }
    )
    assert_golden(await provider.expect(type="registertrigger"), "E18")

    await consumer.send({"type": "unregistertrigger", "id": "trig-1", "trigger_type": "probe::tt"})
    assert_golden(await provider.expect(type="unregistertrigger"), "E19")

    await consumer.send(
        {
            "type": "registertrigger",
            "id": "9fc1f761-8bcc-4b0b-b098-a05170c5ba7d",
            "trigger_type": "probe::tt",
            "function_id": "py::plain",
            "config": {"expression": "nope"},
        }
    )
    bind = await provider.expect(type="registertrigger")
    await provider.send(
        {
            "type": "triggerregistrationresult",
            "id": bind["id"],
            "trigger_type": "probe::tt",
            "function_id": "py::plain",
            "error": {"code": "trigger_registration_failed", "message": "Invalid cron expression 'nope'"},
        }
    )
    forwarded = await consumer.expect(type="triggerregistrationresult")
    assert_golden(forwarded, "E20", loose=frozenset({"trigger_type", "error.message"}))
    assert forwarded["trigger_type"] == "probe::tt"
    assert forwarded["error"]["message"] == "Invalid cron expression 'nope'"


async def test_e21_function_conflict_keeps_the_connection(module_engine, workers):
    owner = await workers(module_engine.url)
    rival = await workers(module_engine.url)
    await owner.send({"type": "registerfunction", "id": "py::owned"})
    await owner.sync()
    await rival.send({"type": "registerfunction", "id": "py::owned"})
    rejected = await rival.expect(type="registrationrejected")
    assert_golden(rejected, "E21", loose=frozenset({"function_id"}))
    assert rejected["function_id"] == "py::owned"
    assert rejected["owner_worker_id"] == owner.worker_id
    await rival.sync()  # still connected
    assert not rival.closed.is_set()


async def test_e22_worker_name_conflict_then_close(module_engine, workers):
    first = await workers(module_engine.url, name="probe-worker-2")
    second = await workers(module_engine.url, register=False)
    reply = await second.register("probe-worker-2")
    assert reply["result"] == {"success": False}
    rejected = await second.expect(type="registrationrejected")
    assert_golden(rejected, "E22", loose=frozenset({"worker_name"}))
    assert rejected["worker_name"] == "probe-worker-2"
    assert rejected["owner_worker_id"] == first.worker_id
    await asyncio.wait_for(second.closed.wait(), 5)
    assert second.close_code == 1008


async def test_e23_pong(module_engine, workers):
    worker = await workers(module_engine.url, register=False)
    await worker.send({"type": "ping"})
    assert_golden(await worker.expect(type="pong"), "E23")


async def test_error_forwarded_verbatim(module_engine, workers):
    callee = await workers(module_engine.url)
    caller = await workers(module_engine.url)
    await callee.send({"type": "registerfunction", "id": "py::boom"})
    await callee.sync()

    def boom(frame):
        raise HandlerError("invocation_failed", "kaboom")

    callee.serve("py::boom", boom)
    reply = await caller.call("py::boom", {})
    assert reply["error"] == {"code": "invocation_failed", "message": "kaboom"}
    assert "result" not in reply
