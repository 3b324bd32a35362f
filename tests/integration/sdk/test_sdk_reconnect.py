"""Connection lifecycle against the fake engine (protocol.md §3.2, §10; decisions "Policies")."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from iii_typed import (
    III,
    EngineUnreachableError,
    IIIConnectionState,
    InvocationError,
    ReconnectionConfig,
    RegistrationRejectedError,
    TriggerConfig,
    TriggerHandler,
    register_worker,
)
from tests.integration.sdk.sdk_support import fast_options
from tests.support.fake_engine import FakeEngine
from tests.support.waiting import wait_for

Connect = Callable[..., III]

REPLAY_ORDER = ["reattach", "registertriggertype", "registerfunction", "registerfunction", "registertrigger"]


class NullHandler(TriggerHandler[Any]):
    async def register_trigger(self, config: TriggerConfig[Any]) -> None:
        return None

    async def unregister_trigger(self, config: TriggerConfig[Any]) -> None:
        return None


def _states(iii: III) -> list[IIIConnectionState]:
    seen: list[IIIConnectionState] = []
    iii.add_connection_state_listener(seen.append)
    return seen


def _setup_worker(fake: FakeEngine, connect: Connect) -> tuple[III, str]:
    iii = connect(fake.url, reconnection_config=ReconnectionConfig(initial_delay_ms=100))
    iii.register_trigger_type({"id": "tt", "description": "d"}, NullHandler())
    iii.register_function("py::a", lambda data: {"a": data})
    iii.register_function("py::b", lambda data: {"b": data})
    trigger = iii.register_trigger({"type": "tt", "function_id": "py::a", "config": {"k": 1}})
    fake.wait_for_frame(lambda r: r.type == "registertrigger")
    return iii, trigger.id


def _replay(fake: FakeEngine, conn: int) -> list[dict[str, Any]]:
    return [r.frame for r in fake.frames(conn=conn)]


@pytest.mark.parametrize("how", ["close-1000", "close-1001", "abnormal"])
def test_reconnect_replays_in_order_without_duplicates(fake: FakeEngine, connect: Connect, how: str) -> None:
    iii, trigger_id = _setup_worker(fake, connect)
    states = _states(iii)
    first = fake.connection(0)
    assert iii.worker_id == first.worker_id
    started = time.monotonic()
    if how == "abnormal":
        fake.abort_connections()
    else:
        fake.close_connections(int(how.split("-")[1]))
    fake.wait_for_connections(2)
    wait_for(lambda: iii.get_connection_state() == "connected" and states[-1] == "connected", timeout=2)
    assert time.monotonic() - started < 2
    fake.wait_for_frame(
        lambda r: (
            r.conn == 1
            and r.type == "invokefunction"
            and r.frame["function_id"] == "engine::workers::register"
        )
    )
    frames = _replay(fake, 1)
    assert [f["type"] for f in frames[:5]] == REPLAY_ORDER
    assert frames[0] == {
        "type": "reattach",
        "previous_worker_id": first.worker_id,
        "reattach_token": first.reattach_token,
    }
    assert [f["id"] for f in frames[2:4]] == ["py::a", "py::b"]
    assert frames[4]["id"] == trigger_id
    assert frames[5]["function_id"] == "engine::workers::register" and len(frames) == 6
    assert states[0] == "connected" and states[1:] == ["disconnected", "reconnecting", "connected"]
    wait_for(lambda: iii.worker_id == fake.connection(1).worker_id, what="new worker id stored")
    assert fake.invoke("py::a", 1, conn=1)["result"] == {"a": 1}


def test_calls_made_while_disconnected_wait_and_honour_their_timeout(
    fake: FakeEngine, connect: Connect
) -> None:
    fake.functions["remote::echo"] = lambda data: data
    iii = connect(fake.url, reconnection_config=ReconnectionConfig(initial_delay_ms=50, max_delay_ms=100))
    fake.stop()
    wait_for(lambda: iii.get_connection_state() != "connected", what="drop noticed")
    started = time.monotonic()
    with pytest.raises(InvocationError) as info:
        iii.trigger({"function_id": "remote::echo", "payload": "late", "timeout_ms": 300})
    assert info.value.code == "TIMEOUT" and time.monotonic() - started < 1
    results: list[Any] = []
    caller = threading.Thread(
        target=lambda: results.append(iii.trigger({"function_id": "remote::echo", "payload": "queued"})),
        daemon=True,
    )
    caller.start()
    wait_for(lambda: iii._conn.queued() >= 1, what="call queued while offline")
    fake.start()
    caller.join(5)
    assert results == ["queued"]
    fake.wait_for_frame(lambda r: r.conn == 1 and r.frame.get("function_id") == "engine::workers::register")
    frames = _replay(fake, 1)
    kinds = [(f["type"], f.get("function_id")) for f in frames]
    queued_at = kinds.index(("invokefunction", "remote::echo"))
    assert queued_at < kinds.index(("invokefunction", "engine::workers::register"))


def test_offline_queue_is_bounded_and_drops_the_oldest(
    fake: FakeEngine, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    iii = connect(fake.url, reconnection_config=ReconnectionConfig(initial_delay_ms=50, max_delay_ms=100))
    fake.stop()
    wait_for(lambda: iii.get_connection_state() != "connected", what="drop noticed")
    with caplog.at_level(logging.WARNING, logger="iii_typed"):
        for i in range(1005):
            iii.trigger({"function_id": "remote::sink", "payload": i, "action": {"type": "void"}})
    assert iii._conn.queued() == 1000
    assert sum("offline queue full" in r.getMessage() for r in caplog.records) == 5
    fake.start()
    fake.wait_for_connections(2)
    wait_for(lambda: len(fake.frames(conn=1, type="invokefunction")) >= 1001, what="queue flushed")
    payloads = [
        r.frame["data"]
        for r in fake.frames(conn=1, type="invokefunction")
        if r.frame["function_id"] == "remote::sink"
    ]
    assert payloads == list(range(5, 1005))


def test_registrations_made_while_disconnected_are_replayed_not_queued(
    fake: FakeEngine, connect: Connect
) -> None:
    iii = connect(fake.url, reconnection_config=ReconnectionConfig(initial_delay_ms=50, max_delay_ms=100))
    gone = iii.register_function("py::gone", lambda data: data)
    fake.wait_for_frame(lambda r: r.type == "registerfunction")
    fake.stop()
    wait_for(lambda: iii.get_connection_state() != "connected", what="drop noticed")
    iii.register_function("py::late", lambda data: data)
    gone.unregister()
    fake.start()
    fake.wait_for_frame(lambda r: r.conn == 1 and r.type == "invokefunction")
    kinds = [(f["type"], f.get("id")) for f in _replay(fake, 1)]
    assert ("registerfunction", "py::late") in kinds
    assert ("registerfunction", "py::gone") not in kinds and ("unregisterfunction", "py::gone") not in kinds
    assert sum(1 for k in kinds if k[0] == "registerfunction") == 1


def test_fatal_rejection_fails_pending_and_later_calls_without_retrying(
    fake: FakeEngine, connect: Connect
) -> None:
    fake.silent.add("remote::slow")
    iii = connect(fake.url)
    states = _states(iii)
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            iii.trigger({"function_id": "remote::slow", "payload": {}, "timeout_ms": 20000})
        except BaseException as exc:
            outcome.append(exc)

    caller = threading.Thread(target=call, daemon=True)
    caller.start()
    fake.wait_for_frame(lambda r: r.type == "invokefunction" and r.frame["function_id"] == "remote::slow")
    fake.send(
        {
            "type": "registrationrejected",
            "code": "WORKER_NAMESPACE_CONFLICT",
            "namespace": "default",
            "worker_name": "probe-worker",
            "owner_worker_id": "fc42f1dc-7c67-461a-8bf8-ac5231838bdc",
        }
    )
    caller.join(5)
    assert (
        isinstance(outcome[0], RegistrationRejectedError) and outcome[0].code == "WORKER_NAMESPACE_CONFLICT"
    )
    assert "probe-worker" in str(outcome[0])
    assert iii.get_connection_state() == "failed" and states.count("failed") == 1
    started = time.monotonic()
    with pytest.raises(RegistrationRejectedError):
        iii.trigger({"function_id": "remote::slow", "payload": {}})
    assert time.monotonic() - started < 0.5
    fake.wait_closed(0)
    task = iii._conn._task
    wait_for(lambda: task is not None and task.done(), what="the connect loop ended: no retry will follow")
    assert fake.attempts == 1 and iii.get_connection_state() == "failed"


def test_register_worker_raises_on_rejection_of_the_worker_registration(fake: FakeEngine) -> None:
    fake.reject_worker = {
        "code": "WORKER_NAMESPACE_CONFLICT",
        "namespace": "default",
        "worker_name": "dup",
        "owner_worker_id": "fc42f1dc-7c67-461a-8bf8-ac5231838bdc",
    }
    with pytest.raises(RegistrationRejectedError, match="'dup'") as info:
        register_worker(fake.url, fast_options(worker_name="dup"))
    assert info.value.code == "WORKER_NAMESPACE_CONFLICT" and info.value.worker_name == "dup"
    assert fake.attempts == 1


@pytest.mark.parametrize("status", [401, 403])
def test_http_auth_failure_is_fatal_after_one_attempt(fake: FakeEngine, status: int) -> None:
    fake.reject_status = status
    started = time.monotonic()
    with pytest.raises(RegistrationRejectedError) as info:
        register_worker(fake.url, fast_options(headers={"Authorization": "Bearer bad"}))
    assert info.value.code == "AUTH_ERROR" and str(status) in str(info.value)
    assert time.monotonic() - started < 2 and fake.attempts == 1


def test_auth_error_frame_then_close_is_fatal(fake: FakeEngine) -> None:
    fake.auth_error = "auth function returned no result"
    with pytest.raises(RegistrationRejectedError, match="auth function returned no result") as info:
        register_worker(fake.url, fast_options())
    assert info.value.code == "AUTH_ERROR"
    assert fake.attempts == 1


def test_server_errors_keep_retrying_until_the_retries_run_out(fake: FakeEngine) -> None:
    fake.reject_status = 500
    started = time.monotonic()
    with pytest.raises(EngineUnreachableError, match="retries"):
        register_worker(
            fake.url, fast_options(reconnection_config=ReconnectionConfig(initial_delay_ms=50, max_retries=3))
        )
    assert fake.attempts == 4 and time.monotonic() - started < 3


def test_register_worker_against_a_closed_port_fails_fast() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(EngineUnreachableError) as info:
        register_worker(
            f"ws://127.0.0.1:{port}",
            fast_options(reconnection_config=ReconnectionConfig(initial_delay_ms=100, max_retries=2)),
        )
    assert time.monotonic() - started < 3
    assert isinstance(info.value, ConnectionError) and "3 attempt" in str(info.value)


def test_failed_after_retries_raises_at_once_and_connect_async_recovers(
    fake: FakeEngine, connect: Connect
) -> None:
    fake.functions["remote::echo"] = lambda data: data
    iii = connect(
        fake.url, reconnection_config=ReconnectionConfig(initial_delay_ms=20, max_delay_ms=40, max_retries=2)
    )
    fake.stop()
    wait_for(lambda: iii.get_connection_state() == "failed", what="retries exhausted")
    with pytest.raises(EngineUnreachableError):
        iii.trigger({"function_id": "remote::echo", "payload": 1})
    fake.start()
    asyncio.run(iii.connect_async())
    assert iii.get_connection_state() == "connected"
    assert iii.trigger({"function_id": "remote::echo", "payload": 2}) == 2


def test_keepalive_detects_a_dead_engine(fake: FakeEngine, connect: Connect) -> None:
    iii = connect(fake.url, keepalive_interval_ms=200, keepalive_timeout_ms=200)
    states = _states(iii)
    started = time.monotonic()
    fake.pause_reading(0)
    wait_for(lambda: "disconnected" in states, timeout=3, what="dead engine detected")
    assert time.monotonic() - started < 1.5
    wait_for(lambda: iii.get_connection_state() == "connected" and len(fake.connections) == 2, timeout=3)


def test_state_listeners(fake: FakeEngine, connect: Connect) -> None:
    iii = connect(fake.url)
    seen: list[str] = []
    broken_calls: list[str] = []

    def broken(state: str) -> None:
        broken_calls.append(state)
        raise RuntimeError("listener bug")

    unsubscribe = iii.add_connection_state_listener(lambda s: seen.append(s))
    iii.add_connection_state_listener(broken)
    assert seen == ["connected"] and broken_calls == ["connected"]
    fake.close_connections(1000)
    wait_for(lambda: seen[-1:] == ["connected"] and len(seen) > 1, what="reconnected")
    unsubscribe()
    unsubscribe()
    count = len(seen)
    fake.close_connections(1000)
    wait_for(lambda: broken_calls.count("connected") == 3, what="second reconnect")
    assert len(seen) == count
