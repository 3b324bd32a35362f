"""``iii-queue`` against real engine processes (protocol.md §4.1, §6.3, §13 E12/X06).

One engine per module, configured with short backoffs; each test uses queues/topics of its own.
"""

from __future__ import annotations

import itertools
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from iii_typed import EnqueueResult, TriggerAction
from iii_typed.engine.process import EngineProcess, EngineStartError
from iii_typed.errors import InvocationError
from tests.integration.builtins.builtin_support import Recorder, client, official_worker, unique
from tests.integration.sdk.sdk_support import load_golden
from tests.support.waiting import wait_for

pytestmark = pytest.mark.filterwarnings("ignore:register_trigger is deprecated:DeprecationWarning")

CONFIG = """
[queue]
delivery_metadata = true

[queue.queue_configs.retry]
max_retries = 3
backoff_ms = 50
concurrency = 4

[queue.queue_configs.dlq]
max_retries = 2
backoff_ms = 10

[queue.queue_configs.ordered]
type = "fifo"
message_group_field = "account"
max_retries = 3
backoff_ms = 20

[queue.queue_configs.narrow]
concurrency = 2
backoff_ms = 10

[queue.queue_configs.bulk]
concurrency = 20
"""


@pytest.fixture(scope="module")
def qengine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    folder = tmp_path_factory.mktemp("queue-engine")
    (folder / "engine.toml").write_text(CONFIG, encoding="utf-8")
    proc = EngineProcess(config=folder / "engine.toml", log_path=folder / "engine.log").start()
    yield proc
    proc.stop()


def call(iii: Any, function_id: str, payload: Any) -> Any:
    return iii.trigger({"function_id": function_id, "payload": payload, "timeout_ms": 5000})


def enqueue(iii: Any, function_id: str, data: Any, queue: str) -> EnqueueResult:
    result = iii.trigger(
        {
            "function_id": function_id,
            "payload": data,
            "action": TriggerAction.Enqueue(queue=queue),
            "timeout_ms": 5000,
        }
    )
    assert isinstance(result, EnqueueResult)
    return result


def subscribed(iii: Any, handle: Any) -> None:
    def active() -> bool:
        listed = call(iii, "engine::registered-triggers::list", {"trigger_type": "durable:subscriber"})
        return handle.id in {row["id"] for row in listed["registered_triggers"]}

    wait_for(active, what="the durable:subscriber binding is active")


def test_enqueue_receipt_provider_input_and_delivery(qengine: EngineProcess) -> None:
    golden = load_golden()
    got = Recorder()
    with client(qengine.url) as iii:
        fid = f"{unique('q')}::job"
        iii.register_function(fid, got)
        receipt = enqueue(iii, fid, {"a": 4}, "retry")
        assert str(uuid.UUID(receipt.message_receipt_id)) == receipt.message_receipt_id
        (delivered,) = got.wait(1)
        assert delivered.data == golden["X06"]["data"] == {"a": 4}  # no _caller_worker_id (§4.1)
        assert delivered.metadata == {
            "attempt": 1,
            "max_attempts": 3,
            "message_id": receipt.message_receipt_id,
            "queue": "retry",
        }
        # the provider itself, called with the X06 shape, answers the E12 result shape
        x06 = dict(
            golden["X06"],
            function_id=fid,
            queue="retry",
            messageReceiptId=str(uuid.uuid4()),
            traceparent=None,
        )
        direct = call(iii, "engine::queue::enqueue", x06)
        assert direct == {"messageReceiptId": x06["messageReceiptId"]}
        assert set(direct) == set(golden["E12"]["result"])
        assert got.wait(2)[1].metadata["message_id"] == x06["messageReceiptId"]
        assert got.stays(2, 0.2)


def test_official_client_enqueue_result_is_the_e12_shape(qengine: EngineProcess) -> None:
    from iii import TriggerAction as OfficialAction

    got = Recorder()
    with client(qengine.url) as iii, official_worker(qengine.url) as official:
        fid = f"{unique('q')}::job"
        iii.register_function(fid, got)
        result = official.trigger(
            {"function_id": fid, "payload": {"n": 1}, "action": OfficialAction.Enqueue(queue="retry")}
        )
        receipt = result["messageReceiptId"] if isinstance(result, dict) else result.message_receipt_id
        assert got.wait(1)[0].metadata["message_id"] == receipt


def test_retries_with_exponential_backoff_then_dead_letter_and_redrive(qengine: EngineProcess) -> None:
    healthy = threading.Event()
    got = Recorder(fail=lambda n, data: not healthy.is_set())
    with client(qengine.url) as iii:
        fid = f"{unique('q')}::flaky"
        iii.register_function(fid, got)
        receipt = enqueue(iii, fid, {"k": 1}, "retry").message_receipt_id
        calls = got.wait(3)
        assert [c.metadata["attempt"] for c in calls] == [1, 2, 3]
        assert {c.metadata["message_id"] for c in calls} == {receipt}
        gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(calls)]
        # backoff_ms x 2^(attempt-1): 50 ms, then 100 ms (upper bounds leave room for a loaded machine)
        assert 0.045 <= gaps[0] < 0.6 and 0.095 <= gaps[1] < 0.8, gaps
        assert gaps[1] > gaps[0]

        def dead_lettered() -> list[Any]:
            return call(iii, "engine::queue::dlq_messages", {"topic": "retry"})

        (dead,) = wait_for(dead_lettered, what="the message reaches the DLQ")
        assert set(dead) == {"error", "failed_at", "id", "payload", "retries", "size_bytes"}
        assert dead["id"] == receipt and dead["payload"] == {"k": 1} and dead["retries"] == 3
        assert "failure #3" in dead["error"] and dead["size_bytes"] == len('{"k":1}')
        assert got.stays(3, 0.3)  # exhausted: no 4th attempt
        stats = call(iii, "engine::queue::topic_stats", {"queue": "retry"})
        assert stats == {"config": None, "consumer_count": 4, "depth": 0, "dlq_depth": 1}
        assert {"broker_type": "function_queue", "message_count": 1, "topic": "retry"} in call(
            iii, "engine::queue::dlq_topics", {}
        )
        healthy.set()
        assert call(iii, "iii::queue::redrive_message", {"queue": "retry", "message_id": receipt}) == {
            "message_id": receipt,
            "queue": "retry",
            "redriven": 1,
        }
        redelivered = got.wait(4)[3]
        assert redelivered.metadata["attempt"] == 1 and redelivered.metadata["message_id"] == receipt
        wait_for(lambda: call(iii, "engine::queue::dlq_messages", {"topic": "retry"}) == [], what="DLQ empty")
        assert (
            call(iii, "iii::queue::redrive_message", {"queue": "retry", "message_id": receipt})["redriven"]
            == 0
        )


def test_redrive_all_and_discard(qengine: EngineProcess) -> None:
    healthy = threading.Event()
    got = Recorder(fail=lambda n, data: not healthy.is_set())
    with client(qengine.url) as iii:
        fid = f"{unique('q')}::dlq"
        iii.register_function(fid, got)
        receipts = [enqueue(iii, fid, {"i": i}, "dlq").message_receipt_id for i in range(4)]
        wait_for(
            lambda: len(call(iii, "engine::queue::dlq_messages", {"queue": "dlq", "limit": 10})) == 4,
            what="4 dead letters",
        )
        assert len(got.calls) == 8  # max_retries = 2 attempts each
        page = call(iii, "engine::queue::dlq_messages", {"topic": "dlq", "offset": 1, "limit": 2})
        assert len(page) == 2
        assert call(iii, "iii::queue::discard_message", {"queue": "dlq", "message_id": receipts[0]}) == {
            "message_id": receipts[0],
            "queue": "dlq",
            "redriven": 1,
        }
        assert (
            call(iii, "iii::queue::discard_message", {"topic": "dlq", "message_id": receipts[0]})["redriven"]
            == 0
        )
        healthy.set()
        assert call(iii, "iii::queue::redrive", {"queue": "dlq"}) == {"queue": "dlq", "redriven": 3}
        calls = got.wait(11)
        assert sorted(c.data["i"] for c in calls[8:]) == [1, 2, 3]
        assert call(iii, "iii::queue::redrive", {"topic": "dlq"}) == {"queue": "dlq", "redriven": 0}


def test_fifo_order_per_group_and_a_failure_blocks_its_group(qengine: EngineProcess) -> None:
    failed_once: list[Any] = []

    def fail_first_a2(number: int, data: Any) -> bool:
        if data == {"account": "a", "n": 2} and not failed_once:
            failed_once.append(data)
            return True
        return False

    got = Recorder(fail=fail_first_a2)
    with client(qengine.url) as iii:
        fid = f"{unique('q')}::fifo"
        iii.register_function(fid, got)
        sent = [{"account": acct, "n": n} for n in range(6) for acct in ("a", "b", "c")]
        for data in sent:
            enqueue(iii, fid, data, "ordered")
        calls = got.wait(len(sent) + 1)
        assert got.stays(len(sent) + 1, 0.2)
        for acct in ("a", "b", "c"):
            successes = [c.data["n"] for c in calls if c.data["account"] == acct]
            if acct == "a":
                assert successes == [0, 1, 2, 2, 3, 4, 5]  # #2 retried inline before #3
            else:
                assert successes == list(range(6))
        retried = [c for c in calls if c.data == {"account": "a", "n": 2}]
        assert [c.metadata["attempt"] for c in retried] == [1, 2]
        with pytest.raises(InvocationError) as info:
            enqueue(iii, fid, {"n": 1}, "ordered")
        assert info.value.code == "enqueue_error" and "account" in info.value.message


def test_concurrency_limit(qengine: EngineProcess) -> None:
    release = threading.Event()
    got = Recorder(block=release)
    with client(qengine.url) as iii:
        fid = f"{unique('q')}::slow"
        iii.register_function(fid, got)
        for i in range(5):
            enqueue(iii, fid, {"i": i}, "narrow")
        got.wait(2)
        assert got.stays(2, 0.3), "more deliveries than the queue's concurrency (2)"
        release.set()
        assert sorted(c.data["i"] for c in got.wait(5)) == list(range(5))


def test_durable_subscribers_fan_out_with_per_subscriber_retries_and_conditions(
    qengine: EngineProcess,
) -> None:
    topic = unique("topic")
    prefix = unique("ds")
    first = Recorder()
    flaky = Recorder(fail=lambda n, data: n == 1)
    picky = Recorder()
    with client(qengine.url) as iii:
        iii.register_function(f"{prefix}::first", first)
        iii.register_function(f"{prefix}::flaky", flaky)
        iii.register_function(f"{prefix}::picky", picky)
        iii.register_function(f"{prefix}::only_odd", lambda data: data["n"] % 2 == 1)
        handles = [
            iii.register_trigger(
                {"type": "durable:subscriber", "function_id": f"{prefix}::first", "config": {"topic": topic}}
            ),
            # a second binding of the same function: still one copy per message
            iii.register_trigger(
                {"type": "durable:subscriber", "function_id": f"{prefix}::first", "config": {"topic": topic}}
            ),
            iii.register_trigger(
                {
                    "type": "durable:subscriber",
                    "function_id": f"{prefix}::flaky",
                    "config": {"topic": topic, "queue_config": {"maxRetries": 2, "backoffDelayMs": 10}},
                }
            ),
            iii.register_trigger(
                {
                    "type": "durable:subscriber",
                    "function_id": f"{prefix}::picky",
                    "config": {"topic": topic, "condition_function_id": f"{prefix}::only_odd"},
                    "metadata": {"ignored": True},
                }
            ),
        ]
        for handle in handles:
            subscribed(iii, handle)
        for n in range(4):
            assert call(iii, "iii::durable::publish", {"topic": topic, "data": {"n": n}}) is None
        assert sorted(c.data["n"] for c in first.wait(4)) == [0, 1, 2, 3]
        flaky_calls = flaky.wait(5)
        assert sorted(c.data["n"] for c in flaky_calls) == sorted([0, 1, 2, 3, flaky_calls[0].data["n"]])
        assert [c.metadata["attempt"] for c in flaky_calls if c.data == flaky_calls[0].data] == [1, 2]
        assert sorted(c.data["n"] for c in picky.wait(2)) == [1, 3]
        assert all(c.metadata["topic"] == topic and "ignored" not in c.metadata for c in picky.calls)
        assert first.stays(4, 0.3) and flaky.stays(5, 0.05) and picky.stays(2, 0.05)
        topics = call(iii, "engine::queue::list_topics", {})
        assert {"broker_type": "builtin", "name": topic, "subscriber_count": 4} in topics
        assert call(iii, "engine::queue::topic_stats", {"topic": topic}) == {
            "config": None,
            "consumer_count": 4,
            "depth": 0,
            "dlq_depth": 0,
        }


def test_thousand_messages_each_delivered_exactly_once(qengine: EngineProcess) -> None:
    topic = unique("bulk")
    got = Recorder()
    queued = Recorder()
    with client(qengine.url) as iii:
        fid = f"{unique('q')}::bulk"
        iii.register_function(fid, got)
        iii.register_function(f"{fid}_named", queued)
        handle = iii.register_trigger(
            {
                "type": "durable:subscriber",
                "function_id": fid,
                "config": {"topic": topic, "queue_config": {"concurrency": 20}},
            }
        )
        subscribed(iii, handle)
        for i in range(1000):
            call(iii, "iii::durable::publish", {"topic": topic, "data": {"i": i}})
            enqueue(iii, f"{fid}_named", {"i": i}, "bulk")
        for recorder in (got, queued):
            calls = recorder.wait(1000, timeout=30)
            assert sorted(c.data["i"] for c in calls) == list(range(1000))
            assert len({c.metadata["message_id"] for c in calls}) == 1000
            assert all(c.metadata["attempt"] == 1 for c in calls)
        assert got.stays(1000, 0.3) and queued.stays(1000, 0.05)


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        ({}, "needs a non-empty 'topic'"),
        ({"topic": ""}, "needs a non-empty 'topic'"),
        ({"topic": 3}, "'topic' must be a string"),
        ({"topic": "t", "queue_config": {"max_retries": 3}}, "unknown field 'max_retries'"),
        ({"topic": "t", "queue_config": {"maxRetries": "3"}}, "'maxRetries' must be an integer"),
        ({"topic": "t", "queue_config": {"type": "lifo"}}, "type must be standard or fifo"),
        ({"topic": "t", "queue_config": {"concurrency": 0}}, "concurrency must be >= 1"),
        ({"topic": "t", "queue_config": []}, "'queue_config' must be an object"),
        ({"topic": "t", "group": "x"}, "unknown field 'group'"),
    ],
)
def test_bad_subscriber_config_is_refused(qengine: EngineProcess, config: Any, needle: str) -> None:
    with client(qengine.url) as iii:
        fid = f"{unique('bad')}::h"
        iii.register_function(fid, Recorder())
        handle = iii.register_trigger({"type": "durable:subscriber", "function_id": fid, "config": config})
        error = handle.wait_for_error(5)
        assert error is not None and error.code == "trigger_registration_failed" and needle in error.message


@pytest.mark.parametrize(
    ("function_id", "payload", "code"),
    [
        ("iii::durable::publish", {"topic": "", "data": 1}, "topic_not_set"),
        ("iii::durable::publish", {"topic": "t"}, "deserialization_error"),
        ("iii::queue::redrive", {"queue": ""}, "queue_not_set"),
        ("iii::queue::redrive", {}, "deserialization_error"),
        ("iii::queue::redrive_message", {"queue": "", "message_id": "x"}, "queue_not_set"),
        ("iii::queue::discard_message", {"queue": "retry", "message_id": ""}, "message_id_not_set"),
        ("engine::queue::topic_stats", {"topic": ""}, "topic_required"),
        ("engine::queue::dlq_messages", {"topic": ""}, "topic_required"),
        ("engine::queue::dlq_messages", {"topic": "retry", "limit": "10"}, "deserialization_error"),
        ("engine::queue::enqueue", {"queue": "retry"}, "deserialization_error"),
    ],
)
def test_bad_function_input(qengine: EngineProcess, function_id: str, payload: Any, code: str) -> None:
    with client(qengine.url) as iii:
        with pytest.raises(InvocationError) as info:
            call(iii, function_id, payload)
        assert info.value.code == code, info.value
        assert call(iii, "engine::queue::topic_stats", {"topic": unique("any")})["depth"] == 0


def test_unknown_queue_is_an_enqueue_error(qengine: EngineProcess) -> None:
    with client(qengine.url) as iii:
        with pytest.raises(InvocationError) as info:
            enqueue(iii, "x::y", {}, "nope")
        assert info.value.code == "enqueue_error"
        assert "Queue 'nope'" in info.value.message and "retry" in info.value.message


def test_official_worker_durable_subscriber(qengine: EngineProcess) -> None:
    topic = unique("official")
    got = Recorder()
    fid = f"{unique('off')}::durable"
    with official_worker(qengine.url) as worker, client(qengine.url) as iii:
        worker.register_function(fid, got)
        worker.register_trigger(
            {"type": "durable:subscriber", "function_id": fid, "config": {"topic": topic}}
        )

        def delivered() -> bool:
            call(iii, "iii::durable::publish", {"topic": topic, "data": {"hello": "durable"}})
            return bool(got.calls)

        wait_for(delivered, timeout=15, interval=0.2, what="the official subscriber gets a message")
        assert got.calls[0].data == {"hello": "durable"}


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[queue.queue_configs.x]\nretries = 1\n", "unknown key 'retries'"),
        ('[queue.queue_configs.x]\ntype = "fifo"\n', "message_group_field"),
        ('[queue.queue_configs.x]\nconcurrency = "2"\n', "concurrency must be an integer"),
        ("[queue]\nmetadata = true\n", "unknown key 'metadata'"),
    ],
)
def test_bad_queue_settings_stop_start_up(tmp_path: Path, text: str, needle: str) -> None:
    (tmp_path / "engine.toml").write_text(text, encoding="utf-8")
    proc = EngineProcess(config=tmp_path / "engine.toml")
    with pytest.raises(EngineStartError):
        proc.start()
    assert needle in proc.stderr_tail()


def test_documented_example_config(engine_factory: Any, tmp_path: Path) -> None:
    docs = (Path(__file__).resolve().parents[3] / "docs" / "builtins.md").read_text(encoding="utf-8")
    block = docs.split("<!-- example-config:state-queue -->", 1)[1]
    toml = block.split("```toml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "engine.toml").write_text(toml, encoding="utf-8")
    proc = engine_factory(config=tmp_path / "engine.toml")
    with client(proc.url) as iii:
        topics = call(iii, "engine::queue::list_topics", {})
        assert {"broker_type": "function_queue", "name": "payments", "subscriber_count": 4} in topics
        assert {"broker_type": "function_queue", "name": "default", "subscriber_count": 10} in topics
        got = Recorder()
        fid = f"{unique('doc')}::pay"
        iii.register_function(fid, got)
        enqueue(iii, fid, {"account": "acc-1", "amount": 5}, "payments")
        assert got.wait(1)[0].data == {"account": "acc-1", "amount": 5}
        assert got.calls[0].metadata is None  # delivery_metadata = false
        with pytest.raises(InvocationError):
            call(iii, "state::set", {"scope": "s", "key": "k", "value": "x" * 1_048_600})
        call(iii, "state::set", {"scope": "s", "key": "k", "value": 1})
    assert (tmp_path / ".iii" / "state.sqlite3").exists() and (tmp_path / ".iii" / "queue.sqlite3").exists()
