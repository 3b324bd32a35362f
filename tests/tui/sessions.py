"""The replay session of the snapshot tests, recorded from a real run, and span helpers.

``python -m tests.tui.sessions`` re-records ``tests/tui/data/session.jsonl.gz``: a dev engine
with ``examples/engine.toml``, the example orders worker and ``examples/orders_caller.py`` (both
with telemetry on), a billing worker with telemetry on (``telemetry_worker.py``: a checkout →
charge chain, a failing refund, log lines with control characters), a mailer connecting while
the dashboard watches, whose durable subscriber fails into the dead-letter queue and whose
``webhook`` trigger has no provider (pending), two open channels (one drained by a reader, one
waiting), a ``chat`` stream. The caller runs first, so its telemetry comes from the first reads
(``engine::logs::list`` newest first); later telemetry arrives through the ``trace`` and ``log``
triggers. The dashboard's data source (``EngineSource``) reads all of it and every event it
emits is written, then a few details are fetched (a function's schema, a trace tree, state and
stream items, dead letters) as the screens would.

A replay of the file is deterministic (the clock follows the events), so the golden snapshots in
``tests/tui/snapshots/`` compare exactly; ``test_session_is_a_real_recording`` checks the file
holds the engine's real shapes.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from iii_tui.session import write_session
from iii_tui.source import EngineSource
from iii_tui.store import Event

from tests.support.waiting import wait_for, wait_for_async

__all__ = ["SESSION", "T0", "record_session", "span"]

T0 = 1_800_000_000.0
HERE = Path(__file__).parent
ROOT = HERE.parents[1]
SESSION = HERE / "data" / "session.jsonl.gz"

#: Poll intervals while recording (short, so a few seconds cover every view more than once).
RECORD_INTERVALS = {
    "functions": 2.0,
    "workers": 0.5,
    "triggers": 1.0,
    "health": 2.0,
    "metrics": 1.0,
    "traces": 1.0,
    "logs": 1.0,
    "channels": 1.0,
    "streams": 1.0,
    "queues": 1.0,
}


def span(
    trace: str,
    sid: str,
    function: str,
    start_ms: float,
    dur_ms: float | None,
    status: str = "ok",
    parent: str | None = None,
    service: str = "iii-python-sdk",
    error: str | None = None,
) -> dict[str, Any]:
    """A StoredSpan shaped like a worker's handler span (telemetry.md), ``start_ms`` after
    :data:`T0`; ``dur_ms=None`` makes a pending (running) span."""
    start = int((T0 + start_ms / 1000) * 1e9)
    rec: dict[str, Any] = {
        "trace_id": trace,
        "span_id": sid,
        "parent_span_id": parent,
        "name": f"execute {function}",
        "start_time_unix_nano": start,
        "end_time_unix_nano": None if dur_ms is None else start + int(dur_ms * 1e6),
        "status": status,
        "attributes": [["iii.function.id", function], ["iii.invocation.id", f"inv-{sid}"]],
        "service_name": service,
        "events": [],
        "links": [],
    }
    if error:
        rec["status_description"] = error
    if dur_ms is None:
        rec["pending"] = True
    return rec


@contextmanager
def _process(cmd: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        yield proc
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


async def _scenario(url: str, http_url: str, streams_url: str, env: dict[str, str]) -> list[Event]:
    from iii_typed import III, InitOptions, register_worker

    call_env = {**env, "III_URL": url, "III_HTTP_URL": http_url, "III_STREAMS_URL": streams_url}
    driver = register_worker(url, InitOptions(worker_name="driver"))

    def call(function_id: str, payload: Any) -> Any:
        return driver.trigger({"function_id": function_id, "payload": payload})

    # the example caller (typed stubs, HTTP, a stream subscriber, a channel, the queue) runs
    # before the dashboard starts: its spans and logs come from the first engine::traces::list /
    # engine::logs::list reads (logs newest first); everything later through the push triggers
    caller = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(ROOT / "examples" / "orders_caller.py")],
        env=call_env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    if caller.returncode != 0:
        raise SystemExit(f"orders_caller.py failed: {caller.stderr[-2000:]}")

    def caller_telemetry_stored() -> bool:
        logs = call("engine::logs::list", {"limit": 1000})["logs"]
        spans = call("engine::traces::list", {"name": "execute orders::export"})["spans"]
        return sum(r["body"] == "receipt sent" for r in logs) == 5 and bool(spans)

    await asyncio.to_thread(wait_for, caller_telemetry_stored, 20, 0.05, "the caller's telemetry stored")
    events: list[Event] = []
    source = EngineSource(url, readonly=True, intervals=RECORD_INTERVALS)
    task = asyncio.ensure_future(source.run(events.append))
    channels: list[Any] = []
    mailer: III | None = None
    try:
        await wait_for_async(
            lambda: any(e.kind == "logs" and len(e.data["logs"]) > 1 for e in events),
            20,
            0.02,
            "the first read",
        )
        # a worker connecting while the dashboard watches (the overview's change feed)
        mailer = await asyncio.to_thread(register_worker, url, InitOptions(worker_name="mailer"))

        def send(data: dict[str, Any]) -> None:
            raise ConnectionError(f"smtp down for {data['to']}")

        mailer.register_function("mail::send", send, description="Send an email (the SMTP server is down)")
        mailer.register_trigger(
            {
                "type": "durable:subscriber",
                "function_id": "mail::send",
                "config": {"topic": "emails", "queue_config": {"maxRetries": 1}},
            }
        )
        mailer.register_trigger(
            {"type": "webhook", "function_id": "mail::send", "config": {"path": "/hooks/mail"}}
        )

        def listed() -> bool:
            return any("mail::send" in str(e.data) for e in events if e.kind == "functions")

        await wait_for_async(listed, 10, 0.02, "mail::send listed")

        # billing: call chains paced by the worker's metric reports (a new latest_metrics sample
        # between two calls, so the sparklines have points), a failure, log lines with control
        # characters
        def samples() -> int:
            return len(
                {
                    e.data["worker"].get("latest_metrics", {}).get("timestamp_ms")
                    for e in events
                    if e.kind == "worker_info" and e.data["worker"].get("name") == "billing-worker"
                }
            )

        for n in range(8):
            await asyncio.to_thread(call, "billing::checkout", {"tag": f"cart-{17 + n}"})
            seen = samples()
            await wait_for_async(lambda seen=seen: samples() > seen, 10, 0.02, "the next metrics sample")
        try:
            await asyncio.to_thread(call, "billing::refund", {"tag": "cart-17"})
        except Exception:  # card declined: the error is what the screens show
            pass
        lines = [
            {"level": "debug", "message": "ledger balanced"},
            {"level": "warn", "message": "ansi \x1b[2J\x1b[31mred\x1b[0m and\nnewline"},
            {"level": "info", "message": "long " + "x" * 3000},
        ]
        await asyncio.to_thread(call, "billing::log", {"lines": lines})
        # dead letters, a stream with two groups, two open channels
        for to in ("a@example.com", "b@example.com"):
            await asyncio.to_thread(call, "iii::durable::publish", {"topic": "emails", "data": {"to": to}})
        for group, item in (("room-1", "ada"), ("room-1", "bob"), ("room-2", "cy")):
            payload = {"stream_name": "chat", "group_id": group, "item_id": item, "data": {"user": item}}
            await asyncio.to_thread(call, "stream::set", payload)
        drained = await asyncio.to_thread(mailer.create_channel)
        waiting = await asyncio.to_thread(mailer.create_channel, 16)
        channels = [drained, waiting]
        reader = threading.Thread(target=lambda: list(drained.reader), daemon=True)
        reader.start()
        await asyncio.to_thread(drained.writer.write, b"r" * 200_000)
        await asyncio.to_thread(waiting.writer.write, b"w" * 1000)
        await asyncio.to_thread(waiting.writer.send_message, "header")

        def dead_letters() -> bool:
            return any(
                t.get("message_count") == 2
                for t in driver.trigger({"function_id": "engine::queue::dlq_topics", "payload": {}})
            )

        await asyncio.to_thread(wait_for, dead_letters, 20, 0.05, "two dead letters")

        def pushed(name: str) -> bool:
            return any(s.get("name") == name for e in events if e.kind == "spans" for s in e.data["spans"])

        await wait_for_async(
            lambda: pushed("execute billing::refund") and pushed("execute billing::log"),
            10,
            0.02,
            "the last spans",
        )
        # a full poll round after everything happened, then the details the screens fetch
        marker = len(events)
        for view in RECORD_INTERVALS:
            source.wake(view)
        # (spans and logs come through the trace and log triggers, not polls, by now)
        wanted = {"functions", "workers", "triggers", "metrics", "channels", "streams", "dlq"}
        await wait_for_async(lambda: wanted <= {e.kind for e in events[marker:]}, 20, 0.02, "a poll round")
        chain = next(
            s["trace_id"]
            for e in events
            if e.kind == "spans"
            for s in e.data["spans"]
            if s.get("name") == "execute billing::charge"
        )
        for kind, arg in (
            ("function_info", "orders::create"),
            ("trace_tree", chain),
            ("state_items", "orders"),
            ("stream_items", "chat"),
            ("dlq_messages", "emails"),
        ):
            source.request(kind, arg)
            await wait_for_async(
                lambda k=kind: any(e.kind == k for e in events), 10, 0.02, f"the {kind} answer"
            )
        await wait_for_async(
            lambda: any(
                e.kind == "worker_info" and e.data["worker"]["name"] == "billing-worker" for e in events
            ),
            10,
            0.02,
            "the billing worker's metrics",
        )
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        for channel in channels:
            await asyncio.to_thread(channel.writer.close)
        if mailer is not None:
            mailer.shutdown()
        driver.shutdown()
    return events


def record_session(path: Path = SESSION) -> int:
    """Record a session from a real run into ``path``; returns the number of events."""
    from iii_typed.demo import WORKER_FUNCTIONS
    from iii_typed.engine.process import EngineProcess

    from .conftest import TELEMETRY_ENV

    env = {**os.environ, **TELEMETRY_ENV, "PYTHONPATH": str(ROOT)}
    with EngineProcess(config=ROOT / "examples" / "engine.toml", env={"OTEL_ENABLED": "false"}) as engine:
        workers = [
            [sys.executable, str(ROOT / "examples" / "orders_worker.py")],
            [sys.executable, str(HERE / "telemetry_worker.py"), engine.url, "billing", "billing-worker"],
        ]
        with (
            _process(workers[0], {**env, "III_URL": engine.url}),
            _process(workers[1], env),
        ):
            from iii_typed import register_worker

            expected = {*WORKER_FUNCTIONS, "billing::checkout", "billing::log"}
            with register_worker(engine.url) as probe:

                def registered() -> bool:
                    listed = probe.trigger({"function_id": "engine::functions::list", "payload": {}})
                    return expected <= {f["function_id"] for f in listed["functions"]}

                wait_for(registered, 30, 0.05, "the workers registered")
            events = asyncio.run(_scenario(engine.url, engine.http_url, engine.streams_url, env))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_session(path, events, url=events[0].data["url"])
    return len(events)


if __name__ == "__main__":
    os.environ["OTEL_ENABLED"] = "false"  # the recorder itself: telemetry off, as the dashboard
    count = record_session()
    print(f"wrote {SESSION} ({count} events, {SESSION.stat().st_size} bytes)")
