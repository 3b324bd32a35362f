"""The live data source: one SDK worker connection to the engine, no Textual imports.

It reads only the engine's own surface (protocol.md §6.8, §7): ``engine::*`` functions and the
``engine::functions-available``, ``engine::workers-available``, ``log`` and ``trace`` trigger types,
plus the built-ins' introspection functions (``stream::list_all``, ``state::list_groups``,
``engine::queue::*``, our ``engine::channels::list`` extension). Push where the engine pushes,
polling elsewhere with per-view intervals. A function the engine lacks (``function_not_found``)
becomes a ``missing`` event and is asked again slowly, so a view starts working when its
built-in lands. Reconnection is the SDK's (backoff with jitter); after every reconnect every
view is re-read at once.

The ``trace`` trigger names every trace that received spans; on a busy engine that is thousands
a second. Their spans are fetched by one task, one ``engine::traces::list`` at a time, at most
:data:`TRACE_FETCH_MAX_IDS` ids per fetch (the newest named) and at most one fetch per
:data:`TRACE_FETCH_MIN_INTERVAL_S`; older ids are counted as skipped and reported in a
``sampling`` event, so the dashboard's work per second is bounded whatever the engine's load.
Rates and counts come from ``engine::metrics::list``, which sampling does not touch.

Everything it learns is handed to ``sink(Event)`` on the caller's event loop; it never touches
the UI.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import re
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from iii_typed import (
    III,
    IIIError,
    InitOptions,
    InvocationError,
    ReconnectionConfig,
    RegistrationRejectedError,
)

from .clock import Clock, SystemClock
from .store import Event, as_dict, as_list, span_function

__all__ = [
    "DEFAULT_INTERVALS",
    "TRACE_FETCH_MAX_IDS",
    "TRACE_FETCH_MAX_SPANS",
    "TRACE_FETCH_MIN_INTERVAL_S",
    "EngineSource",
    "ReadOnlyError",
]

log = logging.getLogger("iii_tui.source")

#: Poll interval per view, in seconds (push-fed views poll only as a fallback or safety net).
DEFAULT_INTERVALS: dict[str, float] = {
    "functions": 10.0,
    "workers": 2.0,
    "triggers": 3.0,
    "health": 5.0,
    "metrics": 2.0,
    "traces": 1.0,
    "logs": 1.0,
    "channels": 2.0,
    "streams": 5.0,
    "queues": 3.0,
}

#: How long to wait before asking again for a function the engine does not have.
MISSING_RETRY_S = 10.0
#: At most this many ``engine::workers::info`` / ``topic_stats`` calls per poll round.
DETAIL_FANOUT = 16
#: At most this many trace ids per ``engine::traces::list`` fetch of pushed traces: the newest
#: ones the ``trace`` trigger named; older ones are skipped (counted, see ``sampling`` events).
TRACE_FETCH_MAX_IDS = 200
#: At least this many seconds between the starts of two fetches of pushed traces.
TRACE_FETCH_MIN_INTERVAL_S = 1.0
#: At most this many spans per fetch of pushed traces (a few huge traces cannot make one
#: answer huge; the store keeps at most 2,000 spans of a trace anyway).
TRACE_FETCH_MAX_SPANS = 4000


class ReadOnlyError(PermissionError):
    """A writing action was attempted in ``--readonly`` mode (or on a replay)."""


def describe_failure(error: IIIError) -> tuple[str, str]:
    """Why the connection failed for good: ``(the end of "the engine at URL …", banner text)``.

    An authentication failure (HTTP 401/403 on the upgrade, or an ``AUTH_ERROR`` rejection) says
    to set ``III_TOKEN``, which the dashboard's worker sends like any other worker.
    """
    if isinstance(error, RegistrationRejectedError) and error.code == "AUTH_ERROR":
        status = re.search(r"HTTP (\d{3})", str(error))
        how = f"HTTP {status.group(1)}" if status else "AUTH_ERROR"
        return (
            f"refused the connection ({how}): set III_TOKEN",
            f"authentication failed ({how}): set III_TOKEN",
        )
    if isinstance(error, RegistrationRejectedError):
        return f"refused the dashboard's worker: {error}", f"refused ({error.code})"
    return f"failed: {error}", "connection failed"


class EngineSource:
    """Reads the engine through an SDK worker and emits :class:`~iii_tui.store.Event` s.

    Args:
        url: Engine WebSocket URL.
        readonly: Refuse every writing action (:meth:`call`).
        intervals: Poll intervals overriding :data:`DEFAULT_INTERVALS`.
        clock: Time source for event timestamps.
        reconnect_initial_ms: First reconnection delay (doubles up to ``reconnect_max_ms``).
        reconnect_max_ms: Longest reconnection delay.
        call_timeout_ms: Timeout of the reads.
        missing_retry_s: How often to ask again for a function the engine lacks.
        trace_fetch_max_ids: Trace ids per fetch of pushed traces (the newest named).
        trace_fetch_interval_s: Least time between two fetches of pushed traces.
    """

    def __init__(
        self,
        url: str,
        *,
        readonly: bool = False,
        intervals: dict[str, float] | None = None,
        clock: Clock | None = None,
        reconnect_initial_ms: int = 250,
        reconnect_max_ms: int = 5000,
        call_timeout_ms: int = 10000,
        missing_retry_s: float = MISSING_RETRY_S,
        trace_fetch_max_ids: int = TRACE_FETCH_MAX_IDS,
        trace_fetch_interval_s: float = TRACE_FETCH_MIN_INTERVAL_S,
    ) -> None:
        self.url = url
        self.readonly = readonly
        self.intervals = {**DEFAULT_INTERVALS, **(intervals or {})}
        self.clock = clock or SystemClock()
        self.call_timeout_ms = call_timeout_ms
        self.missing_retry_s = missing_retry_s
        self.trace_fetch_max_ids = max(1, trace_fetch_max_ids)
        self.trace_fetch_interval_s = trace_fetch_interval_s
        self._reconnect = ReconnectionConfig(
            initial_delay_ms=reconnect_initial_ms, max_delay_ms=reconnect_max_ms, jitter_factor=0.3
        )
        self._iii: III | None = None
        self._sink: Callable[[Event], None] = lambda e: None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connected = asyncio.Event()
        self._failed = asyncio.Event()
        #: Why the connection failed for good (``describe_failure``), else ``None``.
        self.failure: str | None = None
        self._wake: dict[str, asyncio.Event] = {}
        self._missing: set[str] = set()
        self._trigger_types: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._state = "connecting"
        self._push_logs_seen = False
        self._push_traces_seen = False
        self._last_log_ms = 0.0
        self._last_span_ms = 0.0
        self._worker_cursor = 0
        #: Random tag naming this dashboard's worker (``iii-tui:<tag>``) and its push functions
        #: (``iii-tui::<tag>::functions|workers|log|trace``).
        self.tag = uuid.uuid4().hex[:8]
        self.state_changes = 0
        #: Records received through the ``log`` trigger, ``trace`` trigger calls received.
        self.pushed_logs = 0
        self.pushed_traces = 0
        #: Trace ids the ``trace`` trigger named that were new to the backlog, fetched, skipped.
        self.trace_ids_notified = 0
        self.trace_ids_fetched = 0
        self.trace_ids_skipped = 0
        #: Fetches of pushed traces made.
        self.trace_fetches = 0
        #: The dashboard's own reads per function (subtracted from the engine's counts).
        self.own_calls: Counter[str] = Counter()
        # ids waiting for the next fetch, oldest first (at most trace_fetch_max_ids)
        self._trace_backlog: dict[str, None] = {}
        self._trace_notified = 0
        self._trace_skipped = 0
        self._trace_wake = asyncio.Event()

    # -- plumbing ------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        """Whether the SDK connection is up."""
        return self._state == "connected"

    def _emit(self, kind: str, data: Any) -> None:
        self._sink(Event(self.clock.now(), kind, data))

    def _on_state(self, state: str) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._apply_state, state)
        except RuntimeError:
            pass

    def _apply_state(self, state: str) -> None:
        if state == self._state:
            return
        self._state = state
        self.state_changes += 1
        self._emit("conn", {"state": state, "url": self.url})
        if state == "connected":
            self._connected.set()
            for wake in self._wake.values():
                wake.set()
        else:
            self._connected.clear()
        if state == "failed":
            self._spawn(self._report_failure())

    async def _report_failure(self) -> None:
        """The SDK gave up (a refused token is fatal at once): say why in a ``conn`` event."""
        iii = self._iii
        if iii is None:
            return
        try:
            await iii.connect_async()  # raises the stored fatal error at once
        except IIIError as exc:
            self.failure, banner = describe_failure(exc)
            data = {
                "state": "failed",
                "url": self.url,
                "error": str(exc),
                "failure": self.failure,
                "banner": banner,
            }
            self._emit("conn", data)
            self._failed.set()

    def _start_client(self) -> III:
        self._loop = asyncio.get_running_loop()
        self._emit("conn", {"state": "connecting", "url": self.url})
        iii = III(
            self.url,
            InitOptions(
                worker_name=f"iii-tui:{self.tag}",
                worker_description="iii-tui dashboard (read-mostly)",
                reconnection_config=self._reconnect,
                invocation_timeout_ms=self.call_timeout_ms,
                otel={"enabled": False},
                enable_metrics_reporting=False,
            ),
        )
        self._iii = iii
        iii.add_connection_state_listener(self._on_state)
        return iii

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read(self, function_id: str, payload: dict[str, Any], kind: str | None = None) -> Any:
        """Call an engine read; ``None`` when the function is missing or the call failed."""
        iii = self._iii
        if iii is None:
            return None
        try:
            result = await iii.trigger_async(
                {"function_id": function_id, "payload": payload, "timeout_ms": self.call_timeout_ms}
            )
        except InvocationError as exc:
            if exc.code == "function_not_found":
                if function_id not in self._missing:
                    self._missing.add(function_id)
                    self._emit("missing", {"function_id": function_id})
            else:
                self.own_calls[function_id] += 1  # the engine counted the failed call too
                log.debug("%s failed: %s", function_id, exc)
            return None
        except IIIError as exc:
            log.debug("%s failed: %s", function_id, exc)
            return None
        self.own_calls[function_id] += 1
        if function_id in self._missing:
            self._missing.discard(function_id)
            self._emit("available", {"function_id": function_id})
        if kind is not None:
            self._emit(kind, result)
        return result

    # -- polls ---------------------------------------------------------------------------------
    async def _poll_functions(self) -> None:
        await self._read("engine::functions::list", {"include_internal": True}, "functions")

    async def _poll_workers(self) -> None:
        result = await self._read("engine::workers::list", {}, "workers")
        workers = [w for w in as_list(as_dict(result).get("workers")) if isinstance(w, dict)]
        ws = [w for w in workers if w.get("runtime") != "engine" and isinstance(w.get("name"), str)]
        if not ws:
            return
        start = self._worker_cursor % len(ws)
        batch = (ws[start:] + ws[:start])[:DETAIL_FANOUT]
        self._worker_cursor = start + len(batch)
        await asyncio.gather(*(self._worker_info(str(w["name"]), w.get("namespace")) for w in batch))

    async def _worker_info(self, name: str, namespace: Any = None) -> None:
        payload: dict[str, Any] = {"name": name}
        if isinstance(namespace, str) and namespace != "default":
            payload["namespace"] = namespace
        await self._read("engine::workers::info", payload, "worker_info")

    async def _poll_triggers(self) -> None:
        await self._read(
            "engine::registered-triggers::list",
            {"include_internal": True, "include_pending": True},
            "triggers",
        )
        types = await self._read("engine::triggers::list", {"include_internal": True}, "trigger_types")
        if types is not None:
            self._trigger_types = {
                str(t.get("id")) for t in as_list(as_dict(types).get("triggers")) if isinstance(t, dict)
            }

    async def _poll_health(self) -> None:
        await self._read("engine::health::check", {}, "health")

    async def _poll_metrics(self) -> None:
        result = await self._read("engine::metrics::list", {})
        if isinstance(result, dict):
            # sdk_metrics can be large and is not shown: keep the engine's aggregate only, plus the
            # dashboard's own calls (the views subtract them from the engine's per-function counts)
            data = {k: v for k, v in result.items() if k in ("engine_metrics", "timestamp")}
            data["own_calls"] = {f: n for f, n in self.own_calls.items() if not f.startswith("engine::")}
            self._emit("metrics", data)

    async def _poll_traces(self) -> None:
        if "trace" in self._trigger_types and self._push_traces_seen:
            return
        since = self._last_span_ms - 2000 if self._last_span_ms else self.clock.now() * 1000 - 300_000
        # newest first, so a busy engine's first answer holds the latest spans, not the oldest
        # 2,000 of the last five minutes (engine::logs::list answers newest first by itself)
        result = await self._read(
            "engine::traces::list",
            {
                "start_time": int(since),
                "limit": 2000,
                "include_internal": False,
                "sort_by": "start_time",
                "sort_order": "desc",
            },
        )
        spans = [s for s in as_list(as_dict(result).get("spans")) if isinstance(s, dict)]
        if result is not None:
            self._push_traces_seen = "trace" in self._trigger_types
            self._note_spans(spans)
            self._emit("spans", {"spans": spans})

    def _note_spans(self, spans: list[dict[str, Any]]) -> None:
        for span in spans:
            start = span.get("start_time_unix_nano")
            if isinstance(start, int | float):
                self._last_span_ms = max(self._last_span_ms, start / 1e6)

    async def _poll_logs(self) -> None:
        if "log" in self._trigger_types and self._push_logs_seen:
            return
        since = self._last_log_ms - 2000 if self._last_log_ms else self.clock.now() * 1000 - 300_000
        result = await self._read("engine::logs::list", {"start_time": int(since), "limit": 2000})
        logs = [r for r in as_list(as_dict(result).get("logs")) if isinstance(r, dict)]
        if result is not None:
            self._push_logs_seen = "log" in self._trigger_types
            for rec in logs:
                ts = rec.get("timestamp_unix_nano")
                if isinstance(ts, int | float):
                    self._last_log_ms = max(self._last_log_ms, ts / 1e6)
            self._emit("logs", {"logs": logs})

    async def _poll_channels(self) -> None:
        await self._read("engine::channels::list", {}, "channels")

    async def _poll_streams(self) -> None:
        await self._read("stream::list_all", {}, "streams")
        await self._read("state::list_groups", {}, "state_groups")

    async def _poll_queues(self) -> None:
        result = await self._read("engine::queue::list_topics", {}, "queues")
        topics = as_list(as_dict(result).get("topics")) if isinstance(result, dict) else as_list(result)
        names = [
            t if isinstance(t, str) else as_dict(t).get("topic") or as_dict(t).get("name") for t in topics
        ]
        clean = [n for n in names if isinstance(n, str)][:DETAIL_FANOUT]
        for name in clean:
            stats = await self._read("engine::queue::topic_stats", {"topic": name})
            if isinstance(stats, dict):
                self._emit("topic_stats", {"topic": name, **stats})
        await self._read("engine::queue::dlq_topics", {}, "dlq")

    def _polls(self) -> dict[str, Callable[[], Awaitable[None]]]:
        return {
            "functions": self._poll_functions,
            "workers": self._poll_workers,
            "triggers": self._poll_triggers,
            "health": self._poll_health,
            "metrics": self._poll_metrics,
            "traces": self._poll_traces,
            "logs": self._poll_logs,
            "channels": self._poll_channels,
            "streams": self._poll_streams,
            "queues": self._poll_queues,
        }

    _POLL_FUNCTIONS: dict[str, tuple[str, ...]] = {
        "health": ("engine::health::check",),
        "metrics": ("engine::metrics::list",),
        "traces": ("engine::traces::list",),
        "logs": ("engine::logs::list",),
        "channels": ("engine::channels::list",),
        "streams": ("stream::list_all", "state::list_groups"),
        "queues": ("engine::queue::list_topics",),
    }

    async def _poll_loop(self, name: str, fn: Callable[[], Awaitable[None]]) -> None:
        wake = self._wake.setdefault(name, asyncio.Event())
        while True:
            await self._connected.wait()
            wake.clear()
            try:
                await fn()
            except asyncio.CancelledError:
                raise
            except Exception:  # a view's poll must never stop the others
                log.exception("poll %s failed", name)
            interval = self.intervals.get(name, 5.0)
            needed = self._POLL_FUNCTIONS.get(name, ())
            if needed and all(f in self._missing for f in needed):
                interval = max(interval, self.missing_retry_s)
            try:
                await asyncio.wait_for(wake.wait(), interval)
            except TimeoutError:
                pass

    # -- push ----------------------------------------------------------------------------------
    def _register_push(self, iii: III) -> None:
        meta = {"internal": True, "iii_tui": True}
        fmt = {"type": "object"}

        async def on_functions(data: Any) -> None:
            self._threadsafe(self._emit, "functions", data)

        async def on_workers(data: Any) -> None:
            self._threadsafe(self._emit, "registry", data)
            self._threadsafe(self.wake, "workers")

        async def on_log(data: Any) -> None:
            self._push_logs_seen = True
            self.pushed_logs += 1
            self._threadsafe(self._emit, "logs", {"logs": [data]})

        async def on_trace(data: Any) -> None:
            self._push_traces_seen = True
            self.pushed_traces += 1
            ids = [i for i in as_list(as_dict(data).get("trace_ids")) if isinstance(i, str)]
            if ids:
                self._threadsafe(self._note_trace_ids, ids)

        for suffix, handler, trigger_type, config in (
            ("functions", on_functions, "engine::functions-available", {}),
            ("workers", on_workers, "engine::workers-available", {}),
            ("log", on_log, "log", {"level": "all"}),
            ("trace", on_trace, "trace", {}),
        ):
            fid = f"iii-tui::{self.tag}::{suffix}"
            iii.register_function(
                fid, handler, description=f"iii-tui push: {trigger_type}", metadata=meta, request_format=fmt
            )
            iii.register_trigger({"type": trigger_type, "function_id": fid, "config": config})

    def _threadsafe(self, fn: Callable[..., Any], *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(fn, *args)
            except RuntimeError:
                pass

    def _note_trace_ids(self, ids: list[str]) -> None:
        """Queue trace ids named by the ``trace`` trigger for the next fetch.

        Only the newest :attr:`trace_fetch_max_ids` are kept (arrival order: the engine names
        a batch's ids in no particular order, so within one batch the choice is arbitrary);
        older ones are dropped at once and counted as skipped.
        """
        backlog = self._trace_backlog
        for tid in ids:
            if tid in backlog:
                del backlog[tid]  # named again (more spans): keep it, as the newest
            else:
                self._trace_notified += 1
                self.trace_ids_notified += 1
            backlog[tid] = None
        excess = len(backlog) - self.trace_fetch_max_ids
        if excess > 0:
            for tid in list(itertools.islice(backlog, excess)):
                del backlog[tid]
            self._trace_skipped += excess
            self.trace_ids_skipped += excess
        self._trace_wake.set()

    async def _trace_fetch_loop(self) -> None:
        """Fetch the spans of queued traces: one fetch at a time, at most one per interval."""
        loop = asyncio.get_running_loop()
        last = -math.inf
        while True:
            await self._trace_wake.wait()
            delay = last + self.trace_fetch_interval_s - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)  # rate limit: ids named meanwhile join this fetch
            await self._connected.wait()
            self._trace_wake.clear()
            ids = list(self._trace_backlog)
            notified, skipped = self._trace_notified, self._trace_skipped
            self._trace_backlog.clear()
            self._trace_notified = self._trace_skipped = 0
            if not ids:
                continue
            last = loop.time()
            try:
                await self._fetch_traces(ids, notified, skipped)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bad answer must not stop the push path
                log.exception("trace fetch failed")

    async def _fetch_traces(self, ids: list[str], notified: int, skipped: int) -> None:
        """One ``engine::traces::list`` of ``ids``; emits ``spans``, then ``sampling``."""
        self.trace_fetches += 1
        self.trace_ids_fetched += len(ids)
        result = await self._read(
            "engine::traces::list",
            {"trace_ids": ids, "limit": TRACE_FETCH_MAX_SPANS, "include_internal": False},
        )
        spans = [s for s in as_list(as_dict(result).get("spans")) if isinstance(s, dict)]
        if spans:
            self._note_spans(spans)
            self._emit("spans", {"spans": spans})
        self._emit("sampling", {"notified": notified, "fetched": len(ids), "skipped": skipped})

    # -- public --------------------------------------------------------------------------------
    def wake(self, view: str) -> None:
        """Poll ``view`` now instead of at its next interval."""
        event = self._wake.get(view)
        if event is not None:
            event.set()

    async def run(self, sink: Callable[[Event], None]) -> None:
        """Connect and keep emitting events until cancelled (reconnecting as needed)."""
        self._sink = sink
        iii = self._start_client()
        self._register_push(iii)
        loops = [asyncio.create_task(self._poll_loop(n, fn)) for n, fn in self._polls().items()]
        loops.append(asyncio.create_task(self._trace_fetch_loop()))
        try:
            await asyncio.gather(*loops)
        finally:
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            self._sink = lambda e: None
            await self.stop()

    async def collect(self, sink: Callable[[Event], None], connect_timeout: float = 5.0) -> bool:
        """Read every view once (``--snapshot``).

        Returns:
            ``False`` when the engine could not be reached within ``connect_timeout`` seconds, or
            refused the connection (then at once; :attr:`failure` says why).
        """
        self._sink = sink
        self._start_client()
        waits = [asyncio.ensure_future(self._connected.wait()), asyncio.ensure_future(self._failed.wait())]
        try:
            await asyncio.wait(waits, timeout=connect_timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()
        if not self._connected.is_set():
            if not self._failed.is_set():
                self._emit("conn", {"state": "unreachable", "url": self.url, "error": "no connection"})
            self._sink = lambda e: None
            await self.stop()
            return False
        self._trigger_types = set()
        await self._poll_triggers()
        polls = self._polls()
        await asyncio.gather(*(fn() for name, fn in polls.items() if name != "triggers"))
        self._worker_cursor = 0
        self._sink = lambda e: None  # the shutdown's state changes are not part of the snapshot
        await self.stop()
        return True

    def request(self, kind: str, arg: str) -> None:
        """Fetch a detail now (``function_info``, ``worker_info``, ``trace_tree``, ``state_items``,
        ``stream_items``, ``dlq_messages``); the answer arrives as an event of that kind."""
        if self._iii is None:
            return
        if kind == "function_info":
            self._spawn(self._read("engine::functions::info", {"function_id": arg}, "function_info"))
        elif kind == "worker_info":
            self._spawn(self._worker_info(arg))
        elif kind == "trace_tree":

            async def tree() -> None:
                result = await self._read("engine::traces::tree", {"trace_id": arg})
                if isinstance(result, dict):
                    self._emit("trace_tree", {"trace_id": arg, "roots": result.get("roots", [])})

            self._spawn(tree())
        elif kind == "state_items":

            async def items() -> None:
                result = await self._read("state::list", {"scope": arg})
                if result is not None:
                    self._emit("state_items", {"scope": arg, "items": result})

            self._spawn(items())
        elif kind == "stream_items":
            self._spawn(self._stream_items(arg))
        elif kind == "dlq_messages":

            async def messages() -> None:
                result = await self._read("engine::queue::dlq_messages", {"topic": arg, "limit": 100})
                if result is not None:
                    rows = as_dict(result).get("messages", result)
                    self._emit("dlq_messages", {"topic": arg, "messages": rows})

            self._spawn(messages())
        elif kind in self._polls():
            self.wake(kind)

    async def _stream_items(self, stream: str) -> None:
        """``stream::list_groups`` then ``stream::list`` of each group (at most
        :data:`DETAIL_FANOUT`), emitted as one ``stream_items`` event."""
        groups = await self._read("stream::list_groups", {"stream_name": stream})
        names = [g for g in as_list(groups) if isinstance(g, str)][:DETAIL_FANOUT]
        if groups is None:
            return
        answers = await asyncio.gather(
            *(self._read("stream::list", {"stream_name": stream, "group_id": g}) for g in names)
        )
        self._emit(
            "stream_items",
            {
                "stream": stream,
                "groups": {g: as_list(items) for g, items in zip(names, answers, strict=True)},
            },
        )

    async def call(self, function_id: str, payload: Any, timeout_ms: int = 30000) -> Any:
        """Invoke any function (a writing action: refused in read-only mode).

        Raises:
            ReadOnlyError: in read-only mode.
            InvocationError: the call failed (code and message from the engine or the handler).
        """
        if self.readonly:
            raise ReadOnlyError("read-only mode: actions that write are disabled")
        if self._iii is None:
            raise InvocationError("NOT_CONNECTED", "the dashboard is not connected yet")
        return await self._iii.trigger_async(
            {"function_id": function_id, "payload": payload, "timeout_ms": timeout_ms}
        )

    async def find_trace(self, function_id: str, since_s: float) -> str | None:
        """The trace id of the newest root span of ``function_id`` started after ``since_s``."""
        result = await self._read(
            "engine::traces::list",
            {"start_time": int(since_s * 1000) - 50, "limit": 200, "include_internal": False},
        )

        best: tuple[float, str] | None = None
        for span in as_list(as_dict(result).get("spans")):
            if not isinstance(span, dict) or span.get("parent_span_id"):
                continue
            if span_function(span) != function_id or not isinstance(span.get("trace_id"), str):
                continue
            start = span.get("start_time_unix_nano")
            key = float(start) if isinstance(start, int | float) else 0.0
            if best is None or key > best[0]:
                best = (key, span["trace_id"])
        return best[1] if best else None

    async def stop(self) -> None:
        """Disconnect (idempotent)."""
        for task in list(self._tasks):
            task.cancel()
        iii, self._iii = self._iii, None
        if iii is not None:
            await iii.shutdown_async()
