"""Queue messages survive engine restarts with ``--data-dir`` (decisions "Policies": at-least-once)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from iii_typed import TriggerAction
from tests.integration.builtins.builtin_support import Recorder, client, unique
from tests.support.waiting import wait_for

pytestmark = pytest.mark.filterwarnings("ignore:register_trigger is deprecated:DeprecationWarning")

CONFIG = """
[queue]
delivery_metadata = true

[queue.queue_configs.jobs]
backoff_ms = 20
"""


def call(iii: Any, function_id: str, payload: Any) -> Any:
    return iii.trigger({"function_id": function_id, "payload": payload, "timeout_ms": 5000})


def active(iii: Any, handle: Any) -> bool:
    listed = call(iii, "engine::registered-triggers::list", {"trigger_type": "durable:subscriber"})
    return handle.id in {row["id"] for row in listed["registered_triggers"]}


def test_messages_survive_a_restart_and_unacknowledged_ones_come_back_with_attempt_plus_one(
    engine_factory: Any, tmp_path: Path
) -> None:
    (tmp_path / "engine.toml").write_text(CONFIG, encoding="utf-8")
    proc = engine_factory(config=tmp_path / "engine.toml", data_dir=tmp_path / "data")
    target = f"{unique('dur')}::target"
    topic = unique("topic")
    release = threading.Event()
    slow = Recorder(block=release)
    done = Recorder()
    try:
        with client(proc.url) as subscriber, client(proc.url) as caller:
            prefix = unique("sub")
            subscriber.register_function(f"{prefix}::slow", slow)
            subscriber.register_function(f"{prefix}::done", done)
            slow_handle = subscriber.register_trigger(
                {
                    "type": "durable:subscriber",
                    "function_id": f"{prefix}::slow",
                    "config": {"topic": topic, "queue_config": {"concurrency": 1}},
                }
            )
            done_handle = subscriber.register_trigger(
                {"type": "durable:subscriber", "function_id": f"{prefix}::done", "config": {"topic": topic}}
            )
            wait_for(
                lambda: active(caller, slow_handle) and active(caller, done_handle), what="subscriptions"
            )
            # named-queue messages for a function nobody serves yet: they wait (no attempt used)
            receipts = [
                caller.trigger(
                    {
                        "function_id": target,
                        "payload": {"i": i},
                        "action": TriggerAction.Enqueue(queue="jobs"),
                        "timeout_ms": 5000,
                    }
                ).message_receipt_id
                for i in range(5)
            ]
            for n in range(3):
                call(caller, "iii::durable::publish", {"topic": topic, "data": {"n": n}})
            assert sorted(c.data["n"] for c in done.wait(3)) == [0, 1, 2]  # acknowledged before the crash
            (in_flight,) = slow.wait(1)  # concurrency 1: one delivery started, two waiting
            assert in_flight.metadata["attempt"] == 1
            assert call(caller, "engine::queue::topic_stats", {"queue": "jobs"})["depth"] == 5
            # `done` answered and the engine acknowledged its 3 copies: only `slow`'s 3 remain
            wait_for(
                lambda: call(caller, "engine::queue::topic_stats", {"topic": topic})["depth"] == 3,
                what="done's messages acknowledged",
            )

            proc.restart(kill=True)  # a crash: no clean shutdown

            release.set()  # the old handler finishes; its result goes nowhere
            with client(proc.url) as worker:
                served = Recorder()
                worker.register_function(target, served)
                calls = served.wait(5)
                assert sorted(c.data["i"] for c in calls) == list(range(5))
                assert sorted(c.metadata["message_id"] for c in calls) == sorted(receipts)
                assert all(c.metadata["attempt"] == 1 for c in calls)

                after = slow.wait(4, timeout=15)[1:]  # the subscriber reconnected and re-registered
                assert sorted(c.data["n"] for c in after) == [0, 1, 2]
                again = [c for c in after if c.metadata["message_id"] == in_flight.metadata["message_id"]]
                assert len(again) == 1 and again[0].data == in_flight.data
                assert again[0].metadata["attempt"] == 2  # same id, attempt + 1
                assert all(c.metadata["attempt"] == 1 for c in after if c is not again[0])
                assert done.stays(3, 0.5), "an acknowledged message was delivered again"
                assert served.stays(5, 0.05) and slow.stays(4, 0.05)
    finally:
        release.set()


def test_graceful_restart_keeps_waiting_messages_and_the_dead_letter_queue(
    engine_factory: Any, tmp_path: Path
) -> None:
    (tmp_path / "engine.toml").write_text(CONFIG + "max_retries = 1\n", encoding="utf-8")
    proc = engine_factory(config=tmp_path / "engine.toml", data_dir=tmp_path / "data")
    target = f"{unique('dur')}::later"
    failing = f"{unique('dur')}::failing"
    with client(proc.url) as iii:
        iii.register_function(failing, Recorder(fail=lambda n, data: True))
        waiting = iii.trigger(
            {"function_id": target, "payload": {"w": 1}, "action": TriggerAction.Enqueue(queue="jobs")}
        ).message_receipt_id
        dead = iii.trigger(
            {"function_id": failing, "payload": {"d": 1}, "action": TriggerAction.Enqueue(queue="jobs")}
        ).message_receipt_id
        wait_for(lambda: call(iii, "engine::queue::dlq_messages", {"topic": "jobs"}), what="dead letter")
    proc.restart()
    with client(proc.url) as iii:
        (letter,) = call(iii, "engine::queue::dlq_messages", {"topic": "jobs"})
        assert letter["id"] == dead and letter["payload"] == {"d": 1} and letter["retries"] == 1
        served = Recorder()
        iii.register_function(target, served)
        (delivered,) = served.wait(1)
        assert delivered.metadata["message_id"] == waiting and delivered.data == {"w": 1}
        healthy = Recorder()
        iii.register_function(failing, healthy)
        assert call(iii, "iii::queue::redrive", {"queue": "jobs"}) == {"queue": "jobs", "redriven": 1}
        assert healthy.wait(1)[0].metadata["message_id"] == dead
