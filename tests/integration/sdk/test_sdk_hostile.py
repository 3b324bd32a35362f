"""Careless and hostile use of the SDK against a real dev engine: every call gets a clear answer,
the client keeps serving, and nothing a handler does can stop the SDK's event loop."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from iii_typed import (
    III,
    InvocationError,
    ReconnectionConfig,
    TriggerConfig,
    TriggerHandler,
    register_worker,
)
from iii_typed._loop import HandlerCapacityError
from iii_typed.engine.process import EngineProcess
from tests.integration.sdk.sdk_support import fast_options
from tests.support.waiting import wait_for

Make = Callable[..., III]


@pytest.fixture
def make(engine: EngineProcess) -> Iterator[Make]:
    """``make(**options)`` -> a client connected to the session engine, shut down at teardown."""
    made: list[III] = []

    def factory(**kwargs: Any) -> III:
        client = register_worker(engine.url, fast_options(**kwargs))
        made.append(client)
        return client

    yield factory
    for client in made:
        client.shutdown()


def _tag() -> str:
    return f"hostile{uuid.uuid4().hex[:8]}"


def _failure(client: III, function_id: str) -> InvocationError:
    """Call ``function_id``; it must fail with ``invocation_failed`` well before the timeout."""
    with pytest.raises(InvocationError) as info:
        client.trigger({"function_id": function_id, "payload": {}, "timeout_ms": 5000})
    assert info.value.code == "invocation_failed", info.value
    return info.value


class _Custom(BaseException):
    """A BaseException subclass that is neither SystemExit nor KeyboardInterrupt."""


def test_async_handlers_raising_base_exceptions_are_answered_and_the_loop_survives(make: Make) -> None:
    """An async handler raising SystemExit or KeyboardInterrupt stopped the SDK's event loop: the
    caller timed out and every later call failed with "the iii client is shut down"."""
    tag = _tag()
    worker = make(worker_name=f"{tag}-worker")
    caller = make(worker_name=f"{tag}-caller")

    def raising(exc: BaseException) -> Callable[[Any], Any]:
        async def handler(_: Any) -> Any:
            raise exc

        return handler

    raised: dict[str, BaseException] = {
        "exit": SystemExit(3),
        "interrupt": KeyboardInterrupt(),
        "custom": _Custom("boom"),
        "cancelled": asyncio.CancelledError("by the handler"),
    }
    for name, exc in raised.items():
        worker.register_function(f"{tag}::{name}", raising(exc))

    async def ok(payload: Any) -> Any:
        return {"ok": True}

    worker.register_function(f"{tag}::ok", ok)
    for name, exc in raised.items():
        error = _failure(caller, f"{tag}::{name}")
        assert type(exc).__name__ in error.message, error.message
    assert caller.trigger({"function_id": f"{tag}::ok", "payload": {}, "timeout_ms": 5000})["ok"] is True
    assert worker.get_connection_state() == "connected"
    assert worker.trigger({"function_id": f"{tag}::ok", "payload": {}, "timeout_ms": 5000})["ok"] is True


def test_unencodable_errors_and_results_are_answered(make: Make) -> None:
    """A lone surrogate in an exception message made the error result itself unencodable, so no
    answer was sent; results that cannot be written are refused with ``invocation_failed``."""
    tag = _tag()
    worker = make(worker_name=f"{tag}-worker")
    caller = make(worker_name=f"{tag}-caller")
    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic
    deep: list[Any] = []
    node = deep
    for _ in range(1500):
        node.append([])
        node = node[0]

    def bad_message(_: Any) -> Any:
        raise ValueError("bad \ud800 value")

    async def bad_message_async(_: Any) -> Any:
        raise ValueError("bad \udfff value")

    worker.register_function(f"{tag}::message", bad_message)
    worker.register_function(f"{tag}::message_async", bad_message_async)
    worker.register_function(f"{tag}::cyclic", lambda _: cyclic)
    worker.register_function(f"{tag}::deep", lambda _: deep)
    worker.register_function(f"{tag}::key", lambda _: {"\ud800": 1})
    assert "bad \\ud800 value" in _failure(caller, f"{tag}::message").message
    assert "bad \\udfff value" in _failure(caller, f"{tag}::message_async").message
    for name in ("cyclic", "deep", "key"):
        assert "not JSON-serialisable" in _failure(caller, f"{tag}::{name}").message


_TELEMETRY_WORKER = textwrap.dedent(
    """
    import sys
    from iii_typed import InitOptions, OtelConfig, register_worker

    cyclic = {}
    cyclic["self"] = cyclic
    deep = []
    node = deep
    for _ in range(1500):
        node.append([])
        node = node[0]

    def bad_message(_):
        raise ValueError("bad \\ud800 value")

    tag = sys.argv[2]
    options = InitOptions(worker_name=tag, otel=OtelConfig(enabled=True))
    with register_worker(sys.argv[1], options) as iii:
        iii.register_function(tag + "::cyclic", lambda _: cyclic)
        iii.register_function(tag + "::deep", lambda _: deep)
        iii.register_function(tag + "::key", lambda _: {"\\ud800": 1})
        iii.register_function(tag + "::message", bad_message)
        iii.register_function(tag + "::ready", lambda _: True)
        print("ready", flush=True)
        sys.stdin.read()
    """
)


def test_with_telemetry_on_odd_results_are_still_answered(engine: EngineProcess, make: Make) -> None:
    """With telemetry on (the default), capturing such a result raised on the handler thread and
    the caller waited for its timeout. Telemetry is process-global: the worker runs on its own."""
    tag = _tag()
    env = {**os.environ, "OTEL_ENABLED": "true"}
    proc = subprocess.Popen(
        [sys.executable, "-c", _TELEMETRY_WORKER, engine.url, tag],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        caller = make(worker_name=f"{tag}-caller")
        assert caller.trigger({"function_id": f"{tag}::ready", "payload": {}}) is True
        for name in ("cyclic", "deep", "key"):
            assert "not JSON-serialisable" in _failure(caller, f"{tag}::{name}").message
        assert "bad \\ud800 value" in _failure(caller, f"{tag}::message").message
    finally:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    assert proc.returncode == 0


class _ExitingProvider(TriggerHandler[Any]):
    """A trigger-type provider whose methods raise ``SystemExit`` (run on the SDK loop)."""

    async def register_trigger(self, config: TriggerConfig[Any]) -> None:
        raise SystemExit("no bindings today")

    async def unregister_trigger(self, config: TriggerConfig[Any]) -> None:
        raise SystemExit("no unbinding either")


def test_a_provider_raising_base_exceptions_does_not_stop_the_client(make: Make) -> None:
    """``SystemExit`` from a trigger provider (called on the SDK loop) ran out of the loop and
    stopped the client; the binding is refused with ``trigger_registration_failed`` instead."""
    tag = _tag()
    provider = make(worker_name=f"{tag}-provider")
    provider.register_trigger_type({"id": f"{tag}-type", "description": "refuses"}, _ExitingProvider())
    provider.register_function(f"{tag}::ok", lambda _: "ok")
    binder = make(worker_name=f"{tag}-binder")
    handle = binder.register_trigger({"type": f"{tag}-type", "function_id": f"{tag}::ok", "config": {}})
    error = handle.wait_for_error(5)
    assert error is not None and error.code == "trigger_registration_failed"
    assert "no bindings today" in error.message
    assert binder.trigger({"function_id": f"{tag}::ok", "payload": {}, "timeout_ms": 5000}) == "ok"
    assert provider.trigger({"function_id": f"{tag}::ok", "payload": {}, "timeout_ms": 5000}) == "ok"


def test_a_listener_raising_system_exit_does_not_stop_the_client(fresh_engine: EngineProcess) -> None:
    """Connection-state listeners run on the SDK loop; ``SystemExit`` from one ended the
    connection task. It is logged like any listener error, and the client reconnects."""
    states: list[str] = []

    def listener(state: str) -> None:
        states.append(state)
        if state == "reconnecting":
            raise SystemExit("listener quits")

    with register_worker(fresh_engine.url, fast_options(worker_name=_tag())) as client:
        client.register_function("listener::ok", lambda _: "ok")
        client.add_connection_state_listener(listener)
        fresh_engine.restart()
        wait_for(lambda: states[-1:] == ["connected"] and "reconnecting" in states, timeout=10)
        assert client.trigger({"function_id": "listener::ok", "payload": {}, "timeout_ms": 5000}) == "ok"


def test_cyclic_and_too_deep_payloads_are_refused_with_a_type_error(make: Make) -> None:
    """They raised RecursionError from the search for the offending part (documented: TypeError
    naming where it is, before anything is sent); the client then still works."""
    client = make(worker_name=_tag())
    cyclic: dict[str, Any] = {"a": []}
    cyclic["a"].append(cyclic)
    deep: list[Any] = []
    node = deep
    for _ in range(5000):
        node.append([])
        node = node[0]
    with pytest.raises(TypeError, match=r"payload\['a'\]\[0\] \(a circular reference"):
        client.trigger({"function_id": "engine::health::check", "payload": cyclic})
    with pytest.raises(TypeError, match=r"nested deeper than 254 levels"):
        client.trigger({"function_id": "engine::health::check", "payload": deep})
    with pytest.raises(TypeError, match=r"metadata\['m'\]\['a'\]\[0\] \(a circular reference"):
        client.trigger({"function_id": "engine::health::check", "payload": {}, "metadata": {"m": cyclic}})
    assert client.trigger({"function_id": "engine::health::check", "payload": {}}) is not None


def test_registrations_the_engine_would_drop_are_refused_locally(make: Make) -> None:
    """``description=5`` was sent as is: the engine dropped the frame and the function silently
    never existed. A blank trigger type was parked by the engine forever with no answer."""
    client = make(worker_name=_tag())
    fid = f"{_tag()}::f"
    with pytest.raises(TypeError, match=r"description of .* must be a str, not int"):
        client.register_function(fid, lambda _: 1, description=5)
    client.register_function(fid, lambda _: 1, description="fine")
    assert client.trigger({"function_id": fid, "payload": {}, "timeout_ms": 5000}) == 1
    with pytest.raises(ValueError, match="type is blank"):
        client.register_trigger({"type": " ", "function_id": fid})
    with pytest.raises(ValueError, match="trigger type id is blank"):
        client.register_trigger_type({"id": "", "description": "d"}, _ExitingProvider())


def test_a_call_that_gets_no_handler_thread_is_answered(make: Make, monkeypatch: pytest.MonkeyPatch) -> None:
    """When no thread can be started for a sync handler the call was dropped silently (logged at
    DEBUG as "after shutdown") and its caller waited for the whole timeout."""
    worker = make(worker_name=_tag())
    caller = make(worker_name=_tag())
    fid = f"{_tag()}::f"
    worker.register_function(fid, lambda _: "ran")

    def no_thread(fn: Callable[[], None]) -> None:
        raise HandlerCapacityError("can't start new thread (2000 handler threads are running)")

    monkeypatch.setattr(worker._threads, "submit", no_thread)
    error = _failure(caller, fid)
    assert "could not run the handler" in error.message and "can't start new thread" in error.message
    monkeypatch.undo()
    assert caller.trigger({"function_id": fid, "payload": {}, "timeout_ms": 5000}) == "ran"


def test_the_client_keeps_reconnecting_after_a_thousand_failed_attempts(engine_factory: Any) -> None:
    """The backoff computed 2.0 ** retry: at the 1024th retry (about 8.5 hours of outage with the
    default delays, 2 s here with zero delays) the OverflowError ended the connection task and the
    worker never came back, even once the engine was up again."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    options = fast_options(
        worker_name=_tag(), reconnection_config=ReconnectionConfig(initial_delay_ms=0, max_delay_ms=0)
    )
    client = III(f"ws://127.0.0.1:{port}", options)
    try:
        wait_for(lambda: client._conn.attempts > 1100, timeout=30, what="over 1100 failed attempts")
        assert client.get_connection_state() == "reconnecting"
        engine_factory(port=port, http_port=0, stream_port=0)
        wait_for(lambda: client.get_connection_state() == "connected", timeout=10, what="connected")
        assert client.trigger({"function_id": "engine::health::check", "payload": {}}) is not None
    finally:
        client.shutdown()
