"""Schemas the generator cannot use: the side is typed ``Any`` with one warning, the rest is generated.

One catalog mixes a well-typed function, functions and a trigger type whose request, response,
config or return schema is garbage (caught by the up-front checks of ``iii_codegen.schemas`` or
refused by datamodel-code-generator itself), and valid schemas that are only unusual (which must
still be typed). The module must import, pass ``mypy --strict`` with the good function typed, and be
the same bytes in-process, in worker processes and in any grouping.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from iii_codegen import _dcg, stubgen
from iii_codegen.catalog import Catalog, FunctionEntry, TriggerTypeEntry, dump_snapshot
from iii_codegen.cli import main
from iii_codegen.config import OutputSpec
from iii_codegen.schemas import MAX_SCHEMA_DEPTH, OPEN, prepare_side, schema_problem
from iii_codegen.stubgen import CodegenError, render
from support.stubgen import descriptor, import_path, run_mypy

SPEC = OutputSpec(functions=("*",), triggers=("*",))
OK: dict[str, Any] = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
ORDER_REQUEST: dict[str, Any] = {
    "title": "OrderRequest",
    "type": "object",
    "properties": {"sku": {"type": "string"}, "quantity": {"type": "integer", "minimum": 1}},
    "required": ["sku", "quantity"],
}
ORDER: dict[str, Any] = {
    "title": "Order",
    "type": "object",
    "properties": {"id": {"type": "string"}},
    "required": ["id"],
}


def _nested(levels: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"a": schema}}
    return schema


def _bomb(levels: int) -> dict[str, Any]:
    """Definitions that each use the previous one three times: ``L2 = L1 | list[L1]``… (3^levels)."""
    defs: dict[str, Any] = {"L0": {"type": "integer"}}
    for i in range(1, levels):
        prev = {"$ref": f"#/$defs/L{i - 1}"}
        defs[f"L{i}"] = {"anyOf": [prev, {"allOf": [prev]}, {"type": "array", "items": prev}]}
    return {"$ref": f"#/$defs/L{levels - 1}", "$defs": defs}


UPFRONT = "not a usable JSON Schema"
DCG = "datamodel-code-generator cannot generate it"

#: function id -> (request, response); the warning each bad side must give, in full.
BAD_FUNCTIONS: dict[str, tuple[Any, Any]] = {
    "bad::type": ({"type": "nonsense"}, OK),
    "bad::properties": ({"type": "object", "properties": 5}, OK),
    "bad::required": ({"type": "object", "properties": {"a": {"type": "string"}}, "required": "a"}, OK),
    "bad::pattern": ({"type": "object", "properties": {"code": {"type": "string", "pattern": "(["}}}, OK),
    "bad::defs": ({"$ref": "#/$defs/A", "$defs": {"A": 5}}, OK),
    "bad::list": ([{"type": "string"}], OK),
    "bad::deep": (_nested(MAX_SCHEMA_DEPTH + 5), OK),
    "bad::title": (OK, {"type": "object", "title": 5, "properties": {"ok": {"type": "boolean"}}}),
    # aliases defined by each other (mypy: "invalid recursive alias"; pydantic: not fully defined)
    "bad::cycle": (
        {
            "$ref": "#/$defs/A",
            "$defs": {
                "A": {"anyOf": [{"$ref": "#/$defs/B"}, {"type": "string"}]},
                "B": {"anyOf": [{"$ref": "#/$defs/A"}, {"type": "integer"}]},
            },
        },
        OK,
    ),
    # 3^40 references once expanded: mypy ran out of memory on the module
    "bad::bomb": (OK, _bomb(40)),
    "bad::both": (
        {"type": "object", "properties": {"when": {"type": "string", "format": 5}}},
        {"type": ["string", 5]},
    ),
}
BAD_TRIGGER = TriggerTypeEntry(
    id="bad::hook",
    configuration_schema={"type": "object", "properties": {"x": {"type": "string", "minLength": -1}}},
    request_schema=OK,
    response_schema={"type": "object", "description": ["not", "text"], "properties": {}},
)
EXPECTED_WARNINGS = [
    f'function bad::type (request): {UPFRONT} (#/type: "nonsense" is not a JSON Schema type): typed Any',
    f"function bad::properties (request): {UPFRONT} (#/properties is an integer, not an object): typed Any",
    f"function bad::required (request): {UPFRONT} (#/required is not an array of property names): typed Any",
    f'function bad::pattern (request): {UPFRONT} (#/properties/code/pattern "([" is not a regular expression'
    " (unterminated character set at position 1)): typed Any",
    f"function bad::defs (request): {UPFRONT} (#/$defs/A is an integer, not a schema): typed Any",
    f"function bad::list (request): {UPFRONT} (# is an array, not a schema): typed Any",
    f"function bad::deep (request): {UPFRONT} (sub-schemas are nested more than 64 levels deep): typed Any",
    f"function bad::title (response): {DCG} (title: Input should be a valid string (got 5)): typed Any",
    f"function bad::cycle (request): {UPFRONT} ($ref cycle with no object or array in between:"
    " #/$defs/A -> #/$defs/B -> #/$defs/A): typed Any",
    f"function bad::bomb (response): {UPFRONT} (its type aliases expand to more than 1000 type"
    " references (from #/$defs/L39)): typed Any",
    f"function bad::both (request): {DCG} (properties.when.format: Input should be a valid string (got 5)):"
    " typed Any",
    f"function bad::both (response): {UPFRONT} (#/type: 5 is not a JSON Schema type): typed Any",
    f"trigger bad::hook (config): {UPFRONT} (#/properties/x/minLength is -1, not a non-negative integer):"
    " typed Any",
    f'trigger bad::hook (return): {DCG} (description: Input should be a valid string (got ["not", "text"])):'
    " typed Any",
]
#: Valid JSON Schema that is only unusual: typed as usual, no warning.
UNUSUAL: dict[str, Any] = {
    "odd::empty-enum": {"enum": []},
    "odd::empty-type-list": {"type": []},
    "odd::lookahead": {"type": "string", "pattern": "^(?=.*[A-Z]).+$"},
    "odd::rust-named-group": {"type": "string", "pattern": r"^(?<year>\d{4})$"},
    "odd::keyword-names": {
        "type": "object",
        "properties": {
            "type": {"type": "integer"},
            "required": {"type": "boolean"},
            "pattern": {"type": "string"},
            "properties": {"type": "string"},
        },
        "required": ["type", "pattern"],
    },
    "odd::bounds": {
        "type": "object",
        "properties": {
            "n": {"type": "integer", "minimum": 5, "maximum": 1},
            "s": {"type": "string", "minLength": 2.0, "maxLength": 0},
            "f": {"type": "number", "multipleOf": 0.5},
        },
    },
    "odd::extensions": {
        "type": "object",
        "x-anything": {"properties": 5, "type": "nonsense"},
        "properties": {"a": {"type": "string", "x-pattern": "(["}},
        "patternProperties": {"^x-": {"type": "string"}},
        "dependencies": {"a": ["b"]},
    },
    # recursion through a container is an ordinary recursive type, and a few levels of aliases
    # built on each other are fine
    "odd::recursive-json": {
        "$ref": "#/$defs/Json",
        "$defs": {
            "Json": {
                "anyOf": [
                    {"type": "string"},
                    {"type": "array", "items": {"$ref": "#/$defs/Json"}},
                    {"type": "object", "additionalProperties": {"$ref": "#/$defs/Json"}},
                ]
            }
        },
    },
    "odd::small-ref-tower": _bomb(5),
    "odd::boolean-sub-schemas": {
        "type": "object",
        "properties": {"any": True, "tuple": {"type": "array", "prefixItems": [True], "items": False}},
        "required": [],
    },
}


def _catalog(bad_sides: bool = True) -> Catalog:
    """The test catalog; with ``bad_sides=False`` every bad schema is left out (``None``)."""

    def side(schema: Any) -> Any:
        return schema if bad_sides or schema is OK else None

    functions = [
        FunctionEntry(function_id="shop::order", request_schema=ORDER_REQUEST, response_schema=ORDER)
    ]
    functions += [
        FunctionEntry(function_id=function_id, request_schema=side(request), response_schema=side(response))
        for function_id, (request, response) in BAD_FUNCTIONS.items()
    ]
    functions += [
        FunctionEntry(function_id=k, request_schema=v, response_schema=v) for k, v in UNUSUAL.items()
    ]
    trigger = BAD_TRIGGER
    if not bad_sides:
        trigger = BAD_TRIGGER.model_copy(update={"configuration_schema": None, "response_schema": None})
    return Catalog(functions=functions, trigger_types=[trigger])


@dataclass
class Generated:
    rendered: stubgen.Rendered
    path: Path
    module: ModuleType


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    out = tmp_path_factory.mktemp("unusable")
    rendered = render(_catalog(), SPEC, jobs=1)
    path = out / "unusable_client.py"
    path.write_text(rendered.source, encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # importing a generated module must not warn
        module = import_path(path, "unusable_client")
    return Generated(rendered, path, module)


def test_one_warning_per_bad_side_naming_function_side_and_reason(generated: Generated) -> None:
    assert sorted(generated.rendered.warnings) == sorted(EXPECTED_WARNINGS)


def test_bad_sides_are_any_and_the_rest_is_typed(generated: Generated) -> None:
    module, source = generated.module, generated.rendered.source
    order = descriptor(module, "shop::order")
    assert order.request_type is module.OrderRequest
    assert set(order.request_type.model_fields) == {"sku", "quantity"}
    assert order.response_type is module.Order
    assert "    order: _stubs.Function[OrderRequest, Order] = _stubs.Function(" in source
    for function_id, (request, response) in BAD_FUNCTIONS.items():
        fn = descriptor(module, function_id)
        leaf = function_id.split("::")[1]
        want_request = "Any" if request is not OK else f"{leaf.title()}Input"
        want_response = "Any" if response is not OK else f"{leaf.title()}Result"
        assert f"    {leaf}: _stubs.Function[{want_request}, {want_response}]" in source, function_id
        assert (fn.request_type is Any) == (request is not OK), function_id
        assert (fn.response_type is Any) == (response is not OK), function_id
    # A good side next to a bad one keeps its model.
    assert set(descriptor(module, "bad::title").request_type.model_fields) == {"ok"}
    assert set(descriptor(module, "bad::type").response_type.model_fields) == {"ok"}
    # The trigger type keeps its helper: config and return Any, payload typed.
    assert "_stubs.TriggerHelper[Any, HookPayload, Any]" in source
    assert set(module.HookPayload.model_fields) == {"ok"}
    # Garbage never reaches the module: no class for a bad side.
    assert not re.search(
        r"\b(TypeInput|PropertiesInput|TitleResult|BothInput|HookConfig|HookReturn)\b", source
    )


def test_unusual_but_valid_schemas_are_typed(generated: Generated) -> None:
    assert not [w for w in generated.rendered.warnings if "odd::" in w]
    for function_id, schema in UNUSUAL.items():
        assert schema_problem(schema) is None, function_id
        assert prepare_side(schema).kind != OPEN, function_id
        line = next(line for line in generated.rendered.source.splitlines() if f'"{function_id}"' in line)
        assert not re.search(r"\bAny\b", line), line
        assert descriptor(generated.module, function_id).request_type is not Any, function_id
    lookahead = descriptor(generated.module, "odd::lookahead")
    assert lookahead.dump_request("Ab") == "Ab"
    with pytest.raises(ValueError):
        lookahead.dump_request("ab")
    assert descriptor(generated.module, "odd::rust-named-group").dump_request("2024") == "2024"


def test_module_passes_mypy_strict_and_types_the_good_function(generated: Generated, tmp_path: Path) -> None:
    usage = generated.path.parent / "unusable_usage.py"
    usage.write_text(
        "from typing import Any\n"
        "from iii_typed import III\n"
        "from unusable_client import Client, Order, OrderRequest\n"
        "\n"
        "def use(iii: III) -> None:\n"
        "    client = Client(iii)\n"
        "    order: Order = client.shop.order(OrderRequest(sku='a', quantity=1))\n"
        "    anything: Any = client.bad.properties(object())\n"
        "    client.shop.order(42)\n",
        encoding="utf-8",
    )
    result = run_mypy([generated.path, usage], cache_dir=tmp_path / "mypy")
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 1, result.stdout
    assert re.search(
        r"unusable_usage\.py:9: error: Argument 1 .*\"OrderRequest\"  \[arg-type\]$", errors[0]
    ), errors


def test_worker_processes_and_grouping_give_the_same_bytes_and_warnings(generated: Generated) -> None:
    variants = {
        "worker processes": render(_catalog(), SPEC, jobs=2),
        "one unit per call": render(_catalog(), SPEC, jobs=1, chunk_units=1),
        "one call": render(_catalog(), SPEC, jobs=1, chunk_units=100),
    }
    for what, again in variants.items():
        assert again.source == generated.rendered.source, what
        assert again.warnings == generated.rendered.warnings, what


def _without_digests(source: str) -> str:
    return source.split("# iii-typed catalog digest")[0]


def test_same_module_as_without_those_schemas_except_the_digests(generated: Generated) -> None:
    clean = render(_catalog(bad_sides=False), SPEC)
    assert clean.warnings == []
    assert _without_digests(generated.rendered.source) == _without_digests(clean.source)
    # The digests still see the registered schemas: fixing one is a change for --check.
    assert generated.rendered.digests["function bad::type"] != clean.digests["function bad::type"]


def test_a_trigger_type_with_only_unusable_schemas_keeps_an_any_helper() -> None:
    trigger = TriggerTypeEntry(id="bad::only", configuration_schema={"type": 5})
    rendered = render(Catalog(trigger_types=[trigger]), SPEC)
    assert rendered.warnings == [
        f"trigger bad::only (config): {UPFRONT} (#/type: 5 is not a JSON Schema type): typed Any"
    ]
    assert "    on_only: _stubs.TriggerHelper[Any, Any, Any] = _stubs.TriggerHelper(" in rendered.source
    # Without any schema, no helper (as before).
    bare = render(Catalog(trigger_types=[TriggerTypeEntry(id="bad::only")]), SPEC)
    assert "on_only" not in bare.source


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        ({"type": "object", "properties": {"a": 5}}, "#/properties/a is an integer, not a schema"),
        ({"anyOf": ["a"]}, "#/anyOf/0 is a string, not a schema"),
        ({"oneOf": {"type": "string"}}, "#/oneOf is an object, not an array of schemas"),
        ({"items": [{"type": "string"}, None]}, "#/items/1 is null, not a schema"),
        ({"type": "array", "items": 5}, "#/items is an integer, not a schema"),
        ({"required": ["a", 1]}, "#/required is not an array of property names"),
        ({"enum": "a"}, "#/enum is a string, not an array"),
        ({"$ref": 5}, "#/$ref is an integer, not a string"),
        ({"type": "object", "definitions": []}, "#/definitions is an array, not an object"),
        ({"not": "x"}, "#/not is a string, not a schema"),
        ({"type": "string", "pattern": 5}, "#/pattern is an integer, not a string"),
        (
            {"type": "string", "pattern": "\\"},
            '#/pattern "\\\\" is not a regular expression (bad escape (end of pattern) at position 0)',
        ),
        (
            {"patternProperties": {"a/(": {}}},
            '#/patternProperties: key "a/(" is not a regular expression'
            " (missing ), unterminated subpattern at position 2)",
        ),
        (
            {"properties": {"a/b~": {"maxItems": True}}},
            "#/properties/a~1b~0/maxItems is true, not a non-negative integer",
        ),
        ({"multipleOf": 0}, "#/multipleOf is 0, not a number greater than 0"),
        (
            {"properties": {"a": {"x-iii-local-ref": "#"}}},
            "#/properties/a uses the reserved key 'x-iii-local-ref'",
        ),
        (_nested(MAX_SCHEMA_DEPTH + 1), "sub-schemas are nested more than 64 levels deep"),
    ],
)
def test_schema_problems_are_named_by_pointer(schema: Any, problem: str) -> None:
    assert schema_problem(schema) == problem
    side = prepare_side(schema)
    assert side.kind == OPEN and side.unusable
    assert side.warnings == [f"{UPFRONT} ({problem}): typed Any"]


def test_nesting_up_to_the_limit_is_fine() -> None:
    assert schema_problem(_nested(MAX_SCHEMA_DEPTH)) is None


def test_the_generator_failure_is_one_line_in_both_paths() -> None:
    document = (
        '{"$defs": {"M": {"type": "object", "properties": {"a": {"type": "string", "maxLength": "q"}}}}}'
    )
    (result,) = _dcg.generate_many([document])
    assert result == _dcg.Result(
        "",
        [],
        "properties.a.maxLength: Input should be a valid integer, unable to parse string as an integer"
        ' (got "q")',
    )
    assert stubgen._run_worker([document]) == [result]


def test_a_group_that_fails_with_no_side_failing_alone_is_still_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = _dcg.generate_many

    def flaky(documents: list[str]) -> list[_dcg.Result]:  # fails only when both units are together
        return [
            _dcg.Result("", [], "boom") if "AInput" in doc and "BInput" in doc else result
            for doc, result in zip(documents, real(documents), strict=True)
        ]

    monkeypatch.setattr(_dcg, "generate_many", flaky)
    catalog = Catalog(functions=[FunctionEntry(function_id=i, request_schema=OK) for i in ("x::a", "x::b")])
    with pytest.raises(
        CodegenError, match=r"^function x::a, function x::b: datamodel-code-generator failed: boom$"
    ):
        render(catalog, SPEC, jobs=1)


def test_cli_exits_0_and_warns_on_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    snapshot = tmp_path / "catalog.json"
    snapshot.write_text(dump_snapshot(_catalog()), encoding="utf-8")
    out = tmp_path / "client.py"
    assert main(["generate", "--snapshot", str(snapshot), "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out == f"wrote {out}\n"
    assert sorted(captured.err.splitlines()) == sorted(f"warning: {out}: {w}" for w in EXPECTED_WARNINGS)
    assert main(["generate", "--snapshot", str(snapshot), "-o", str(out), "--check"]) == 0
    assert capsys.readouterr().out == f"up to date {out}\n"
