"""Channel refs in generated stubs (protocol.md §5): typed by who holds the value.

A caller sends a ref (``channel.reader_ref``, or the channel side itself), a caller receives a
plain ``StreamChannelRef`` in a result, and a handler receives the live ``ChannelReader`` /
``ChannelWriter`` that the SDK made of the ref. Recognised by the SDK's ``x-iii-channel`` marker,
by the ``StreamChannelRef`` shape, and for the built-in ``http`` payload by its field names.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from iii_codegen.catalog import Catalog, FunctionEntry, TriggerTypeEntry
from iii_codegen.config import OutputSpec
from iii_codegen.schemas import channel_kind
from iii_codegen.stubgen import render
from pydantic import BaseModel, ValidationError
from support.stubgen import import_path

from iii_typed import ChannelReader, ChannelWriter
from iii_typed.channels import StreamChannelRef
from iii_typed.engine.builtins.http import CALL_REQUEST_SCHEMA, TRIGGER_CONFIG_SCHEMA
from iii_typed.formats import python_type_to_format


class HashIn(BaseModel):
    src: ChannelReader
    label: str
    sink: ChannelWriter | None = None


class Produced(BaseModel):
    out: ChannelReader
    refs: list[StreamChannelRef] = []


def _ref(direction: str) -> dict[str, str]:
    return {"channel_id": "0b0d1c4e-3f1a-4f5e-9a0b-6a4f9b1d2c3e", "access_key": "k", "direction": direction}


def _generate(tmp_path: Path, catalog: Catalog, name: str) -> tuple[str, ModuleType]:
    rendered = render(catalog, OutputSpec(functions=("*",), triggers=("*",)))
    assert rendered.warnings == []
    path = tmp_path / f"{name}.py"
    path.write_text(rendered.source, encoding="utf-8")
    return rendered.source, import_path(path, name)


@pytest.fixture
def chan(tmp_path: Path) -> tuple[str, ModuleType]:
    catalog = Catalog(
        functions=[
            FunctionEntry(
                function_id="files::hash",
                request_schema=python_type_to_format(HashIn),
                response_schema={"type": "object", "properties": {"sha256": {"type": "string"}}},
            ),
            FunctionEntry(function_id="files::produce", response_schema=python_type_to_format(Produced)),
        ],
        trigger_types=[
            TriggerTypeEntry(
                id="http", configuration_schema=TRIGGER_CONFIG_SCHEMA, request_schema=CALL_REQUEST_SCHEMA
            )
        ],
    )
    return _generate(tmp_path, catalog, "chan_stubs")


def test_the_sdk_marks_channel_fields_in_registered_schemas() -> None:
    schema = python_type_to_format(HashIn)
    assert schema is not None
    assert schema["properties"]["src"]["x-iii-channel"] == "reader"
    assert schema["properties"]["sink"]["anyOf"][0]["x-iii-channel"] == "writer"
    assert channel_kind(CALL_REQUEST_SCHEMA["properties"]["request_body"]) == "reader"
    assert channel_kind(CALL_REQUEST_SCHEMA["properties"]["response"]) == "writer"


def test_request_fields_take_the_callers_refs(chan: tuple[str, ModuleType]) -> None:
    source, module = chan
    assert "    src: ReaderRefArg\n" in source
    assert "    sink: WriterRefArg | None = None\n" in source
    request = module.HashIn(src=StreamChannelRef.model_validate(_ref("read")), label="x")
    fn = type(module.Client(object()).files).hash
    assert fn.dump_request(request) == {"src": _ref("read"), "label": "x"}
    as_dict = {"src": _ref("read"), "label": "x", "sink": _ref("write")}
    assert fn.dump_request(as_dict)["sink"] == _ref("write")
    with pytest.raises(ValidationError, match="channel reader is expected here"):
        module.HashIn(src=_ref("write"), label="x")


def test_result_fields_are_plain_refs(chan: tuple[str, ModuleType]) -> None:
    source, module = chan
    fn = type(module.Client(object()).files).produce
    result = fn.load_response({"out": _ref("read"), "refs": [_ref("write")]})
    assert type(result.out) is StreamChannelRef and result.out.direction == "read"
    assert type(result.refs[0]) is StreamChannelRef
    assert "    out: ReaderRef\n" in source and "    refs: list[StreamChannelRef] = []\n" in source


def test_http_payload_gives_the_handler_live_channel_sides(chan: tuple[str, ModuleType]) -> None:
    source, module = chan
    assert "    request_body: ChannelReader | None = None\n" in source
    assert "    response: ChannelWriter | None = None\n" in source
    helper = type(module.Client(object())).on_http
    assert helper.payload_type is module.HttpPayload and helper.config_type is module.HttpConfig


def test_http_payload_published_as_bare_objects_is_still_channels(tmp_path: Path) -> None:
    """An engine that publishes ``request_body``/``response`` as ``{"type": "object"}``."""
    bare = {
        "type": "object",
        "properties": {
            **CALL_REQUEST_SCHEMA["properties"],
            "request_body": {"type": "object"},
            "response": {"type": "object"},
        },
    }
    catalog = Catalog(trigger_types=[TriggerTypeEntry(id="http", request_schema=bare)])
    source, _ = _generate(tmp_path, catalog, "bare_http")
    assert "    request_body: ChannelReader | None = None\n" in source
    assert "    response: ChannelWriter | None = None\n" in source
    other = Catalog(trigger_types=[TriggerTypeEntry(id="mine::http", request_schema=bare)])
    assert "request_body: dict[str, Any] | None" in render(other, OutputSpec(triggers=("*",))).source


def test_stream_channel_ref_shape_without_marker(tmp_path: Path) -> None:
    def shape(direction: Any) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {
                "channel_id": {"type": "string"},
                "access_key": {"type": "string"},
                "direction": direction,
            },
            "required": ["channel_id", "access_key", "direction"],
        }

    request = {
        "type": "object",
        "properties": {
            "a": shape({"const": "read"}),
            "b": shape({"enum": ["write"], "type": "string"}),
            "c": {"$ref": "#/$defs/Ref"},
        },
        "$defs": {"Ref": shape({"enum": ["read", "write"], "type": "string"})},
    }
    catalog = Catalog(functions=[FunctionEntry(function_id="x::f", request_schema=request)])
    source, _ = _generate(tmp_path, catalog, "shape_stubs")
    assert "    a: ReaderRefArg | None = None\n" in source
    assert "    b: WriterRefArg | None = None\n" in source
    assert "    c: ChannelRefArg | None = None\n" in source
    assert "class Ref(" not in source
