"""Lifecycle under real faults: keepalive against a dead path, calls while disconnected, shutdown,
blocking handlers (issue 8 item 1; protocol.md §3.7, §4.6, §10; sdk.md §2.9; cases.md B13, B24)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from reliability_support import KEEPALIVE_BOUND_S, StateRecorder, fast_options, sdk_threads

from iii_typed import III, InvocationError, InvocationTimeoutError, register_worker
from iii_typed.engine.process import EngineProcess
from tests.support.waiting import wait_for
from tests.support.ws_proxy import OP_CLOSE, WsProxy


class Slow:
    """A function that holds each call until released (simulated slow work waits on an Event)."""

    def __init__(self, server: III, function_id: str = "rel::slow") -> None:
        self.entered = threading.Semaphore(0)
        self.release = threading.Event()
        self.function_id = function_id

        def slow(data: Any) -> str:
            self.entered.release()
            self.release.wait(20)
            return "done"

        server.register_function(function_id, slow)


class Call:
    """A ``trigger`` running on a thread of its own; records the outcome and when it ended."""

    def __init__(self, client: III, request: dict[str, Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.ended_at: float | None = None
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(client, request), daemon=True)
        self._thread.start()

    def _run(self, client: III, request: dict[str, Any]) -> None:
        try:
            self.result = client.trigger(request)
        except BaseException as exc:
            self.error = exc
        self.ended_at = time.monotonic()
        self.done.set()

    def wait(self, timeout: float) -> None:
        assert self.done.wait(timeout), f"call still pending after {timeout} s"


def test_dead_engine_is_detected_within_the_keepalive_bound_and_pending_calls_fail_fast(
    engine: EngineProcess, proxies: Callable[[int], WsProxy], connect: Callable[..., III]
) -> None:
    proxy = proxies(engine.port)
    slow = Slow(connect(engine.url), "rel::slow-dead")
    worker = connect(proxy.url)
    recorder = StateRecorder.attach(worker)
    call = Call(worker, {"function_id": slow.function_id, "payload": {}, "timeout_ms": 30000})
    assert slow.entered.acquire(timeout=5)
    mark = recorder.mark()
    started = time.monotonic()
    proxy.blackhole("both")  # the engine vanishes without a FIN or RST
    try:
        call.wait(KEEPALIVE_BOUND_S + 1)
        assert call.ended_at is not None and call.ended_at - started < KEEPALIVE_BOUND_S + 0.5
        assert isinstance(call.error, InvocationError) and call.error.code == "DISCONNECTED"
        assert slow.function_id in call.error.message
        lost = recorder.wait("disconnected", mark, timeout=1)
        assert lost - started < KEEPALIVE_BOUND_S + 0.5
        recorder.wait("connected", mark, timeout=3)  # a new path through the proxy works
        assert worker.trigger({"function_id": "engine::health::check", "payload": {}}) is not None
    finally:
        slow.release.set()


def test_calls_while_disconnected_wait_within_their_timeout_or_fail_fast_by_option(
    engine: EngineProcess, proxies: Callable[[int], WsProxy], connect: Callable[..., III]
) -> None:
    proxy = proxies(engine.port)
    connect(engine.url).register_function("rel::echo-offline", lambda data: data["v"])
    queued = connect(proxy.url)
    failing = connect(proxy.url, offline_calls="fail")
    recorders = [StateRecorder.attach(queued), StateRecorder.attach(failing)]
    marks = [r.mark() for r in recorders]
    proxy.accepting = False  # the engine is unreachable: every attempt is reset
    proxy.reset("both")
    for recorder, mark in zip(recorders, marks, strict=True):
        recorder.wait("reconnecting", mark, timeout=2)
    # offline_calls="fail": refused at once, nothing queued.
    started = time.monotonic()
    with pytest.raises(InvocationError) as refused:
        failing.trigger({"function_id": "rel::echo-offline", "payload": {"v": 1}})
    assert refused.value.code == "DISCONNECTED" and "offline_calls" in refused.value.message
    assert time.monotonic() - started < 0.1
    # Default: the call waits in the offline queue, bounded by its own timeout.
    started = time.monotonic()
    with pytest.raises(InvocationTimeoutError):
        queued.trigger({"function_id": "rel::echo-offline", "payload": {"v": 2}, "timeout_ms": 300})
    assert 0.28 < time.monotonic() - started < 0.6
    waiting = Call(queued, {"function_id": "rel::echo-offline", "payload": {"v": 3}, "timeout_ms": 10000})
    wait_for(lambda: queued._conn.queued() >= 1, what="call held while offline")
    proxy.accepting = True  # reachable again: the held call is sent after the replay and answered
    waiting.wait(5)
    assert waiting.error is None and waiting.result == 3
    for recorder, mark in zip(recorders, marks, strict=True):
        recorder.wait("connected", mark, timeout=3)
    assert failing.trigger({"function_id": "rel::echo-offline", "payload": {"v": 4}}) == 4


@pytest.mark.parametrize("path", ["healthy", "blackholed"])
def test_shutdown_sends_a_close_frame_and_leaves_no_threads(
    engine: EngineProcess, proxies: Callable[[int], WsProxy], path: str
) -> None:
    proxy = proxies(engine.port)
    before = set(sdk_threads())
    worker = register_worker(proxy.url, fast_options())
    worker.register_function("rel::idle", lambda data: None)
    assert set(sdk_threads()) - before  # the client runs threads of its own
    if path == "blackholed":
        proxy.blackhole("both")  # the engine will never answer the close frame
    started = time.monotonic()
    worker.shutdown()
    assert time.monotonic() - started < 3  # bounded even when the engine does not answer
    conn = proxy.connections[0]

    def closes() -> list[int | None]:
        return [f.close_code for f in conn.frames["worker_to_engine"] if f.opcode == OP_CLOSE]

    proxy.wait_for(closes, what="close frame relayed")
    assert closes() == [1000]
    if path == "healthy":
        proxy.wait_for(lambda: conn.closed.is_set(), what="TCP closed after the close handshake")
        assert conn.close_codes("engine_to_worker") == [1000]
    assert not set(sdk_threads()) - before
    worker.shutdown()  # idempotent


def test_shutdown_while_reconnecting_is_prompt(
    engine: EngineProcess, proxies: Callable[[int], WsProxy]
) -> None:
    proxy = proxies(engine.port)
    before = set(sdk_threads())
    worker = register_worker(proxy.url, fast_options())
    recorder = StateRecorder.attach(worker)
    proxy.accepting = False
    proxy.reset("both")
    recorder.wait("reconnecting", timeout=2)
    pending = Call(worker, {"function_id": "rel::never", "payload": {}, "timeout_ms": 20000})
    wait_for(lambda: worker._conn.queued() >= 1, what="call held while offline")
    started = time.monotonic()
    worker.shutdown()
    assert time.monotonic() - started < 1
    pending.wait(1)
    assert isinstance(pending.error, InvocationError) and pending.error.code == "SHUTDOWN"
    assert not set(sdk_threads()) - before


def test_b13_blocking_handlers_never_hang_the_caller(
    engine: EngineProcess, connect: Callable[..., III], caplog: pytest.LogCaptureFixture
) -> None:
    """cases.md B13: a slow sync handler costs no reconnect; an async handler that blocks the loop
    longer than the keepalive bound is named in a warning and the caller gets an answer or an
    explicit error, never a hang."""
    worker = connect(engine.url)
    caller = connect(engine.url)
    recorder = StateRecorder.attach(worker)
    blocker = threading.Event()

    def slow_sync(data: Any) -> str:
        blocker.wait(1.5)  # 3x the keepalive interval, off the loop
        return "ok"

    async def slow_async(data: Any) -> str:
        blocker.wait(1.5)  # blocks the SDK's loop (the misbehaviour under test)
        return "ok"

    worker.register_function("rel::slow_sync", slow_sync)
    worker.register_function("rel::slow_async", slow_async)
    calls = [Call(caller, {"function_id": "rel::slow_sync", "payload": {}}) for _ in range(2)]
    for call in calls:
        call.wait(5)
        assert call.error is None and call.result == "ok"
    assert recorder.states == ["connected"]  # no reconnect for sync handlers
    blocked = Call(caller, {"function_id": "rel::slow_async", "payload": {}, "timeout_ms": 10000})
    blocked.wait(6)
    if blocked.error is None:
        assert blocked.result == "ok"
    else:  # the link dropped while the loop was blocked: an explicit error, not a timeout
        assert isinstance(blocked.error, InvocationError)
        assert blocked.error.code in ("invocation_stopped", "DISCONNECTED")
    wait_for(lambda: worker.get_connection_state() == "connected", timeout=3, what="worker connected")
    assert any("rel::slow_async" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")


def test_an_unexpected_error_in_a_session_costs_one_connection_not_the_reconnect_loop(
    engine: EngineProcess, connect: Callable[..., III], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug on the connection path (here: building the replay raises once) is logged, the socket is
    closed and the client reconnects, instead of the connection task dying silently."""
    failures: list[int] = []
    original = III._replay_frames

    def flaky(self: III, generation: int) -> list[bytes]:
        if not failures:
            failures.append(generation)
            raise RuntimeError("injected fault while building the replay")
        return original(self, generation)

    monkeypatch.setattr(III, "_replay_frames", flaky)
    client = connect(engine.url)  # register_worker returns only once connected
    assert failures, "the fault was not injected"
    assert client.worker_id is not None

    def echo(data: Any) -> Any:
        return data

    client.register_function("rel::after_fault", echo)
    assert client.trigger({"function_id": "rel::after_fault", "payload": {"ok": 1}})["ok"] == 1
