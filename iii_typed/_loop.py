"""The client's private event-loop thread and the threads that run sync handlers (sdk.md §2.1).

* :class:`LoopThread` runs one asyncio loop (uvloop when installed, unless ``III_TYPED_LOOP=asyncio``)
  on a daemon thread. Sync API methods submit coroutines to it and wait; doing that *on* the loop
  thread would deadlock, so :meth:`LoopThread.run_sync` refuses with ``RuntimeError``.
* :class:`HandlerThreads` runs sync handlers, each on a thread of its own: idle threads are reused,
  and a new thread is started whenever none is idle, so a handler that blocks (for example in a
  nested synchronous ``trigger()``) never starves another one.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any, Final, TypeVar

__all__ = [
    "HandlerCapacityError",
    "HandlerThreads",
    "Handoff",
    "LoopThread",
    "is_own_cancellation",
    "new_event_loop",
]

log = logging.getLogger("iii_typed")

T = TypeVar("T")

_ids = itertools.count(1)

#: Message of the error raised when a blocking SDK method is called on the SDK's own loop thread.
ON_LOOP_MESSAGE: Final = (
    "{name}() is a blocking method and cannot be called on the iii SDK's event-loop thread "
    "(from an async handler or a connection-state listener); use the async twin instead "
    "(e.g. `await iii.trigger_async(...)`) or a sync handler"
)


def is_own_cancellation(exc: BaseException) -> bool:
    """Whether ``exc`` is the cancellation of the running task itself (at shutdown), as opposed to
    a ``CancelledError`` that user code raised or let escape: only the former must propagate."""
    if not isinstance(exc, asyncio.CancelledError):
        return False
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new event loop: uvloop when importable and ``III_TYPED_LOOP`` is not ``asyncio``."""
    choice = os.environ.get("III_TYPED_LOOP", "auto").strip().lower()
    if choice in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise
        else:
            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
            return loop
    return asyncio.new_event_loop()


class _Hop:
    """A coroutine another thread runs on the SDK loop, and where its outcome goes.

    ``loop`` is the waiting event loop (``future`` is an asyncio future of it), or ``None`` when
    a blocked thread waits (``future`` is a concurrent future).
    """

    __slots__ = ("abandoned", "coro", "future", "loop", "owner", "task")

    def __init__(
        self,
        owner: LoopThread,
        coro: Coroutine[Any, Any, Any],
        loop: asyncio.AbstractEventLoop | None,
        future: asyncio.Future[Any] | Future[Any],
    ) -> None:
        self.owner = owner
        self.coro = coro
        self.loop = loop
        self.future = future
        self.task: asyncio.Task[Any] | None = None
        self.abandoned = False

    def start(self) -> None:
        """Start the coroutine as a task (on the SDK loop), unless its waiter gave up already."""
        if self.abandoned:
            self.coro.close()
            return
        task = self.owner.loop.create_task(self.coro)
        self.task = task
        task.add_done_callback(self.finished)

    def finished(self, task: asyncio.Task[Any]) -> None:
        """Done callback of the task (on the SDK loop)."""
        if self.loop is None:
            future = self.future
            assert isinstance(future, Future)
            if task.cancelled():
                future.cancel()
            elif (exc := task.exception()) is not None:
                future.set_exception(exc)
            else:
                future.set_result(task.result())
            return
        assert isinstance(self.future, asyncio.Future)
        if task.cancelled():
            self.owner._deliver(self.loop, self.future, None, _CANCELLED)
        elif (exc := task.exception()) is not None:
            self.owner._deliver(self.loop, self.future, None, exc)
        else:
            self.owner._deliver(self.loop, self.future, task.result(), None)

    def refuse(self) -> None:
        """The loop shut down before the coroutine started."""
        self.coro.close()
        error = RuntimeError("the iii client is shut down")
        if self.loop is None:
            future = self.future
            assert isinstance(future, Future)
            future.set_exception(error)
        else:
            future_ = self.future
            assert isinstance(future_, asyncio.Future)
            with contextlib.suppress(RuntimeError):  # the waiting loop is closed
                self.loop.call_soon_threadsafe(_fail, future_, error)


def _fail(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)


class _Cancelled(Exception):
    """Marks a hop whose task was cancelled: its waiting future is cancelled too."""


_CANCELLED: Final = _Cancelled()


class Handoff:
    """A call another thread asked the SDK loop to start, and where its outcome goes.

    Made by :meth:`LoopThread.start_call` / :meth:`LoopThread.call_blocking`. On the SDK loop,
    ``fn(arg, handoff)`` starts the work and later completes the handoff like an asyncio future
    (:meth:`done`, :meth:`set_result`, :meth:`set_exception`); no task is created for it. The
    outcome goes to ``future``: an asyncio future of the waiting loop (``loop``), handed over in a
    batch (see :meth:`LoopThread._deliver`), or a concurrent future a blocked thread waits on
    (``loop`` is ``None``). ``abandoned`` is set by the waiter when it stops waiting.
    """

    __slots__ = ("_done", "abandoned", "arg", "fn", "future", "loop", "owner")

    def __init__(
        self,
        owner: LoopThread,
        fn: Callable[[Any, Handoff], None],
        arg: Any,
        loop: asyncio.AbstractEventLoop | None,
        future: asyncio.Future[Any] | Future[Any],
    ) -> None:
        self.owner = owner
        self.fn = fn
        self.arg = arg
        self.loop = loop
        self.future = future
        self.abandoned = False
        self._done = False

    def start(self) -> None:
        """Run ``fn(arg, self)`` on the SDK loop, unless the waiter gave up already."""
        if self.abandoned:
            return
        try:
            self.fn(self.arg, self)
        except BaseException as exc:  # a bug must still answer the waiter
            log.exception("error while starting a call on the SDK loop")
            if not self._done:
                self.set_exception(exc)

    def done(self) -> bool:
        """Whether the outcome was set."""
        return self._done

    def set_result(self, value: Any) -> None:
        """Complete with ``value`` (ignored when already complete)."""
        if self._done:
            return
        self._done = True
        future = self.future
        if self.loop is None:
            assert isinstance(future, Future)
            future.set_result(value)
        else:
            assert isinstance(future, asyncio.Future)
            self.owner._deliver(self.loop, future, value, None)

    def set_exception(self, exc: BaseException) -> None:
        """Complete with ``exc`` (ignored when already complete)."""
        if self._done:
            return
        self._done = True
        future = self.future
        if self.loop is None:
            assert isinstance(future, Future)
            future.set_exception(exc)
        else:
            assert isinstance(future, asyncio.Future)
            self.owner._deliver(self.loop, future, None, exc)

    def refuse(self) -> None:
        """The loop shut down before the call started."""
        self.set_exception(RuntimeError("the iii client is shut down"))


class LoopThread:
    """An event loop running forever on a dedicated daemon thread.

    Args:
        name: Thread name prefix.
    """

    def __init__(self, name: str = "iii-loop") -> None:
        self.loop = new_event_loop()
        self._ready = threading.Event()
        self._inbox: list[_Hop | Handoff] = []  # posted by other threads, started in order
        self._inbox_lock = threading.Lock()
        self._closed = False  # under _inbox_lock: no more hops are accepted
        # Outcomes on their way to waiting loops (see _deliver); a loop is a key only while a
        # delivery to it is scheduled.
        self._mail: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any, Any]]] = {}
        self._mail_lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name=f"{name}-{next(_ids)}", daemon=True)
        self.thread.start()
        self._ready.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        try:
            while True:
                try:
                    self.loop.run_forever()
                    break  # stopped by stop()
                except (SystemExit, KeyboardInterrupt) as exc:
                    # Signals are delivered to the main thread, so on this thread these come from
                    # user code run on the loop (a callback, a task) that escaped every handler:
                    # the SDK keeps running instead of dying silently with its connection.
                    log.error(
                        "%s raised by code running on the iii SDK's event loop was ignored",
                        type(exc).__name__,
                        exc_info=exc,
                    )
        finally:
            with self._inbox_lock:
                self._closed = True
                leftovers, self._inbox = self._inbox, []
            for hop in leftovers:
                hop.refuse()
            try:
                pending = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
                for task in pending:
                    task.cancel()
                if pending:
                    self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            except Exception:  # pragma: no cover - best effort at teardown
                log.debug("error while draining the SDK loop", exc_info=True)
            finally:
                self.loop.close()

    def on_loop_thread(self) -> bool:
        """Whether the caller runs on this loop's thread."""
        return threading.current_thread() is self.thread

    def is_running(self) -> bool:
        """Whether the loop still accepts work."""
        return self.thread.is_alive() and not self.loop.is_closed()

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        """Schedule ``coro`` on the loop from any thread; return a concurrent future."""
        if not self.is_running():
            coro.close()
            raise RuntimeError("the iii client is shut down")
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run_sync(self, coro: Coroutine[Any, Any, T], name: str) -> T:
        """Run ``coro`` on the loop and block the calling thread until it finishes.

        Raises:
            RuntimeError: called on the loop thread itself (it would deadlock), or after shutdown.
        """
        if self.on_loop_thread():
            coro.close()
            raise RuntimeError(ON_LOOP_MESSAGE.format(name=name))
        future: Future[T] = Future()
        hop = _Hop(self, coro, None, future)
        self._post(hop)
        try:
            return future.result()
        except BaseException:
            self.call_soon(self._cancel_hop, hop)
            raise

    def call_blocking(
        self,
        fn: Callable[[Any, Handoff], None],
        arg: Any,
        name: str,
        abandon: Callable[[Handoff], None],
    ) -> Any:
        """Start ``fn(arg, handoff)`` on the loop (no task) and block until it completes the handoff.

        When the wait is interrupted (``KeyboardInterrupt``), ``abandon(handoff)`` runs on the loop.

        Raises:
            RuntimeError: called on the loop thread itself (it would deadlock), or after shutdown.
        """
        if self.on_loop_thread():
            raise RuntimeError(ON_LOOP_MESSAGE.format(name=name))
        future: Future[Any] = Future()
        handoff = Handoff(self, fn, arg, None, future)
        self._post(handoff)
        try:
            return future.result()
        except BaseException:
            handoff.abandoned = True
            self.call_soon(abandon, handoff)
            raise

    def start_call(
        self, fn: Callable[[Any, Handoff], None], arg: Any, loop: asyncio.AbstractEventLoop
    ) -> Handoff:
        """Start ``fn(arg, handoff)`` on the SDK loop for a waiter on ``loop`` (another thread's
        running loop); await ``handoff.future`` there. No task is created on either side.

        Raises:
            RuntimeError: after shutdown.
        """
        handoff = Handoff(self, fn, arg, loop, loop.create_future())
        self._post(handoff)
        return handoff

    async def run_async(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` on the SDK loop from any event loop (hopping over when needed).

        Raises:
            RuntimeError: after shutdown.
        """
        running = asyncio.get_running_loop()
        if running is self.loop:
            return await coro
        future: asyncio.Future[T] = running.create_future()
        hop = _Hop(self, coro, running, future)
        self._post(hop)
        try:
            return await future
        except asyncio.CancelledError:
            self.call_soon(self._cancel_hop, hop)
            raise

    # -- hops: work other threads run on this loop (run_sync / run_async / call_blocking /
    # start_call). Batched both ways (perf.md §2.6: every cross-thread wakeup is a syscall and, in
    # a busy process, a GIL hand-off): the first item posted wakes the loop and the ones posted
    # before it runs ride along; the first outcome for a waiting loop wakes it at once and the
    # ones finished before it runs ride along.
    def _post(self, item: _Hop | Handoff) -> None:
        with self._inbox_lock:
            closed = self._closed
            if not closed:
                self._inbox.append(item)
                first = len(self._inbox) == 1
        if closed:
            if isinstance(item, _Hop):
                item.coro.close()
            raise RuntimeError("the iii client is shut down")
        if first:
            self.loop.call_soon_threadsafe(self._start_hops)

    def _start_hops(self) -> None:
        with self._inbox_lock:
            items, self._inbox = self._inbox, []
        for item in items:
            item.start()

    def _cancel_hop(self, hop: _Hop) -> None:
        hop.abandoned = True
        if hop.task is not None:
            hop.task.cancel()

    def _deliver(
        self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], value: Any, exc: Any
    ) -> None:
        """Hand an outcome to ``future`` on its (waiting) ``loop``; callable from any thread."""
        with self._mail_lock:
            batch = self._mail.get(loop)
            wake = batch is None
            if batch is None:
                batch = self._mail[loop] = []
            batch.append((future, value, exc))
        if wake:
            try:
                loop.call_soon_threadsafe(self._settle, loop)
            except RuntimeError:  # that loop is closed: nobody waits any more
                with self._mail_lock:
                    self._mail.pop(loop, None)

    def _settle(self, loop: asyncio.AbstractEventLoop) -> None:
        """Copy the outcomes delivered so far to their futures (on the waiting loop)."""
        with self._mail_lock:
            batch = self._mail.pop(loop, ())
        for future, value, exc in batch:
            if future.done():
                continue
            if exc is None:
                future.set_result(value)
            elif exc is _CANCELLED:
                future.cancel()
            else:
                future.set_exception(exc)

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> None:
        """Schedule ``callback(*args)`` on the loop from any thread (ignored after shutdown)."""
        try:
            self.loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # loop closed
            log.debug("dropped a callback scheduled after shutdown")

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loop, let it cancel what is left, and join its thread (not from the loop thread)."""
        if self.loop.is_closed():
            return
        try:
            self.loop.call_soon_threadsafe(self.loop.stop)
        except RuntimeError:
            return
        if not self.on_loop_thread():
            self.thread.join(timeout)


class HandlerCapacityError(RuntimeError):
    """No thread could be started for a handler: the process (or its container) is out of threads.

    Unlike the ``RuntimeError`` of a shut-down pool, the call is still owed an answer.
    """


class HandlerThreads:
    """Runs callables each on a thread of its own, reusing idle threads (an unbounded pool).

    Args:
        name: Thread name prefix.
        idle_timeout: Seconds an idle thread waits for work before it exits.
    """

    def __init__(self, name: str = "iii-handler", idle_timeout: float = 30.0) -> None:
        self._name = name
        self._idle_timeout = idle_timeout
        self._lock = threading.Lock()
        self._idle = 0
        self._tasks: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._closed = False
        self._threads: set[threading.Thread] = set()
        self._idle_threads: set[threading.Thread] = set()

    def submit(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` (with a copy of the caller's context) on an idle or a new thread.

        Raises:
            HandlerCapacityError: no thread can be started (the process is out of threads).
            RuntimeError: after :meth:`shutdown`.
        """
        ctx = contextvars.copy_context()

        def run() -> None:
            ctx.run(fn)

        with self._lock:
            if self._closed:
                raise RuntimeError("the iii client is shut down")
            if self._idle > 0:
                self._idle -= 1
                self._tasks.put(run)
                return
            thread = threading.Thread(
                target=self._work, args=(run,), name=f"{self._name}-{next(_ids)}", daemon=True
            )
            self._threads.add(thread)
            running = len(self._threads)
        try:
            thread.start()
        except RuntimeError as exc:  # "can't start new thread": a ulimit or a container pids limit
            with self._lock:
                self._threads.discard(thread)
            raise HandlerCapacityError(f"{exc} ({running - 1} handler threads are running)") from exc

    def _work(self, task: Callable[[], None] | None) -> None:
        try:
            while task is not None:
                try:
                    task()
                except BaseException:  # pragma: no cover - tasks handle their own errors
                    log.exception("unexpected error in a handler thread")
                me = threading.current_thread()
                with self._lock:
                    if self._closed:
                        return
                    self._idle += 1
                    self._idle_threads.add(me)
                try:
                    task = self._tasks.get(timeout=self._idle_timeout)
                except queue.Empty:
                    with self._lock:
                        try:
                            task = self._tasks.get_nowait()  # reserved for us in the meantime
                        except queue.Empty:
                            self._idle -= 1
                            return
                finally:
                    with self._lock:
                        self._idle_threads.discard(me)
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    def threads(self) -> list[threading.Thread]:
        """The threads alive now (busy or idle)."""
        with self._lock:
            return list(self._threads)

    def shutdown(self, timeout: float = 2.0) -> None:
        """Refuse new work and stop the idle threads (joined up to ``timeout`` s); busy handlers
        finish on their own and their threads exit afterwards."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            idle = self._idle
            self._idle = 0
            idle_threads = list(self._idle_threads)
        for _ in range(idle):
            self._tasks.put(None)
        deadline = time.monotonic() + timeout
        for thread in idle_threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
