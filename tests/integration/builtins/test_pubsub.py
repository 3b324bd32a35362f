"""``iii-pubsub`` against real engine processes (protocol.md §6.4, §4.4)."""

from __future__ import annotations

from typing import Any

import pytest

from iii_typed.engine.process import EngineProcess
from iii_typed.errors import InvocationError
from tests.integration.builtins.builtin_support import Recorder, client, official_worker, unique
from tests.support.waiting import wait_for

pytestmark = pytest.mark.filterwarnings("ignore:register_trigger is deprecated:DeprecationWarning")


def call(iii: Any, function_id: str, payload: Any) -> Any:
    return iii.trigger({"function_id": function_id, "payload": payload, "timeout_ms": 5000})


def active_ids(iii: Any) -> set[str]:
    listed = call(iii, "engine::registered-triggers::list", {"trigger_type": "subscribe"})
    return {row["id"] for row in listed["registered_triggers"]}


def test_publish_fans_out_raw_data_without_metadata_or_condition(engine: EngineProcess) -> None:
    topic, other = unique("topic"), unique("other")
    prefix = unique("ps")
    a, b, c = Recorder(), Recorder(), Recorder()
    conditions: list[Any] = []
    with client(engine.url) as iii:
        iii.register_function(f"{prefix}::a", a)
        iii.register_function(f"{prefix}::b", b)
        iii.register_function(f"{prefix}::c", c)
        iii.register_function(f"{prefix}::never", lambda data: conditions.append(data) or False)
        handles = [
            iii.register_trigger(
                {
                    "type": "subscribe",
                    "function_id": f"{prefix}::a",
                    "config": {"topic": topic},
                    "metadata": {"m": 1},
                }
            ),
            iii.register_trigger(
                {
                    "type": "subscribe",
                    "function_id": f"{prefix}::b",
                    "config": {"topic": topic, "condition_function_id": f"{prefix}::never"},
                }
            ),
            iii.register_trigger(
                {"type": "subscribe", "function_id": f"{prefix}::c", "config": {"topic": other}}
            ),
        ]
        wait_for(lambda: {h.id for h in handles} <= active_ids(iii), what="subscriptions active")
        payloads: list[Any] = [{"n": 1}, [1, 2], "text", None, 7]
        for data in payloads:
            assert call(iii, "publish", {"topic": topic, "data": data}) is None
        # sync handlers run on threads of their own: compare without relying on arrival order
        assert sorted(map(repr, (x.data for x in a.wait(5)))) == sorted(map(repr, payloads))
        assert sorted(map(repr, (x.data for x in b.wait(5)))) == sorted(map(repr, payloads))
        assert all(x.metadata is None for x in a.calls + b.calls)  # no sidecar for subscribe (§4.4)
        assert conditions == []  # not evaluated by the local adapter (§6.4)
        assert c.stays(0, 0.2)
        call(iii, "publish", {"topic": other, "data": {"o": 1}})
        assert [x.data for x in c.wait(1)] == [{"o": 1}]
        # after unregistering, a subscriber gets nothing more
        handles[0].unregister()
        wait_for(lambda: handles[0].id not in active_ids(iii), what="unsubscribed")
        call(iii, "publish", {"topic": topic, "data": "late"})
        assert b.wait(6)[-1].data == "late"
        assert a.stays(5, 0.3)


def test_publish_errors_and_the_engine_keeps_serving(engine: EngineProcess) -> None:
    with client(engine.url) as iii:
        with pytest.raises(InvocationError) as info:
            call(iii, "publish", {"topic": "", "data": 1})
        assert info.value.code == "topic_not_set"
        with pytest.raises(InvocationError) as info:
            call(iii, "publish", {"topic": "t"})
        assert info.value.code == "deserialization_error"
        assert info.value.message == "Failed to deserialize input for publish: missing field `data`"
        with pytest.raises(InvocationError) as info:
            call(iii, "publish", {"topic": 5, "data": 1})
        assert info.value.code == "deserialization_error"
        assert call(iii, "publish", {"topic": unique("nobody"), "data": 1}) is None


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        ({}, "needs a 'topic'"),
        ({"topic": 1}, "'topic' must be a string"),
        ({"topic": "t", "queue_config": {}}, "unknown field 'queue_config'"),
        ("t", "must be an object"),
    ],
)
def test_bad_subscribe_config_is_refused_on_the_handle(
    engine: EngineProcess, config: Any, needle: str
) -> None:
    with client(engine.url) as iii:
        fid = f"{unique('bad')}::h"
        iii.register_function(fid, Recorder())
        handle = iii.register_trigger({"type": "subscribe", "function_id": fid, "config": config})
        error = handle.wait_for_error(5)
        assert error is not None and error.code == "trigger_registration_failed" and needle in error.message


def test_empty_topic_is_accepted_but_inert(engine: EngineProcess) -> None:
    inert = Recorder()
    with client(engine.url) as iii:
        fid = f"{unique('inert')}::h"
        iii.register_function(fid, inert)
        handle = iii.register_trigger({"type": "subscribe", "function_id": fid, "config": {"topic": ""}})
        wait_for(lambda: handle.id in active_ids(iii), what="binding active")
        assert handle.error is None
        with pytest.raises(InvocationError):
            call(iii, "publish", {"topic": "", "data": 1})
        assert inert.stays(0, 0.2)


def test_official_worker_subscriber(engine: EngineProcess) -> None:
    topic = unique("official")
    got = Recorder()
    fid = f"{unique('off')}::sub"
    with official_worker(engine.url) as worker, client(engine.url) as iii:
        worker.register_function(fid, got)
        worker.register_trigger({"type": "subscribe", "function_id": fid, "config": {"topic": topic}})

        def delivered() -> bool:
            call(iii, "publish", {"topic": topic, "data": {"hello": "official"}})
            return bool(got.calls)

        wait_for(delivered, timeout=15, interval=0.2, what="the official subscriber gets a message")
        assert got.calls[0].data == {"hello": "official"}
