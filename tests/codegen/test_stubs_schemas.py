"""Preparation of registered schemas before datamodel-code-generator (iii_codegen.schemas)."""

from __future__ import annotations

from typing import Any

import pytest
from iii_codegen.schemas import LOCAL_REF, NULL, OPEN, legacy_format_to_schema, prepare_side


@pytest.mark.parametrize(
    "schema",
    [
        None,
        True,
        False,
        {},
        {"$schema": "https://json-schema.org/draft/2020-12/schema"},
        {"title": "X"},
        [1],
        "s",
    ],
)
def test_open_schemas_are_any(schema: Any) -> None:
    assert prepare_side(schema).kind == OPEN


def test_false_and_non_object_schemas_warn() -> None:
    assert prepare_side(False).warnings
    assert prepare_side([1]).warnings
    assert not prepare_side(None).warnings


def test_null_schema_is_none() -> None:
    assert prepare_side({"type": "null", "$schema": "x"}).kind == NULL


def test_root_only_ref_is_the_definition() -> None:
    side = prepare_side(
        {
            "$ref": "#/$defs/Node",
            "$defs": {"Node": {"type": "object", "properties": {"n": {"$ref": "#/$defs/Node"}}}},
        }
    )
    assert side.root_key == "#/$defs/Node"
    assert set(side.entries) == {"#/$defs/Node"}
    assert side.entries["#/$defs/Node"].schema["properties"]["n"] == {LOCAL_REF: "#/$defs/Node"}


def test_root_identical_to_its_definition_is_not_duplicated() -> None:
    body = {
        "title": "Expr",
        "oneOf": [{"type": "integer"}, {"type": "array", "items": {"$ref": "#/definitions/Expr"}}],
    }
    side = prepare_side({**body, "definitions": {"Expr": body}})
    assert side.root_key == "#/definitions/Expr"
    assert "#" not in side.entries


def test_nullable_object_root() -> None:
    side = prepare_side({"type": ["object", "null"], "properties": {"a": {"type": "string"}}})
    assert side.nullable
    assert side.entries["#"].schema["type"] == "object"


def test_recursion_through_hash_ref() -> None:
    side = prepare_side({"type": "object", "properties": {"kids": {"type": "array", "items": {"$ref": "#"}}}})
    assert side.entries["#"].refs == {"#"}


def test_external_and_dangling_refs_become_any_with_warnings() -> None:
    side = prepare_side(
        {
            "type": "object",
            "properties": {"a": {"$ref": "https://x/y.json"}, "b": {"$ref": "#/$defs/Missing"}},
        }
    )
    props = side.entries["#"].schema["properties"]
    assert props == {"a": {}, "b": {}}
    assert len(side.warnings) == 2


def test_titled_union_members_are_lifted_with_their_titles() -> None:
    side = prepare_side(
        {
            "oneOf": [
                {"title": "Circle", "type": "object", "properties": {"r": {"type": "number"}}},
                {"type": "object", "properties": {"s": {"type": "number"}}},
            ]
        }
    )
    lifted = [e for k, e in side.entries.items() if k.startswith("#lifted/")]
    assert [e.preferred for e in lifted] == ["Circle"]
    assert side.entries["#"].schema["oneOf"][1] == {"type": "object", "properties": {"s": {"type": "number"}}}


@pytest.mark.parametrize(
    ("prop", "kept"),
    [
        ({"type": "integer", "default": 3}, True),
        ({"type": "string", "default": "x"}, True),
        ({"type": "number", "default": 1}, True),
        ({"type": "boolean", "default": False}, True),
        ({"type": "array", "items": {"type": "string"}, "default": []}, True),
        ({"enum": ["a", "b"], "default": "a"}, True),
        ({"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None}, True),
        ({"type": "integer", "default": "not-an-int"}, False),
        ({"type": "integer", "default": True}, False),
        ({"type": "string", "format": "date-time", "default": "2024-01-01T00:00:00Z"}, False),
        ({"type": "object", "properties": {"x": {"type": "integer"}}, "default": {"x": 1}}, False),
        ({"$ref": "#/$defs/A", "default": "on"}, False),
        ({"enum": ["a", "b"], "default": "c"}, False),
    ],
)
def test_defaults_that_cannot_be_typed_are_dropped(prop: dict[str, Any], kept: bool) -> None:
    schema = {"type": "object", "properties": {"p": prop}, "$defs": {"A": {"type": "string"}}}
    out = prepare_side(schema).entries["#"].schema["properties"]["p"]
    assert ("default" in out) is kept


def test_closed_objects_stay_closed_and_bare_objects_become_maps() -> None:
    side = prepare_side(
        {
            "type": "object",
            "properties": {
                "bare": {"type": "object"},
                "closed": {"type": "object", "additionalProperties": False},
            },
            "additionalProperties": False,
        }
    )
    root = side.entries["#"].schema
    assert root["additionalProperties"] is False
    assert root["properties"]["bare"]["additionalProperties"] == {}
    assert root["properties"]["closed"] == {"type": "object", "additionalProperties": False}


def test_numeric_width_formats_are_dropped() -> None:
    side = prepare_side(
        {"type": "object", "properties": {"n": {"type": "integer", "format": "uint64", "minimum": 0}}}
    )
    assert side.entries["#"].schema["properties"]["n"] == {"type": "integer", "minimum": 0}


def test_legacy_register_function_format_is_converted() -> None:
    legacy = {
        "name": "body",
        "type": "object",
        "required": False,
        "body": [
            {"name": "a", "type": "string", "required": True},
            {"name": "m", "type": "map"},
            {"name": "xs", "type": "array", "items": {"name": "x", "type": "number"}},
        ],
    }
    assert legacy_format_to_schema(legacy) == {
        "type": "object",
        "properties": {
            "a": {"type": "string"},
            "m": {"type": "object"},
            "xs": {"type": "array", "items": {"type": "number"}},
        },
        "required": ["a"],
    }
    assert prepare_side(legacy).kind == "schema"


def test_identity_ignores_local_keys_but_not_names_or_content() -> None:
    a = prepare_side(
        {"$defs": {"M": {"type": "integer"}}, "type": "object", "properties": {"m": {"$ref": "#/$defs/M"}}}
    )
    b = prepare_side(
        {
            "definitions": {"M": {"type": "integer"}},
            "type": "object",
            "properties": {"m": {"$ref": "#/definitions/M"}},
        }
    )
    names_a = {"#": "Root", "#/$defs/M": "M"}
    names_b = {"#": "Root", "#/definitions/M": "M"}
    assert a.deep_hash("#", names_a) == b.deep_hash("#", names_b)
    assert a.deep_hash("#", names_a) != b.deep_hash("#", {"#": "Root", "#/definitions/M": "Other"})
