"""Formats extracted from handler type hints (protocol.md §9, golden G05-G09)."""

from __future__ import annotations

from typing import Any, Literal, Optional, TypedDict, Union

from pydantic import BaseModel, Field

from iii_typed.formats import (
    JSON_SCHEMA_DIALECT,
    extract_request_format,
    extract_response_format,
    python_type_to_format,
    resolve_format,
)
from iii_typed.models import RegisterFunctionFormat


class GreetInput(BaseModel):
    name: str
    age: Optional[int] = None  # noqa: UP045 - the golden frame was produced from this spelling
    tags: list[str] = Field(default_factory=list, description="tags")


class GreetOutput(BaseModel):
    message: str


class TD(TypedDict):
    a: int


def _exact(actual: dict[str, Any] | None, expected: dict[str, Any]) -> None:
    assert actual == expected
    assert actual is not None
    assert list(actual) == list(expected)  # key order too, "$schema" last
    assert list(actual)[-1] == "$schema"


def test_pydantic_model_matches_golden_g05(golden: dict[str, Any]) -> None:
    def typed(data: GreetInput) -> GreetOutput:
        return GreetOutput(message=data.name)

    _exact(extract_request_format(typed), golden["G05"]["request_format"])
    _exact(extract_response_format(typed), golden["G05"]["response_format"])


def test_typeddict_and_missing_hints_give_no_format(golden: dict[str, Any]) -> None:
    def td(data: TD) -> TD:
        return data

    def plain(data):
        return data

    for handler in (td, plain):
        assert extract_request_format(handler) is None
        assert extract_response_format(handler) is None
    assert set(golden["G06"]) == {"id", "type"}


def test_primitives_match_golden_g07(golden: dict[str, Any]) -> None:
    def prim(x: int) -> list[str]:
        return [str(x)]

    _exact(extract_request_format(prim), golden["G07"]["request_format"])
    _exact(extract_response_format(prim), golden["G07"]["response_format"])


def test_optional_and_dict_match_golden_g08(golden: dict[str, Any]) -> None:
    def opt(x: Optional[str]) -> dict[str, int]:  # noqa: UP045
        return {}

    def opt_pipe(x: str | None) -> dict[str, int]:
        return {}

    for handler in (opt, opt_pipe):
        _exact(extract_request_format(handler), golden["G08"]["request_format"])
        _exact(extract_response_format(handler), golden["G08"]["response_format"])


def test_bare_dict_and_none_return_match_golden_g09(golden: dict[str, Any]) -> None:
    def nothing(x: dict) -> None:
        return None

    _exact(extract_request_format(nothing), golden["G09"]["request_format"])
    _exact(extract_response_format(nothing), golden["G09"]["response_format"])


def test_async_handler_and_keyword_only_first_parameter() -> None:
    async def handler(*, x: int) -> str:
        return str(x)

    assert extract_request_format(handler) == {"type": "integer", "$schema": JSON_SCHEMA_DIALECT}
    assert extract_response_format(handler) == {"type": "string", "$schema": JSON_SCHEMA_DIALECT}


def test_no_return_annotation_and_no_parameters() -> None:
    def none_at_all() -> int:
        return 1

    def no_return(x: int):
        return x

    assert extract_request_format(none_at_all) is None
    assert extract_response_format(none_at_all) == {"type": "integer", "$schema": JSON_SCHEMA_DIALECT}
    assert extract_response_format(no_return) is None


def test_callable_object_is_described_by_its_call_method() -> None:
    class Handler:
        def __call__(self, x: float) -> bool:
            return x > 0

    assert extract_request_format(Handler()) == {"type": "number", "$schema": JSON_SCHEMA_DIALECT}
    assert extract_response_format(Handler()) == {"type": "boolean", "$schema": JSON_SCHEMA_DIALECT}


def test_unresolvable_forward_reference_gives_no_format() -> None:
    def broken(x: NotDefinedAnywhere) -> int:  # noqa: F821
        return 1

    assert extract_request_format(broken) is None
    assert extract_response_format(broken) is None


def test_unsupported_types_give_none() -> None:
    for tp in (
        Any,
        tuple,
        tuple[int],
        set[int],
        bytes,
        Literal["a"],
        Union[int, str],  # noqa: UP007
        Optional[Any],  # noqa: UP045
        int | str | None,
    ):
        assert python_type_to_format(tp) is None, tp


def test_containers_of_models_and_unknown_items() -> None:
    schema = python_type_to_format(list[GreetOutput])
    assert schema is not None
    assert schema["type"] == "array"
    assert schema["items"]["title"] == "GreetOutput"
    assert "$schema" not in schema["items"]
    assert python_type_to_format(list[Any]) == {"type": "array", "$schema": JSON_SCHEMA_DIALECT}
    assert python_type_to_format(dict[str, Any]) == {"type": "object", "$schema": JSON_SCHEMA_DIALECT}
    assert python_type_to_format(Optional[list[str]]) == {  # noqa: UP045
        "type": ["array", "null"],
        "items": {"type": "string"},
        "$schema": JSON_SCHEMA_DIALECT,
    }
    optional_model = python_type_to_format(GreetOutput | None)
    assert optional_model is not None and optional_model["type"] == ["object", "null"]


def test_explicit_formats_are_resolved() -> None:
    legacy = RegisterFunctionFormat(
        name="body", type="object", body=[RegisterFunctionFormat(name="a", type="string", required=True)]
    )
    assert resolve_format(legacy) == {
        "name": "body",
        "type": "object",
        "body": [{"name": "a", "type": "string", "required": True}],
        "required": False,
    }
    schema = resolve_format(GreetOutput)
    assert schema["title"] == "GreetOutput" and list(schema)[-1] == "$schema"
    mine: dict[str, Any] = {"type": "object", "properties": {"x": {"type": "integer"}}}
    copied = resolve_format(mine)
    assert copied == mine and copied is not mine
    copied["properties"]["x"]["type"] = "string"
    assert mine["properties"]["x"]["type"] == "integer"
