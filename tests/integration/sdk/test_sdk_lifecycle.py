"""Client lifecycle: run_forever and signals, exit without shutdown, context managers, shutdown rules."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from iii_typed import III, InvocationError, register_worker
from tests.integration.sdk.sdk_support import fast_options
from tests.support.fake_engine import FakeEngine
from tests.support.waiting import wait_for

Connect = Callable[..., III]
ROOT = Path(__file__).resolve().parents[3]


def _spawn(script: str, url: str) -> subprocess.Popen[str]:
    env = {**os.environ, "OTEL_ENABLED": "false", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )


RUN_FOREVER = """
    import logging, sys
    from iii_typed import InitOptions, register_worker
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    iii = register_worker(sys.argv[1], InitOptions(worker_name="forever"))
    iii.register_function("py::forever", lambda data: data)
    iii.run_forever()
    print("stopped", flush=True)
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_run_forever_shuts_down_cleanly_on_a_signal(fake: FakeEngine, signum: int) -> None:
    proc = _spawn(RUN_FOREVER, fake.url)
    err_lines: list[str] = []
    assert proc.stderr is not None
    pump = threading.Thread(target=lambda: err_lines.extend(proc.stderr), daemon=True)
    pump.start()
    try:
        wait_for(
            lambda: any("running until SIGINT" in line for line in err_lines), timeout=20, what="run_forever"
        )
        proc.send_signal(signum)
        proc.wait(15)
        pump.join(5)
        out = proc.stdout.read() if proc.stdout is not None else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        pump.join(5)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    assert proc.returncode == 0, "".join(err_lines)
    assert "stopped" in out
    closed = fake.wait_closed(0)
    assert closed.close_code == 1000 and closed.close_reason == "client shutdown"


def test_exiting_without_shutdown_still_sends_a_close_frame(fake: FakeEngine) -> None:
    script = """
        import sys
        from iii_typed import register_worker
        iii = register_worker(sys.argv[1])
        iii.register_function("py::bye", lambda data: data)
        print("done", flush=True)
    """
    proc = _spawn(script, fake.url)
    started = time.monotonic()
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "done" in out
    closed = fake.wait_closed(0)
    assert closed.close_code == 1000
    assert closed.closed_at is not None and closed.closed_at - started < 20


def test_run_forever_raises_when_the_worker_is_refused(fake: FakeEngine, connect: Connect) -> None:
    iii = connect(fake.url)
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            iii.run_forever()
        except BaseException as exc:
            outcome.append(exc)

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    fake.send(
        {
            "type": "registrationrejected",
            "code": "WORKER_NAMESPACE_CONFLICT",
            "namespace": "default",
            "worker_name": "x",
            "owner_worker_id": "y",
        }
    )
    runner.join(10)
    assert outcome and type(outcome[0]).__name__ == "RegistrationRejectedError"


def test_run_forever_returns_when_shut_down_from_another_thread(fake: FakeEngine, connect: Connect) -> None:
    iii = connect(fake.url)
    runner = threading.Thread(target=iii.run_forever, daemon=True)
    runner.start()
    wait_for(lambda: iii._stop_events, what="run_forever waiting")
    iii.shutdown()
    runner.join(5)
    assert not runner.is_alive()


def test_shutdown_rejects_pending_calls_and_is_idempotent(fake: FakeEngine, connect: Connect) -> None:
    fake.silent.add("remote::slow")
    iii = connect(fake.url)
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            iii.trigger({"function_id": "remote::slow", "payload": {}, "timeout_ms": 20000})
        except BaseException as exc:
            outcome.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    fake.wait_for_frame(lambda r: r.type == "invokefunction" and r.frame["function_id"] == "remote::slow")
    started = time.monotonic()
    iii.shutdown()
    caller.join(5)
    assert time.monotonic() - started < 3
    assert isinstance(outcome[0], InvocationError) and outcome[0].code == "SHUTDOWN"
    assert fake.wait_closed(0).close_code == 1000
    assert iii.get_connection_state() == "disconnected"
    iii.shutdown()  # idempotent
    with pytest.raises(InvocationError) as info:
        iii.trigger({"function_id": "remote::slow", "payload": {}})
    assert info.value.code == "SHUTDOWN"
    with pytest.raises(RuntimeError, match="shut down"):
        iii.register_function("py::late", lambda data: data)


def test_shutdown_from_an_async_handler_needs_the_async_twin(fake: FakeEngine, connect: Connect) -> None:
    iii = connect(fake.url)
    messages: list[str] = []

    async def handler(data: Any) -> str:
        try:
            iii.shutdown()
        except RuntimeError as exc:
            messages.append(str(exc))
        return "ok"

    iii.register_function("py::stopper", handler)
    fake.wait_for_frame(lambda r: r.type == "registerfunction")
    assert fake.invoke("py::stopper", {})["result"] == "ok"
    assert "shutdown_async" in messages[0]


def test_context_managers(fake: FakeEngine) -> None:
    fake.functions["remote::echo"] = lambda data: data
    with register_worker(fake.url, fast_options()) as iii:
        assert iii.trigger({"function_id": "remote::echo", "payload": 1}) == 1
    assert iii.get_connection_state() == "disconnected"
    assert fake.wait_closed(0).close_code == 1000

    async def main() -> Any:
        async with III(fake.url, fast_options()) as client:
            await client.connect_async()
            return await client.trigger_async({"function_id": "remote::echo", "payload": 2})

    assert asyncio.run(main()) == 2
    assert fake.wait_closed(1).close_code == 1000


def test_registrations_before_the_connection_opens_precede_the_worker_registration(fake: FakeEngine) -> None:
    fake.stop()  # not reachable yet: the registrations below happen before any socket opens
    with III(fake.url, fast_options()) as iii:
        iii.register_function("py::early", lambda data: data)
        iii.register_trigger(
            {"type": "cron", "function_id": "py::early", "config": {"expression": "* * * * * *"}}
        )
        assert iii.get_connection_state() != "connected"
        fake.start()
        fake.wait_for_frame(lambda r: r.frame.get("function_id") == "engine::workers::register")
        kinds = [r.type for r in fake.frames(conn=0)]
        assert kinds[:3] == ["registerfunction", "registertrigger", "invokefunction"]
        assert kinds.count("registerfunction") == 1 and kinds.count("registertrigger") == 1


def test_unnamed_clients_in_one_process_get_distinct_names(fake: FakeEngine, connect: Connect) -> None:
    first = connect(fake.url)
    second = connect(fake.url)
    base = f"{socket.gethostname()}:{os.getpid()}"
    assert first.worker_name != second.worker_name
    for name in (first.worker_name, second.worker_name):
        assert re.fullmatch(re.escape(base) + r"(:\d+)?", name)
    names = [
        r.frame["data"]["name"]
        for r in fake.frames(type="invokefunction")
        if r.frame["function_id"] == "engine::workers::register"
    ]
    assert names == [first.worker_name, second.worker_name]


def test_invalid_addresses_and_namespaces_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="ws://"):
        III("http://127.0.0.1:1")
    monkeypatch.setenv("III_URL", "nonsense")
    with pytest.raises(ValueError, match="nonsense"):
        III()


def test_current_invocation_outside_handlers_is_none(fake: FakeEngine, connect: Connect) -> None:
    iii = connect(fake.url)
    assert iii.current_invocation() is None
    assert iii.worker_id == fake.connection(0).worker_id
    assert iii.get_address() == fake.url
