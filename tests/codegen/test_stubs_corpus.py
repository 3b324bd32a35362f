"""A corpus of tricky schemas (tests/codegen/corpus/*.json) through the stub generator.

Each case is one schema (used as request and response of a function named after the case) or a
few functions; ``valid`` examples must round-trip through the generated stubs (validate, dump in
JSON mode with wire names, equal JSON) and ``invalid`` ones must be refused. Every case is
generated on its own and all together in one module (which exercises name collisions); all the
modules must import without warnings and pass ``mypy --strict`` (one mypy run for the lot).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from iii_codegen.catalog import Catalog, FunctionEntry
from iii_codegen.config import OutputSpec
from iii_codegen.stubgen import render
from pydantic import TypeAdapter, ValidationError
from support.stubgen import descriptor, import_path, run_mypy

from iii_typed.errors import ResponseValidationError

CORPUS = Path(__file__).parent / "corpus"
EVERYTHING = OutputSpec(functions=("*",))


@dataclass
class Case:
    name: str
    about: str
    functions: list[FunctionEntry]
    example_function: str
    same_schema_both_sides: bool
    valid: list[Any]
    invalid: list[Any]


def _load_cases() -> list[Case]:
    cases = []
    for path in sorted(CORPUS.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        name = path.stem
        if "functions" in data:
            fns = [FunctionEntry(function_id=k, **v) for k, v in data["functions"].items()]
            single = False
        else:
            fns = [
                FunctionEntry(function_id=name, request_schema=data["schema"], response_schema=data["schema"])
            ]
            single = True
        example = data.get("example_function", fns[0].function_id)
        cases.append(Case(name, data["about"], fns, example, single, data["valid"], data["invalid"]))
    return cases


CASES = _load_cases()


@dataclass
class Generated:
    modules: dict[str, ModuleType]
    combined: ModuleType
    paths: list[Path]
    combined_source: str
    warnings: dict[str, list[str]]


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    out = tmp_path_factory.mktemp("corpus_out")
    modules: dict[str, ModuleType] = {}
    paths: list[Path] = []
    found: dict[str, list[str]] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # importing a generated module must not warn
        for case in CASES:
            rendered = render(Catalog(functions=case.functions), EVERYTHING)
            found[case.name] = rendered.warnings
            path = out / f"{case.name}.py"
            path.write_text(rendered.source, encoding="utf-8")
            paths.append(path)
            modules[case.name] = import_path(path, f"corpus_{case.name}")
        everything = [fn for case in CASES for fn in case.functions]
        combined = render(Catalog(functions=everything), EVERYTHING)
        combined_path = out / "combined.py"
        combined_path.write_text(combined.source, encoding="utf-8")
        paths.append(combined_path)
        combined_module = import_path(combined_path, "corpus_combined")
    return Generated(modules, combined_module, paths, combined.source, found)


def test_corpus_is_big_enough() -> None:
    assert len(CASES) >= 30


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_case_round_trips(case: Case, generated: Generated) -> None:
    for module in (generated.modules[case.name], generated.combined):
        fn = descriptor(module, case.example_function)
        for example in case.valid:
            assert fn.dump_request(example) == example, f"{case.name}: request {example!r}"
            if case.same_schema_both_sides:
                value = fn.load_response(example)
                dumped = TypeAdapter(fn.response_type).dump_python(
                    value, mode="json", by_alias=True, exclude_unset=True
                )
                assert dumped == example, f"{case.name}: response {example!r}"
        for example in case.invalid:
            with pytest.raises(ValidationError):
                fn.dump_request(example)
            if case.same_schema_both_sides:
                with pytest.raises(ResponseValidationError) as info:
                    fn.load_response(example)
                assert info.value.function_id == case.example_function


def test_generated_modules_pass_mypy_strict(generated: Generated, tmp_path: Path) -> None:
    result = run_mypy(generated.paths, cache_dir=tmp_path / "mypy")
    assert result.returncode == 0, result.stdout + result.stderr


def test_generated_modules_have_no_undefined_or_unused_names(generated: Generated) -> None:
    ruff = [sys.executable, "-m", "ruff", "check", "--isolated", "--no-cache", "--select", "F,E9"]
    result = subprocess.run([*ruff, *map(str, generated.paths)], capture_output=True, text=True, timeout=50)
    assert result.returncode == 0, result.stdout + result.stderr


def test_combined_module_is_order_independent(generated: Generated) -> None:
    rng = random.Random(3)
    everything = [fn for case in CASES for fn in case.functions]
    for _ in range(2):
        shuffled = [
            FunctionEntry.model_validate(_shuffle_keys(fn.model_dump(), rng))
            for fn in rng.sample(everything, len(everything))
        ]
        assert render(Catalog(functions=shuffled), EVERYTHING).source == generated.combined_source


def _shuffle_keys(value: Any, rng: random.Random) -> Any:
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: _shuffle_keys(v, rng) for k, v in items}
    if isinstance(value, list):
        return [_shuffle_keys(v, rng) for v in value]
    return value


def test_worker_processes_and_grouping_do_not_change_the_bytes(generated: Generated) -> None:
    catalog = Catalog(functions=[fn for case in CASES for fn in case.functions])
    assert render(catalog, EVERYTHING, jobs=2).source == generated.combined_source
    assert render(catalog, EVERYTHING, chunk_units=1).source == generated.combined_source
    assert render(catalog, EVERYTHING, chunk_units=len(catalog.functions)).source == generated.combined_source


def _type_names(module: ModuleType, function_id: str) -> tuple[str, str]:
    fn = descriptor(module, function_id)
    return (
        getattr(fn.request_type, "__name__", repr(fn.request_type)),
        getattr(fn.response_type, "__name__", ""),
    )


def test_colliding_titles_are_qualified_by_owner(generated: Generated) -> None:
    module = generated.modules["c22_colliding_titles"]
    alpha = descriptor(module, "c22_colliding_titles::alpha::send")
    beta = descriptor(module, "c22_colliding_titles::beta::send")
    gamma = descriptor(module, "c22_colliding_titles::gamma")
    # `Item` differs between alpha and beta, and equals in alpha and gamma: one shared class.
    assert alpha.request_type.model_fields["item"].annotation.__name__ == "C22CollidingTitlesAlphaSendItem"
    assert beta.request_type.model_fields["item"].annotation.__name__ == "C22CollidingTitlesBetaSendItem"
    gamma_item = gamma.request_type.model_fields["items"].annotation
    assert "C22CollidingTitlesAlphaSendItem" in repr(gamma_item)
    # Untitled `SendInput` roots vs a root titled `SendInput`: all three qualified.
    assert alpha.request_type.__name__ == "C22CollidingTitlesAlphaSendInput"
    assert beta.request_type.__name__ == "C22CollidingTitlesBetaSendInput"
    assert gamma.response_type.__name__ == "C22CollidingTitlesGammaSendInput"
    assert alpha.response_type.__name__ == "C22CollidingTitlesAlphaSendResult"


def test_identical_types_are_shared(generated: Generated) -> None:
    module = generated.modules["c39_same_shape_shared"]
    a = descriptor(module, "c39_same_shape_shared::a")
    b = descriptor(module, "c39_same_shape_shared::b")
    assert a.request_type is b.request_type is module.Pay
    assert a.response_type is module.Money


def test_names_from_titles_and_tags(generated: Generated) -> None:
    assert {"Message", "Image", "Event"} <= set(vars(generated.modules["c07_oneof_const_tag_titled"]))
    assert "RefundInputV2Unicode" in vars(generated.modules["c32_unicode_title"])
    assert {"BillingAddress", "ShippingAddress"} <= set(vars(generated.modules["c34_dotted_definition_keys"]))
    nested = set(vars(generated.modules["c31_nested_anonymous_objects"]))
    assert {"CustomerAddress", "CustomerAddressGeo", "CustomerBillingAddress"} <= nested
    assert not any(name.endswith("1") for name in nested if name.startswith("Customer"))


def test_special_sides(generated: Generated) -> None:
    from typing import Any as TypingAny

    assert descriptor(generated.modules["c19_empty_schema"], "c19_empty_schema").request_type is TypingAny
    assert descriptor(generated.modules["c20_true_schema"], "c20_true_schema").response_type is TypingAny
    c38 = descriptor(generated.modules["c38_root_null_and_primitives"], "c38_root_null_and_primitives")
    assert c38.response_type is None
    assert c38.load_response(None) is None
    maybe = descriptor(generated.modules["c28_nullable_object_root"], "c28_nullable_object_root")
    assert maybe.load_response(None) is None
    assert type(maybe.load_response({"a": "x"})).__name__ == "Maybe"


def test_aliases_and_docstrings(generated: Generated) -> None:
    c12 = descriptor(
        generated.modules["c12_keyword_and_model_attribute_names"], "c12_keyword_and_model_attribute_names"
    )
    value = c12.request_type.model_validate({"class": "c", "from": "f", "model_dump": "d"})
    assert (value.class_, value.from_, value.model_dump_) == ("c", "f", "d")
    built = c12.request_type(class_="c", from_="f")  # Python names work too (populate_by_name)
    assert c12.dump_request(built) == {"class": "c", "from": "f"}
    described = generated.modules["c40_described_everything"].Described
    assert described.__doc__ is not None and '"quotes"' in described.__doc__
    assert "'''triple'''" in described.__doc__
    assert described.model_json_schema()["properties"]["a"]["description"] == 'The a """field""".'


def test_warnings_name_the_function(generated: Generated) -> None:
    assert any("points outside the schema" in w for w in generated.warnings["c37_external_ref"])
    assert all(w.startswith("function c37_external_ref") for w in generated.warnings["c37_external_ref"])
    assert generated.warnings["c01_pydantic_model"] == []
