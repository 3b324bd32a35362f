"""Reading the envelope of frames the decoder refuses (iii_typed.engine.limits; docs/reliability.md)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from iii_typed.engine.limits import JSON_DEPTH_LIMIT, envelope, limit_error, refusal, too_deep
from iii_typed.errors import FrameDecodeError
from iii_typed.options import InitOptions
from iii_typed.protocol import codec

ID = uuid.UUID("6f0c8a52-7d1e-4c57-9a0b-1c2d3e4f5a6b")


def _deep(levels: int) -> str:
    return "[" * levels + "]" * levels


def _deep_objects(levels: int) -> str:
    return '{"a":' * levels + "1" + "}" * levels


def test_the_envelope_is_read_from_the_top_level_prefix() -> None:
    message = f'{{"type":"invokefunction","invocation_id":"{ID}","function_id":"a::b","data":{_deep(300)}}}'
    assert envelope(message.encode()) == ("invokefunction", ID, "a::b")


def test_an_invocation_id_inside_the_payload_is_never_used() -> None:
    message = json.dumps(
        {"type": "invokefunction", "function_id": "f", "data": {"invocation_id": str(ID)}, "x": 1}
    )
    assert envelope(message.encode())[1] is None
    assert refusal(message.encode(), "payload_too_deep", "t") is None


@pytest.mark.parametrize(
    "message", [b"", b"[1]", b"not json", b'{"type":"ping"}', b'{"invocation_id":"nope"}']
)
def test_no_reply_without_an_invokefunction_envelope(message: bytes) -> None:
    assert refusal(message, "payload_too_large", "t") is None


def test_the_refusal_is_an_invocationresult_error() -> None:
    message = f'{{"type":"invokefunction","invocation_id":"{ID}","function_id":"a::b","data":{_deep(300)}}}'
    frame = json.loads(refusal(message.encode(), "payload_too_deep", "too deep") or b"{}")
    assert frame == {
        "type": "invocationresult",
        "invocation_id": str(ID),
        "function_id": "a::b",
        "error": {"code": "payload_too_deep", "message": "too deep"},
    }


@pytest.mark.parametrize("nest", [_deep, _deep_objects], ids=["arrays", "objects"])
def test_the_decoder_depth_limit_is_the_documented_one(nest: Any) -> None:
    ok = f'{{"type":"invokefunction","function_id":"f","data":{nest(JSON_DEPTH_LIMIT - 1)}}}'
    assert codec.decode(ok.encode()).type == "invokefunction"
    deep = f'{{"type":"invokefunction","function_id":"f","data":{nest(JSON_DEPTH_LIMIT + 1)}}}'
    with pytest.raises(FrameDecodeError) as refused:
        codec.decode(deep.encode())
    assert refused.value.reason == "json" and too_deep(str(refused.value))


def test_limit_error_frame() -> None:
    assert json.loads(limit_error("too many")) == {
        "type": "error",
        "error": {"code": "LIMIT_EXCEEDED", "message": "too many"},
    }


def test_offline_calls_option_is_validated() -> None:
    assert InitOptions().offline_calls == "queue"
    assert InitOptions(offline_calls="fail").offline_calls == "fail"
    with pytest.raises(ValueError, match="offline_calls"):
        InitOptions(offline_calls="drop")
