"""Reconnection against real faults: a proxy that closes, resets or blackholes, and an engine that is
killed and restarted (issue 8 item 1; protocol.md §3.2, §10; cases.md B03; decisions "Policies").

Each scenario checks the same outcome: the worker is ``connected`` again within 2 s of the engine
being reachable, its function is callable and its trigger fires again, the engine lists it exactly
once, and over a bounded window nothing flips (no second identity, no ownership change, no further
state change).
"""

from __future__ import annotations

import json
import queue
import time
from collections.abc import Callable
from typing import Any

import pytest
from reliability_support import (
    KEEPALIVE_BOUND_S,
    StateRecorder,
    unique,
    worker_ids_named,
)

from iii_typed import III
from iii_typed.engine.process import EngineProcess
from tests.support.waiting import holds_for, wait_for
from tests.support.ws_proxy import WsProxy

#: The reconnection bound of decisions "Policies" (with initial_delay_ms=100, max_delay_ms=1000).
RECONNECT_BOUND_S = 2.0


class Worker:
    """A worker with a function and a ``subscribe`` trigger, as a test subject."""

    def __init__(self, client: III, name: str) -> None:
        self.client = client
        self.name = name
        self.topic = unique("topic")
        self.events: queue.Queue[Any] = queue.Queue()
        client.register_function("rel::echo", lambda data: {"echo": data["v"], "by": client.worker_id})
        client.register_function("rel::on_event", lambda data: self.events.put(data))
        self.trigger = client.register_trigger(
            {"type": "subscribe", "function_id": "rel::on_event", "config": {"topic": self.topic}}
        )

    def check_serving(self, caller: III, tag: str) -> None:
        """The function answers a call from ``caller`` and a publish reaches the trigger.

        ``connected`` means the replay has been written; one round trip of the worker's own makes
        sure the engine has applied it (it reads a connection's frames in order) before another
        worker calls in.
        """
        self.client.trigger({"function_id": "engine::health::check", "payload": {}, "timeout_ms": 5000})
        result = caller.trigger({"function_id": "rel::echo", "payload": {"v": tag}, "timeout_ms": 5000})
        assert result == {"echo": tag, "by": self.client.worker_id}
        caller.trigger({"function_id": "publish", "payload": {"topic": self.topic, "data": {"tag": tag}}})
        assert self.events.get(timeout=5) == {"tag": tag}


def _function_rows(caller: III, function_id: str) -> list[dict[str, Any]]:
    rows = caller.trigger({"function_id": "engine::functions::list", "payload": {}, "timeout_ms": 5000})
    return [row for row in rows["functions"] if row["function_id"] == function_id]


def _trigger_rows(caller: III, trigger_id: str) -> list[dict[str, Any]]:
    rows = caller.trigger(
        {"function_id": "engine::registered-triggers::list", "payload": {}, "timeout_ms": 5000}
    )
    return [row for row in rows["registered_triggers"] if row["id"] == trigger_id]


def assert_no_duplicates(worker: Worker, caller: III) -> None:
    """The engine lists the worker, its function and its trigger exactly once."""
    wait_for(
        lambda: worker_ids_named(caller, worker.name) == [worker.client.worker_id],
        timeout=3,
        what="exactly one live worker with this name: the current connection",
    )
    assert len(_function_rows(caller, "rel::echo")) == 1
    assert len(_trigger_rows(caller, worker.trigger.id)) == 1


def observe_stability(worker: Worker, caller: III, recorder: StateRecorder, seconds: float) -> int:
    """Sample the engine's view of ``worker`` for ``seconds``; return the number of ownership flips.

    Each sample is the list of ``(worker id, function count)`` the engine lists under the worker's
    name. Any change between samples (a second identity, the function moving) is a flip; so is a
    connection-state change of the worker during the window.
    """
    start_states = recorder.mark()
    expected = [(worker.client.worker_id, 2)]
    flips = 0
    previous: list[tuple[str, int]] | None = None
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        rows = caller.trigger({"function_id": "engine::workers::list", "payload": {}, "timeout_ms": 5000})
        sample = sorted(
            (row["id"], row["function_count"]) for row in rows["workers"] if row.get("name") == worker.name
        )
        if previous is not None and sample != previous:
            flips += 1
        assert sample == expected, f"engine lists {sample}, expected {expected}"
        previous = sample
        assert caller.trigger({"function_id": "rel::echo", "payload": {"v": 1}}) == {
            "echo": 1,
            "by": worker.client.worker_id,
        }
    return flips + len(recorder.seen[start_states:])


def _proxied_setup(
    engine_factory: Callable[..., EngineProcess],
    proxies: Callable[[int], WsProxy],
    connect: Callable[..., III],
) -> tuple[EngineProcess, WsProxy, Worker, III, StateRecorder]:
    engine = engine_factory()
    proxy = proxies(engine.port)
    name = unique("worker")
    worker = Worker(connect(proxy.url, worker_name=name), name)
    caller = connect(engine.url)
    wait_for(lambda: _function_rows(caller, "rel::echo"), what="function registered")
    worker.check_serving(caller, "before")
    return engine, proxy, worker, caller, StateRecorder.attach(worker.client)


@pytest.mark.parametrize("how", ["close-1000", "close-1001", "abnormal", "blackhole"])
def test_reconnects_through_a_faulty_proxy(
    engine_factory: Callable[..., EngineProcess],
    proxies: Callable[[int], WsProxy],
    connect: Callable[..., III],
    how: str,
) -> None:
    _engine, proxy, worker, caller, recorder = _proxied_setup(engine_factory, proxies, connect)
    old_id = worker.client.worker_id
    mark = recorder.mark()
    started = time.monotonic()
    if how.startswith("close-"):
        proxy.close(int(how.split("-")[1]))
    elif how == "abnormal":
        proxy.reset("both")
    else:
        proxy.blackhole("both")
    lost = recorder.wait("disconnected", mark, timeout=KEEPALIVE_BOUND_S + 2)
    if how == "blackhole":
        # Nothing closes: only the keepalive notices the dead path (interval + timeout + close timeout).
        assert lost - started < KEEPALIVE_BOUND_S + 0.5
    else:
        assert lost - started < 0.5
    # The engine stays reachable through the proxy: connected again within the bound of the drop.
    back = recorder.wait("connected", mark, timeout=5)
    assert back - lost < RECONNECT_BOUND_S
    assert recorder.states[mark:] == ["disconnected", "reconnecting", "connected"]
    assert worker.client.worker_id != old_id
    new = proxy.connections[1]
    proxy.wait_for(lambda: new.texts("worker_to_engine"), what="frames of the new connection relayed")
    first = json.loads(new.texts("worker_to_engine")[0])
    assert first["type"] == "reattach" and first["previous_worker_id"] == old_id
    worker.check_serving(caller, how)
    assert_no_duplicates(worker, caller)
    assert observe_stability(worker, caller, recorder, seconds=1.0) == 0


def test_reconnects_after_the_engine_is_killed_and_restarted(
    engine_factory: Callable[..., EngineProcess], connect: Callable[..., III]
) -> None:
    engine = engine_factory()
    name = unique("worker")
    worker = Worker(connect(engine.url, worker_name=name), name)
    caller = connect(engine.url)
    wait_for(lambda: _function_rows(caller, "rel::echo"), what="function registered")
    worker.check_serving(caller, "before")
    recorder = StateRecorder.attach(worker.client)
    caller_recorder = StateRecorder.attach(caller)
    mark, caller_mark = recorder.mark(), caller_recorder.mark()
    engine.kill()
    recorder.wait("reconnecting", mark, timeout=2)
    engine.restart()  # same port, new process: every registration must be replayed
    reachable = time.monotonic()
    back = recorder.wait("connected", mark, timeout=5)
    assert back - reachable < RECONNECT_BOUND_S
    caller_recorder.wait("connected", caller_mark, timeout=5)
    worker.check_serving(caller, "after-restart")
    assert_no_duplicates(worker, caller)
    assert observe_stability(worker, caller, recorder, seconds=1.0) == 0


def test_b03_reattach_retires_the_half_alive_identity_and_nothing_flips(
    engine_factory: Callable[..., EngineProcess],
    proxies: Callable[[int], WsProxy],
    connect: Callable[..., III],
) -> None:
    """cases.md B03: the old engine-side socket stays half-alive while the worker reconnects."""
    engine = engine_factory()
    proxy = proxies(engine.port)
    iii = connect(proxy.url, worker_name="sm")
    iii.register_function("sm::watch", lambda data: {"ok": True})
    caller = connect(engine.url)
    wait_for(lambda: _function_rows(caller, "sm::watch"), what="function registered")
    old_id, old_token = iii.worker_id, iii._conn.reattach_token
    recorder = StateRecorder.attach(iii)
    mark = recorder.mark()
    proxy.blackhole("worker_to_engine")  # the engine's side of the old socket stays open and silent
    proxy.reset("worker")  # the SDK sees a drop and reconnects
    recorder.wait("connected", mark, timeout=3)
    new = proxy.connections[1]
    proxy.wait_for(lambda: len(new.texts("worker_to_engine")) >= 3, what="replay relayed")
    first = json.loads(new.texts("worker_to_engine")[0])
    assert first == {"type": "reattach", "previous_worker_id": old_id, "reattach_token": old_token}
    kinds = [json.loads(t)["type"] for t in new.texts("worker_to_engine")]
    assert kinds.index("reattach") < kinds.index("registerfunction")
    # Within 3 s the function belongs to the new identity and the engine closed the old socket.
    wait_for(lambda: worker_ids_named(caller, "sm") == [iii.worker_id], timeout=3, what="one identity")
    old = proxy.connections[0]
    proxy.wait_for(
        lambda: old.close_codes("engine_to_worker"), timeout=3, what="engine closed the old socket"
    )
    # Over the next 10 s: no flip, no state change, 100 sequential calls answered.
    window_mark = recorder.mark()
    calls = 0
    samples: list[list[str]] = []

    def answered_by_one_identity() -> bool:
        nonlocal calls
        if calls < 100:
            assert caller.trigger({"function_id": "sm::watch", "payload": {}}) == {"ok": True}
            calls += 1
        samples.append(worker_ids_named(caller, "sm"))
        return samples[-1] == [iii.worker_id]

    holds_for(
        answered_by_one_identity, 10, what=lambda: f"'sm' owned by {iii.worker_id} only, seen {samples[-1]}"
    )
    assert calls == 100
    assert recorder.seen[window_mark:] == []
    assert engine.log_path is not None
    assert "FUNCTION_NAMESPACE_CONFLICT" not in engine.log_path.read_text(encoding="utf-8")
