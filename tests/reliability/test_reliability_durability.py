"""An engine with ``--data-dir`` killed with 500 queued messages and state writes in flight (issue 8
acceptance; decisions "Policies": queue delivery is at-least-once; protocol.md §6.1, §6.3).

After the restart nothing acknowledged is lost (every enqueued message is delivered, every state
write that was answered is there), unacknowledged messages come back with the same id and
``attempt + 1``, and within each run (before the crash, after the restart) no message is delivered
twice.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from iii_typed import III, IIIError, TriggerAction
from iii_typed.engine.process import EngineProcess
from tests.support.waiting import wait_for

MESSAGES = 500
CONCURRENCY = 10
DONE_BEFORE_CRASH = 200
CONFIG = f"""
[queue]
delivery_metadata = true

[queue.queue_configs.jobs]
concurrency = {CONCURRENCY}
backoff_ms = 20
max_retries = 5
"""


@dataclass(frozen=True)
class Delivery:
    run: int
    message_id: str
    attempt: int
    i: int


class Jobs:
    """The subscriber: records each delivery; once enough are done, holds the next ones open."""

    def __init__(self) -> None:
        self.run = 0
        self.deliveries: list[Delivery] = []
        self.completed = 0
        self.held = threading.Semaphore(0)
        self.held_deliveries: list[Delivery] = []
        self.release = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, data: dict[str, Any], metadata: dict[str, Any]) -> dict[str, bool]:
        with self._lock:
            run = self.run
            delivery = Delivery(run, metadata["message_id"], metadata["attempt"], data["i"])
            self.deliveries.append(delivery)
            hold = run == 0 and self.completed >= DONE_BEFORE_CRASH
            if hold:
                self.held_deliveries.append(delivery)
        if hold:  # in flight when the engine dies: never acknowledged
            self.held.release()
            self.release.wait(30)
            return {"ok": False}
        with self._lock:
            self.completed += 1
        return {"ok": True}

    def of_run(self, run: int) -> list[Delivery]:
        with self._lock:
            return [d for d in self.deliveries if d.run == run]


class StateWriter(threading.Thread):
    """Writes ``state::set`` one after another until a write fails (the crash); records the answered."""

    def __init__(self, client: III) -> None:
        super().__init__(name="state-writer", daemon=True)
        self.client = client
        self.acknowledged: dict[str, int] = {}
        self.failed: BaseException | None = None

    def run(self) -> None:
        n = 0
        while True:
            key = f"k{n}"
            try:
                self.client.trigger(
                    {
                        "function_id": "state::set",
                        "payload": {"scope": "durability", "key": key, "value": n},
                        "timeout_ms": 5000,
                    }
                )
            except IIIError as exc:
                self.failed = exc
                return
            self.acknowledged[key] = n
            n += 1


@pytest.mark.parametrize("stop", ["kill", "sigterm"])
def test_engine_stopped_with_500_queued_messages_and_state_writes_in_flight(
    engine_factory: Callable[..., EngineProcess], connect: Callable[..., III], tmp_path: Path, stop: str
) -> None:
    """``kill``: a crash (SIGKILL). ``sigterm``: a clean shutdown, which must be prompt although ten
    deliveries are held open, and must persist the same way."""
    (tmp_path / "engine.toml").write_text(CONFIG, encoding="utf-8")
    engine = engine_factory(config=tmp_path / "engine.toml", data_dir=tmp_path / "data")
    jobs = Jobs()
    worker = connect(engine.url)
    worker.register_function("dur::job", jobs)
    caller = connect(engine.url)
    writer_client = connect(engine.url)
    receipts = [
        caller.trigger(
            {"function_id": "dur::job", "payload": {"i": i}, "action": TriggerAction.Enqueue(queue="jobs")}
        ).message_receipt_id
        for i in range(MESSAGES)
    ]
    assert len(set(receipts)) == MESSAGES  # every enqueue was acknowledged with its own id
    writer = StateWriter(writer_client)
    writer.start()
    try:
        for _ in range(CONCURRENCY):  # the lane is full of deliveries that will never be answered
            assert jobs.held.acquire(timeout=20)
        wait_for(lambda: len(writer.acknowledged) >= 20, what="state writes answered")

        jobs.run = 1
        if stop == "kill":
            engine.kill()  # a crash: no clean shutdown, deliveries and a state write in flight
        else:
            started = time.monotonic()
            assert engine.stop(timeout=10) == 0
            assert time.monotonic() - started < 5
        writer.join(10)
        assert writer.failed is not None, "the state write in flight must fail, not hang"
        engine.restart()
        jobs.release.set()  # the old handlers end; their results reach an engine that forgot them

        def drained() -> bool:
            stats = caller.trigger(
                {"function_id": "engine::queue::topic_stats", "payload": {"queue": "jobs"}}
            )
            return stats["depth"] == 0 and stats["dlq_depth"] == 0

        wait_for(drained, timeout=30, interval=0.1, what="every message acknowledged after the restart")
    finally:
        jobs.release.set()

    before, after = jobs.of_run(0), jobs.of_run(1)
    delivered = {d.message_id for d in before} | {d.message_id for d in after}
    # Nothing acknowledged is lost: every enqueued message was delivered (and, in the end, answered).
    assert delivered == set(receipts)
    by_id = {d.message_id: d for d in before}
    # Within a run without a crash, no message is delivered twice.
    assert max(Counter(d.message_id for d in before).values()) == 1
    assert max(Counter(d.message_id for d in after).values()) == 1
    # The deliveries held open at the crash come back with the same id, the same data, attempt + 1.
    held = jobs.held_deliveries
    assert len(held) == CONCURRENCY and all(d.attempt == 1 for d in held)
    again = {d.message_id: d for d in after}
    for old in held:
        new = again[old.message_id]
        assert (new.i, new.attempt) == (old.i, old.attempt + 1)
    # Any other redelivery is one whose answer the crash cut off: same id and data, attempt + 1.
    for new in after:
        if new.message_id in by_id:
            assert (new.i, new.attempt) == (by_id[new.message_id].i, by_id[new.message_id].attempt + 1)
        else:  # never delivered before the crash; at most the in-flight window had its attempt recorded
            assert new.attempt in (1, 2)
    assert sum(1 for d in after if d.message_id not in by_id and d.attempt == 2) <= CONCURRENCY
    # Every state write the engine answered survived the crash.
    values = caller.trigger({"function_id": "state::list", "payload": {"scope": "durability"}})
    stored = set(values)
    assert set(writer.acknowledged.values()) <= stored
