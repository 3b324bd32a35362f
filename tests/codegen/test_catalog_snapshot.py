"""The catalog snapshot format (iii_codegen.catalog): normalisation, byte stability, errors, schema."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from iii_codegen.catalog import (
    Catalog,
    CatalogError,
    FunctionEntry,
    TriggerTypeEntry,
    catalog_json_schema,
    catalog_schema_path,
    dump_snapshot,
    load_snapshot,
    parse_snapshot,
)
from iii_codegen.cli import main

REPO = Path(__file__).resolve().parents[2]


def _shuffled(value: Any, rng: random.Random) -> Any:
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: _shuffled(v, rng) for k, v in items}
    if isinstance(value, list):
        return [_shuffled(v, rng) for v in value]
    return value


def _catalog() -> Catalog:
    return Catalog(
        functions=[
            FunctionEntry(
                function_id="b::two",
                worker_name="myhost:4242",
                request_schema={
                    "type": "object",
                    "properties": {"z": {"type": "string"}, "a": {"type": "integer"}},
                },
            ),
            FunctionEntry(
                function_id="a::one", namespace="billing", worker_name="payments", description="One"
            ),
            FunctionEntry(function_id="a::one", worker_name="myhost:4242:2"),
        ],
        trigger_types=[
            TriggerTypeEntry(id="webhook", worker_name="hooks", configuration_schema={"type": "object"}),
            TriggerTypeEntry(id="cron"),
        ],
    )


def test_snapshot_drops_run_specific_values_and_sorts() -> None:
    data = json.loads(dump_snapshot(_catalog()))
    assert data["format"] == "iii-typed.catalog" and data["version"] == 1
    assert [(f["function_id"], f["namespace"]) for f in data["functions"]] == [
        ("a::one", "billing"),
        ("a::one", "default"),
        ("b::two", "default"),
    ]
    names = {(f["function_id"], f["namespace"]): f["worker_name"] for f in data["functions"]}
    assert names == {
        ("a::one", "billing"): "payments",
        ("a::one", "default"): None,
        ("b::two", "default"): None,
    }
    assert [t["id"] for t in data["trigger_types"]] == ["cron", "webhook"]
    assert "registered_triggers" not in json.dumps(data) and "instance_count" not in json.dumps(data)


def test_snapshot_bytes_do_not_depend_on_order() -> None:
    text = dump_snapshot(_catalog())
    rng = random.Random(7)
    raw = json.loads(text)
    for _ in range(5):
        shuffled = _shuffled(raw, rng)
        rng.shuffle(shuffled["functions"])
        rng.shuffle(shuffled["trigger_types"])
        assert dump_snapshot(parse_snapshot(json.dumps(shuffled))) == text
    assert text.endswith("}\n")


def test_live_detail_fields_are_ignored() -> None:
    detail = {
        "function_id": "x::y",
        "namespace": "default",
        "worker_name": "w",
        "registered_triggers": [{"id": "0b8e", "trigger_type": "http", "config": {}}],
    }
    entry = FunctionEntry.model_validate(detail)
    assert "registered_triggers" not in entry.model_dump()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("not json", "not JSON"),
        ("[]", "not an iii-typed catalog snapshot"),
        ('{"format": "iii-typed.catalog", "version": 2}', "version 2 is not supported"),
        (
            '{"format": "iii-typed.catalog", "version": 1, "functions": [{"namespace": "default"}]}',
            "functions.0.function_id",
        ),
        ('{"format": "iii-typed.catalog", "version": 1, "extra": 1}', "extra"),
    ],
)
def test_bad_snapshots_name_the_problem(text: str, fragment: str) -> None:
    with pytest.raises(CatalogError) as info:
        parse_snapshot(text, "cat.json")
    assert fragment in str(info.value)
    assert str(info.value).startswith("cat.json")


def _snapshot_with(request_schema_text: str, description: str = '"d"') -> str:
    return (
        '{"format": "iii-typed.catalog", "version": 1, "functions": [{"function_id": "a::b",'
        f' "description": {description}, "request_schema": {request_schema_text}}}]}}'
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        # JSON text that is not JSON data: Python's parser accepts these; a NaN bound would reject
        # every request, a lone surrogate cannot be written to the module, deep nesting overflows
        ('{"type": "number", "maximum": NaN}', "not JSON (NaN is not JSON)"),
        ('{"type": "number", "minimum": -Infinity}', "not JSON (-Infinity is not JSON)"),
        ('{"type": "number", "maximum": Infinity}', "not JSON (Infinity is not JSON)"),
        (
            '{"type": "object", "properties": {"\\ud800": {"type": "string"}}}',
            "not a snapshot (functions[0].request_schema.properties: a key with a lone UTF-16"
            " surrogate (not Unicode text))",
        ),
        (
            '{"type": "string", "title": "T\\udfff"}',
            "not a snapshot (functions[0].request_schema.title: a string with a lone UTF-16"
            " surrogate (not Unicode text))",
        ),
        ("[" * 950 + "]" * 950, "nested more than 512 levels deep"),  # json parses it; recursion overflows
        ("[" * 100_000 + "]" * 100_000, "not a snapshot (nested more than 512 levels deep)"),
    ],
)
def test_json_text_that_is_not_json_data_is_a_clear_error(text: str, problem: str) -> None:
    with pytest.raises(CatalogError) as info:
        parse_snapshot(_snapshot_with(text), "cat.json")
    assert str(info.value).startswith("cat.json: ")
    assert problem in str(info.value)


def test_a_lone_surrogate_in_a_description_is_a_clear_error_from_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    snapshot = tmp_path / "cat.json"
    snapshot.write_text(_snapshot_with('{"type": "string"}', '"x\\ud800y"'), encoding="utf-8")
    out = tmp_path / "client.py"
    assert main(["generate", "--snapshot", str(snapshot), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "functions[0].description: a string with a lone UTF-16 surrogate" in err
    assert "Traceback" not in err and not out.exists()


def test_missing_snapshot_file(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="cannot read snapshot"):
        load_snapshot(tmp_path / "nope.json")


def test_committed_json_schema_matches_the_model() -> None:
    path = catalog_schema_path(REPO)
    assert path.read_text(encoding="utf-8") == catalog_json_schema(), "run `make codegen` (catalog-schema)"
    schema = json.loads(path.read_text(encoding="utf-8"))
    assert sorted(schema["required"]) == ["format", "functions", "trigger_types", "version"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["format"]["const"] == "iii-typed.catalog"
