"""The call path of ``trigger``/``trigger_async`` from another thread's loop (no task per call on the
SDK loop, outcomes handed back in batches): cancellation, timeouts, offline calls, bursts."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from iii_typed import III, InvocationError, InvocationTimeoutError
from tests.support.fake_engine import FakeEngine
from tests.support.waiting import wait_for

Connect = Callable[..., III]


def _invokes(fake: FakeEngine, function_id: str) -> list[dict[str, Any]]:
    return [r.frame for r in fake.frames(type="invokefunction") if r.frame.get("function_id") == function_id]


async def test_cancelled_trigger_async_forgets_the_call_and_drops_its_late_result(
    fake: FakeEngine, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    fake.silent.add("remote::slow")
    fake.functions["remote::echo"] = lambda data: data
    iii = connect(fake.url)
    task = asyncio.ensure_future(iii.trigger_async({"function_id": "remote::slow", "payload": {}}))
    await asyncio.to_thread(fake.wait_for_frame, lambda r: r.frame.get("function_id") == "remote::slow")
    assert len(iii._pending) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.to_thread(wait_for, lambda: not iii._pending, what="cancelled call forgotten")
    late_id = _invokes(fake, "remote::slow")[0]["invocation_id"]
    with caplog.at_level(logging.DEBUG, logger="iii_typed"):
        fake.send(
            {"type": "invocationresult", "invocation_id": late_id, "function_id": "remote::slow", "result": 1}
        )
        assert await iii.trigger_async({"function_id": "remote::echo", "payload": 5}) == 5
    assert any("unknown or timed-out" in r.getMessage() for r in caplog.records)


async def test_trigger_async_times_out_per_call(fake: FakeEngine, connect: Connect) -> None:
    fake.silent.add("remote::slow")
    iii = connect(fake.url)
    started = time.monotonic()
    with pytest.raises(InvocationTimeoutError) as info:
        await iii.trigger_async({"function_id": "remote::slow", "payload": {}, "timeout_ms": 150})
    assert 0.1 < time.monotonic() - started < 0.6
    assert info.value.code == "TIMEOUT" and "'remote::slow'" in info.value.message
    assert not iii._pending


async def test_trigger_async_while_disconnected_waits_for_the_next_connection(
    fake: FakeEngine, connect: Connect
) -> None:
    fake.functions["remote::echo"] = lambda data: data
    iii = connect(fake.url)
    fake.stop()
    await asyncio.to_thread(wait_for, lambda: iii.get_connection_state() != "connected", what="drop noticed")
    call = asyncio.ensure_future(iii.trigger_async({"function_id": "remote::echo", "payload": "queued"}))
    await asyncio.to_thread(wait_for, lambda: iii._conn.queued() >= 1, what="call queued while offline")
    fake.start()
    assert await asyncio.wait_for(call, 5) == "queued"


async def test_offline_calls_fail_when_asked_to(fake: FakeEngine, connect: Connect) -> None:
    iii = connect(fake.url, offline_calls="fail")
    fake.stop()
    await asyncio.to_thread(wait_for, lambda: iii.get_connection_state() != "connected", what="drop noticed")
    with pytest.raises(InvocationError) as info:
        await iii.trigger_async({"function_id": "remote::echo", "payload": 1})
    assert info.value.code == "DISCONNECTED"
    with pytest.raises(InvocationError):
        iii.trigger({"function_id": "remote::echo", "payload": 1})


def test_bursts_from_loops_on_many_threads_each_get_their_own_results(
    fake: FakeEngine, connect: Connect
) -> None:
    fake.functions["remote::echo"] = lambda data: data
    iii = connect(fake.url)
    results: dict[int, list[Any]] = {}

    def run(index: int) -> None:
        async def burst() -> list[Any]:
            calls = [{"function_id": "remote::echo", "payload": [index, n]} for n in range(50)]
            return list(await asyncio.gather(*(iii.trigger_async(c) for c in calls)))

        results[index] = asyncio.run(burst())

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert results == {i: [[i, n] for n in range(50)] for i in range(4)}
    assert [iii.trigger({"function_id": "remote::echo", "payload": n}) for n in range(3)] == [0, 1, 2]
    assert not iii._pending
