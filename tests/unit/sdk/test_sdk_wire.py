"""Client-side frame encoding, size limits, fragmentation and unserialisable-value reports."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field

from iii_typed._wire import check_size, encode_frame, find_unserialisable, fragments
from iii_typed.errors import InvocationError
from iii_typed.protocol import codec
from iii_typed.protocol.frames import (
    MAX_MESSAGE_BYTES,
    ErrorBody,
    HttpInvocationRef,
    InvocationResult,
    InvokeFunction,
    RegisterFunction,
)


class Order(BaseModel):
    id: uuid.UUID
    created_at: datetime
    total: Decimal
    tags: set[str]


class WithDefaults(BaseModel):
    a: int = 1
    receipt: str = Field(default="r", alias="receiptId")


def test_plain_frames_encode_like_the_codec() -> None:
    iid = uuid.uuid4()
    frame = InvokeFunction(
        type="invokefunction", function_id="f", data={"a": [1, "é", None]}, invocation_id=iid
    )
    assert encode_frame(frame) == codec.encode(frame)
    assert b"\\u" not in encode_frame(frame)  # raw UTF-8, compact
    result = InvocationResult(type="invocationresult", invocation_id=iid, function_id="f", result=None)
    assert json.loads(encode_frame(result)) == {
        "type": "invocationresult",
        "invocation_id": str(iid),
        "function_id": "f",
        "result": None,
    }


def test_pydantic_payloads_are_written_in_json_mode_with_defaults_and_aliases() -> None:
    order = Order(
        id=uuid.UUID("12345678-1234-5678-1234-567812345678"),
        created_at=datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        total=Decimal("9.90"),
        tags={"a"},
    )
    frame = InvokeFunction(
        type="invokefunction",
        function_id="f",
        data={"order": order, "extra": [WithDefaults()]},
        metadata=WithDefaults(),
    )
    decoded = json.loads(encode_frame(frame))
    assert decoded["data"]["order"] == {
        "id": "12345678-1234-5678-1234-567812345678",
        "created_at": "2024-01-02T03:04:05Z",
        "total": "9.90",
        "tags": ["a"],
    }
    assert decoded["data"]["extra"] == [{"a": 1, "receiptId": "r"}]
    assert decoded["metadata"] == {"a": 1, "receiptId": "r"}


def test_nested_protocol_models_keep_only_their_set_fields() -> None:
    result = InvocationResult(
        type="invocationresult",
        invocation_id=uuid.uuid4(),
        function_id="f",
        error=ErrorBody(code="c", message="m"),
    )
    assert json.loads(encode_frame(result))["error"] == {"code": "c", "message": "m"}
    reg = RegisterFunction(
        type="registerfunction",
        id="x",
        invocation=HttpInvocationRef.model_validate(
            {"url": "u", "method": "POST", "auth": {"type": "hmac", "secret_key": "K"}}
        ),
    )
    assert json.loads(encode_frame(reg))["invocation"] == {
        "url": "u",
        "method": "POST",
        "auth": {"type": "hmac", "secret_key": "K"},
    }


def test_size_limit_names_the_limit_and_channels() -> None:
    assert check_size(b"x" * 10, "it") == b"x" * 10
    with pytest.raises(InvocationError) as info:
        check_size(b"x" * (MAX_MESSAGE_BYTES + 1), "the request to 'f'", "f")
    assert info.value.code == "payload_too_large"
    assert str(MAX_MESSAGE_BYTES) in info.value.message and "64 MiB" in info.value.message
    assert "channel" in info.value.message and info.value.function_id == "f"


@settings(deadline=None, max_examples=200, derandomize=True)
@given(st.text(max_size=300), st.integers(min_value=1, max_value=17))
def test_fragments_never_split_a_code_point(text: str, size: int) -> None:
    data = text.encode()
    parts = list(fragments(data, size))
    assert b"".join(parts) == data
    for part in parts:
        part.decode()  # each fragment is valid UTF-8 on its own
        assert 0 < len(part) <= max(size, 4)


def test_find_unserialisable_names_the_path() -> None:
    lock = threading.Lock()
    payload: Any = {"ok": [1, 2], "items": [{"a": 1}, {"lock": lock}]}
    where = find_unserialisable(payload)
    assert where.startswith("payload['items'][1]['lock'] (lock")
    assert find_unserialisable({"fine": [1, "x", None, 1.5]}) == ""


def test_find_unserialisable_names_cycles_and_excess_depth() -> None:
    """A cyclic or very deep payload made the search itself recurse until RecursionError, so
    ``trigger`` raised that instead of the documented ``TypeError`` naming where the problem is."""
    cyclic: dict[str, Any] = {"items": [{"ok": 1}]}
    cyclic["items"].append(cyclic)
    assert find_unserialisable(cyclic) == "payload['items'][1] (a circular reference: it contains itself)"
    shared = {"x": 1}
    assert find_unserialisable({"a": shared, "b": [shared, shared]}) == ""  # repeated, not circular
    deep: list[Any] = []
    node = deep
    for _ in range(5000):
        node.append([])
        node = node[0]
    where = find_unserialisable(deep)
    assert where.startswith("payload[0][0]") and where.endswith("(nested deeper than 254 levels)")
