"""Handler inspection and execution (typed input, metadata sidecar, results, errors) without sockets."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field

from iii_typed import current_invocation
from iii_typed._handlers import HandlerSpec, run_async, run_sync
from iii_typed.protocol.frames import MAX_MESSAGE_BYTES, InvokeFunction


class GreetInput(BaseModel):
    name: str
    age: int = 0


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str


class Out(BaseModel):
    message: str
    receipt: str = Field(default="r1", alias="receiptId")


def _frame(data: Any, metadata: Any = None, *, void: bool = False) -> InvokeFunction:
    frame = InvokeFunction(type="invokefunction", function_id="py::f", data=data)
    if not void:
        frame.invocation_id = uuid.uuid4()
    if metadata is not None:
        frame.metadata = metadata
    return frame


def _no_loop(_: Any) -> Any:
    raise AssertionError("not expected")


def _run(fn: Any, data: Any, metadata: Any = None) -> dict[str, Any]:
    out = run_sync(HandlerSpec.of("py::f", fn), _frame(data, metadata), data, _no_loop)
    assert out is not None
    decoded: dict[str, Any] = json.loads(out)
    return decoded


def test_spec_detects_async_model_and_metadata() -> None:
    async def a(data: GreetInput, metadata: dict[str, Any]) -> None: ...

    def b(data: dict[str, Any], *, metadata: Any = None) -> None: ...

    def c(data, *args, **kwargs): ...

    def d(data: Any, other: Any, metadata: Any) -> None: ...

    spec = HandlerSpec.of("x", a)
    assert spec.is_async and spec.model is GreetInput and spec.metadata == "positional"
    spec = HandlerSpec.of("x", b)
    assert not spec.is_async and spec.model is None and spec.metadata == "keyword"
    assert HandlerSpec.of("x", c).metadata is None
    assert HandlerSpec.of("x", d).metadata == "keyword"
    with pytest.raises(TypeError, match="callable"):
        HandlerSpec.of("x", 42)


def test_typed_handler_receives_a_validated_model() -> None:
    seen: list[Any] = []

    def greet(data: GreetInput) -> Out:
        seen.append(data)
        return Out(message=f"hi {data.name}")

    frame = _run(greet, {"name": "Ada", "_caller_worker_id": "w-1"})
    assert isinstance(seen[0], GreetInput) and seen[0].name == "Ada"
    assert frame["result"] == {"message": "hi Ada", "receiptId": "r1"}  # JSON mode, by alias, defaults kept


def test_engine_caller_key_does_not_break_strict_models() -> None:
    def strict(data: Strict) -> str:
        return data.name

    assert _run(strict, {"name": "Ada", "_caller_worker_id": "w-1"})["result"] == "Ada"


def test_validation_failure_names_model_fields_and_messages() -> None:
    def greet(data: GreetInput) -> str:
        return data.name

    frame = _run(greet, {"age": "old"})
    assert frame["error"]["code"] == "invocation_failed"
    message = frame["error"]["message"]
    assert message.startswith("validation failed for GreetInput: ")
    assert "name: Field required" in message and "age: Input should be a valid integer" in message


def test_metadata_sidecar_and_context() -> None:
    def meta(data: Any, metadata: Any) -> dict[str, Any]:
        ctx = current_invocation()
        assert ctx is not None
        return {"data": data, "metadata": metadata, "fid": ctx.function_id, "caller": ctx.caller_worker_id}

    frame = _run(meta, {"x": 1, "_caller_worker_id": "w-9"}, {"session_id": "s_1"})
    assert frame["result"] == {
        "data": {"x": 1, "_caller_worker_id": "w-9"},
        "metadata": {"session_id": "s_1"},
        "fid": "py::f",
        "caller": "w-9",
    }
    assert current_invocation() is None


def test_exceptions_become_invocation_failed_with_stacktrace() -> None:
    def boom(data: Any) -> None:
        raise RuntimeError("kaboom")

    def interrupt(data: Any) -> None:
        raise KeyboardInterrupt("stop")

    error = _run(boom, {})["error"]
    assert error["code"] == "invocation_failed" and error["message"] == "kaboom"
    assert error["stacktrace"].startswith("Traceback") and "RuntimeError: kaboom" in error["stacktrace"]
    assert _run(interrupt, {})["error"]["message"] == "KeyboardInterrupt: stop"


def test_none_result_is_null_and_unserialisable_result_is_an_error() -> None:
    frame = _run(lambda data: None, {})
    assert "result" in frame and frame["result"] is None and "error" not in frame
    error = _run(lambda data: {"s": object()}, {})["error"]
    assert error["code"] == "invocation_failed" and "not JSON-serialisable" in error["message"]


def test_void_invocations_produce_no_frame() -> None:
    spec = HandlerSpec.of("py::f", lambda data: 1)
    assert run_sync(spec, _frame({}, void=True), {}, _no_loop) is None


async def test_async_handlers_run_with_context() -> None:
    async def handler(data: GreetInput) -> str:
        await asyncio.sleep(0)
        ctx = current_invocation()
        return f"{data.name}@{ctx.function_id if ctx else None}"

    frame = _frame({"name": "Bo"})
    out = await run_async(HandlerSpec.of("py::f", handler), frame, frame.data)
    assert out is not None and json.loads(out)["result"] == "Bo@py::f"


def test_unresolvable_annotations_are_reported(caplog: pytest.LogCaptureFixture) -> None:
    def handler(data: NotDefinedAnywhere) -> None:  # noqa: F821
        return None

    with caplog.at_level("WARNING", logger="iii_typed"):
        spec = HandlerSpec.of("py::f", handler)
    assert spec.model is None
    assert any("py::f" in r.getMessage() and "NotDefinedAnywhere" in r.getMessage() for r in caplog.records)


def test_models_defined_in_a_local_scope_resolve_with_its_locals() -> None:
    class Local(BaseModel):
        x: int

    def handler(data: Local) -> int:
        return data.x

    assert HandlerSpec.of("py::f", handler).model is None  # string annotation, no locals given
    assert HandlerSpec.of("py::f", handler, {"Local": Local}).model is Local


def test_oversized_results_are_replaced_by_a_payload_too_large_error() -> None:
    error = _run(lambda data: "x" * (MAX_MESSAGE_BYTES + 1), {})["error"]
    assert error["code"] == "payload_too_large" and "64 MiB" in error["message"]
