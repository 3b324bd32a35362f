"""The update-op engine (protocol.md §6.1): every operation, every per-op error code, the bounds."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from iii_typed.engine.builtins._update_ops import (
    DOC_URL,
    MAX_PATH_DEPTH,
    MAX_SEGMENT_BYTES,
    MAX_VALUE_DEPTH,
    MAX_VALUE_KEYS,
    MISSING,
    UpdateOpError,
    apply_update_ops,
    parse_ops,
)


def run(old: Any, *ops: dict[str, Any]) -> tuple[Any, list[UpdateOpError]]:
    return apply_update_ops(old, parse_ops(list(ops)))


def ok(old: Any, *ops: dict[str, Any]) -> Any:
    value, errors = run(old, *ops)
    assert errors == [], errors
    return value


def codes(old: Any, *ops: dict[str, Any]) -> list[tuple[int, str]]:
    return [(e.op_index, e.code) for e in run(old, *ops)[1]]


# -- set / remove ------------------------------------------------------------------------------
def test_set_field_root_and_missing_value() -> None:
    assert ok({"a": 1}, {"type": "set", "path": "b", "value": [1]}) == {"a": 1, "b": [1]}
    assert ok({"a": 1}, {"type": "set", "path": "", "value": 5}) == 5
    assert ok({"a": 1}, {"type": "set", "path": ""}) is None
    assert ok(MISSING, {"type": "set", "path": "x", "value": True}) == {"x": True}
    # a field path is one literal key: dots are not separators
    assert ok({}, {"type": "set", "path": "a.b", "value": 1}) == {"a.b": 1}


def test_set_on_a_non_object_is_reported_and_skipped() -> None:
    value, errors = run(3, {"type": "set", "path": "a", "value": 1}, {"type": "set", "path": "", "value": {}})
    assert value == {}
    assert [(e.op_index, e.code) for e in errors] == [(0, "set.target_not_object")]
    assert errors[0].doc_url == DOC_URL
    assert errors[0].to_json() == {
        "code": "set.target_not_object",
        "doc_url": DOC_URL,
        "message": errors[0].message,
        "op_index": 0,
    }
    assert list(errors[0].to_json()) == sorted(errors[0].to_json())


def test_remove() -> None:
    assert ok({"a": 1, "b": 2}, {"type": "remove", "path": "a"}) == {"b": 2}
    assert ok({"a": 1}, {"type": "remove", "path": "zz"}) == {"a": 1}
    assert ok({"a": 1}, {"type": "remove", "path": ""}) is None
    assert codes([1], {"type": "remove", "path": "a"}) == [(0, "remove.target_not_object")]


# -- merge -------------------------------------------------------------------------------------
def test_merge_root_nested_and_intermediates() -> None:
    assert ok({"a": 1, "b": 1}, {"type": "merge", "value": {"b": 2, "c": 3}}) == {"a": 1, "b": 2, "c": 3}
    assert ok({"a": 1}, {"type": "merge", "path": "", "value": {"x": 1}}) == {"a": 1, "x": 1}
    assert ok({"a": 1}, {"type": "merge", "path": [], "value": {"x": 1}}) == {"a": 1, "x": 1}
    assert ok({"p": {"q": 1}}, {"type": "merge", "path": "p", "value": {"r": 2}}) == {"p": {"q": 1, "r": 2}}
    assert ok({"p": 7}, {"type": "merge", "path": ["p", "q"], "value": {"r": 2}}) == {"p": {"q": {"r": 2}}}
    assert ok(MISSING, {"type": "merge", "path": ["a", "b"], "value": {"c": 1}}) == {"a": {"b": {"c": 1}}}
    # shallow: nested objects are replaced, not merged
    assert ok({"p": {"q": 1}}, {"type": "merge", "value": {"p": {"z": 1}}}) == {"p": {"z": 1}}
    # a root merge into a non-object value is ignored (no error), a nested one replaces the root
    assert ok(5, {"type": "merge", "value": {"a": 1}}) == 5
    assert ok(5, {"type": "merge", "path": "p", "value": {"a": 1}}) == {"p": {"a": 1}}


def test_merge_path_errors() -> None:
    v = {"type": "merge", "value": {"a": 1}}
    assert codes({}, {**v, "path": ["a"] * (MAX_PATH_DEPTH + 1)}) == [(0, "merge.path.too_deep")]
    assert codes({}, {**v, "path": ["a"] * MAX_PATH_DEPTH}) == []
    assert codes({}, {**v, "path": ["x" * (MAX_SEGMENT_BYTES + 1)]}) == [(0, "merge.path.segment_too_long")]
    assert codes({}, {**v, "path": ["é" * (MAX_SEGMENT_BYTES // 2 + 1)]}) == [
        (0, "merge.path.segment_too_long")
    ]
    assert codes({}, {**v, "path": ["a", ""]}) == [(0, "merge.path.empty_segment")]
    for key in ("__proto__", "constructor", "prototype"):
        assert codes({}, {**v, "path": ["a", key]}) == [(0, "merge.path.proto_polluted")]


def test_merge_value_errors() -> None:
    assert codes({}, {"type": "merge", "value": [1]}) == [(0, "merge.value.not_an_object")]
    assert codes({}, {"type": "merge", "value": None}) == [(0, "merge.value.not_an_object")]
    many = {f"k{i}": i for i in range(MAX_VALUE_KEYS + 1)}
    assert codes({}, {"type": "merge", "value": many}) == [(0, "merge.value.too_many_keys")]
    assert codes({}, {"type": "merge", "value": dict(list(many.items())[:MAX_VALUE_KEYS])}) == []
    assert codes({}, {"type": "merge", "value": {"__proto__": {}}}) == [(0, "merge.value.proto_polluted")]
    deep: Any = 1
    for _ in range(MAX_VALUE_DEPTH):
        deep = {"d": deep}
    assert codes({}, {"type": "merge", "value": deep}) == []
    assert codes({}, {"type": "merge", "value": {"d": [deep]}}) == [(0, "merge.value.too_deep")]


# -- increment / decrement ---------------------------------------------------------------------
def test_increment_and_decrement() -> None:
    assert ok({"n": 2}, {"type": "increment", "path": "n", "by": 3}) == {"n": 5}
    assert ok({}, {"type": "increment", "path": "n", "by": 3}) == {"n": 3}
    assert ok({"n": 5}, {"type": "decrement", "path": "n", "by": 3}) == {"n": 2}
    assert ok({}, {"type": "decrement", "path": "n", "by": 3}) == {"n": -3}
    assert ok({"n": 1.5}, {"type": "increment", "path": "n", "by": 2}) == {"n": 3.5}
    assert ok(MISSING, {"type": "increment", "path": "", "by": 4}) == 4
    assert ok(MISSING, {"type": "decrement", "path": "", "by": 4}) == -4
    assert (
        ok(10, {"type": "increment", "path": "", "by": 5}, {"type": "decrement", "path": "", "by": 3}) == 12
    )


def test_numeric_errors() -> None:
    assert codes({"n": "x"}, {"type": "increment", "path": "n", "by": 1}) == [(0, "increment.not_number")]
    assert codes({"n": None}, {"type": "decrement", "path": "n", "by": 1}) == [(0, "decrement.not_number")]
    assert codes({"n": True}, {"type": "increment", "path": "n", "by": 0}) == [(0, "increment.not_number")]
    assert codes({}, {"type": "increment", "path": "", "by": 1}) == [(0, "increment.not_number")]
    assert codes([], {"type": "increment", "path": "n", "by": 1}) == [(0, "increment.target_not_object")]
    assert codes("s", {"type": "decrement", "path": "n", "by": 1}) == [(0, "decrement.target_not_object")]
    # beyond the 64-bit range the real engine cannot represent the sum
    assert codes({"n": 2**64 - 1}, {"type": "increment", "path": "n", "by": 1}) == [
        (0, "increment.not_number")
    ]


def test_by_must_be_an_integer() -> None:
    for bad in (1.5, "1", True, 2**63):
        with pytest.raises(ValidationError):
            parse_ops([{"type": "increment", "path": "n", "by": bad}])
    with pytest.raises(ValidationError):
        parse_ops([{"type": "increment", "path": "n"}])


# -- append ------------------------------------------------------------------------------------
def test_append() -> None:
    assert ok({"e": [1]}, {"type": "append", "path": "e", "value": 2}) == {"e": [1, 2]}
    assert ok({"t": "ab"}, {"type": "append", "path": "t", "value": "cd"}) == {"t": "abcd"}
    assert ok({}, {"type": "append", "path": "t", "value": "x"}) == {"t": "x"}
    assert ok({}, {"type": "append", "path": "e", "value": {"k": 1}}) == {"e": [{"k": 1}]}
    assert ok({"e": None}, {"type": "append", "path": "e", "value": "x"}) == {"e": "x"}
    # nested: a missing leaf always starts an array
    assert ok({}, {"type": "append", "path": ["a", "b"], "value": "x"}) == {"a": {"b": ["x"]}}
    assert ok({"a": {"b": [1]}}, {"type": "append", "path": ["a", "b"], "value": 2}) == {"a": {"b": [1, 2]}}
    # root
    assert ok(MISSING, {"type": "append", "value": "hi"}) == "hi"
    assert ok(MISSING, {"type": "append", "path": "", "value": {"k": 1}}) == [{"k": 1}]
    assert ok([1], {"type": "append", "value": 2}) == [1, 2]


def test_append_errors() -> None:
    assert codes({"t": "ab"}, {"type": "append", "path": "t", "value": 1}) == [(0, "append.type_mismatch")]
    assert codes({"e": {}}, {"type": "append", "path": "e", "value": "x"}) == [(0, "append.type_mismatch")]
    assert codes({"e": 3}, {"type": "append", "path": ["a", "e"], "value": 1}) == []
    assert codes(5, {"type": "append", "path": "e", "value": 1}) == [(0, "append.target_not_object")]
    assert codes({}, {"type": "append", "value": 1}) == [(0, "append.type_mismatch")]
    assert codes({}, {"type": "append", "path": ["a", "__proto__"], "value": 1}) == [
        (0, "append.path.proto_polluted")
    ]


def test_field_path_errors_use_the_op_name() -> None:
    assert codes({}, {"type": "set", "path": "__proto__", "value": 1}) == [(0, "set.path.proto_polluted")]
    assert codes({}, {"type": "increment", "path": "x" * 300, "by": 1}) == [
        (0, "increment.path.segment_too_long")
    ]
    assert codes({}, {"type": "remove", "path": "constructor"}) == [(0, "remove.path.proto_polluted")]


def test_failures_do_not_abort_the_others_and_indexes_are_kept() -> None:
    value, errors = run(
        {"count": 2, "bad": "v"},
        {"type": "increment", "path": "count", "by": 3},
        {"type": "increment", "path": "bad", "by": 3},
        {"type": "merge", "value": 1},
        {"type": "set", "path": "ok", "value": True},
    )
    assert value == {"count": 5, "bad": "v", "ok": True}
    assert [(e.op_index, e.code) for e in errors] == [
        (1, "increment.not_number"),
        (2, "merge.value.not_an_object"),
    ]


def test_parse_rejects_unknown_types_and_missing_fields() -> None:
    with pytest.raises(ValidationError):
        parse_ops([{"type": "explode"}])
    with pytest.raises(ValidationError):
        parse_ops([{"type": "merge"}])
    with pytest.raises(ValidationError):
        parse_ops({"type": "set"})
    with pytest.raises(ValidationError):
        parse_ops([{"type": "set", "path": 3}])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3)
    ),
    max_leaves=10,
)
ops_strategy = st.lists(
    st.one_of(
        st.builds(
            lambda p, v: {"type": "set", "path": p, "value": v}, st.sampled_from(["", "a", "b"]), json_values
        ),
        st.builds(
            lambda p, v: {"type": "merge", "path": p, "value": v},
            st.sampled_from([None, "a", ["a", "b"]]),
            json_values,
        ),
        st.builds(
            lambda t, p, b: {"type": t, "path": p, "by": b},
            st.sampled_from(["increment", "decrement"]),
            st.sampled_from(["", "a"]),
            st.integers(-5, 5),
        ),
        st.builds(
            lambda p, v: {"type": "append", "path": p, "value": v},
            st.sampled_from([None, "a", ["a", "b"]]),
            json_values,
        ),
        st.builds(lambda p: {"type": "remove", "path": p}, st.sampled_from(["", "a"])),
    ),
    max_size=6,
)


@settings(deadline=None, max_examples=200, derandomize=True)
@given(old=json_values, ops=ops_strategy)
def test_never_mutates_its_input_and_reports_each_op_at_most_once(
    old: Any, ops: list[dict[str, Any]]
) -> None:
    snapshot_old, snapshot_ops = copy.deepcopy(old), copy.deepcopy(ops)
    parsed = parse_ops(ops)
    first, errors = apply_update_ops(old, parsed)
    assert old == snapshot_old and ops == snapshot_ops
    indexes = [e.op_index for e in errors]
    assert indexes == sorted(set(indexes)) and all(0 <= i < len(ops) for i in indexes)
    assert apply_update_ops(old, parsed) == (first, errors)  # deterministic
