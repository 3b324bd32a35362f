"""The codec's model-free writers of the round-trip frames equal the model path byte for byte."""

from __future__ import annotations

import dataclasses
import datetime
import math
import uuid
from typing import Any

import pytest
from pydantic import BaseModel, Field
from pydantic_core import PydanticSerializationError

from iii_typed._handlers import invocation_context
from iii_typed.context import InvocationContext
from iii_typed.protocol import codec
from iii_typed.protocol.frames import InvocationResult, InvokeFunction


class _Model(BaseModel):
    a_b: int = Field(default=3, alias="aB")
    when: datetime.datetime = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)


@dataclasses.dataclass
class _Data:
    items: set[int]


VALUES: list[Any] = [
    None,
    0,
    -2.5,
    math.inf,
    'h\u00e9llo "quoted" \\ \n \x01 \u2028 \U0001f600',
    [1, {"a": None}, (2, 3)],
    {"model": _Model(), "nested": {"d": datetime.date(2020, 1, 1)}},
    _Model(),
    _Data({1}),
    uuid.UUID(int=7),
    b"bytes",
    {1: 2},
]
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
@pytest.mark.parametrize("traceparent", [None, TRACEPARENT])
def test_encode_result_equals_the_model_path(value: Any, traceparent: str | None) -> None:
    iid = uuid.uuid4()
    frame = InvocationResult(
        type="invocationresult", invocation_id=iid, function_id="a::b\u00e9", result=value
    )
    if traceparent is not None:
        frame.traceparent = traceparent
    expected = codec.encode(frame)
    assert codec.encode_result(iid, "a::b\u00e9", value, traceparent) == expected
    assert codec.encode_result(codec.uuid_text(iid), "a::b\u00e9", value, traceparent) == expected


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
@pytest.mark.parametrize("extras", [False, True])
@pytest.mark.parametrize("with_id", [False, True])
def test_encode_invoke_equals_the_model_path(value: Any, extras: bool, with_id: bool) -> None:
    iid = str(uuid.uuid4()) if with_id else None
    fields: dict[str, Any] = {"type": "invokefunction", "function_id": "x::\u00e9", "data": value}
    kwargs: dict[str, Any] = {}
    if iid is not None:
        fields["invocation_id"] = iid
    if extras:
        kwargs = {"traceparent": TRACEPARENT, "baggage": "k=v", "metadata": value, "namespace": "ns"}
        fields.update((k, v) for k, v in kwargs.items() if v is not None)
    expected = codec.encode(InvokeFunction.model_validate(fields))
    assert codec.encode_invoke("x::\u00e9", value, iid, **kwargs) == expected


def test_writers_raise_what_the_model_path_raises() -> None:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    for bad in (object(), loop):
        with pytest.raises(PydanticSerializationError) as model_path:
            codec.encode(
                InvocationResult(
                    type="invocationresult", invocation_id=uuid.uuid4(), function_id="f", result=bad
                )
            )
        with pytest.raises(PydanticSerializationError) as writer:
            codec.encode_result(uuid.uuid4(), "f", bad)
        assert str(writer.value) == str(model_path.value)
        with pytest.raises(PydanticSerializationError):
            codec.encode_invoke("f", bad, None)


def test_uuid_text_is_str() -> None:
    for _ in range(100):
        value = uuid.uuid4()
        assert codec.uuid_text(value) == str(value)


def test_invocation_context_equals_the_dataclass() -> None:
    iid = uuid.uuid4()
    frame = InvokeFunction(
        type="invokefunction",
        invocation_id=iid,
        function_id="f",
        data={"_caller_worker_id": "w-1", "x": 1},
        metadata={"m": 1},
        traceparent=TRACEPARENT,
        baggage="k=v",
    )
    context = invocation_context(frame)
    assert context == InvocationContext(
        function_id="f",
        invocation_id=str(iid),
        metadata={"m": 1},
        traceparent=TRACEPARENT,
        baggage="k=v",
        caller_worker_id="w-1",
    )
    assert type(context) is InvocationContext
    with pytest.raises(dataclasses.FrozenInstanceError):
        context.function_id = "g"
