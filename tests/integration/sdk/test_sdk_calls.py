"""Calls and handlers against the scripted fake engine (protocol.md §2.8-§2.9, §3.4, §4)."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from iii_typed import (
    III,
    EnqueueResult,
    InvocationError,
    InvocationTimeoutError,
    TriggerAction,
    TriggerConfig,
    TriggerHandler,
    current_invocation,
    register_worker,
)
from iii_typed.client import BARRIER_FUNCTION
from iii_typed.protocol.frames import MAX_MESSAGE_BYTES
from tests.integration.sdk.sdk_support import fast_options
from tests.support.fake_engine import FakeEngine, FakeError
from tests.support.waiting import wait_for

Connect = Callable[..., III]


def _invokes(fake: FakeEngine, function_id: str) -> list[dict[str, Any]]:
    return [r.frame for r in fake.frames(type="invokefunction") if r.frame.get("function_id") == function_id]


def test_sync_void_and_enqueue(fake: FakeEngine, connect: Connect) -> None:
    fake.functions["remote::echo"] = lambda data: {"echo": data}
    iii = connect(fake.url)
    assert iii.trigger({"function_id": "remote::echo", "payload": {"a": 1}}) == {"echo": {"a": 1}}
    started = time.monotonic()
    assert iii.trigger({"function_id": "remote::slow", "payload": {}, "action": TriggerAction.Void()}) is None
    assert time.monotonic() - started < 1
    fake.silent.add("remote::slow")
    receipt = iii.trigger(
        {"function_id": "remote::echo", "payload": {}, "action": TriggerAction.Enqueue(queue="q")}
    )
    assert isinstance(receipt, EnqueueResult) and uuid.UUID(receipt.message_receipt_id)
    wait_for(lambda: _invokes(fake, "remote::slow"), what="void call sent")
    void = _invokes(fake, "remote::slow")[0]
    assert "invocation_id" not in void and void["action"] == {"type": "void"}


def test_errors_map_to_invocation_error(fake: FakeEngine, connect: Connect) -> None:
    def fail(data: Any) -> Any:
        raise FakeError("FORBIDDEN", "function 'x' not allowed")

    fake.functions["remote::forbidden"] = fail
    iii = connect(fake.url)
    with pytest.raises(InvocationError) as info:
        iii.trigger({"function_id": "remote::missing", "payload": {}})
    assert info.value.code == "function_not_found" and "remote::missing" in info.value.message
    assert info.value.function_id == "remote::missing" and info.value.invocation_id is not None
    with pytest.raises(InvocationError, match="FORBIDDEN: function 'x' not allowed"):
        iii.trigger({"function_id": "remote::forbidden", "payload": {}})


def test_timeout_names_function_and_elapsed_and_late_result_is_dropped(
    fake: FakeEngine, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    fake.silent.add("remote::slow")
    fake.functions["remote::echo"] = lambda data: data
    iii = connect(fake.url, invocation_timeout_ms=300)
    started = time.monotonic()
    with pytest.raises(InvocationTimeoutError) as info:
        iii.trigger({"function_id": "remote::slow", "payload": {}, "timeout_ms": 200})
    elapsed = time.monotonic() - started
    assert 0.15 < elapsed < 0.6
    assert isinstance(info.value, TimeoutError) and info.value.code == "TIMEOUT"
    assert "'remote::slow'" in info.value.message and "ms" in info.value.message
    late_id = _invokes(fake, "remote::slow")[0]["invocation_id"]
    with caplog.at_level(logging.DEBUG, logger="iii_typed"):
        fake.send(
            {"type": "invocationresult", "invocation_id": late_id, "function_id": "remote::slow", "result": 1}
        )
        assert iii.trigger({"function_id": "remote::echo", "payload": 7}) == 7
    assert any("timed-out" in r.getMessage() for r in caplog.records)
    assert not iii._pending
    started = time.monotonic()
    with pytest.raises(InvocationTimeoutError):
        iii.trigger({"function_id": "remote::slow", "payload": {}})  # default from InitOptions
    assert time.monotonic() - started < 1


def test_pydantic_payloads_in_json_mode(fake: FakeEngine, connect: Connect) -> None:
    class Order(BaseModel):
        id: uuid.UUID
        created_at: datetime
        total: Decimal
        tags: set[str]

    fake.functions["orders::create"] = lambda data: data
    order = Order(
        id=uuid.UUID("12345678-1234-5678-1234-567812345678"),
        created_at=datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        total=Decimal("9.90"),
        tags={"a"},
    )
    expected = {
        "id": "12345678-1234-5678-1234-567812345678",
        "created_at": "2024-01-02T03:04:05Z",
        "total": "9.90",
        "tags": ["a"],
    }
    result = connect(fake.url).trigger({"function_id": "orders::create", "payload": order})
    assert result == expected
    assert _invokes(fake, "orders::create")[0]["data"] == expected
    assert Order.model_validate(result) == order


def test_nan_and_infinity_are_written_as_null(fake: FakeEngine, connect: Connect) -> None:
    """JSON has no NaN/Infinity: they go out as null (what serde_json and JSON.stringify do), never as
    the non-JSON literals ``NaN``/``Infinity`` that the engine could not parse."""
    fake.functions["numbers::echo"] = lambda data: data
    payload = {"x": float("nan"), "y": [float("inf"), -float("inf")], "z": 1.5}
    result = connect(fake.url).trigger({"function_id": "numbers::echo", "payload": payload})
    assert _invokes(fake, "numbers::echo")[0]["data"] == {"x": None, "y": [None, None], "z": 1.5}
    assert result == {"x": None, "y": [None, None], "z": 1.5}


def test_bad_payloads_are_refused_before_sending(fake: FakeEngine, connect: Connect) -> None:
    iii = connect(fake.url)
    sent_before = len(fake.frames())
    sock = socket.socket()
    try:
        with pytest.raises(TypeError, match=r"payload\['conn'\] \(socket"):
            iii.trigger({"function_id": "remote::x", "payload": {"conn": sock}})
    finally:
        sock.close()
    with pytest.raises(InvocationError) as info:
        iii.trigger({"function_id": "remote::x", "payload": "x" * MAX_MESSAGE_BYTES})
    assert info.value.code == "payload_too_large"
    assert "64 MiB" in info.value.message and "channel" in info.value.message
    with pytest.raises(ValidationError, match="function_id"):
        iii.trigger({"payload": 1})
    with pytest.raises(ValidationError, match="namespace"):
        iii.trigger({"function_id": "remote::x", "namespace": "  "})
    with pytest.raises(TypeError, match="TriggerRequest or a dict"):
        iii.trigger("remote::x")
    assert len(fake.frames()) == sent_before
    assert iii.get_connection_state() == "connected"


def test_messages_over_16_mib_arrive_whole(fake: FakeEngine, connect: Connect) -> None:
    fake.functions["remote::size"] = lambda data: len(data["blob"])
    blob = "é" * (9 * 1024 * 1024)  # 18 MiB of UTF-8: sent as 1 MiB fragments
    assert connect(fake.url).trigger({"function_id": "remote::size", "payload": {"blob": blob}}) == len(blob)


def test_namespaces(fake: FakeEngine, connect: Connect) -> None:
    fake.functions.update(
        {"a": lambda d: 1, "engine::functions::list": lambda d: 2, "configuration::get": lambda d: 3}
    )
    scoped = connect(fake.url, namespace="orders", worker_name="scoped")
    scoped.trigger({"function_id": "a", "payload": {}})
    scoped.trigger({"function_id": "engine::functions::list", "payload": {}})
    scoped.trigger({"function_id": "configuration::get", "payload": {}})
    scoped.trigger({"function_id": "a", "payload": {}, "namespace": "billing"})
    plain = connect(fake.url, worker_name="plain")
    plain.trigger({"function_id": "a", "payload": {}})
    namespaces = [
        f.frame.get("namespace")
        for f in fake.frames(type="invokefunction")
        if f.frame["function_id"] not in ("engine::workers::register", BARRIER_FUNCTION)
    ]
    assert namespaces == ["orders", "default", "default", "billing", None]
    scoped.register_trigger({"type": "cron", "function_id": "a", "config": {"expression": "* * * * * *"}})
    trigger = fake.wait_for_frame(lambda r: r.type == "registertrigger").frame
    assert trigger["namespace"] == "orders" and "trigger_namespace" not in trigger


def test_malformed_frames_from_the_engine_are_survived(
    fake: FakeEngine, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    fake.functions["remote::echo"] = lambda data: data
    fake.silent.add("remote::weird")
    iii = connect(fake.url)
    pending: list[Any] = []
    caller = threading.Thread(
        target=lambda: pending.append(
            _capture(lambda: iii.trigger({"function_id": "remote::weird", "payload": 1}))
        ),
        daemon=True,
    )
    caller.start()
    weird = fake.wait_for_frame(
        lambda r: r.type == "invokefunction" and r.frame["function_id"] == "remote::weird"
    )
    with caplog.at_level(logging.DEBUG, logger="iii_typed"):
        for bad in (
            "not json",
            "",
            "   ",
            "[1, 2, 3]",
            '{"no": "type"}',
            '{"type": "brand-new-frame", "x": 1}',
            '{"type": "invocationresult"}',
            '{"type": "invokefunction", "function_id": 5}',
            '{"type": "invokefunction", "invocation_id": "not-a-uuid", "function_id": "f", "data": 1}',
            '{"type": "registrationrejected"}',
            b"\x00\x01binary garbage",
            {"type": "ping"},
            {"type": "pong"},
            {"type": "error", "error": {"code": "SOMETHING", "message": "odd"}},
            {
                "type": "invocationresult",
                "invocation_id": str(uuid.uuid4()),
                "function_id": "nobody",
                "result": 1,
            },
        ):
            fake.send(bad)
        fake.send(
            {
                "type": "invocationresult",
                "invocation_id": weird.frame["invocation_id"],
                "function_id": "remote::weird",
                "error": "a string, not an object",
            }
        )
        caller.join(5)
        assert iii.trigger({"function_id": "remote::echo", "payload": {"still": "alive"}}) == {
            "still": "alive"
        }
    assert isinstance(pending[0], InvocationError) and pending[0].code == "UNKNOWN"
    assert len(fake.connections) == 1 and iii.get_connection_state() == "connected"
    assert any("malformed" in r.getMessage() for r in caplog.records)


def _capture(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception as exc:
        return exc


def test_concurrent_calls_from_threads_never_interleave(fake: FakeEngine, connect: Connect) -> None:
    fake.functions["remote::echo"] = lambda data: data
    iii = connect(fake.url)
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            for i in range(25):
                payload = {"t": t, "i": i, "pad": "z" * (20000 * (i % 3))}
                assert iii.trigger({"function_id": "remote::echo", "payload": payload}) == payload
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    calls = _invokes(fake, "remote::echo")
    assert len(calls) == 100
    assert all(r.frame is not None and r.is_text for r in fake.frames())


def test_sync_handlers_nest_synchronous_triggers(fake: FakeEngine, connect: Connect) -> None:
    iii = connect(fake.url)

    def level(data: dict[str, Any]) -> Any:
        depth = data["depth"]
        if depth == 0:
            return {"bottom": threading.current_thread().name}
        inner = iii.trigger({"function_id": "py::level", "payload": {"depth": depth - 1}})
        return {"depth": depth, "inner": inner}

    iii.register_function("py::level", level)
    fake.wait_for_frame(lambda r: r.type == "registerfunction")
    result = iii.trigger({"function_id": "py::level", "payload": {"depth": 5}})
    for depth in range(5, 0, -1):
        assert result["depth"] == depth
        result = result["inner"]
    assert result["bottom"].startswith("iii-handler")


async def test_async_api_from_a_foreign_loop_and_from_async_handlers(
    fake: FakeEngine, connect: Connect
) -> None:
    iii = connect(fake.url)
    fake.functions["remote::echo"] = lambda data: data
    seen: list[Any] = []

    async def async_handler(data: dict[str, Any]) -> Any:
        ctx = current_invocation()
        seen.append((ctx.function_id if ctx else None, threading.current_thread().name))
        inner = await iii.trigger_async({"function_id": "remote::echo", "payload": data})
        try:
            iii.trigger({"function_id": "remote::echo", "payload": 1})
        except RuntimeError as exc:
            return {"inner": inner, "sync_error": str(exc)}
        return {"inner": inner, "sync_error": None}

    iii.register_function("py::async", async_handler)
    fake.wait_for_frame(lambda r: r.type == "registerfunction")
    results = await asyncio.gather(
        *(iii.trigger_async({"function_id": "py::async", "payload": {"n": n}}) for n in range(20))
    )
    assert [r["inner"]["n"] for r in results] == list(range(20))
    assert all("trigger_async" in r["sync_error"] for r in results)
    assert seen[0][0] == "py::async" and seen[0][1].startswith("iii-loop")
    assert current_invocation() is None


def test_handler_registration_rules(fake: FakeEngine, connect: Connect) -> None:
    iii = connect(fake.url)
    iii.register_function("py::a", lambda data: data)
    with pytest.raises(ValueError, match="already registered"):
        iii.register_function("py::a", lambda data: data)
    with pytest.raises(ValueError, match="required"):
        iii.register_function("  ", lambda data: data)
    with pytest.raises(TypeError, match="str"):
        iii.register_function(42, lambda data: data)
    with pytest.raises(TypeError, match="callable"):
        iii.register_function("py::b", "not callable")
    metadata = {"tags": ["x"]}
    iii.register_function("py::c", lambda data: data, metadata=metadata)
    metadata["tags"].append("changed later")
    frame = fake.wait_for_frame(lambda r: r.type == "registerfunction" and r.frame["id"] == "py::c").frame
    assert frame["metadata"] == {"tags": ["x"]}


def test_function_namespace_conflict_is_only_a_warning(fake: FakeEngine, connect: Connect) -> None:
    fake.functions["remote::echo"] = lambda data: data
    iii = connect(fake.url)
    ref = iii.register_function("py::taken", lambda data: data)
    fake.send(
        {
            "type": "registrationrejected",
            "code": "FUNCTION_NAMESPACE_CONFLICT",
            "namespace": "default",
            "function_id": "py::taken",
            "owner_worker_id": "d9208edf-65bf-4ec2-aeee-5ebf286aaa90",
        }
    )
    wait_for(lambda: ref.rejection is not None, what="rejection recorded on the handle")
    assert ref.rejection is not None and ref.rejection.code == "FUNCTION_NAMESPACE_CONFLICT"
    assert iii.get_connection_state() == "connected"
    assert iii.trigger({"function_id": "remote::echo", "payload": 1}) == 1


class Webhook(BaseModel):
    url: str


class WebhookHandler(TriggerHandler[Webhook]):
    def __init__(self) -> None:
        self.active: dict[str, TriggerConfig[Webhook]] = {}
        self.removed: list[TriggerConfig[Webhook]] = []

    async def register_trigger(self, config: TriggerConfig[Webhook]) -> None:
        if config.config.url == "/refused":
            raise ValueError("refused by provider")
        self.active[config.id] = config

    async def unregister_trigger(self, config: TriggerConfig[Webhook]) -> None:
        self.removed.append(config)
        self.active.pop(config.id, None)


def test_trigger_type_provider(fake: FakeEngine, connect: Connect) -> None:
    handler = WebhookHandler()
    iii = connect(fake.url)
    ref = iii.register_trigger_type(
        {"id": "webhook", "description": "hooks", "trigger_request_format": Webhook}, handler
    )
    frame = fake.wait_for_frame(lambda r: r.type == "registertriggertype").frame
    assert frame["trigger_request_format"]["title"] == "Webhook"

    def bind(trigger_id: str, config: Any) -> dict[str, Any]:
        fake.send(
            {
                "type": "registertrigger",
                "id": trigger_id,
                "trigger_type": "webhook",
                "function_id": "py::hook",
                "config": config,
                "metadata": {"m": 1},
                "namespace": "orders",
            }
        )
        found: dict[str, Any] = fake.wait_for_frame(
            lambda r: r.type == "triggerregistrationresult" and r.frame["id"] == trigger_id
        ).frame
        return found

    assert "error" not in bind("t-ok", {"url": "/hook"})
    binding = handler.active["t-ok"]
    assert (
        binding.config == Webhook(url="/hook")
        and binding.metadata == {"m": 1}
        and binding.namespace == "orders"
    )
    refused = bind("t-refused", {"url": "/refused"})
    assert refused["error"] == {"code": "trigger_registration_failed", "message": "refused by provider"}
    invalid = bind("t-invalid", {"nope": 1})
    assert invalid["error"]["message"].startswith("validation failed for Webhook: url: Field required")
    fake.send({"type": "unregistertrigger", "id": "t-ok", "trigger_type": "webhook"})
    wait_for(lambda: handler.removed, what="unregister_trigger called")
    assert handler.removed[0].function_id == "py::hook" and "t-ok" not in handler.active
    trigger = ref.register_trigger("py::hook", Webhook(url="/x"))
    sent = fake.wait_for_frame(lambda r: r.type == "registertrigger" and r.frame["id"] == trigger.id).frame
    assert sent["trigger_type"] == "webhook" and sent["config"] == {"url": "/x"}
    ref.unregister()
    fake.wait_for_frame(lambda r: r.type == "unregistertriggertype")


def test_trigger_registration_error_is_recorded_on_the_handle(
    fake: FakeEngine, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    iii = connect(fake.url)
    trigger = iii.register_trigger(
        {"type": "cron", "function_id": "py::plain", "config": {"expression": "nope"}}
    )
    fake.wait_for_frame(lambda r: r.type == "registertrigger")
    assert trigger.status == "sent" and trigger.error is None
    with caplog.at_level(logging.WARNING, logger="iii_typed"):
        fake.send(
            {
                "type": "triggerregistrationresult",
                "id": trigger.id,
                "trigger_type": "cron",
                "function_id": "py::plain",
                "error": {"code": "trigger_registration_failed", "message": "Invalid cron expression 'nope'"},
            }
        )
        error = trigger.wait_for_error(5)
    assert error is not None and error.code == "trigger_registration_failed"
    assert trigger.status == "failed"
    assert any(trigger.id in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    trigger.unregister()
    assert trigger.status == "unregistered"
    fake.wait_for_frame(lambda r: r.type == "unregistertrigger" and r.frame["id"] == trigger.id)


def test_register_service_sends_registerservice(fake: FakeEngine, connect: Connect) -> None:
    iii = connect(fake.url)
    iii.register_service({"id": "payments", "description": "Payment processing"})
    iii.register_service(
        {"id": "payments::refunds", "description": "Refunds", "parent_service_id": "payments"}
    )
    wait_for(lambda: len(fake.frames(type="registerservice")) == 2)
    frames = [r.frame for r in fake.frames(type="registerservice")]
    assert frames[0] == {"type": "registerservice", "id": "payments", "description": "Payment processing"}
    assert frames[1]["parent_service_id"] == "payments"


def test_json_frames_are_compact_utf8(fake: FakeEngine, connect: Connect) -> None:
    fake.functions["remote::echo"] = lambda data: data
    connect(fake.url).trigger({"function_id": "remote::echo", "payload": {"名前": "Ada", "n": [1, 2]}})
    raw = next(r.raw for r in fake.frames(type="invokefunction") if r.frame["function_id"] == "remote::echo")
    assert "名前".encode() in raw and b", " not in raw and b": " not in raw
    assert json.loads(raw)["data"] == {"名前": "Ada", "n": [1, 2]}


def test_handshake_headers_token_and_no_compression(
    fake: FakeEngine, connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("III_TOKEN", "tok-123")
    connect(fake.url, headers={"X-Team": "payments"})
    headers = fake.connection(0).headers
    assert headers.get("Authorization") == "Bearer tok-123"
    assert headers.get("X-Team") == "payments"
    assert headers.get("Sec-WebSocket-Extensions") is None  # no permessage-deflate offered
    assert fake.connection(0).path == "/"


def test_blocking_async_handler_is_named_in_a_warning_and_sync_ones_do_not_stall(
    fake: FakeEngine, caplog: pytest.LogCaptureFixture
) -> None:
    release = threading.Event()

    def slow_sync(data: Any) -> str:
        release.wait(1.5)  # legit blocking work: runs on its own thread
        return "ok"

    async def slow_async(data: Any) -> str:
        threading.Event().wait(1.3)  # misbehaving: blocking work on the SDK loop
        return "ok"

    with register_worker(fake.url, fast_options(keepalive_interval_ms=None)) as iii:
        iii.register_function("t::slow_sync", slow_sync)
        iii.register_function("t::slow_async", slow_async)
        with caplog.at_level(logging.WARNING, logger="iii_typed"):
            results: list[dict[str, Any]] = []
            callers = [
                threading.Thread(target=lambda: results.append(fake.invoke("t::slow_sync", {})))
                for _ in range(2)
            ]
            started = time.monotonic()
            for caller in callers:
                caller.start()
            for caller in callers:
                caller.join(5)
            assert [r["result"] for r in results] == ["ok", "ok"]
            assert time.monotonic() - started < 2.5  # the two sync handlers ran side by side
            assert not [r for r in caplog.records if "blocked" in r.getMessage()]
            assert fake.invoke("t::slow_async", {})["result"] == "ok"
        warnings = [r.getMessage() for r in caplog.records if "blocked the SDK event loop" in r.getMessage()]
        assert len(warnings) == 1 and "'t::slow_async'" in warnings[0]
        assert len(fake.connections) == 1  # no reconnect
