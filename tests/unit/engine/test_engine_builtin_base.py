"""The built-in worker interface: strict input parsing, sanitising, helpers (protocol.md §3.3, §4.7, §6)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from iii_typed.engine.builtins import discover
from iii_typed.engine.builtins.base import (
    JSON_NULL,
    BuiltinError,
    BuiltinFunction,
    BuiltinWorker,
    TriggerBinding,
    parse_input,
)
from iii_typed.engine.builtins.engine_functions import EngineFunctions, config_summary
from iii_typed.engine.connection import sanitize_text


class GetInput(BaseModel):
    scope: str
    key: str
    limit: int | None = None


async def _noop(data, ctx):
    return None


FUNCTION = BuiltinFunction("state::get", _noop, "get", GetInput)


def test_valid_input_ignores_unknown_fields():
    parsed = parse_input(FUNCTION, {"scope": "s", "key": "k", "_caller_worker_id": "w"})
    assert parsed == GetInput(scope="s", key="k")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"scope": "s"}, "missing field `key`"),
        ({"scope": "s", "key": 1}, "invalid type for `key`: Input should be a valid string"),
        (
            {"scope": "s", "key": "k", "limit": "5"},
            "invalid type for `limit`: Input should be a valid integer",
        ),
        ([1, 2], "invalid type: Input should be a valid dictionary or instance of GetInput"),
    ],
)
def test_invalid_input_is_a_deserialization_error(data, reason):
    with pytest.raises(BuiltinError) as info:
        parse_input(FUNCTION, data)
    assert info.value.code == "deserialization_error"
    assert info.value.message == f"Failed to deserialize input for state::get: {reason}"


def test_null_payload_parses_as_an_empty_object():
    class Optional(BaseModel):
        search: str | None = None

    assert parse_input(BuiltinFunction("x::y", _noop, input_model=Optional), None) == Optional()
    with pytest.raises(BuiltinError, match="missing field `scope`"):
        parse_input(FUNCTION, None)


def test_raw_payload_without_a_model():
    raw = BuiltinFunction("x::raw", _noop)
    payload = {"anything": [1]}
    assert parse_input(raw, payload) is payload
    assert raw.request_format is None


def test_schemas_come_from_the_models():
    assert FUNCTION.request_format["required"] == ["scope", "key"]
    assert FUNCTION.response_format is None


def test_json_null_is_a_singleton():
    assert repr(JSON_NULL) == "JSON_NULL"
    assert type(JSON_NULL)() is JSON_NULL


def test_condition_function_id():
    assert (
        TriggerBinding("t", "cron", "f", {"condition_function_id": "c::ok"}).condition_function_id == "c::ok"
    )
    assert TriggerBinding("t", "cron", "f", {"condition_function_id": ""}).condition_function_id is None
    assert TriggerBinding("t", "cron", "f", None).condition_function_id is None
    assert TriggerBinding("t", "cron", "f", ["condition_function_id"]).condition_function_id is None


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("  worker  ", "worker"),
        ("a\x00b\x1fc\x7f", "abc"),
        ("\u202eevil\u2066name\u200f", "evilname"),
        ("tab\tand\nnewline", "tabandnewline"),
        ("x" * 300, "x" * 280),
        ("   ", None),
        (None, None),
        ("héllo wörld ✓", "héllo wörld ✓"),
    ],
)
def test_sanitize_text(raw, clean):
    assert sanitize_text(raw) == clean


def test_config_summary():
    assert config_summary({"b": 1, "a": "é"}) == '{"a":"é","b":1}'
    long = config_summary({"k": "v" * 200})
    assert len(long) == 81 and long.endswith("…")
    assert config_summary(None) == "null"


def test_discovery_finds_the_engine_functions_first():
    found = discover()
    assert found[0] is EngineFunctions
    assert all(issubclass(cls, BuiltinWorker) for cls in found)
    assert EngineFunctions.mandatory and EngineFunctions.section == "engine-functions"
