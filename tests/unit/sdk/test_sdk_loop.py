"""The SDK loop thread and the handler threads (no sockets)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from iii_typed._loop import HandlerCapacityError, HandlerThreads, LoopThread
from tests.support.waiting import wait_for


def test_run_sync_from_another_thread_and_refusal_on_the_loop_thread() -> None:
    lt = LoopThread("test-loop")
    try:

        async def double(x: int) -> int:
            return x * 2

        assert lt.run_sync(double(21), "double") == 42

        async def nested() -> str:
            coro = double(1)
            try:
                lt.run_sync(coro, "trigger")
            except RuntimeError as exc:
                return str(exc)
            return "no error"

        message = lt.run_sync(nested(), "nested")
        assert "trigger()" in message and "event-loop thread" in message and "trigger_async" in message
    finally:
        lt.stop()
    assert not lt.thread.is_alive()
    with pytest.raises(RuntimeError, match="shut down"):
        lt.run_sync(asyncio.sleep(0), "x")


async def test_run_async_hops_from_a_foreign_loop() -> None:
    lt = LoopThread("test-loop")
    try:

        async def where() -> str:
            return threading.current_thread().name

        assert (await lt.run_async(where())).startswith("test-loop")
    finally:
        lt.stop()


def test_handler_threads_grow_when_busy_and_reuse_idle_ones() -> None:
    pool = HandlerThreads("test-handler", idle_timeout=5)
    release = threading.Event()
    started = threading.Semaphore(0)
    names: list[str] = []

    def blocker() -> None:
        names.append(threading.current_thread().name)
        started.release()
        release.wait(5)

    for _ in range(5):
        pool.submit(blocker)
    for _ in range(5):
        assert started.acquire(timeout=5)
    assert len(set(names)) == 5  # none waited for another: five threads
    release.set()
    wait_for(lambda: pool._idle == 5, what="all five idle")
    done = threading.Event()
    pool.submit(done.set)
    assert done.wait(5)
    assert len(pool.threads()) == 5  # an idle thread was reused
    pool.shutdown()
    wait_for(lambda: not pool.threads(), what="threads exit after shutdown")
    with pytest.raises(RuntimeError):
        pool.submit(done.set)


def test_idle_threads_expire() -> None:
    pool = HandlerThreads("test-handler", idle_timeout=0.05)
    done = threading.Event()
    pool.submit(done.set)
    assert done.wait(5)
    wait_for(lambda: not pool.threads(), what="idle thread expired")
    again = threading.Event()
    pool.submit(again.set)
    assert again.wait(5)
    pool.shutdown()


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_system_exit_from_code_on_the_loop_does_not_stop_it(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, loop_kind: str
) -> None:
    """A callback raising SystemExit/KeyboardInterrupt ran out of ``run_forever`` and ended the
    loop thread: every later SDK call failed with "the iii client is shut down"."""
    monkeypatch.setenv("III_TYPED_LOOP", loop_kind)
    lt = LoopThread("test-loop")
    try:

        def exits() -> None:
            raise SystemExit(2)

        def interrupts() -> None:
            raise KeyboardInterrupt

        # Callbacks only: on CPython 3.11's pure-asyncio loop, KeyboardInterrupt raised out of a
        # *task* leaves the interpreter's AST recursion counter off (later compiles fail with
        # SystemError), whatever catches it; the SDK's own tasks now never let it escape.
        def ignored() -> int:
            return sum("was ignored" in r.getMessage() for r in caplog.records)

        lt.call_soon(exits)
        wait_for(lambda: ignored() >= 1, what="SystemExit logged")
        lt.call_soon(interrupts)
        wait_for(lambda: ignored() >= 2, what="KeyboardInterrupt logged")

        async def answer() -> int:
            return 42

        assert lt.is_running() and lt.run_sync(answer(), "answer") == 42
    finally:
        lt.stop()
    assert not lt.thread.is_alive()


def test_a_thread_that_cannot_start_is_a_capacity_error_not_a_shutdown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Out of threads (a storm of calls to a stuck handler under a container's pids limit), the
    RuntimeError of ``Thread.start`` looked like "client shut down": the call was dropped without
    an answer and the never-started thread stayed in the pool's books."""
    pool = HandlerThreads("test-handler")
    try:

        def refuse(self: threading.Thread) -> None:
            raise RuntimeError("can't start new thread")

        with monkeypatch.context() as patch:
            patch.setattr(threading.Thread, "start", refuse)
            with pytest.raises(HandlerCapacityError, match="can't start new thread"):
                pool.submit(lambda: None)
        assert pool.threads() == []
        done = threading.Event()
        pool.submit(done.set)  # threads can start again: the pool works
        assert done.wait(5)
    finally:
        pool.shutdown()
