"""The public surface: root exports, seed signatures, sync/async twins, input models."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

import iii_typed
from iii_typed import (
    III,
    EngineUnreachableError,
    EnqueueResult,
    HttpAuthApiKey,
    HttpAuthBearer,
    HttpAuthHmac,
    HttpInvocationConfig,
    IIIError,
    InvocationError,
    InvocationTimeoutError,
    RegisterServiceInput,
    RegisterTriggerInput,
    RegisterTriggerTypeInput,
    RegistrationRejectedError,
    TriggerAction,
    TriggerActionEnqueue,
    TriggerActionVoid,
    TriggerRequest,
)

EXPECTED_ALL = {
    # decisions.md "Public API"
    "register_worker",
    "III",
    "InitOptions",
    "ReconnectionConfig",
    "OtelConfig",
    "TelemetryOptions",
    "HttpInvocationConfig",
    "HttpAuthHmac",
    "HttpAuthBearer",
    "HttpAuthApiKey",
    "RegisterFunctionFormat",
    "RegisterServiceInput",
    "RegisterTriggerInput",
    "RegisterTriggerTypeInput",
    "TriggerAction",
    "TriggerActionEnqueue",
    "TriggerActionVoid",
    "TriggerRequest",
    "EnqueueResult",
    "TriggerHandler",
    "IIIConnectionState",
    "current_invocation",
    "IIIError",
    "InvocationError",
    "InvocationTimeoutError",
    "EngineUnreachableError",
    "RegistrationRejectedError",
    "ResponseValidationError",
    "IStream",
    "Channel",
    "ChannelReader",
    "ChannelWriter",
    "Logger",
    # the types user code needs to annotate what these return or receive
    "HttpAuthConfig",
    "TriggerConfig",
    "FunctionRef",
    "Trigger",
    "TriggerTypeRef",
    "InvocationContext",
}


def test_root_all_is_pinned() -> None:
    assert set(iii_typed.__all__) == EXPECTED_ALL
    for name in iii_typed.__all__:
        assert hasattr(iii_typed, name), name


def test_seed_signatures() -> None:
    def params(fn: Any) -> list[str]:
        return list(inspect.signature(fn).parameters)

    assert params(iii_typed.register_worker) == ["address", "options"]
    assert params(III.__init__) == ["self", "address", "options"]
    assert params(III.register_function) == [
        "self",
        "function_id",
        "handler_or_invocation",
        "description",
        "metadata",
        "request_format",
        "response_format",
    ]
    assert params(III.register_service) == ["self", "service"]
    assert params(III.register_trigger) == ["self", "trigger"]
    assert params(III.register_trigger_type) == ["self", "trigger_type", "handler"]
    assert params(III.unregister_trigger_type) == ["self", "trigger_type"]
    assert params(III.trigger) == ["self", "request"]
    assert params(III.connect_async) == ["self"]
    assert params(III.get_connection_state) == ["self"]
    assert params(III.add_connection_state_listener) == ["self", "handler"]
    assert isinstance(inspect.getattr_static(III, "worker_id"), property)


@pytest.mark.parametrize(("sync", "async_"), [("trigger", "trigger_async"), ("shutdown", "shutdown_async")])
def test_sync_and_async_twins_have_the_same_signature(sync: str, async_: str) -> None:
    sync_fn = getattr(III, sync)
    async_fn = getattr(III, async_)
    assert not inspect.iscoroutinefunction(sync_fn)
    assert inspect.iscoroutinefunction(async_fn)
    assert inspect.signature(sync_fn) == inspect.signature(async_fn)


def test_every_async_method_is_a_coroutine_function() -> None:
    for name, member in inspect.getmembers(III):
        if name.endswith("_async") and not name.startswith("_"):
            assert inspect.iscoroutinefunction(member), name


def test_error_hierarchy() -> None:
    assert issubclass(InvocationTimeoutError, InvocationError) and issubclass(
        InvocationTimeoutError, TimeoutError
    )
    assert issubclass(EngineUnreachableError, IIIError) and issubclass(
        EngineUnreachableError, ConnectionError
    )
    assert issubclass(RegistrationRejectedError, IIIError)
    err = InvocationError("invocation_failed", "boom", stacktrace="Traceback ...")
    assert str(err) == "invocation_failed: boom"


def test_trigger_action_factories() -> None:
    assert TriggerAction.Void() == TriggerActionVoid()
    assert TriggerAction.Void().model_dump() == {"type": "void"}
    enqueue = TriggerAction.Enqueue(queue="jobs")
    assert isinstance(enqueue, TriggerActionEnqueue) and enqueue.model_dump() == {
        "type": "enqueue",
        "queue": "jobs",
    }
    with pytest.raises(TypeError):
        TriggerAction.Enqueue("jobs")


def test_trigger_request_accepts_dict_actions_and_names_bad_fields() -> None:
    req = TriggerRequest.model_validate({"function_id": "f", "action": {"type": "enqueue", "queue": "q"}})
    assert isinstance(req.action, TriggerActionEnqueue)
    req = TriggerRequest.model_validate({"function_id": "f", "action": TriggerAction.Void()})
    assert isinstance(req.action, TriggerActionVoid)
    for bad, field in (
        ({"payload": 1}, "function_id"),
        ({"function_id": " "}, "function_id"),
        ({"function_id": "f", "timeout_ms": 0}, "timeout_ms"),
        ({"function_id": "f", "namespace": ""}, "namespace"),
        ({"function_id": "f", "action": {"type": "later"}}, "action"),
    ):
        with pytest.raises(ValidationError, match=field):
            TriggerRequest.model_validate(bad)


def test_enqueue_result_by_either_name() -> None:
    assert EnqueueResult.model_validate({"messageReceiptId": "a"}).message_receipt_id == "a"
    assert EnqueueResult.model_validate({"message_receipt_id": "b"}).message_receipt_id == "b"
    assert EnqueueResult(message_receipt_id="c").model_dump() == {"messageReceiptId": "c"}
    by_alias = EnqueueResult(messageReceiptId="d")
    assert by_alias.model_dump_json() == '{"messageReceiptId":"d"}'


def test_http_invocation_config_and_auth_variants() -> None:
    cfg = HttpInvocationConfig(url="https://example.com/fn", auth={"type": "bearer", "token_key": "TOKEN"})
    assert isinstance(cfg.auth, HttpAuthBearer) and cfg.method == "POST"
    assert HttpAuthHmac(secret_key="S").model_dump() == {"type": "hmac", "secret_key": "S"}
    assert HttpAuthApiKey(header="X-Api-Key", value_key="K").type == "api_key"
    with pytest.raises(ValidationError, match="method"):
        HttpInvocationConfig(url="u", method="get")
    with pytest.raises(ValidationError, match="url"):
        HttpInvocationConfig()


def test_registration_inputs() -> None:
    trig = RegisterTriggerInput.model_validate(
        {"type": "cron", "function_id": "f", "config": {"expression": "* * * * * *"}}
    )
    assert trig.namespace is None and trig.metadata is None
    with pytest.raises(ValidationError, match="function_id"):
        RegisterTriggerInput.model_validate({"type": "cron"})
    with pytest.raises(ValidationError, match="namespace"):
        RegisterTriggerInput(type="x", function_id="f", namespace=" ")

    class Cfg(BaseModel):
        url: str

    tt = RegisterTriggerTypeInput(id="webhook", description="d", trigger_request_format=Cfg)
    assert tt.trigger_request_format is Cfg
    assert RegisterTriggerTypeInput(id="x").description == ""
    svc = RegisterServiceInput.model_validate({"id": "payments::refunds", "parent_service_id": "payments"})
    assert svc.name is None
    with pytest.raises(ValidationError, match="id"):
        RegisterServiceInput(id="  ")


def test_blank_trigger_ids_are_refused_naming_the_field() -> None:
    """A blank trigger type was sent and parked by the engine forever (no provider can have that
    id), a blank function id bound a trigger to nothing, a blank trigger type id registered a type
    nobody can name: all are refused like a blank ``register_function`` id."""
    for bad, field in (
        ({"type": " ", "function_id": "f"}, "type"),
        ({"type": "cron", "function_id": ""}, "function_id"),
    ):
        with pytest.raises(ValidationError, match=rf"{field}\n.*is blank"):
            RegisterTriggerInput.model_validate(bad)
    with pytest.raises(ValidationError, match=r"id\n.*is blank"):
        RegisterTriggerTypeInput(id="\t")
