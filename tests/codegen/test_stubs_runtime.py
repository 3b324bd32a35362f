"""The runtime base of generated stubs (iii_typed.stubs) without an engine: requests and results.

Calls through a real engine are in tests/integration/codegen/test_stubs_live.py.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, cast

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from iii_typed import ResponseValidationError
from iii_typed.stubs import (
    Async,
    AsyncCall,
    Call,
    Function,
    Namespace,
    Sync,
    TriggerHelper,
    TriggerHelperCall,
    async_runtime,
    sync_runtime,
)


class Req(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    class_: Annotated[str, Field(alias="class")]
    at: datetime | None = None
    note: str | None = None


class Res(BaseModel):
    total: int


class Shop(Namespace[Sync]):
    buy: Function[Req, Res] = Function("shop::buy", Req, Res)


def test_request_is_validated_and_dumped_for_the_wire() -> None:
    fn = Function("shop::buy", Req, Res)
    runtime = sync_runtime(object())
    request = Req(class_="gold", at=datetime(2024, 1, 2, tzinfo=UTC))
    assert fn.request_for(request, runtime) == {
        "function_id": "shop::buy",
        "payload": {"class": "gold", "at": "2024-01-02T00:00:00Z"},  # wire names, JSON mode, no unset `note`
    }
    assert fn.request_for({"class": "x", "note": None}, runtime)["payload"] == {"class": "x", "note": None}
    with pytest.raises(ValidationError) as info:
        fn.request_for({"klass": "x"}, runtime)
    assert "class" in str(info.value)


def test_call_options_are_sent_only_when_given() -> None:
    fn = Function("shop::buy", Req, Res)
    body = fn.request_for(
        Req(class_="a"),
        sync_runtime(object(), namespace="billing"),
        action={"type": "void"},
        timeout_ms=250,
        metadata={"k": 1},
    )
    assert body["namespace"] == "billing" and body["timeout_ms"] == 250 and body["metadata"] == {"k": 1}
    assert body["action"] == {"type": "void"}
    with pytest.raises(ValueError, match="namespace is blank"):
        sync_runtime(object(), namespace=" ")


def test_results_are_validated_and_errors_name_the_field() -> None:
    fn = Function("shop::buy", Req, Res)
    assert fn.load_response({"total": "3"}) == Res(total=3)
    with pytest.raises(ResponseValidationError) as info:
        fn.load_response({"total": "lots", "_caller_worker_id": "x"})
    assert info.value.function_id == "shop::buy"
    assert [e["loc"] for e in info.value.errors] == [("total",)]
    assert str(info.value).startswith("response of shop::buy failed validation: total:")
    assert Function("x", Any, Any).load_response({"free": 1}) == {"free": 1}


def test_open_request_side_dumps_models_in_json_mode() -> None:
    fn = Function("x", Any, Any)
    payload = fn.dump_request({"when": datetime(2024, 1, 2, tzinfo=UTC), "res": Res(total=1)})
    assert payload == {"when": "2024-01-02T00:00:00Z", "res": {"total": 1}}


def test_descriptor_binds_to_the_client_kind() -> None:
    assert isinstance(Shop.buy, Function)
    assert isinstance(Shop(sync_runtime(object())).buy, Call)

    class AsyncShop(Namespace[Async]):
        buy: Function[Req, Res] = Function("shop::buy", Req, Res)

    assert isinstance(AsyncShop(async_runtime(object())).buy, AsyncCall)
    assert Shop(sync_runtime(object())).buy.function_id == "shop::buy"


def test_trigger_helper_binds_and_validates_config_first() -> None:
    class Ns(Namespace[Sync]):
        on_tick: TriggerHelper[Res, Req, Res] = TriggerHelper("clock::tick", Res, Req, Res)

    helper = Ns(sync_runtime(object())).on_tick
    assert isinstance(helper, TriggerHelperCall)
    with pytest.raises(ValidationError):
        helper("f", lambda payload: Res(total=1), cast(Res, {"total": "not a number"}))
