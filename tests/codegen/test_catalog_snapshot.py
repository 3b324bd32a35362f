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
