"""The SDK against a real dev-engine process on 127.0.0.1 (issue 2 acceptance, protocol.md §4, §10)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pydantic import BaseModel

from iii_typed import (
    III,
    InvocationError,
    InvocationTimeoutError,
    ReconnectionConfig,
    RegistrationRejectedError,
    register_worker,
)
from iii_typed.engine.process import EngineProcess
from tests.integration.sdk.sdk_support import fast_options
from tests.support.waiting import wait_for

Make = Callable[..., III]


@pytest.fixture
def make(engine: EngineProcess) -> Iterator[Make]:
    """``make(**options)`` -> a client connected to the session engine, shut down at teardown."""
    made: list[III] = []

    def factory(url: str | None = None, **kwargs: Any) -> III:
        client = register_worker(url or engine.url, fast_options(**kwargs))
        made.append(client)
        return client

    yield factory
    for client in made:
        client.shutdown()


def unique(prefix: str) -> str:
    return f"{prefix}::{uuid.uuid4().hex[:8]}"


def wait_registered(client: III, function_id: str, namespace: str | None = None) -> None:
    """Wait until the engine lists ``function_id`` (registration is asynchronous across workers)."""

    def listed() -> bool:
        result = client.trigger({"function_id": "engine::functions::list", "payload": {}})
        return any(
            f.get("function_id") == function_id and (namespace is None or f.get("namespace") == namespace)
            for f in result.get("functions", [])
        )

    wait_for(listed, timeout=5, interval=0.02, what=f"{function_id} registered")


def strip_caller(data: Any) -> Any:
    return {k: v for k, v in data.items() if k != "_caller_worker_id"} if isinstance(data, dict) else data


def test_sync_call_between_workers(make: Make) -> None:
    fid = unique("echo")
    callee, caller = make(), make()
    callee.register_function(fid, lambda data: {"echo": data})
    wait_registered(caller, fid)
    result = caller.trigger({"function_id": fid, "payload": {"a": 1}})
    assert strip_caller(result["echo"]) == {"a": 1}
    assert result["echo"]["_caller_worker_id"] == caller.worker_id
    assert caller.trigger({"function_id": fid, "payload": [1, "two", None]}) == {"echo": [1, "two", None]}
    assert caller.trigger({"function_id": fid}) == {"echo": None}


def test_void_returns_at_once_and_the_handler_runs(make: Make) -> None:
    fid = unique("sink")
    got = threading.Event()
    seen: list[Any] = []

    def sink(data: Any) -> None:
        seen.append(strip_caller(data))
        got.set()

    callee, caller = make(), make()
    callee.register_function(fid, sink)
    wait_registered(caller, fid)
    assert caller.trigger({"function_id": fid, "payload": {"n": 1}, "action": {"type": "void"}}) is None
    assert got.wait(5) and seen == [{"n": 1}]


def test_timeout_then_late_result_is_dropped(make: Make) -> None:
    fid = unique("slow")
    release = threading.Event()

    def slow(data: Any) -> str:
        release.wait(10)
        return "late"

    callee, caller = make(), make()
    callee.register_function(fid, slow)
    callee.register_function(fid + "_fast", lambda data: "fast")
    wait_registered(caller, fid + "_fast")
    started = time.monotonic()
    try:
        with pytest.raises(InvocationTimeoutError) as info:
            caller.trigger({"function_id": fid, "payload": {}, "timeout_ms": 300})
        assert 0.25 < time.monotonic() - started < 1.0
        assert info.value.code == "TIMEOUT" and fid in info.value.message
    finally:
        release.set()
    assert caller.trigger({"function_id": fid + "_fast", "payload": {}}) == "fast"
    wait_for(lambda: not caller._pending, what="no pending invocation left")


def test_handler_exception_unknown_function_and_validation(make: Make) -> None:
    class GreetInput(BaseModel):
        name: str
        age: int = 0

    class GreetOutput(BaseModel):
        message: str

    def boom(data: Any) -> None:
        raise ValueError("kaboom")

    def greet(data: GreetInput) -> GreetOutput:
        return GreetOutput(message=f"hi {data.name} ({data.age})")

    fid = unique("py")
    callee, caller = make(), make()
    callee.register_function(fid + "::boom", boom)
    callee.register_function(fid + "::greet", greet)
    wait_registered(caller, fid + "::greet")
    wait_registered(caller, fid + "::boom")
    with pytest.raises(InvocationError) as info:
        caller.trigger({"function_id": fid + "::boom", "payload": {}})
    assert info.value.code == "invocation_failed" and info.value.message == "kaboom"
    assert info.value.stacktrace is not None and "ValueError: kaboom" in info.value.stacktrace
    with pytest.raises(InvocationError) as info:
        caller.trigger({"function_id": fid + "::missing", "payload": {}})
    assert info.value.code == "function_not_found" and fid + "::missing" in info.value.message
    assert caller.trigger({"function_id": fid + "::greet", "payload": {"name": "Ada", "age": 36}}) == {
        "message": "hi Ada (36)"
    }
    with pytest.raises(InvocationError) as info:
        caller.trigger({"function_id": fid + "::greet", "payload": {"age": "old"}})
    assert info.value.code == "invocation_failed"
    assert info.value.message.startswith("validation failed for GreetInput: ")
    assert "name: Field required" in info.value.message and "age:" in info.value.message
    assert callee.get_connection_state() == "connected"
    assert caller.trigger({"function_id": fid + "::greet", "payload": {"name": "Bo"}}) == {
        "message": "hi Bo (0)"
    }


def test_callee_disconnect_mid_call_is_invocation_stopped(make: Make) -> None:
    fid = unique("stuck")
    entered = threading.Event()
    release = threading.Event()

    def stuck(data: Any) -> str:
        entered.set()
        release.wait(10)
        return "never delivered"

    callee, caller = make(), make()
    callee.register_function(fid, stuck)
    wait_registered(caller, fid)
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            caller.trigger({"function_id": fid, "payload": {}, "timeout_ms": 15000})
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    try:
        assert entered.wait(5)
        callee.shutdown()
        thread.join(5)
    finally:
        release.set()
    assert isinstance(outcome[0], InvocationError) and outcome[0].code == "invocation_stopped"


def test_one_mib_payload(make: Make) -> None:
    fid = unique("size")
    callee, caller = make(), make()
    callee.register_function(fid, lambda data: {"len": len(data["blob"]), "blob": data["blob"]})
    wait_registered(caller, fid)
    blob = "x" * (1024 * 1024)
    result = caller.trigger({"function_id": fid, "payload": {"blob": blob}})
    assert result["len"] == len(blob) and result["blob"] == blob


def test_concurrent_calls_from_four_threads(make: Make) -> None:
    fid = unique("add")
    callee, caller = make(), make()
    callee.register_function(fid, lambda data: data["a"] + data["b"])
    wait_registered(caller, fid)
    results: dict[tuple[int, int], Any] = {}
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            for i in range(25):
                results[(t, i)] = caller.trigger({"function_id": fid, "payload": {"a": t * 1000, "b": i}})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    assert results == {(t, i): t * 1000 + i for t in range(4) for i in range(25)}


def test_nested_sync_triggers_from_sync_handlers(make: Make) -> None:
    fid = unique("nest")
    left, right = make(), make()

    def hop(client: III) -> Callable[[Any], Any]:
        def handler(data: Any) -> Any:
            depth = data["depth"]
            if depth == 0:
                return ["bottom"]
            target = fid + ("::right" if client is left else "::left")
            return [depth, *client.trigger({"function_id": target, "payload": {"depth": depth - 1}})]

        return handler

    left.register_function(fid + "::left", hop(left))
    right.register_function(fid + "::right", hop(right))
    wait_registered(left, fid + "::right")
    wait_registered(right, fid + "::left")
    assert left.trigger({"function_id": fid + "::left", "payload": {"depth": 6}}) == [
        6,
        5,
        4,
        3,
        2,
        1,
        "bottom",
    ]


def test_metadata_sidecar_and_namespaces(make: Make) -> None:
    fid = unique("meta")
    scoped = make(namespace="orders")
    caller = make()

    def handler(data: Any, metadata: Any) -> Any:
        return {"metadata": metadata, "namespace_seen": True}

    scoped.register_function(fid, handler)
    wait_registered(caller, fid, namespace="orders")
    request = {"function_id": fid, "payload": {}, "metadata": {"tenant": "acme"}, "namespace": "orders"}
    assert caller.trigger(request) == {"metadata": {"tenant": "acme"}, "namespace_seen": True}
    with pytest.raises(InvocationError) as info:
        caller.trigger({"function_id": fid, "payload": {}})
    assert info.value.code == "function_not_found"
    assert scoped.trigger({"function_id": fid, "payload": {}})["namespace_seen"] is True


def test_reconnect_after_engine_restart(fresh_engine: EngineProcess) -> None:
    fid = unique("survivor")
    options = fast_options(reconnection_config=ReconnectionConfig(initial_delay_ms=100, max_delay_ms=500))
    with (
        register_worker(fresh_engine.url, options) as callee,
        register_worker(fresh_engine.url, options) as caller,
    ):
        callee.register_function(fid, lambda data: "alive")
        wait_registered(caller, fid)
        fresh_engine.restart()
        reachable = time.monotonic()
        wait_for(
            lambda: (
                callee.get_connection_state() == "connected" and caller.get_connection_state() == "connected"
            ),
            timeout=5,
            what="both reconnected",
        )
        assert time.monotonic() - reachable < 2.5
        wait_registered(caller, fid)
        assert caller.trigger({"function_id": fid, "payload": {}}) == "alive"


def test_a_second_worker_with_a_taken_name_is_refused(make: Make) -> None:
    name = unique("docs-worker")
    first = make(worker_name=name)
    with pytest.raises(RegistrationRejectedError) as info:
        register_worker(first.get_address(), fast_options(worker_name=name))
    assert info.value.code == "WORKER_NAMESPACE_CONFLICT" and info.value.worker_name == name
    assert info.value.owner_worker_id == first.worker_id
    assert first.get_connection_state() == "connected"
