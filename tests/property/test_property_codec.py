"""The frame codec round-trips every valid frame and refuses everything else with a typed error
(issue 8 item 4; architecture.md "Codec rules"; protocol.md §1.2, §2).

Together these tests put 10,000 generated messages through the codec per run.
"""

from __future__ import annotations

import json

import pytest
from frame_strategies import FRAME_MODELS, frames, invalid_messages
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from iii_typed.errors import FrameDecodeError
from iii_typed.protocol import codec

#: Frames per example: batches keep hypothesis's per-example overhead off the 10,000.
BATCH = 8


@settings(max_examples=500)
@given(st.lists(frames(), min_size=BATCH, max_size=BATCH))
def test_every_valid_frame_round_trips(batch: list[BaseModel]) -> None:
    for frame in batch:
        encoded = codec.encode(frame)
        decoded = codec.decode(encoded)
        assert type(decoded) is type(frame)
        assert decoded.model_fields_set == frame.model_fields_set
        assert decoded.model_dump(mode="json") == frame.model_dump(mode="json")
        assert codec.encode(decoded) == encoded  # stable: a second trip writes the same bytes
        assert json.loads(encoded)["type"] == decoded.type
        assert codec.decode(encoded.decode()) == decoded  # text and bytes alike


@pytest.mark.parametrize("model", FRAME_MODELS, ids=lambda m: m.__name__)
@settings(max_examples=60)
@given(data=st.data())
def test_each_frame_type_round_trips(model: type[BaseModel], data: st.DataObject) -> None:
    frame = data.draw(frames((model,)))
    assert codec.decode(codec.encode(frame)).model_dump(mode="json") == frame.model_dump(mode="json")


@settings(max_examples=500)
@given(st.lists(invalid_messages(), min_size=BATCH, max_size=BATCH))
def test_invalid_messages_are_refused_with_a_typed_error(cases: list[tuple[bytes, str]]) -> None:
    for message, reason in cases:
        with pytest.raises(FrameDecodeError) as refused:
            codec.decode(message)
        assert refused.value.reason == reason, (message, refused.value)
        assert str(refused.value)


@settings(max_examples=1040)
@given(st.binary(max_size=256) | st.text(max_size=64).map(str.encode))
def test_arbitrary_bytes_decode_or_raise_frame_decode_error_only(message: bytes) -> None:
    try:
        frame = codec.decode(message)
    except FrameDecodeError as exc:
        assert exc.reason in {"json", "type", "fields"}
    else:
        assert frame.type in {m.model_fields["type"].annotation.__args__[0] for m in FRAME_MODELS}
