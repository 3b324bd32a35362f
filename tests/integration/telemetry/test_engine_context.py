"""What the engine invokes *because of a call* continues that call's trace (protocol.md §4.5, §8).

Two layers:

* **Frames** (raw workers, no SDK): the ``invokefunction`` the engine sends for a queue delivery
  (every attempt, a redriven dead letter, after a restart, from a data folder of an older engine),
  a durable-publish copy, a pubsub subscriber, a ``state`` / ``stream`` trigger fire, a condition
  call, a custom stream function and an HTTP request with a ``traceparent`` header carries the
  causing call's ``traceparent`` and ``baggage`` exactly; work no call caused (a cron tick, a call
  without context after a traced one) carries none.
* **Spans** (worker processes with telemetry on): the delivered handler's ``execute <fn>`` span is
  in the caller's trace, a child of the caller's span, as the engine stores it
  (``engine::traces::list``).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import sqlite3
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from tests.integration.engine.engine_raw import HandlerError, RawWorker, open_worker
from tests.integration.telemetry.telemetry_support import fast_otel, unique
from tests.support.waiting import wait_for, wait_for_async


def _context() -> tuple[str, str, str, str]:
    """A fresh sampled W3C context: ``(traceparent, baggage, trace_id, span_id)``."""
    trace_id, span_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    return f"00-{trace_id}-{span_id}-01", f"tenant=acme,case={trace_id[:8]}", trace_id, span_id


def _carries(frame: dict[str, Any], traceparent: str, baggage: str) -> bool:
    return frame.get("traceparent") == traceparent and frame.get("baggage") == baggage


async def _calls(worker: RawWorker, function_id: str, count: int, what: str) -> list[dict[str, Any]]:
    """The first ``count`` invocations of ``function_id`` the worker received (bounded wait)."""
    await wait_for_async(lambda: len(worker.calls.get(function_id, [])) >= count, timeout=10, what=what)
    return worker.calls[function_id][:count]


async def _serve(worker: RawWorker, *function_ids: str, result: Any = None) -> None:
    for function_id in function_ids:
        worker.serve(function_id, lambda frame: result)
        await worker.send({"type": "registerfunction", "id": function_id})
    await worker.sync()


async def _bind(worker: RawWorker, trigger_type: str, function_id: str, config: dict[str, Any]) -> str:
    """Register a binding and wait until the engine lists it as active."""
    trigger_id = unique("tr")
    await worker.send(
        {
            "type": "registertrigger",
            "id": trigger_id,
            "trigger_type": trigger_type,
            "function_id": function_id,
            "config": config,
        }
    )

    async def active() -> bool:
        listed = await worker.result("engine::registered-triggers::list", {"trigger_type": trigger_type})
        return any(row["id"] == trigger_id for row in listed["registered_triggers"])  # live ones only

    await wait_for_async(active, timeout=10, what=f"{trigger_type} binding {trigger_id} active")
    return trigger_id


async def _close(*workers: RawWorker) -> None:
    for worker in workers:
        await worker.close()


# -- queue -------------------------------------------------------------------------------------
QUEUE_CONFIG = """
[queue.queue_configs.jobs]
max_retries = 2
backoff_ms = 10
"""


async def test_every_delivery_attempt_and_a_redrive_carry_the_enqueuers_context(engine_factory, tmp_path):
    (tmp_path / "engine.toml").write_text(QUEUE_CONFIG, encoding="utf-8")
    proc = engine_factory(config=tmp_path / "engine.toml")
    caller = await open_worker(proc.url)
    consumer = await open_worker(proc.url)
    try:
        target = f"{unique('q')}::job"
        healthy = asyncio.Event()

        def job(frame: dict[str, Any]) -> Any:
            if not healthy.is_set():
                raise HandlerError("boom", "not yet")
            return None

        consumer.serve(target, job)
        await consumer.send({"type": "registerfunction", "id": target})
        await consumer.sync()
        traceparent, baggage, _, _ = _context()
        reply = await caller.call(
            target,
            {"n": 1},
            action={"type": "enqueue", "queue": "jobs"},
            traceparent=traceparent,
            baggage=baggage,
        )
        assert "messageReceiptId" in reply["result"], reply
        failed = await _calls(consumer, target, 2, "two failed attempts")

        async def dead() -> Any:
            return await caller.result("engine::queue::dlq_messages", {"topic": "jobs"})

        await wait_for_async(dead, what="the message reaches the dead-letter queue")
        healthy.set()
        assert await caller.result("iii::queue::redrive", {"queue": "jobs"}) == {
            "queue": "jobs",
            "redriven": 1,
        }
        attempts = await _calls(consumer, target, 3, "the redriven delivery")
        assert attempts[:2] == failed
        for number, frame in enumerate(attempts, 1):
            assert _carries(frame, traceparent, baggage), f"attempt {number}: {frame}"

        # The lane now exists; a message enqueued without a context must not inherit the first one.
        await caller.call(target, {"n": 2}, action={"type": "enqueue", "queue": "jobs"})
        (untraced,) = (await _calls(consumer, target, 4, "the untraced message"))[3:]
        assert untraced["data"]["n"] == 2
        assert "traceparent" not in untraced and "baggage" not in untraced, untraced
    finally:
        await _close(caller, consumer)


async def test_stored_messages_keep_their_context_across_an_engine_restart(engine_factory, tmp_path):
    proc = engine_factory(data_dir=tmp_path / "data")
    later = f"{unique('q')}::later"
    copy = f"{unique('q')}::copy"
    topic = unique("topic")
    queued_context, published_context = _context(), _context()
    caller = await open_worker(proc.url)
    subscriber = await open_worker(proc.url)
    try:
        # nobody serves these functions yet: the messages wait in the store
        await _bind(subscriber, "durable:subscriber", copy, {"topic": topic})
        await caller.call(
            later,
            {"q": 1},
            action={"type": "enqueue", "queue": "default"},
            traceparent=queued_context[0],
            baggage=queued_context[1],
        )
        await caller.result(
            "iii::durable::publish",
            {"topic": topic, "data": {"p": 1}},
            traceparent=published_context[0],
            baggage=published_context[1],
        )

        async def waiting() -> bool:
            stats = await caller.result("engine::queue::topic_stats", {"topic": topic})
            return bool(stats["depth"] == 1)

        await wait_for_async(waiting, what="the published copy is stored")
    finally:
        await _close(caller, subscriber)

    proc.restart(kill=True)  # a crash: only what was committed survives

    worker = await open_worker(proc.url)
    try:
        await _serve(worker, later, copy)
        await _bind(worker, "durable:subscriber", copy, {"topic": topic})
        (queued,) = await _calls(worker, later, 1, "the queued message after the restart")
        (published,) = await _calls(worker, copy, 1, "the published copy after the restart")
        assert queued["data"] == {"q": 1} and _carries(queued, *queued_context[:2]), queued
        assert published["data"] == {"p": 1} and _carries(published, *published_context[:2]), published
    finally:
        await _close(worker)


#: The messages table as engines before trace-context persistence created it.
OLD_SCHEMA = (
    "CREATE TABLE messages ("
    " id TEXT PRIMARY KEY, kind TEXT NOT NULL, name TEXT NOT NULL, function_id TEXT NOT NULL,"
    " namespace TEXT NOT NULL, data TEXT NOT NULL, grp TEXT, attempts INTEGER NOT NULL,"
    " max_attempts INTEGER NOT NULL, backoff_ms INTEGER NOT NULL, exponential INTEGER NOT NULL,"
    " available_at REAL NOT NULL, seq INTEGER NOT NULL, state TEXT NOT NULL, error TEXT,"
    " failed_at INTEGER, created_at INTEGER NOT NULL)"
)


async def test_a_data_folder_of_an_older_engine_opens_and_its_messages_start_new_traces(
    engine_factory, tmp_path
):
    data = tmp_path / "data"
    data.mkdir()
    target = f"{unique('q')}::old"
    db = sqlite3.connect(data / "queue.sqlite3")
    db.execute(OLD_SCHEMA)
    db.execute(
        "INSERT INTO messages VALUES (?, 'queue', 'default', ?, 'default', ?, NULL, 0, 3, 10, 1, 0, 1,"
        " 'ready', NULL, NULL, 0)",
        (str(uuid.uuid4()), target, json.dumps({"old": True})),
    )
    db.commit()
    db.close()
    proc = engine_factory(data_dir=data)
    worker = await open_worker(proc.url)
    try:
        await _serve(worker, target)
        (old,) = await _calls(worker, target, 1, "the message stored by the older engine")
        assert old["data"] == {"old": True}
        assert "traceparent" not in old and "baggage" not in old, old
        traceparent, baggage, _, _ = _context()
        await worker.call(
            target,
            {"new": True},
            action={"type": "enqueue", "queue": "default"},
            traceparent=traceparent,
            baggage=baggage,
        )
        new = (await _calls(worker, target, 2, "a message stored after the upgrade"))[1]
        assert new["data"] == {"new": True} and _carries(new, traceparent, baggage), new
    finally:
        await _close(worker)
    columns = {
        row[1] for row in sqlite3.connect(data / "queue.sqlite3").execute("PRAGMA table_info(messages)")
    }
    assert {"traceparent", "baggage"} <= columns


def _open_old_stores(folders: list[str], barrier: Any, results: Any) -> None:
    """Child process: open each folder's older queue store at the same moment as the others."""
    from iii_typed.engine.builtins._sqlite import StoreError, open_database

    for folder in folders:
        barrier.wait(timeout=30)
        try:
            open_database(
                Path(folder),
                "queue",
                (OLD_SCHEMA.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS"),),
                columns={"messages": {"traceparent": "TEXT", "baggage": "TEXT"}},
            ).close()
            results.put("ok")
        except StoreError as exc:
            results.put(str(exc))


def test_an_older_data_folder_opened_by_several_processes_at_once_opens_in_all(tmp_path):
    """Two engines starting on one older data folder: each adds the missing columns or sees them.

    Each process used to check the columns and then add the missing ones: the slower one failed
    with "duplicate column name" (or "database is locked" while another switched the file to WAL)
    and the engine refused to start, calling the folder unusable.
    """
    processes, rounds = 4, 6
    folders = []
    for index in range(rounds):
        folder = tmp_path / f"data{index}"
        folder.mkdir()
        db = sqlite3.connect(folder / "queue.sqlite3")
        db.execute(OLD_SCHEMA)
        db.commit()
        db.close()
        folders.append(str(folder))
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(processes), context.Queue()
    children = [
        context.Process(target=_open_old_stores, args=(folders, barrier, results)) for _ in range(processes)
    ]
    for child in children:
        child.start()
    outcomes = [results.get(timeout=60) for _ in range(processes * rounds)]
    for child in children:
        child.join(timeout=30)
    assert outcomes == ["ok"] * (processes * rounds), [o for o in outcomes if o != "ok"]
    for folder in folders:
        db = sqlite3.connect(Path(folder) / "queue.sqlite3")
        columns = [row[1] for row in db.execute("PRAGMA table_info(messages)")]
        db.close()
        assert columns.count("traceparent") == 1 and columns.count("baggage") == 1, columns


# -- publish and triggers ------------------------------------------------------------------------
async def test_durable_publish_copies_and_their_condition_carry_the_publishers_context(engine):
    caller = await open_worker(engine.url)
    subscriber = await open_worker(engine.url)
    try:
        prefix, topic = unique("dp"), unique("topic")
        target, condition = f"{prefix}::copy", f"{prefix}::condition"
        await _serve(subscriber, target)
        await _serve(subscriber, condition, result=True)
        await _bind(
            subscriber, "durable:subscriber", target, {"topic": topic, "condition_function_id": condition}
        )
        traceparent, baggage, _, _ = _context()
        await caller.result(
            "iii::durable::publish",
            {"topic": topic, "data": {"d": 1}},
            traceparent=traceparent,
            baggage=baggage,
        )
        (checked,) = await _calls(subscriber, condition, 1, "the condition call")
        (copy,) = await _calls(subscriber, target, 1, "the delivered copy")
        assert _carries(checked, traceparent, baggage), checked
        assert copy["data"] == {"d": 1} and _carries(copy, traceparent, baggage), copy
    finally:
        await _close(caller, subscriber)


async def test_pubsub_subscribers_get_the_publishers_context(engine):
    caller = await open_worker(engine.url)
    subscriber = await open_worker(engine.url)
    try:
        target, topic = f"{unique('ps')}::on", unique("topic")
        await _serve(subscriber, target)
        await _bind(subscriber, "subscribe", target, {"topic": topic})
        traceparent, baggage, _, _ = _context()
        await caller.result(
            "publish", {"topic": topic, "data": {"p": 1}}, traceparent=traceparent, baggage=baggage
        )
        await caller.result("publish", {"topic": topic, "data": {"p": 2}})
        traced, untraced = await _calls(subscriber, target, 2, "both deliveries")
        if traced["data"] != {"p": 1}:  # deliveries run in tasks of their own: any order
            traced, untraced = untraced, traced
        assert _carries(traced, traceparent, baggage), traced
        assert "traceparent" not in untraced and "baggage" not in untraced, untraced
    finally:
        await _close(caller, subscriber)


async def test_state_triggers_and_their_condition_carry_the_context_of_the_call(engine):
    caller = await open_worker(engine.url)
    subscriber = await open_worker(engine.url)
    try:
        prefix, scope = unique("st"), unique("scope")
        target, condition = f"{prefix}::changed", f"{prefix}::condition"
        await _serve(subscriber, target)
        await _serve(subscriber, condition, result=True)
        await _bind(subscriber, "state", target, {"scope": scope, "condition_function_id": condition})
        contexts = [_context() for _ in range(3)]
        await caller.result(
            "state::set",
            {"scope": scope, "key": "k", "value": 1},
            traceparent=contexts[0][0],
            baggage=contexts[0][1],
        )
        await _calls(subscriber, target, 1, "state:created")
        await caller.result(
            "state::update",
            {"scope": scope, "key": "k", "ops": [{"type": "increment", "path": "", "by": 1}]},
            traceparent=contexts[1][0],
            baggage=contexts[1][1],
        )
        await _calls(subscriber, target, 2, "state:updated")
        await caller.result(
            "state::delete", {"scope": scope, "key": "k"}, traceparent=contexts[2][0], baggage=contexts[2][1]
        )
        await _calls(subscriber, target, 3, "state:deleted")
        await caller.result("state::set", {"scope": scope, "key": "k", "value": 5})
        fires = await _calls(subscriber, target, 4, "the untraced set")
        checks = await _calls(subscriber, condition, 4, "the condition calls")
        for number, (context, fire, check) in enumerate(zip(contexts, fires, checks, strict=False)):
            assert fire["data"]["event_type"].startswith("state:"), fire
            assert _carries(fire, *context[:2]), f"fire {number}: {fire}"
            assert _carries(check, *context[:2]), f"condition {number}: {check}"
        assert "traceparent" not in fires[3] and "traceparent" not in checks[3], (fires[3], checks[3])
    finally:
        await _close(caller, subscriber)


async def test_stream_triggers_and_custom_stream_functions_carry_the_context_of_the_call(engine):
    caller = await open_worker(engine.url)
    subscriber = await open_worker(engine.url)
    try:
        prefix, stream, custom = unique("sm"), unique("stream"), unique("custom")
        target, override = f"{prefix}::changed", f"stream::set({custom})"
        await _serve(subscriber, target)
        await _serve(subscriber, override, result={"new_value": {"v": 1}, "old_value": None})
        await _bind(subscriber, "stream", target, {"stream_name": stream})
        set_context, send_context, custom_context = _context(), _context(), _context()
        item = {"stream_name": stream, "group_id": "g", "item_id": "i", "data": {"v": 1}}
        await caller.result("stream::set", item, traceparent=set_context[0], baggage=set_context[1])
        await _calls(subscriber, target, 1, "the create event")
        event = {"stream_name": stream, "group_id": "g", "type": "ping", "data": {}}
        await caller.result("stream::send", event, traceparent=send_context[0], baggage=send_context[1])
        created, sent = await _calls(subscriber, target, 2, "the custom event")
        assert created["data"]["event"]["type"] == "create" and _carries(created, *set_context[:2]), created
        assert sent["data"]["event"]["type"] == "event" and _carries(sent, *send_context[:2]), sent
        await caller.result(
            "stream::set",
            {**item, "stream_name": custom},
            traceparent=custom_context[0],
            baggage=custom_context[1],
        )
        (called,) = await _calls(subscriber, override, 1, "the custom stream's set function")
        assert _carries(called, *custom_context[:2]), called
    finally:
        await _close(caller, subscriber)


async def test_an_http_request_with_a_traceparent_header_continues_that_trace(engine):
    worker = await open_worker(engine.url)
    try:
        target, path = f"{unique('h')}::route", unique("ctx")
        await _serve(worker, target, result={"status_code": 200, "body": {"ok": True}})
        await _bind(worker, "http", target, {"api_path": path, "http_method": "GET"})
        traceparent, baggage, _, _ = _context()
        url = f"{engine.http_url}/{path}"
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for headers in (
                {"traceparent": traceparent, "baggage": baggage},
                {},
                {"traceparent": "00-not-a-trace-01"},
            ):
                async with session.get(url, headers=headers) as response:
                    assert response.status == 200, await response.text()
        traced, plain, malformed = await _calls(worker, target, 3, "three requests")
        assert _carries(traced, traceparent, baggage), traced
        assert "traceparent" not in plain, plain
        assert "traceparent" not in malformed, malformed
    finally:
        await _close(worker)


def _malformed_contexts() -> dict[str, tuple[str, str, str]]:
    """``{case: (traceparent, trace_id, span_id)}`` whose ids ``int(…, 16)`` takes but W3C does not."""
    cases = {}
    for case, bad_trace, bad_span in (
        ("a leading + in the trace id", lambda t: "+" + t[1:], None),
        ("a _ in the trace id", lambda t: t[:16] + "_" + t[17:], None),
        ("a non-ASCII digit in the trace id", lambda t: t[:16] + "\u0664" + t[17:], None),
        ("upper-case hex", str.upper, None),
        ("a leading + in the span id", None, lambda s: "+" + s[1:]),
        ("a fullwidth digit in the span id", None, lambda s: "\uff11" + s[1:]),
    ):
        _, _, trace_id, span_id = _context()
        trace_id = bad_trace(trace_id) if bad_trace else trace_id
        span_id = bad_span(span_id) if bad_span else span_id
        cases[case] = (f"00-{trace_id}-{span_id}-01", trace_id, span_id)
    return cases


async def test_a_malformed_traceparent_is_not_continued_by_engine_spans_or_logs(engine):
    """The ids of a call's ``traceparent`` get the router's strict W3C check before an engine
    ``call <fn>`` span or an ``engine::log::*`` record joins that trace; a malformed one is not
    used (no engine span, a log without trace id) and malformed ids given to a log are refused."""
    worker = await open_worker(engine.url)
    try:
        malformed = _malformed_contexts()
        for traceparent, _, _ in malformed.values():
            await worker.result("engine::functions::list", {}, traceparent=traceparent)
        # control: a valid context gets its engine span (stored before the result is sent)
        valid, _, valid_trace, valid_span = _context()
        await worker.result("engine::functions::list", {}, traceparent=valid)
        listed = await worker.result("engine::traces::list", {"include_internal": True, "limit": 100_000})
        spans = listed["spans"]
        assert [s["parent_span_id"] for s in spans if s["trace_id"] == valid_trace] == [valid_span]
        joined = {
            case: span["name"]
            for case, (_, trace_id, span_id) in malformed.items()
            for span in spans
            if span["trace_id"].lower() == trace_id.lower() or span.get("parent_span_id") == span_id
        }
        assert joined == {}, joined

        for case, (traceparent, _, _) in malformed.items():
            await worker.result(
                "engine::log::info", {"message": f"log {case} {valid_trace}"}, traceparent=traceparent
            )
        await worker.result("engine::log::info", {"message": f"control {valid_trace}"}, traceparent=valid)
        logs = (await worker.result("engine::logs::list", {"limit": 100_000}))["logs"]
        ours = {log["body"]: log.get("trace_id") for log in logs if valid_trace in str(log.get("body"))}
        assert ours.pop(f"control {valid_trace}") == valid_trace, ours
        assert ours == {f"log {case} {valid_trace}": None for case in malformed}, ours
        for case, (_, trace_id, span_id) in malformed.items():
            field, value = ("span_id", span_id) if "span id" in case else ("trace_id", trace_id)
            if case == "upper-case hex":
                continue  # an explicit id may be upper-case (the OTLP JSON encoding allows it)
            reply = await worker.call("engine::log::info", {"message": "m", field: value})
            assert reply.get("error", {}).get("code") == "INVALID_ARGUMENTS", (case, reply)
    finally:
        await _close(worker)


async def test_a_cron_job_registered_by_a_traced_call_still_starts_new_traces(fresh_engine):
    worker = await open_worker(fresh_engine.url)
    try:
        target = f"{unique('cr')}::tick"
        await _serve(worker, target)
        traceparent, baggage, _, _ = _context()
        binding = await worker.result(
            "engine::register_trigger",
            {"trigger_type": "cron", "function_id": target, "config": {"expression": "* * * * * *"}},
            traceparent=traceparent,
            baggage=baggage,
        )
        assert binding, binding
        (tick,) = await _calls(worker, target, 1, "a cron tick")
        assert "traceparent" not in tick and "baggage" not in tick, tick
    finally:
        await _close(worker)


# -- spans ---------------------------------------------------------------------------------------
def _execute_spans(client: Any, tag: str, names: list[str]) -> dict[str, dict[str, Any]] | None:
    listed = client.trigger({"function_id": "engine::traces::list", "payload": {"name": tag, "limit": 100}})
    spans = {s["name"]: s for s in listed["spans"] if s["name"] in {f"execute {n}" for n in names}}
    return spans if len(spans) == len(names) else None


def _active(client: Any, trigger_ids: list[str]) -> bool:
    listed = client.trigger({"function_id": "engine::registered-triggers::list", "payload": {}})
    return set(trigger_ids) <= {row["id"] for row in listed["registered_triggers"]}  # live ones only


def test_an_http_request_through_a_queue_is_one_trace(engine, apps, query):
    tag = unique("ctxq")
    front, back = f"{tag}::front", f"{tag}::back"
    enqueue = {
        "function_id": back,
        "payload": {"from": "front"},
        "action": {"type": "enqueue", "queue": "default"},
    }
    apps(
        {
            "url": engine.url,
            "otel": fast_otel(),
            "worker_name": f"{tag}-app",
            "functions": [{"id": front, "mode": "async", "request": enqueue}, {"id": back, "mode": "sync"}],
        }
    )
    client = query(engine)
    path = unique("ctxq")
    handle = client.register_trigger(
        {"type": "http", "function_id": front, "config": {"api_path": path, "http_method": "POST"}}
    )
    wait_for(lambda: _active(client, [handle.id]), timeout=10, what="the route is live")
    traceparent, _, trace_id, span_id = _context()
    request = urllib.request.Request(
        f"{engine.http_url}/{path}", data=b"{}", method="POST", headers={"traceparent": traceparent}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    spans = wait_for(
        lambda: _execute_spans(client, tag, [front, back]), timeout=10, what="both execute spans"
    )
    front_span, back_span = spans[f"execute {front}"], spans[f"execute {back}"]
    assert front_span["trace_id"] == trace_id and front_span["parent_span_id"] == span_id, front_span
    assert back_span["trace_id"] == trace_id, back_span
    assert back_span["parent_span_id"] == front_span["span_id"], (front_span, back_span)


def test_publish_and_trigger_fires_join_the_callers_trace(engine, apps, query):
    tag = unique("ctxp")
    topic, durable, scope, stream = unique("t"), unique("d"), unique("s"), unique("m")
    requests = {
        "pubsub": {"function_id": "publish", "payload": {"topic": topic, "data": {"x": 1}}},
        "durable": {"function_id": "iii::durable::publish", "payload": {"topic": durable, "data": {"x": 2}}},
        "state": {"function_id": "state::set", "payload": {"scope": scope, "key": "k", "value": 3}},
        "stream": {
            "function_id": "stream::set",
            "payload": {"stream_name": stream, "group_id": "g", "item_id": "i", "data": {"x": 4}},
        },
    }
    callers = {path: f"{tag}::call_{path}" for path in requests}
    targets = {path: f"{tag}::on_{path}" for path in requests}
    functions = [{"id": callers[p], "mode": "async", "request": requests[p]} for p in requests]
    functions += [{"id": targets[p], "mode": "sync"} for p in requests]
    apps({"url": engine.url, "otel": fast_otel(), "worker_name": f"{tag}-app", "functions": functions})
    client = query(engine)
    bindings = {
        "pubsub": ("subscribe", {"topic": topic}),
        "durable": ("durable:subscriber", {"topic": durable}),
        "state": ("state", {"scope": scope}),
        "stream": ("stream", {"stream_name": stream}),
    }
    handles = {
        path: client.register_trigger({"type": kind, "function_id": targets[path], "config": config})
        for path, (kind, config) in bindings.items()
    }

    wait_for(lambda: _active(client, [h.id for h in handles.values()]), timeout=10, what="four bindings")
    for path in requests:
        assert client.trigger({"function_id": callers[path], "payload": {}}) == {"ok": callers[path]}
    names = [*callers.values(), *targets.values()]
    spans = wait_for(lambda: _execute_spans(client, tag, names), timeout=10, what="the eight execute spans")
    for path in requests:
        caller, target = spans[f"execute {callers[path]}"], spans[f"execute {targets[path]}"]
        assert target["trace_id"] == caller["trace_id"], (path, caller, target)
        assert target["parent_span_id"] == caller["span_id"], (path, caller, target)
