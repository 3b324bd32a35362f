"""``iii-state`` against real engine processes (protocol.md §6.1, §13 E05/E16/E17)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from iii_typed.engine.process import EngineProcess, EngineStartError
from iii_typed.errors import InvocationError
from tests.integration.builtins.builtin_support import Recorder, client, official_worker, unique
from tests.integration.sdk.sdk_support import load_golden
from tests.support.waiting import wait_for

pytestmark = pytest.mark.filterwarnings("ignore:register_trigger is deprecated:DeprecationWarning")

DOC_URL = "https://iii.dev/docs/workers/iii-state#error-codes"


def sorted_payloads(payloads: Any) -> list[Any]:
    return sorted(payloads, key=lambda p: json.dumps(p, sort_keys=True))


def call(iii: Any, function_id: str, payload: Any) -> Any:
    return iii.trigger({"function_id": function_id, "payload": payload, "timeout_ms": 5000})


def error_of(iii: Any, function_id: str, payload: Any) -> InvocationError:
    with pytest.raises(InvocationError) as info:
        call(iii, function_id, payload)
    return info.value


def test_functions_results_structurally_equal_protocol(engine: EngineProcess) -> None:
    golden = load_golden()
    scope = unique("users")
    with client(engine.url) as iii:
        first = call(iii, "state::set", {"scope": scope, "key": "u1", "value": {"name": "Ada"}})
        assert first == golden["E16"]["result"] == {"new_value": {"name": "Ada"}, "old_value": None}
        # `data` is accepted as an alias of `value`
        assert call(iii, "state::set", {"scope": scope, "key": "u1", "data": {"name": "Bob"}}) == {
            "new_value": {"name": "Bob"},
            "old_value": {"name": "Ada"},
        }
        assert call(iii, "state::get", {"scope": scope, "key": "u1"}) == {"name": "Bob"}
        assert call(iii, "state::get", {"scope": scope, "key": "missing"}) is None
        call(iii, "state::set", {"scope": scope, "key": "u2", "value": 2})
        call(iii, "state::set", {"scope": scope, "key": "u0", "value": [0]})
        call(iii, "state::set", {"scope": scope, "key": "u1", "value": 1})  # keeps its place
        assert call(iii, "state::list", {"scope": scope}) == [1, 2, [0]]
        assert call(iii, "state::list", {"scope": unique("empty")}) == []
        groups = call(iii, "state::list_groups", {})["groups"]
        assert scope in groups and groups == sorted(groups)
        assert call(iii, "state::delete", {"scope": scope, "key": "u2"}) == 2
        assert call(iii, "state::delete", {"scope": scope, "key": "u2"}) is None
        assert call(iii, "state::list", {"scope": scope}) == [1, [0]]


def test_update_result_and_per_op_error_codes(engine: EngineProcess) -> None:
    scope = unique("upd")
    with client(engine.url) as iii:
        created = call(
            iii,
            "state::update",
            {"scope": scope, "key": "k", "ops": [{"type": "increment", "path": "n", "by": 2}]},
        )
        assert created == {"new_value": {"n": 2}, "old_value": None}
        result = call(
            iii,
            "state::update",
            {
                "scope": scope,
                "key": "k",
                "ops": [
                    {"type": "merge", "path": ["a", "b"], "value": {"c": 1}},
                    {"type": "merge", "value": [1]},
                    {"type": "append", "path": "n", "value": "x"},
                    {"type": "set", "path": "s", "value": "hi"},
                    {"type": "increment", "path": "s", "by": 1},
                    {"type": "merge", "path": ["__proto__"], "value": {}},
                    {"type": "decrement", "path": "n", "by": 5},
                ],
            },
        )
        assert result == {
            "errors": [
                {
                    "code": "merge.value.not_an_object",
                    "doc_url": DOC_URL,
                    "message": result["errors"][0]["message"],
                    "op_index": 1,
                },
                {
                    "code": "append.type_mismatch",
                    "doc_url": DOC_URL,
                    "message": result["errors"][1]["message"],
                    "op_index": 2,
                },
                {
                    "code": "increment.not_number",
                    "doc_url": DOC_URL,
                    "message": result["errors"][2]["message"],
                    "op_index": 4,
                },
                {
                    "code": "merge.path.proto_polluted",
                    "doc_url": DOC_URL,
                    "message": result["errors"][3]["message"],
                    "op_index": 5,
                },
            ],
            "new_value": {"n": -3, "a": {"b": {"c": 1}}, "s": "hi"},
            "old_value": {"n": 2},
        }
        assert all(isinstance(e["message"], str) and e["message"] for e in result["errors"])
        assert call(iii, "state::get", {"scope": scope, "key": "k"}) == result["new_value"]


def test_bad_input_gets_deserialization_error_and_the_engine_keeps_serving(engine: EngineProcess) -> None:
    golden = load_golden()
    with client(engine.url) as iii:
        missing = error_of(iii, "state::get", {"scope": "s"})
        assert {"code": missing.code, "message": missing.message} == golden["E17"]["error"]
        wrong = error_of(iii, "state::set", {"scope": "s", "key": 1, "value": 1})
        assert wrong.code == "deserialization_error"
        assert (
            wrong.message.startswith("Failed to deserialize input for state::set: ")
            and "key" in wrong.message
        )
        bad_op = error_of(iii, "state::update", {"scope": "s", "key": "k", "ops": [{"type": "explode"}]})
        assert bad_op.code == "deserialization_error" and "ops" in bad_op.message
        bad_by = error_of(
            iii,
            "state::update",
            {"scope": "s", "key": "k", "ops": [{"type": "increment", "path": "n", "by": 1.5}]},
        )
        assert bad_by.code == "deserialization_error"
        not_object = error_of(iii, "state::list", [1, 2])
        assert not_object.code == "deserialization_error"
        assert call(iii, "state::get", {"scope": "s", "key": "k"}) is None  # nothing was stored
        scope = unique("alive")
        call(iii, "state::set", {"scope": scope, "key": "k", "value": True})
        assert call(iii, "state::get", {"scope": scope, "key": "k"}) is True


def test_state_trigger_payloads_filters_metadata_and_condition(engine: EngineProcess) -> None:
    golden = load_golden()
    scope = unique("users")
    other = unique("other")
    with client(engine.url) as iii:
        every = Recorder()
        by_key = Recorder()
        conditioned = Recorder()
        seen_by_condition: list[Any] = []

        def condition(data: Any) -> bool:
            seen_by_condition.append(data)
            return bool(data["new_value"]) and data["new_value"].get("vip") is True

        prefix = unique("st")
        iii.register_function(f"{prefix}::every", every)
        iii.register_function(f"{prefix}::by_key", by_key)
        iii.register_function(f"{prefix}::conditioned", conditioned)
        iii.register_function(f"{prefix}::condition", condition)
        handles = [
            iii.register_trigger(
                {
                    "type": "state",
                    "function_id": f"{prefix}::every",
                    "config": {"scope": scope},
                    "metadata": {"m": 1},
                }
            ),
            iii.register_trigger(
                {"type": "state", "function_id": f"{prefix}::by_key", "config": {"scope": scope, "key": "u2"}}
            ),
            iii.register_trigger(
                {
                    "type": "state",
                    "function_id": f"{prefix}::conditioned",
                    "config": {"scope": scope, "condition_function_id": f"{prefix}::condition"},
                }
            ),
        ]

        def bound() -> bool:
            listed = call(iii, "engine::registered-triggers::list", {"trigger_type": "state"})
            ids = {row["id"] for row in listed["registered_triggers"]}
            return all(h.id in ids for h in handles)

        wait_for(bound, what="the state bindings are active")
        call(iii, "state::set", {"scope": other, "key": "u1", "value": {"x": 1}})  # other scope: no fire
        call(iii, "state::set", {"scope": scope, "key": "u1", "value": {"name": "Ada"}})
        call(
            iii,
            "state::update",
            {"scope": scope, "key": "u1", "ops": [{"type": "set", "path": "vip", "value": True}]},
        )
        call(iii, "state::set", {"scope": scope, "key": "u2", "value": {"vip": False}})
        call(iii, "state::delete", {"scope": scope, "key": "u1"})
        call(iii, "state::delete", {"scope": scope, "key": "never-set"})

        calls = every.wait(5)
        expected_first = dict(golden["E05"]["data"], scope=scope)
        # sync handlers run on threads of their own: compare without relying on arrival order
        assert sorted_payloads(c.data for c in calls) == sorted_payloads(
            [
                expected_first,
                {
                    "event_type": "state:updated",
                    "key": "u1",
                    "new_value": {"name": "Ada", "vip": True},
                    "old_value": {"name": "Ada"},
                    "scope": scope,
                    "type": "state",
                },
                {
                    "event_type": "state:created",
                    "key": "u2",
                    "new_value": {"vip": False},
                    "old_value": None,
                    "scope": scope,
                    "type": "state",
                },
                {
                    "event_type": "state:deleted",
                    "key": "u1",
                    "new_value": None,
                    "old_value": {"name": "Ada", "vip": True},
                    "scope": scope,
                    "type": "state",
                },
                {
                    "event_type": "state:deleted",
                    "key": "never-set",
                    "new_value": None,
                    "old_value": None,
                    "scope": scope,
                    "type": "state",
                },
            ]
        )
        assert all(c.metadata == {"m": 1} for c in calls)
        assert [c.data["key"] for c in by_key.wait(1)] == ["u2"]
        assert by_key.calls[0].metadata is None
        assert [c.data["event_type"] for c in conditioned.wait(1)] == ["state:updated"]
        wait_for(lambda: len(seen_by_condition) == 5, what="the condition saw every event")
        assert expected_first in seen_by_condition
        assert every.stays(5, 0.3) and by_key.stays(1, 0.1) and conditioned.stays(1, 0.1)


def test_official_worker_receives_state_trigger(engine: EngineProcess) -> None:
    scope = unique("official")
    got = Recorder()
    fid = f"{unique('off')}::on_change"
    with official_worker(engine.url) as worker, client(engine.url) as iii:
        worker.register_function(fid, got)
        worker.register_trigger({"type": "state", "function_id": fid, "config": {"scope": scope}})

        def fired() -> bool:
            call(iii, "state::set", {"scope": scope, "key": unique("k"), "value": {"n": 1}})
            return len(got.calls) > 0

        wait_for(fired, timeout=15, interval=0.2, what="the official worker's state binding fires")
        data = got.calls[0].data
        assert set(data) == {"event_type", "key", "new_value", "old_value", "scope", "type"}
        assert data["type"] == "state" and data["scope"] == scope and data["new_value"] == {"n": 1}


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        ({"scope": 3}, "'scope' must be a string"),
        ({"scop": "x"}, "unknown field 'scop'"),
        ([1], "must be an object"),
    ],
)
def test_bad_trigger_config_is_refused_on_the_handle(engine: EngineProcess, config: Any, needle: str) -> None:
    with client(engine.url) as iii:
        fid = f"{unique('bad')}::h"
        iii.register_function(fid, Recorder())
        handle = iii.register_trigger({"type": "state", "function_id": fid, "config": config})
        error = handle.wait_for_error(5)
        assert error is not None and error.code == "trigger_registration_failed"
        assert needle in error.message
        assert call(iii, "state::list_groups", {}) is not None  # still serving


def _write_config(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_config_limits_and_disables_triggers(engine_factory: Any, tmp_path: Path) -> None:
    config = _write_config(
        tmp_path / "engine.toml", "[state]\ntriggers_enabled = false\nmax_value_bytes = 20\n"
    )
    proc = engine_factory(config=config)
    with client(proc.url) as iii:
        fired = Recorder()
        fid = f"{unique('cfg')}::h"
        iii.register_function(fid, fired)
        iii.register_trigger({"type": "state", "function_id": fid, "config": {}})
        wait_for(
            lambda: call(iii, "engine::registered-triggers::list", {"trigger_type": "state"})[
                "registered_triggers"
            ],
            what="binding active",
        )
        too_big = error_of(iii, "state::set", {"scope": "s", "key": "k", "value": "x" * 50})
        assert too_big.code == "VALUE_TOO_LARGE" and "20" in too_big.message
        assert call(iii, "state::get", {"scope": "s", "key": "k"}) is None
        call(iii, "state::set", {"scope": "s", "key": "k", "value": "small"})
        grown = error_of(
            iii, "state::update", {"scope": "s", "key": "k", "ops": [{"type": "append", "value": "y" * 40}]}
        )
        assert grown.code == "VALUE_TOO_LARGE"
        assert call(iii, "state::get", {"scope": "s", "key": "k"}) == "small"
        assert fired.stays(0, 0.3)


def test_unknown_state_setting_stops_start_up(tmp_path: Path) -> None:
    config = _write_config(tmp_path / "engine.toml", "[state]\nmax_value_byte = 1\n")
    proc = EngineProcess(config=config)
    with pytest.raises(EngineStartError):
        proc.start()
    assert "max_value_byte" in proc.stderr_tail()


def test_persisted_with_data_dir_and_in_memory_without(engine_factory: Any, tmp_path: Path) -> None:
    durable = engine_factory(data_dir=tmp_path / "data")
    memory = engine_factory()
    for proc in (durable, memory):
        with client(proc.url) as iii:
            call(iii, "state::set", {"scope": "p", "key": "a", "value": {"v": 1}})
            call(iii, "state::set", {"scope": "p", "key": "b", "value": [2]})
            call(
                iii,
                "state::update",
                {"scope": "p", "key": "a", "ops": [{"type": "increment", "path": "v", "by": 1}]},
            )
    durable.restart(kill=True)
    memory.restart()
    assert (tmp_path / "data" / "state.sqlite3").exists()
    with client(durable.url) as iii:
        assert call(iii, "state::list", {"scope": "p"}) == [{"v": 2}, [2]]
        assert call(iii, "state::list_groups", {}) == {"groups": ["p"]}
    with client(memory.url) as iii:
        assert call(iii, "state::list", {"scope": "p"}) == []
