"""``iii-stream`` functions and the ``stream`` trigger against real engine processes (protocol.md
§6.2, golden frame E06): storage, update ops, errors, trigger payloads and filters, persistence.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from iii_typed import III, InvocationError
from iii_typed.engine.process import EngineProcess
from tests.integration.streams.stream_support import Recorder, client, unique, wait_bindings

pytestmark = pytest.mark.filterwarnings("ignore:register_trigger is deprecated:DeprecationWarning")


def call(iii: III, function_id: str, payload: Any) -> Any:
    return iii.trigger({"function_id": function_id, "payload": payload})


def test_set_get_update_delete_list(engine: EngineProcess) -> None:
    stream = unique("s")
    with client(engine.url) as iii:
        key = {"stream_name": stream, "group_id": "g1", "item_id": "a"}
        assert call(iii, "stream::get", key) is None
        assert call(iii, "stream::set", {**key, "data": {"n": 1}}) == {
            "new_value": {"n": 1},
            "old_value": None,
        }
        assert call(iii, "stream::set", {**key, "data": {"n": 2}}) == {
            "new_value": {"n": 2},
            "old_value": {"n": 1},
        }
        assert call(iii, "stream::get", key) == {"n": 2}
        call(iii, "stream::set", {**key, "item_id": "b", "data": "second"})
        call(iii, "stream::set", {**key, "group_id": "g0", "data": None})
        assert call(iii, "stream::get", {**key, "group_id": "g0"}) is None  # a stored null
        assert call(iii, "stream::list", {"stream_name": stream, "group_id": "g1"}) == [{"n": 2}, "second"]
        assert call(iii, "stream::list", {"stream_name": stream, "group_id": "nope"}) == []
        assert call(iii, "stream::list_groups", {"stream_name": stream}) == ["g0", "g1"]
        listed = call(iii, "stream::list_all", {})
        assert {"groups": ["g0", "g1"], "id": stream} in listed["stream"]
        assert listed["count"] == len(listed["stream"])
        assert [row["id"] for row in listed["stream"]] == sorted(row["id"] for row in listed["stream"])

        updated = call(
            iii,
            "stream::update",
            {
                **key,
                "ops": [
                    {"type": "increment", "path": "n", "by": 5},
                    {"type": "append", "path": "log", "value": 1},
                ],
            },
        )
        assert updated == {"new_value": {"n": 7, "log": [1]}, "old_value": {"n": 2}}
        created = call(
            iii, "stream::update", {**key, "item_id": "c", "ops": [{"type": "set", "path": "k", "value": 1}]}
        )
        assert created == {"new_value": {"k": 1}, "old_value": None}
        partial = call(
            iii,
            "stream::update",
            {
                **key,
                "ops": [
                    {"type": "increment", "path": "log", "by": 1},
                    {"type": "set", "path": "ok", "value": True},
                ],
            },
        )
        assert partial["new_value"] == {"n": 7, "log": [1], "ok": True}
        assert [(e["op_index"], e["code"]) for e in partial["errors"]] == [(0, "increment.not_number")]

        assert call(iii, "stream::delete", key) == {"old_value": {"n": 7, "log": [1], "ok": True}}
        assert call(iii, "stream::delete", key) == {"old_value": None}
        assert call(iii, "stream::get", key) is None


def test_bad_input_answers_deserialization_error(engine: EngineProcess) -> None:
    with client(engine.url) as iii:
        cases = [
            ("stream::set", {"stream_name": "s", "group_id": "g"}, "item_id"),
            ("stream::get", {"stream_name": 1, "group_id": "g", "item_id": "i"}, "stream_name"),
            (
                "stream::update",
                {"stream_name": "s", "group_id": "g", "item_id": "i", "ops": [{"type": "nope"}]},
                "ops",
            ),
            ("stream::send", {"stream_name": "s", "group_id": "g"}, "type"),
            ("stream::list_groups", {}, "stream_name"),
        ]
        for function_id, payload, field in cases:
            with pytest.raises(InvocationError) as caught:
                call(iii, function_id, payload)
            assert caught.value.code == "deserialization_error", function_id
            assert caught.value.message.startswith(f"Failed to deserialize input for {function_id}:")
            assert field in caught.value.message
        assert call(iii, "stream::list_groups", {"stream_name": unique("empty")}) == []


def test_trigger_payloads_follow_e06_and_filters_apply(engine: EngineProcess) -> None:
    stream = unique("presence")
    everything, room2, only_u1, gated = Recorder(), Recorder(), Recorder(), Recorder()
    condition = Recorder(result=lambda data: data["id"] != "skip")
    with client(engine.url) as iii:
        bindings = [
            (everything, {"stream_name": stream}),
            (room2, {"stream_name": stream, "group_id": "room-2"}),
            (only_u1, {"stream_name": stream, "item_id": "user-1"}),
        ]
        condition_id = unique("stream::cond")
        iii.register_function(condition_id, condition)
        bindings.append((gated, {"stream_name": stream, "condition_function_id": condition_id}))
        for recorder, config in bindings:
            function_id = unique("stream::on")
            iii.register_function(function_id, recorder)
            iii.register_trigger({"type": "stream", "function_id": function_id, "config": config})
            wait_bindings(iii, "stream", function_id)

        key = {"stream_name": stream, "group_id": "room-1", "item_id": "user-1"}
        call(iii, "stream::set", {**key, "data": {"online": True}})
        call(iii, "stream::update", {**key, "ops": [{"type": "set", "path": "online", "value": False}]})
        call(
            iii,
            "stream::send",
            {"stream_name": stream, "group_id": "room-1", "type": "typing", "data": {"u": 1}},
        )
        call(iii, "stream::delete", key)
        call(iii, "stream::delete", key)  # nothing deleted: no event
        call(iii, "stream::set", {**key, "group_id": "room-2", "item_id": "skip", "data": 1})

        seen = everything.wait(5)
        assert everything.stays(5)
        for payload in seen:
            assert set(payload) == {"event", "groupId", "id", "streamName", "timestamp", "type"}
            assert payload["type"] == "stream" and payload["streamName"] == stream
            assert isinstance(payload["timestamp"], int) and payload["timestamp"] > 1_600_000_000_000
        # Each fire is a call of its own (sync handlers run on threads): compare without order.
        assert sorted(([p["groupId"], p["id"], p["event"]] for p in seen), key=repr) == sorted(
            [
                ["room-1", "user-1", {"data": {"online": True}, "type": "create"}],
                ["room-1", "user-1", {"data": {"online": False}, "type": "update"}],
                ["room-1", None, {"event": {"data": {"u": 1}, "type": "typing"}, "type": "event"}],
                ["room-1", "user-1", {"data": {"online": False}, "type": "delete"}],
                ["room-2", "skip", {"data": 1, "type": "create"}],
            ],
            key=repr,
        )
        assert [p["id"] for p in room2.wait(1)] == ["skip"]
        assert sorted(p["event"]["type"] for p in only_u1.wait(3)) == ["create", "delete", "update"]
        assert sorted(p["event"]["type"] for p in gated.wait(4)) == ["create", "delete", "event", "update"]
        assert gated.stays(4) and room2.stays(1) and only_u1.stays(3)


def test_a_stream_trigger_without_stream_name_is_refused(engine: EngineProcess) -> None:
    with client(engine.url) as iii:
        function_id = unique("stream::on")
        iii.register_function(function_id, Recorder())
        refused = iii.register_trigger(
            {"type": "stream", "function_id": function_id, "config": {"group_id": "g"}}
        )
        error = refused.wait_for_error(5)
        assert error is not None and error.code == "trigger_registration_failed"
        assert "stream_name" in error.message
        typo = iii.register_trigger({"type": "stream", "function_id": function_id, "config": {"stream": "x"}})
        error = typo.wait_for_error(5)
        assert error is not None and "unknown field 'stream'" in error.message
        assert call(iii, "stream::list_groups", {"stream_name": "x"}) == []  # still serving


def test_data_survives_an_engine_restart(engine_factory: Any, tmp_path: Path) -> None:
    proc = engine_factory(data_dir=tmp_path / "data")
    stream = unique("durable")
    with client(proc.url) as iii:
        for item, value in (("a", {"v": 1}), ("b", [1, 2]), ("c", "three")):
            call(iii, "stream::set", {"stream_name": stream, "group_id": "g", "item_id": item, "data": value})
        call(iii, "stream::delete", {"stream_name": stream, "group_id": "g", "item_id": "b"})
        call(iii, "stream::set", {"stream_name": stream, "group_id": "h", "item_id": "x", "data": None})
    assert (tmp_path / "data" / "streams.sqlite3").exists()
    proc.restart(kill=True)  # a crash: every committed write is kept
    with client(proc.url) as iii:
        assert call(iii, "stream::list", {"stream_name": stream, "group_id": "g"}) == [{"v": 1}, "three"]
        assert call(iii, "stream::list_groups", {"stream_name": stream}) == ["g", "h"]
        assert call(iii, "stream::get", {"stream_name": stream, "group_id": "g", "item_id": "c"}) == "three"
        updated = call(
            iii,
            "stream::update",
            {
                "stream_name": stream,
                "group_id": "g",
                "item_id": "a",
                "ops": [{"type": "increment", "path": "v", "by": 1}],
            },
        )
        assert updated == {"new_value": {"v": 2}, "old_value": {"v": 1}}
        # New writes after the restart come after the old ones.
        call(iii, "stream::set", {"stream_name": stream, "group_id": "g", "item_id": "d", "data": 4})
        assert call(iii, "stream::list", {"stream_name": stream, "group_id": "g"}) == [{"v": 2}, "three", 4]
