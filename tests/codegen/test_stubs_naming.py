"""Naming rules of the typed stubs (docs/codegen.md "Names", codegen.md §1.5)."""

from __future__ import annotations

import keyword

import pytest
from iii_codegen.naming import (
    attribute_name,
    pascal_case,
    qualifier,
    snake_case,
    split_words,
    unique_attribute_names,
)
from iii_codegen.stubgen import class_name


@pytest.mark.parametrize(
    ("segment", "expected"),
    [
        ("create", "create"),
        ("session-manager", "session_manager"),
        ("getUser", "get_user"),
        ("HTTPServer", "http_server"),
        ("/todos", "todos"),
        ("a/b.c d", "a_b_c_d"),
        ("2fa", "_2fa"),
        ("class", "class_"),
        ("import", "import_"),
        ("match", "match_"),
        ("None", "none"),
        ("__init__", "init"),
        ("", "unnamed"),
        ("///", "unnamed"),
        ("café-crème", "cafe_creme"),
    ],
)
def test_attribute_name(segment: str, expected: str) -> None:
    name = attribute_name(segment)
    assert name == expected
    assert name.isidentifier() and not keyword.iskeyword(name)


def test_split_and_cases() -> None:
    assert split_words("getHTTPResponse-v2") == ["get", "HTTP", "Response", "v2"]
    assert snake_case("userId") == "user_id"
    assert pascal_case("session-manager") == "SessionManager"
    assert pascal_case("1st") == "_1st"
    assert qualifier("payments::refund") == "PaymentsRefund"
    assert qualifier("api::get::/todos") == "ApiGetTodos"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("CreateOrderInput", "CreateOrderInput"),
        ("refund input (v2) — ünïcode", "RefundInputV2Unicode"),
        ("billing.Address", "BillingAddress"),
        ("Option_String", "OptionString"),
        ("1st", "Model1st"),
        ("???", ""),
    ],
)
def test_class_name(raw: str, expected: str) -> None:
    assert class_name(raw) == expected


def test_unique_attribute_names_suffixes_collisions_in_sorted_order() -> None:
    names = unique_attribute_names(["get_item", "get-item", "getItem", "other"], taken={"other"})
    assert names == {
        "get-item": "get_item",
        "getItem": "get_item_2",
        "get_item": "get_item_3",
        "other": "other_2",
    }
