"""Golden frames (protocol.md §13): what our SDK emits equals the captured worker→engine frames.

Each case drives the SDK against the recording fake engine and compares the frame structurally:
the same keys and values, except run-specific values (ids, pid, os, versions, names) which are
compared by shape. Decisions "Wire" applies: ``data``/``config`` are always sent (G17, G24); the
observe family (G11, G35-G41) and the ``observe.v1``/``local-dispatch.v1`` features are out of
scope; ``traceparent``/``baggage`` come from the telemetry layer and are optional here.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, Optional, TypedDict

import pytest
from pydantic import BaseModel, Field

from iii_typed import (
    III,
    HttpAuthHmac,
    HttpInvocationConfig,
    InitOptions,
    TriggerAction,
    TriggerConfig,
    TriggerHandler,
)
from tests.integration.sdk.sdk_support import fast_options, load_golden
from tests.support.fake_engine import FakeEngine, Received

GOLDEN = load_golden()

#: Values compared by shape only (run-specific).
SHAPE_PATHS = {
    "id",
    "invocation_id",
    "previous_worker_id",
    "reattach_token",
    "data.version",
    "data.name",
    "data.os",
    "data.pid",
    "data.telemetry.language",
    "data.telemetry.project_name",
    "data.telemetry.framework",
    "error.stacktrace",
    "traceparent",
}
#: Keys that may be absent from our frame (telemetry not active).
OPTIONAL = {"traceparent", "baggage"}


def assert_same_structure(expected: Any, actual: Any, path: str = "") -> None:
    where = path or "<frame>"
    if path in SHAPE_PATHS:
        assert type(actual) is type(expected), f"{where}: {actual!r} is not shaped like {expected!r}"
        if path.endswith(("invocation_id", "worker_id", "reattach_token")) or (
            path == "id" and _is_uuid(expected)
        ):
            assert _is_uuid(actual), f"{where}: {actual!r} is not a UUID"
        return
    if path == "data.features":
        assert isinstance(actual, list) and all(isinstance(f, str) for f in actual)
        assert not [f for f in actual if f.startswith(("observe", "local-dispatch"))]
        return
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: expected an object, got {actual!r}"
        missing = set(expected) - set(actual) - {k for k in expected if _join(path, k) in OPTIONAL}
        extra = set(actual) - set(expected)
        assert not missing and not extra, f"{where}: missing {missing}, unexpected {extra}"
        for key, value in expected.items():
            if key in actual:
                assert_same_structure(value, actual[key], _join(path, key))
        return
    if isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), (
            f"{where}: {actual!r} != {expected!r}"
        )
        for index, (e, a) in enumerate(zip(expected, actual, strict=True)):
            assert_same_structure(e, a, f"{path}[{index}]")
        return
    assert actual == expected and type(actual) is type(expected), f"{where}: {actual!r} != {expected!r}"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def _golden(label: str) -> dict[str, Any]:
    frame: dict[str, Any] = dict(GOLDEN[label])
    if label == "G17":
        frame["config"] = {}  # decisions "Wire": always send config
    if label == "G24":
        frame["data"] = None  # decisions "Wire": always send data
    return frame


def _next(
    fake: FakeEngine, kind: str, where: Callable[[dict[str, Any]], bool] = lambda f: True
) -> dict[str, Any]:
    found: Received = fake.wait_for_frame(lambda r: r.type == kind and where(r.frame))
    frame: dict[str, Any] = found.frame
    return frame


class GreetInput(BaseModel):
    name: str
    age: Optional[int] = None  # noqa: UP045 - spelled as in the captured probe
    tags: list[str] = Field(default_factory=list, description="tags")


class GreetOutput(BaseModel):
    message: str


class TD(TypedDict):
    a: int


class ProbeHandler(TriggerHandler[Any]):
    async def register_trigger(self, config: TriggerConfig[Any]) -> None:
        if config.config.get("bad"):
            raise ValueError("invalid config")

    async def unregister_trigger(self, config: TriggerConfig[Any]) -> None:
        return None


# -- producers: each returns the frame our SDK emitted for one golden case ----------------------


def g02(fake: FakeEngine, connect: Callable[..., III]) -> dict[str, Any]:
    connect(fake.url, fast_options(worker_name="probe-worker", worker_description="A probe worker"))
    return _next(fake, "invokefunction", lambda f: f["function_id"] == "engine::workers::register")


def g03(fake: FakeEngine, connect: Callable[..., III]) -> dict[str, Any]:
    connect(fake.url, fast_options(worker_name="obs-worker", namespace="orders"))
    return _next(fake, "invokefunction", lambda f: f["function_id"] == "engine::workers::register")


def _register(
    fake: FakeEngine, connect: Callable[..., III], fid: str, *args: Any, **kwargs: Any
) -> dict[str, Any]:
    connect(fake.url).register_function(fid, *args, **kwargs)
    return _next(fake, "registerfunction", lambda f: f["id"] == fid)


def g04(fake: FakeEngine, connect: Callable[..., III]) -> dict[str, Any]:
    return _register(fake, connect, "py::plain", lambda data: data)


def g05(fake: FakeEngine, connect: Callable[..., III]) -> dict[str, Any]:
    def typed(data: GreetInput) -> GreetOutput:
        return GreetOutput(message=f"hi {data.name}")

    return _register(fake, connect, "py::typed", typed, description="typed fn", metadata={"public": True})


def g06(fake: FakeEngine, connect: Callable[..., III]) -> dict[str, Any]:
    def td(data: TD) -> TD:
        return data

    return _register(fake, connect, "py::td", td)


def g07(fake: FakeEngine, connect: Callable[..., III]) -> dict[str, Any]:
    def prim(x: int) -> list[str]:
        return [str(x)]

    return _register(fake, connect, "py::prim", prim)


def g08(fake: FakeEngine, connect: Callable[..., III]) -> dict[str, Any]:
    def opt(x: Optional[str]) -> dict[str, int]:  # noqa: UP045
        return {}

    return _register(fake, connect, "py::opt", opt)


def g09(fake: FakeEngine, connect: Callable[..., III]) -> dict[str, Any]:
    def nothing(x: dict) -> None:
        return None

    return _register(fake, connect, "py::nothing", nothing)


def g10(fake: FakeEngine, connect: Callable[..., III]) -> dict[str, Any]:
    config = HttpInvocationConfig(
        url="https://example.com/fn",
        method="POST",
        timeout_ms=5000,
        headers={"x-a": "b"},
        auth=HttpAuthHmac(secret_key="MY_SECRET"),
    )
    return _register(fake, connect, "py::http_ext", config)


def g12(fake: FakeEngine, connect: Callable[..., III]) -> dict[str, Any]:
    iii = connect(fake.url)
    ref = iii.register_function("f1", lambda data: data)
    _next(fake, "registerfunction", lambda f: f["id"] == "f1")
    ref.unregister()
    return _next(fake, "unregisterfunction")


def g13(fake: FakeEngine, connect: Callable[..., III]) -> dict[str, Any]:
    connect(fake.url).register_trigger_type({"id": "tt", "description": "d"}, ProbeHandler())
    return _next(fake, "registertriggertype")


def g14(fake: FakeEngine, connect: Callable[..., III]) -> dict[str, Any]:
    iii = connect(fake.url)
    iii.register_trigger_type({"id": "tt", "description": "d"}, ProbeHandler())
    _next(fake, "registertriggertype")
    iii.unregister_trigger_type({"id": "tt", "namespace": "orders"})
    return _next(fake, "unregistertriggertype")


def g15(fake: FakeEngine, connect: Callable[..., III]) -> dict[str, Any]:
    connect(fake.url).register_trigger(
        {"type": "http", "function_id": "py::plain", "config": {"api_path": "/plain", "http_method": "GET"}}
    )
    return _next(fake, "registertrigger")


def g16(fake: FakeEngine, connect: Callable[..., III]) -> dict[str, Any]:
    connect(fake.url).register_trigger(
        {
            "type": "cron",
            "function_id": "py::plain",
            "config": {"expression": "0 * * * * *"},
            "metadata": {"m": 1},
            "namespace": "default",
            "trigger_namespace": "default",
        }
    )
    return _next(fake, "registertrigger")


def g17(fake: FakeEngine, connect: Callable[..., III]) -> dict[str, Any]:
    connect(fake.url).register_trigger({"type": "http", "function_id": "f"})
    return _next(fake, "registertrigger")


def g18(fake: FakeEngine, connect: Callable[..., III]) -> dict[str, Any]:
    trigger = connect(fake.url).register_trigger({"type": "http", "function_id": "f"})
    _next(fake, "registertrigger")
    trigger.unregister()
    frame = _next(fake, "unregistertrigger")
    assert frame["id"] == trigger.id
    return frame


def _call(fake: FakeEngine, connect: Callable[..., III], request: dict[str, Any]) -> dict[str, Any]:
    fake.functions[request["function_id"]] = lambda data: data
    connect(fake.url).trigger(request)
    return _next(fake, "invokefunction", lambda f: f["function_id"] == request["function_id"])


def g19(fake: FakeEngine, connect: Callable[..., III]) -> dict[str, Any]:
    return _call(fake, connect, {"function_id": "remote::echo", "payload": {"a": 1}})


def g20(fake: FakeEngine, connect: Callable[..., III]) -> dict[str, Any]:
    request = {
        "function_id": "remote::echo",
        "payload": {"a": 2},
        "metadata": {"m": "x"},
        "namespace": "orders",
    }
    return _call(fake, connect, request)


def g21(fake: FakeEngine, connect: Callable[..., III]) -> dict[str, Any]:
    request = {"function_id": "remote::echo", "payload": {"a": 3}, "action": TriggerAction.Void()}
    return _call(fake, connect, request)


def g22(fake: FakeEngine, connect: Callable[..., III]) -> dict[str, Any]:
    request = {
        "function_id": "remote::echo",
        "payload": {"a": 4},
        "action": TriggerAction.Enqueue(queue="jobs"),
    }
    return _call(fake, connect, request)


def g23(fake: FakeEngine, connect: Callable[..., III]) -> dict[str, Any]:
    return _call(fake, connect, {"function_id": "engine::functions::list", "payload": {}})


def g24(fake: FakeEngine, connect: Callable[..., III]) -> dict[str, Any]:
    return _call(fake, connect, {"function_id": "remote::noresult"})


def g25(fake: FakeEngine, connect: Callable[..., III]) -> dict[str, Any]:
    return _call(fake, connect, {"function_id": "engine::channels::create", "payload": {"buffer_size": 16}})


def g26(fake: FakeEngine, connect: Callable[..., III]) -> dict[str, Any]:
    request = {
        "function_id": "f",
        "payload": {"x": 1},
        "metadata": {"m": 1},
        "action": {"type": "enqueue", "queue": "q"},
        "namespace": "ns",
    }
    return _call(fake, connect, request)


def _serve(
    fake: FakeEngine, connect: Callable[..., III], fid: str, handler: Any, data: Any, metadata: Any = None
) -> dict[str, Any]:
    connect(fake.url).register_function(fid, handler)
    _next(fake, "registerfunction", lambda f: f["id"] == fid)
    return fake.invoke(fid, data, metadata=metadata)


def g27(fake: FakeEngine, connect: Callable[..., III]) -> dict[str, Any]:
    def typed(data: GreetInput) -> GreetOutput:
        return GreetOutput(message=f"hi {data.name}")

    return _serve(fake, connect, "py::typed", typed, {"_caller_worker_id": str(uuid.uuid4()), "name": "Ada"})


def g28(fake: FakeEngine, connect: Callable[..., III]) -> dict[str, Any]:
    def meta(data: Any, metadata: Any) -> Any:
        return {"data": data, "metadata": metadata}

    return _serve(fake, connect, "py::meta", meta, {"x": 1}, metadata={"session_id": "s_1"})


def g29(fake: FakeEngine, connect: Callable[..., III]) -> dict[str, Any]:
    return _serve(fake, connect, "py::none_result", lambda data: None, {})


def g30(fake: FakeEngine, connect: Callable[..., III]) -> dict[str, Any]:
    def boom(data: Any) -> None:
        raise RuntimeError("kaboom")

    frame = _serve(fake, connect, "py::boom", boom, {})
    assert frame["error"]["stacktrace"].startswith("Traceback (most recent call last):\n")
    return frame


def g31(fake: FakeEngine, connect: Callable[..., III]) -> dict[str, Any]:
    connect(fake.url)
    return fake.invoke("does::not::exist", {})


def g32(fake: FakeEngine, connect: Callable[..., III]) -> dict[str, Any]:
    return _serve(fake, connect, "py::http_ext", HttpInvocationConfig(url="https://example.com/fn"), {})


def _bind(fake: FakeEngine, connect: Callable[..., III], trigger_id: str, config: Any) -> dict[str, Any]:
    connect(fake.url).register_trigger_type({"id": "probe::tt", "description": "d"}, ProbeHandler())
    _next(fake, "registertriggertype")
    fake.send(
        {
            "type": "registertrigger",
            "id": trigger_id,
            "trigger_type": "probe::tt",
            "function_id": "py::plain",
            "config": config,
            "metadata": {"m": 1},
        }
    )
    return _next(fake, "triggerregistrationresult", lambda f: f["id"] == trigger_id)


def g33(fake: FakeEngine, connect: Callable[..., III]) -> dict[str, Any]:
    return _bind(fake, connect, "trig-1", {"a": 1})


def g34(fake: FakeEngine, connect: Callable[..., III]) -> dict[str, Any]:
    return _bind(fake, connect, "trig-2", {"bad": True})


def g01(fake: FakeEngine, connect: Callable[..., III]) -> dict[str, Any]:
    iii = connect(fake.url)
    first = fake.connection(0)
    fake.close_connections(1001)
    fake.wait_for_connections(2)
    frame = _next(fake, "reattach")
    assert frame["previous_worker_id"] == first.worker_id and frame["reattach_token"] == first.reattach_token
    assert iii.worker_id is not None
    return frame


PRODUCERS: dict[str, Callable[[FakeEngine, Callable[..., III]], dict[str, Any]]] = {
    name.upper(): fn
    for name, fn in dict(globals()).items()
    if len(name) == 3 and name[0] == "g" and callable(fn)
}
IN_SCOPE = [f"G{n:02d}" for n in range(1, 35) if n != 11]


def test_every_in_scope_worker_frame_has_a_case() -> None:
    assert sorted(PRODUCERS) == IN_SCOPE


@pytest.mark.parametrize("label", IN_SCOPE)
def test_golden_frame(label: str, fake: FakeEngine, connect: Callable[..., III]) -> None:
    actual = PRODUCERS[label](fake, connect)
    assert_same_structure(_golden(label), actual)


def test_golden_comparison_catches_differences() -> None:
    expected = _golden("G19")
    with pytest.raises(AssertionError):
        assert_same_structure(expected, {**expected, "data": {"a": 2}})
    with pytest.raises(AssertionError):
        assert_same_structure(expected, {**expected, "namespace": "x"})
    with pytest.raises(AssertionError):
        assert_same_structure(expected, {**expected, "invocation_id": "not-a-uuid"})
    missing_data = {k: v for k, v in expected.items() if k != "data"}
    with pytest.raises(AssertionError):
        assert_same_structure(expected, missing_data)


def test_init_options_are_unchanged_by_connecting(fake: FakeEngine, connect: Callable[..., III]) -> None:
    options = InitOptions(worker_name="same")
    connect(fake.url, options)
    assert options.worker_name == "same" and options.namespace is None
