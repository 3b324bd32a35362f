"""Engine hardening: slow or stuck workers, vanished workers, limits, shutdown (issue 8 item 2;
protocol.md §1.3, §3.6, §4.7, §11; docs/reliability.md)."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from reliability_support import KEEPALIVE_BOUND_S
from websockets.asyncio.client import connect as ws_connect

from iii_typed import III, InvocationError
from iii_typed.engine.process import EngineProcess
from iii_typed.protocol.frames import MAX_MESSAGE_BYTES
from tests.support.waiting import wait_for, wait_for_async
from tests.support.ws_proxy import WsProxy

BIG = 256 * 1024  # bytes of each result sent to the stuck caller


async def _raw_worker(url: str) -> Any:
    ws = await ws_connect(url, compression=None, max_size=None)
    json.loads(await ws.recv())  # workerregistered
    return ws


def _invoke(function_id: str, data: Any) -> str:
    return json.dumps(
        {
            "type": "invokefunction",
            "invocation_id": str(uuid.uuid4()),
            "function_id": function_id,
            "data": data,
        }
    )


def _names(rows: dict[str, Any]) -> set[str]:
    return {row["name"] for row in rows["workers"] if row.get("name")}


async def _register(ws: Any, name: str) -> None:
    data = {"name": name, "pid": 1, "runtime": "raw", "namespace": None}
    await ws.send(
        json.dumps(
            {
                "type": "invokefunction",
                "function_id": "engine::workers::register",
                "data": data,
                "action": {"type": "void"},
            }
        )
    )


async def test_a_caller_that_stops_reading_does_not_stall_the_callee_or_its_other_callers(
    engine_factory: Callable[..., EngineProcess],
    proxies: Callable[[int], WsProxy],
    connect: Callable[..., III],
) -> None:
    engine = engine_factory(env={"III_STALL_TIMEOUT_MS": "1000"})
    callee = connect(engine.url)

    async def blob(data: dict[str, Any]) -> str:
        return "x" * data["size"]

    callee.register_function("hard::blob", blob)
    healthy = connect(engine.url)
    assert await healthy.trigger_async({"function_id": "hard::blob", "payload": {"size": 3}}) == "xxx"
    proxy = proxies(engine.port)
    stuck = await _raw_worker(proxy.url)
    try:
        await _register(stuck, "stuck-caller")

        async def listed() -> bool:
            rows = await healthy.trigger_async({"function_id": "engine::workers::list", "payload": {}})
            return "stuck-caller" in _names(rows)

        await wait_for_async(listed, what="stuck caller registered")
        proxy.pause("engine_to_worker")  # it keeps sending but never reads again
        for _ in range(200):  # 50 MiB of results owed to a reader that is gone
            await stuck.send(_invoke("hard::blob", {"size": BIG}))
        conn = proxy.connections[0]
        await asyncio.to_thread(
            proxy.wait_for, lambda: len(conn.frames["worker_to_engine"]) >= 201, 10, "calls sent"
        )
        # The callee and its other callers keep going while the engine owes the stuck caller 50 MiB.
        for i in range(20):
            started = time.monotonic()
            request = {"function_id": "hard::blob", "payload": {"size": i}, "timeout_ms": 5000}
            assert await healthy.trigger_async(request) == "x" * i
            assert time.monotonic() - started < 1

        # The stuck caller is closed once it makes no progress for the stall timeout.
        async def gone() -> bool:
            rows = await healthy.trigger_async({"function_id": "engine::workers::list", "payload": {}})
            return "stuck-caller" not in _names(rows)

        await wait_for_async(gone, timeout=10, what="stuck caller disconnected by the engine")
        assert engine.log_path is not None
        assert "stopped reading" in engine.log_path.read_text(encoding="utf-8")
        assert callee.get_connection_state() == "connected"
        assert await healthy.trigger_async({"function_id": "hard::blob", "payload": {"size": 1}}) == "x"
    finally:
        proxy.resume()
        stuck.transport.abort()


async def test_a_callee_that_stops_reading_slows_only_its_callers_and_is_closed_when_stuck(
    engine_factory: Callable[..., EngineProcess],
    proxies: Callable[[int], WsProxy],
    connect: Callable[..., III],
) -> None:
    engine = engine_factory(env={"III_STALL_TIMEOUT_MS": "1000"})
    proxy = proxies(engine.port)
    stuck = connect(proxy.url, keepalive_interval_ms=None)  # only the engine may notice
    stuck.register_function("hard::sink", lambda data: None)
    helper = connect(engine.url)
    helper.register_function("hard::ping", lambda data: "pong")
    # Backpressure holds the flooding caller's whole socket (its pings too) until the callee is
    # declared stuck, so its keepalive must outlast the stall timeout (docs/reliability.md).
    caller, bystander = connect(engine.url, keepalive_interval_ms=None), connect(engine.url)
    assert await caller.trigger_async({"function_id": "hard::sink", "payload": {}}) is None
    proxy.pause("engine_to_worker")
    blob = "y" * BIG

    async def call_stuck() -> BaseException | None:
        request = {"function_id": "hard::sink", "payload": {"blob": blob}, "timeout_ms": 15000}
        try:
            await caller.trigger_async(request)
        except BaseException as exc:
            return exc
        return None

    started = time.monotonic()
    flood = asyncio.gather(*(call_stuck() for _ in range(100)))
    # Meanwhile the stuck callee costs nobody else anything.
    for _ in range(10):
        began = time.monotonic()
        assert await bystander.trigger_async({"function_id": "hard::ping", "payload": {}}) == "pong"
        assert time.monotonic() - began < 1
    outcomes = await asyncio.wait_for(flood, 10)
    # Closed as stuck after the stall timeout: calls in flight hear invocation_stopped, later ones
    # function_not_found (its functions went with it, protocol.md §11); none waits for its timeout.
    assert time.monotonic() - started < 6
    codes = [getattr(o, "code", repr(o)) for o in outcomes]
    assert "invocation_stopped" in codes and set(codes) <= {"invocation_stopped", "function_not_found"}, codes
    assert await caller.trigger_async({"function_id": "hard::ping", "payload": {}}) == "pong"
    assert engine.log_path is not None
    assert "stopped reading" in engine.log_path.read_text(encoding="utf-8")
    proxy.resume()


def test_registrations_beyond_the_limit_are_refused_with_a_clear_error(
    engine_factory: Callable[..., EngineProcess],
    connect: Callable[..., III],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = tmp_path / "engine.toml"
    config.write_text("[engine]\nmax_registrations_per_worker = 5\n", encoding="utf-8")
    engine = engine_factory(config=config)
    worker = connect(engine.url)
    for i in range(4):
        worker.register_function(f"lim::f{i}", lambda data, i=i: i)
    trigger = worker.register_trigger(
        {"type": "subscribe", "function_id": "lim::f0", "config": {"topic": "t"}}
    )
    with caplog.at_level(logging.WARNING, logger="iii_typed"):
        worker.register_function("lim::over", lambda data: "over")
        refused = worker.register_trigger(
            {"type": "subscribe", "function_id": "lim::f1", "config": {"topic": "t2"}}
        )
        error = refused.wait_for_error(5)
        wait_for(lambda: any("LIMIT_EXCEEDED" in r.getMessage() for r in caplog.records), what="SDK warning")
    assert error is not None and error.code == "LIMIT_EXCEEDED"
    assert "max_registrations_per_worker = 5" in error.message
    assert trigger.status != "failed"
    with pytest.raises(InvocationError) as missing:
        worker.trigger({"function_id": "lim::over", "payload": {}})
    assert missing.value.code == "function_not_found"
    assert [worker.trigger({"function_id": f"lim::f{i}", "payload": {}}) for i in range(4)] == [0, 1, 2, 3]
    assert engine.log_path is not None
    log = engine.log_path.read_text(encoding="utf-8")
    assert "registerfunction 'lim::over' refused" in log
    assert worker.get_connection_state() == "connected"  # not fatal


def _nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


async def test_too_deep_and_too_large_calls_are_answered_not_dropped(
    engine: EngineProcess, connect: Callable[..., III]
) -> None:
    iii = connect(engine.url)
    iii.register_function("lim::echo", lambda data: "ok")
    # The SDK refuses what it cannot write; what it can write but the engine cannot read is
    # answered payload_too_deep at once instead of timing out.
    with pytest.raises(TypeError, match="serialis"):
        await iii.trigger_async({"function_id": "lim::echo", "payload": _nested(400)})
    started = time.monotonic()
    with pytest.raises(InvocationError) as deep:
        await iii.trigger_async({"function_id": "lim::echo", "payload": _nested(254), "timeout_ms": 10000})
    assert deep.value.code == "payload_too_deep" and "200 levels" in deep.value.message
    assert time.monotonic() - started < 2
    assert await iii.trigger_async({"function_id": "lim::echo", "payload": _nested(199)}) == "ok"
    # A raw client over the size limit gets payload_too_large (the SDK refuses those locally).
    ws = await _raw_worker(engine.url)
    try:
        invocation_id = str(uuid.uuid4())
        head = (
            f'{{"type":"invokefunction","invocation_id":"{invocation_id}","function_id":"lim::echo","data":"'
        )
        await ws.send(head.encode() + b"x" * MAX_MESSAGE_BYTES + b'"}', text=True)
        answer = json.loads(await asyncio.wait_for(ws.recv(), 20))
        assert answer["invocation_id"] == invocation_id
        assert answer["error"]["code"] == "payload_too_large" and "channel" in answer["error"]["message"]
        # A nested invocation_id inside the payload is never taken for the frame's own.
        nested = json.dumps(
            {
                "type": "invokefunction",
                "function_id": "lim::echo",
                "data": {"invocation_id": invocation_id, "deep": _nested(300)},
            }
        )
        await ws.send(nested)
        await ws.send(_invoke("lim::echo", {}))
        after = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert after.get("result") == "ok"
    finally:
        await ws.close()


async def test_shutdown_is_prompt_answers_in_flight_calls_and_does_not_wait_for_stuck_workers(
    engine_factory: Callable[..., EngineProcess],
    proxies: Callable[[int], WsProxy],
    connect: Callable[..., III],
) -> None:
    engine = engine_factory()
    release, entered = threading.Event(), threading.Event()

    def slow(data: Any) -> str:
        entered.set()
        release.wait(20)
        return "late"

    async def blob(data: dict[str, Any]) -> str:
        return "x" * data["size"]

    server = connect(engine.url)
    server.register_function("sd::slow", slow)
    server.register_function("sd::blob", blob)
    caller = connect(engine.url)
    assert await caller.trigger_async({"function_id": "sd::blob", "payload": {"size": 1}}) == "x"
    # A worker that stopped reading while the engine owes it 25 MiB: its close frame never gets out.
    proxy = proxies(engine.port)
    stuck = await _raw_worker(proxy.url)
    proxy.pause("engine_to_worker")
    for _ in range(100):
        await stuck.send(_invoke("sd::blob", {"size": BIG}))
    conn = proxy.connections[0]
    await asyncio.to_thread(proxy.wait_for, lambda: len(conn.frames["worker_to_engine"]) >= 100, 10)
    in_flight = asyncio.ensure_future(
        caller.trigger_async({"function_id": "sd::slow", "payload": {}, "timeout_ms": 30000})
    )
    try:
        assert await asyncio.to_thread(entered.wait, 5)  # the call is in flight at the callee
        started = time.monotonic()
        code = await asyncio.to_thread(engine.stop, 10)
        took = time.monotonic() - started
        assert code == 0 and took < 6, (code, took)
        with pytest.raises(InvocationError) as stopped:
            await asyncio.wait_for(in_flight, 2)
        assert stopped.value.code == "invocation_stopped"
        assert engine.log_path is not None
        log = engine.log_path.read_text(encoding="utf-8")
        assert "in-flight invocation(s) answered invocation_stopped" in log
        assert "aborting 1 connection(s)" in log
    finally:
        release.set()
        proxy.resume()
        stuck.transport.abort()


@pytest.mark.parametrize("how", ["reset", "blackhole"])
async def test_calls_to_a_worker_that_vanished_fail_with_invocation_stopped(
    engine: EngineProcess,
    proxies: Callable[[int], WsProxy],
    connect: Callable[..., III],
    how: str,
) -> None:
    """A callee whose socket is reset goes at once; one behind a dead path is noticed by its own
    keepalive, and its reattach makes the engine retire the old connection (protocol.md §3.6)."""
    proxy = proxies(engine.port)
    release, entered = threading.Event(), threading.Event()
    function_id = f"gone::{how}"

    def slow(data: Any) -> str:
        entered.set()
        release.wait(20)
        return "late"

    callee = connect(proxy.url)
    callee.register_function(function_id, slow)
    caller = connect(engine.url)
    call = asyncio.ensure_future(
        caller.trigger_async({"function_id": function_id, "payload": {}, "timeout_ms": 30000})
    )
    try:
        assert await asyncio.to_thread(entered.wait, 5)
        started = time.monotonic()
        if how == "reset":
            proxy.reset("both")
        else:
            proxy.blackhole("both")
        with pytest.raises(InvocationError) as stopped:
            await asyncio.wait_for(call, 5)
        assert stopped.value.code == "invocation_stopped" and stopped.value.message == "Invocation stopped"
        assert time.monotonic() - started < (0.5 if how == "reset" else KEEPALIVE_BOUND_S + 1)
    finally:
        release.set()


def test_the_engine_binds_the_loopback_interface_by_default(tmp_path: Path) -> None:
    """decisions "Engine command line": defaults bind 127.0.0.1 only (no --host given)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "iii_typed.engine", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline())
        hosts = {urlsplit(url).hostname for url in ready.values()}
        assert hosts == {"127.0.0.1"}, ready
        port = urlsplit(ready["engine"]).port
        listening = subprocess.run(["ss", "-Htln", f"sport = :{port}"], capture_output=True, text=True)
        if listening.returncode == 0:
            assert all("127.0.0.1:" in line for line in listening.stdout.splitlines() if line.strip())
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
