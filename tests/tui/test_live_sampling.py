"""The dashboard's cost on a busy engine is bounded: pushed traces are fetched one
``engine::traces::list`` at a time, at most N ids per fetch (the newest named), at most one
fetch per interval; the rest is counted as skipped and shown; counts come from the engine's
metrics, not from the sampled spans.

The bursts are real spans written to the engine's ``/otel`` telemetry socket (the frames an SDK
exporter sends), so the engine's real ``trace`` trigger names them in its coalesced batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from iii_tui.screens import FunctionsScreen, InvocationsScreen
from iii_tui.snapshot import rendered_text
from iii_tui.source import EngineSource
from iii_tui.store import Event
from iii_tui.views import function_rows
from websockets.asyncio.client import connect

from iii_typed import III, InitOptions, register_worker
from iii_typed.engine.process import EngineProcess

from .conftest import FAST, OrdersWorker, make_app, wait_text, wait_until

PUSH_ONLY = {"traces": 3600.0, "logs": 3600.0}


def _kv(key: str, value: str) -> dict[str, Any]:
    return {"key": key, "value": {"stringValue": value}}


def _trace_ids(count: int) -> list[str]:
    return [os.urandom(16).hex() for _ in range(count)]


async def send_root_spans(url: str, trace_ids: list[str], function_id: str, per_frame: int = 100) -> None:
    """One finished root span ``execute <function_id>`` per trace id, written to ``/otel`` as the
    SDK's exporter writes them (``OTLP`` + OTLP/JSON, hex ids)."""
    async with connect(url + "/otel", compression=None) as ws:
        for first in range(0, len(trace_ids), per_frame):
            now = time.time_ns()
            spans = [
                {
                    "traceId": tid,
                    "spanId": os.urandom(8).hex(),
                    "name": f"execute {function_id}",
                    "kind": 0,
                    "startTimeUnixNano": str(now + i),
                    "endTimeUnixNano": str(now + i + 1_000_000),
                    "attributes": [_kv("iii.function.id", function_id)],
                    "events": [],
                    "links": [],
                    "status": {"code": 1, "message": ""},
                }
                for i, tid in enumerate(trace_ids[first : first + per_frame])
            ]
            doc = {
                "resourceSpans": [
                    {
                        "resource": {"attributes": [_kv("service.name", "burst-svc")]},
                        "scopeSpans": [{"scope": {"name": "iii-python-sdk"}, "spans": spans}],
                    }
                ]
            }
            await ws.send(b"OTLP" + json.dumps(doc).encode())


@pytest.fixture
def reader(engine: EngineProcess) -> Iterator[III]:
    """A plain client for the test's own reads of the engine."""
    client = register_worker(engine.url, InitOptions(worker_name=f"sampling-reader-{uuid.uuid4().hex[:6]}"))
    yield client
    client.shutdown()


async def trace_trigger_registered(client: III, source: EngineSource) -> None:
    """Wait until the engine lists the source's ``trace`` trigger (else a burst goes unnamed)."""
    wanted = f"iii-tui::{source.tag}::trace"

    async def listed() -> bool:
        answer = await client.trigger_async(
            {"function_id": "engine::registered-triggers::list", "payload": {"include_internal": True}}
        )
        return any(t.get("function_id") == wanted for t in answer["registered_triggers"])

    await wait_until(listed, what="the dashboard's trace trigger registered")


class ProbedSource(EngineSource):
    """An :class:`EngineSource` whose fetches of pushed traces are watched where they leave the
    source (independently of its own counters) and held at a gate until the test opens it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.in_flight = 0
        self.max_in_flight = 0
        self.fetches: list[tuple[float, list[str]]] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def _read(self, function_id: str, payload: dict[str, Any], kind: str | None = None) -> Any:
        ids = payload.get("trace_ids")
        if function_id != "engine::traces::list" or ids is None:
            return await super()._read(function_id, payload, kind)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.fetches.append((asyncio.get_running_loop().time(), list(ids)))
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.gate.wait(), 10)
            return await super()._read(function_id, payload, kind)
        finally:
            self.in_flight -= 1


async def test_pushed_traces_one_fetch_at_a_time_newest_n_rest_counted(
    engine: EngineProcess, reader: III
) -> None:
    max_ids = 50
    source = ProbedSource(
        engine.url,
        readonly=True,
        intervals={**FAST, **PUSH_ONLY},
        reconnect_initial_ms=100,
        trace_fetch_max_ids=max_ids,
        trace_fetch_interval_s=0.2,
    )
    events: list[Event] = []
    task = asyncio.create_task(source.run(events.append))
    fn = f"burst{uuid.uuid4().hex[:6]}::work"
    sent: set[str] = set()
    try:
        await trace_trigger_registered(reader, source)

        def drained() -> bool:
            accounted = source.trace_ids_fetched + source.trace_ids_skipped == source.trace_ids_notified
            return accounted and source.in_flight == 0

        # 1. a burst while the first fetch is held: the ids named meanwhile wait, no second fetch
        source.gate.clear()
        first, second = _trace_ids(300), _trace_ids(300)
        sent |= set(first) | set(second)
        await send_root_spans(engine.url, first, fn)
        await wait_until(lambda: source.trace_ids_notified >= 300 and source.fetches, what="first held")
        await send_root_spans(engine.url, second, fn)
        await wait_until(lambda: source.trace_ids_notified >= 600, what="the second burst named")
        assert source.pushed_traces >= 2  # the engine named the second burst during the fetch
        assert len(source.fetches) == 1 and source.in_flight == 1
        source.gate.set()
        await wait_until(lambda: drained() and len(source.fetches) >= 2, what="the backlog fetched")
        # the next fetch took only the newest ids named (the second burst's), N of them
        assert len(source.fetches[1][1]) == max_ids and set(source.fetches[1][1]) <= set(second)
        assert source.trace_ids_skipped >= 600 - 2 * max_ids

        # 2. small bursts, each in its own trigger call (the engine batches every 300 ms): the
        # fetches keep the interval, so there are fewer fetches than trigger calls
        interval = source.trace_fetch_interval_s = 1.0
        pushes, fetches = source.pushed_traces, len(source.fetches)
        for _ in range(5):
            ids = _trace_ids(20)
            sent |= set(ids)
            before = source.trace_ids_notified
            await send_root_spans(engine.url, ids, fn)
            await wait_until(lambda b=before: source.trace_ids_notified >= b + 20, what="a small burst named")
        await wait_until(drained, what="the small bursts fetched")
        later = [t for t, _ in source.fetches[fetches:]]
        assert 0 < len(later) < source.pushed_traces - pushes
        assert all(b - a >= interval - 0.02 for a, b in itertools.pairwise(later)), later

        assert source.max_in_flight == 1
        assert max(len(ids) for _, ids in source.fetches) <= max_ids

        # every fetch was reported, with what it skipped, to the sink (and so to the views)
        sampling = [e.data for e in events if e.kind == "sampling"]
        assert [s["fetched"] for s in sampling] == [len(ids) for _, ids in source.fetches]
        assert sum(s["skipped"] for s in sampling) == source.trace_ids_skipped
        assert sum(s["notified"] for s in sampling) == source.trace_ids_notified
        # the spans delivered are those of the fetched traces; the skipped ones were never read
        fetched = {tid for _, ids in source.fetches for tid in ids}
        delivered = {s["trace_id"] for e in events if e.kind == "spans" for s in e.data["spans"]} & sent
        assert delivered == fetched & sent and len(sent - delivered) >= 600 - 2 * max_ids
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_invocations_screen_says_it_shows_a_sample(engine: EngineProcess, reader: III) -> None:
    app = make_app(engine.url, intervals=PUSH_ONLY, source_options={"trace_fetch_max_ids": 20})
    fn = f"burst{uuid.uuid4().hex[:6]}::work"

    async def burst(count: int = 200) -> None:
        """Spans of ``count`` new traces, named by the engine, fetched (a sample) and applied."""
        source = app.source
        assert isinstance(source, EngineSource)
        before = source.trace_ids_notified
        await send_root_spans(engine.url, _trace_ids(count), fn)
        await wait_until(lambda: source.trace_ids_notified >= before + count, what="the burst named")
        await wait_until(lambda: app.store.traces_notified == source.trace_ids_notified, what="applied")

    async with app.run_test(size=(120, 40)) as pilot:
        assert isinstance(app.source, EngineSource)
        await trace_trigger_registered(reader, app.source)
        await pilot.press("5", "slash", *f"fn={fn}", "enter")
        screen = app.screen
        assert isinstance(screen, InvocationsScreen)
        text = await wait_text(app, "No matching invocations")
        assert "SAMPLED" not in text and "sampling:" not in text

        await burst()
        text = await wait_text(app, "SAMPLED")
        sampled = app.store.sampling_in()
        assert 0 < sampled.fetched < sampled.notified and sampled.skipped > 0
        note = f"sampling: showing newest {sampled.fetched} of {sampled.notified} new traces in the last 5 s"
        assert note in text
        mine = [i for i in app.store.invocations if i.function == fn]
        assert 0 < len(mine) <= sampled.fetched
        await wait_until(lambda: len(screen.ring.items) == len(mine), what="the screen caught up")

        # pause and "N new" still work while sampling
        await pilot.press("space")
        await wait_text(app, "▼ 0 new")
        at_pause = app.store.invocations_total
        await burst(100)
        await wait_until(lambda: app.store.invocations_total > at_pause, what="more sampled invocations")
        await wait_until(
            lambda: f"▼ {app.store.invocations_total - at_pause} new" in rendered_text(app),
            what="the new ones counted",
        )
        assert "sampling: showing newest" in rendered_text(app) and not screen.ring.follow
        await pilot.press("end")
        await wait_text(app, "following")

        # the other screens say which numbers come from the sample
        await burst()
        await pilot.press("1")
        text = await wait_text(app, "(of sampled traces)")
        assert any(line.split()[:3] == ["traces", "sampling:", "showing"] for line in text.splitlines()), text
        await burst()
        await pilot.press("3")
        await wait_until(lambda: isinstance(app.screen, FunctionsScreen), what="functions screen")
        await wait_text(app, "ERR%, P50/P95, LATENCY of sampled traces")


async def test_counts_come_from_the_engine_metrics_not_from_spans(
    engine: EngineProcess, orders_worker: OrdersWorker
) -> None:
    """The workers here run with telemetry off: no span exists, yet CALLS and invocations/s are
    exact (``engine::metrics::list``), and the dashboard's own reads are not counted."""
    app = make_app(engine.url)
    calls = 7
    async with app.run_test(size=(120, 40)) as pilot:
        source = app.source
        assert isinstance(source, EngineSource)
        await wait_until(lambda: orders_worker.create in app.store.functions, what="functions read")
        await wait_until(lambda: app.store.metrics_rate() is not None, what="two metrics reads")
        for i in range(calls):
            await orders_worker.client.trigger_async(
                {"function_id": orders_worker.create, "payload": {"name": f"n{i}", "address": {"city": "x"}}}
            )
        await pilot.press("3", "slash", *f"id={orders_worker.create}", "enter")

        def create_calls() -> object:
            screen = app.screen
            rows = function_rows(app.store, screen.flt) if isinstance(screen, FunctionsScreen) else []
            return rows[0].cells[3] if rows else None

        await wait_until(lambda: create_calls() == str(calls), what=f"CALLS {calls}")
        assert orders_worker.create not in app.store.fn_stats  # not one span: the count is the engine's
        await wait_until(lambda: (app.store.metrics_rate() or 0) > 0, what="a rate from the metrics")

        # the dashboard polls state::list_groups itself (streams view): its reads are not counted
        # (each read of the count may be off by the one poll in flight when the engine answered)
        polls = source.own_calls["state::list_groups"]
        counted = app.store.calls_of("state::list_groups")
        await wait_until(lambda: source.own_calls["state::list_groups"] >= polls + 5, what="5 more polls")
        version = app.store.versions["metrics"]
        await wait_until(lambda: app.store.versions["metrics"] > version, what="a later metrics read")
        assert abs(app.store.calls_of("state::list_groups") - counted) <= 2
