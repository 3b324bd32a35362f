"""Typed stubs against real engine processes: live catalog = snapshot, calls end to end, drift.

Workers register functions whose schemas come from pydantic models (protocol.md §9), explicit
JSON Schema and none; the generated clients call them through the engine with ``trigger`` and
``trigger_async`` (protocol.md §4.1).
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import pytest
from iii_codegen.catalog import dump_snapshot, fetch_catalog, load_snapshot
from iii_codegen.cli import main
from iii_codegen.demo_catalog import demo_snapshot
from pydantic import BaseModel, Field, ValidationError
from support.stubgen import REPO, import_path
from support.waiting import wait_for

from iii_typed import (
    III,
    EnqueueResult,
    InitOptions,
    InvocationError,
    InvocationTimeoutError,
    ResponseValidationError,
    TriggerConfig,
    TriggerHandler,
    register_worker,
)
from iii_typed.engine.process import EngineProcess
from tests.support.official import shutdown_official


class LineItem(BaseModel):
    sku: str
    quantity: int = Field(ge=1)


class CreateOrder(BaseModel):
    customer: str = Field(min_length=1)
    items: list[LineItem]
    note: str | None = None


class Order(BaseModel):
    id: str
    customer: str
    items: list[LineItem]
    status: Literal["open", "cancelled"]
    created_at: datetime


class TickConfig(BaseModel):
    every_s: int


class TickPayload(BaseModel):
    n: int


TOTAL_SCHEMA = {"type": "object", "properties": {"total": {"type": "integer"}}, "required": ["total"]}


class Service:
    """The worker side: handlers that record what they received."""

    def __init__(self) -> None:
        self.received: list[Any] = []
        self.voided = threading.Event()
        self.release = threading.Event()

    def create(self, data: CreateOrder) -> Order:
        self.received.append(data)
        created = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
        return Order(id="o-1", customer=data.customer, items=data.items, status="open", created_at=created)

    def notify(self, data: CreateOrder) -> None:
        self.received.append(data)
        self.voided.set()

    def slow(self, data: Any) -> Any:
        self.release.wait(10)
        return data

    @staticmethod
    def broken_total(data: Any) -> Any:
        return {"total": "lots"}

    @staticmethod
    def fail(data: Any) -> Any:
        raise ValueError("no stock")


def _register(iii: III, service: Service) -> None:
    iii.register_function("shop::orders::create", service.create, description="Create an order.")
    iii.register_function("shop::orders::notify", service.notify)
    iii.register_function(
        "shop::slow", service.slow, request_format=TOTAL_SCHEMA, response_format=TOTAL_SCHEMA
    )
    iii.register_function("shop::total", service.broken_total, response_format=TOTAL_SCHEMA)
    iii.register_function("shop::fail", service.fail)
    iii.register_function("shop::untyped", lambda data: data)


def _options(name: str) -> InitOptions:
    return InitOptions(
        worker_name=name, reconnection_config={"initial_delay_ms": 50}, invocation_timeout_ms=10_000
    )


def _wait_registered(url: str, ids: set[str]) -> None:
    wait_for(
        lambda: ids <= {f.function_id for f in fetch_catalog(url).functions}, 10, what=f"{ids} registered"
    )


@pytest.fixture(scope="module")
def shop(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[EngineProcess, Service, III, ModuleType]]:
    tmp = tmp_path_factory.mktemp("shop")
    engine = EngineProcess(log_path=tmp / "engine.log").start()
    service = Service()
    worker = register_worker(engine.url, _options("shop-worker"))
    _register(worker, service)
    caller = register_worker(engine.url, _options("shop-caller"))
    try:
        _wait_registered(engine.url, {"shop::orders::create", "shop::untyped"})
        out = tmp / "shop_client.py"
        assert main(["generate", "--url", engine.url, "--functions", "shop::*", "-o", str(out)]) == 0
        yield engine, service, caller, import_path(out, "shop_client_live")
    finally:
        service.release.set()
        caller.shutdown()
        worker.shutdown()
        engine.stop()


def test_live_catalog_and_its_snapshot_generate_the_same_bytes(
    shop: tuple[EngineProcess, Service, III, ModuleType], tmp_path: Path
) -> None:
    engine = shop[0]
    snap = tmp_path / "catalog.json"
    assert main(["snapshot", "--url", engine.url, "-o", str(snap)]) == 0
    live, saved, shuffled = tmp_path / "live.py", tmp_path / "saved.py", tmp_path / "shuffled.py"
    assert main(["generate", "--url", engine.url, "-o", str(live)]) == 0
    assert main(["generate", "--snapshot", str(snap), "-o", str(saved)]) == 0
    data = json.loads(snap.read_text())
    random.Random(5).shuffle(data["functions"])
    data["functions"] = [dict(reversed(list(f.items()))) for f in data["functions"]]
    mixed = tmp_path / "mixed.json"
    mixed.write_text(json.dumps(data))
    assert main(["generate", "--snapshot", str(mixed), "-o", str(shuffled)]) == 0
    assert live.read_bytes() == saved.read_bytes() == shuffled.read_bytes()
    assert snap.read_text() == dump_snapshot(load_snapshot(mixed))
    text = snap.read_text()
    assert "shop-worker" in text and "shop-caller" not in text  # the caller registered nothing
    part = tmp_path / "part.json"
    assert main(["snapshot", "--url", engine.url, "--functions", "shop::orders::*", "-o", str(part)]) == 0
    kept = {f.function_id for f in load_snapshot(part).functions}
    assert kept == {"shop::orders::create", "shop::orders::notify"}


def test_sync_calls_validate_both_ways(shop: tuple[EngineProcess, Service, III, ModuleType]) -> None:
    _, service, caller, module = shop
    client = module.Client(caller)
    request = module.CreateOrder(customer="ada", items=[module.LineItem(sku="s-1", quantity=2)])
    order = client.shop.orders.create(request)
    assert isinstance(order, module.Order)
    assert order.created_at == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert (order.customer, order.items[0].quantity, order.status) == ("ada", 2, "open")
    # Unset optional fields are left out of the payload (not sent as null).
    assert service.received[-1] == CreateOrder(customer="ada", items=[LineItem(sku="s-1", quantity=2)])
    # A mapping is validated into the request model: a bad field never reaches the worker.
    before = len(service.received)
    with pytest.raises(ValidationError) as bad:
        client.shop.orders.create({"customer": "", "items": []})
    assert "customer" in str(bad.value)
    assert len(service.received) == before
    echoed = client.shop.untyped({"free": [1, "form"]})  # an open side passes through unchanged
    assert echoed["free"] == [1, "form"]  # (plus the engine's `_caller_worker_id`, protocol.md §4.3)


def test_response_that_violates_its_schema(shop: tuple[EngineProcess, Service, III, ModuleType]) -> None:
    _, _, caller, module = shop
    with pytest.raises(ResponseValidationError) as info:
        module.Client(caller).shop.total(None)
    assert info.value.function_id == "shop::total"
    assert info.value.errors[0]["loc"] == ("total",)
    assert "shop::total" in str(info.value) and "total" in str(info.value)


def test_errors_and_timeouts_propagate(shop: tuple[EngineProcess, Service, III, ModuleType]) -> None:
    _, service, caller, module = shop
    client = module.Client(caller)
    with pytest.raises(InvocationError) as failed:
        client.shop.fail(None)
    assert "no stock" in failed.value.message
    service.release.clear()
    with pytest.raises(InvocationTimeoutError):
        client.shop.slow(module.SlowInput(total=1), timeout_ms=200)
    service.release.set()


def test_void_call(shop: tuple[EngineProcess, Service, III, ModuleType]) -> None:
    _, service, caller, module = shop
    service.voided.clear()
    request = module.CreateOrder(customer="bob", items=[module.LineItem(sku="v", quantity=1)])
    assert module.Client(caller).shop.orders.notify.void(request) is None
    assert service.voided.wait(5)
    assert service.received[-1].customer == "bob"


async def test_async_client(shop: tuple[EngineProcess, Service, III, ModuleType]) -> None:
    _, service, caller, module = shop
    client = module.AsyncClient(caller)
    order = await client.shop.orders.create(
        module.CreateOrder(customer="amy", items=[module.LineItem(sku="a", quantity=3)], note="gift")
    )
    assert isinstance(order, module.Order) and order.customer == "amy"
    assert service.received[-1].note == "gift"
    with pytest.raises(ResponseValidationError):
        await client.shop.total(None)
    service.voided.clear()
    request = module.CreateOrder(customer="eve", items=[module.LineItem(sku="v", quantity=1)])
    assert await client.shop.orders.notify.void(request) is None
    assert service.voided.wait(5)


def test_stubs_work_over_the_official_client(shop: tuple[EngineProcess, Service, III, ModuleType]) -> None:
    import iii as official  # iii-sdk 0.25: the generated client only needs trigger/trigger_async

    engine, service, _, module = shop
    other = official.register_worker(engine.url)
    try:
        client = module.Client(other)
        order = client.shop.orders.create(
            module.CreateOrder(customer="off", items=[module.LineItem(sku="o", quantity=1)])
        )
        assert isinstance(order, module.Order) and order.customer == "off"
        service.voided.clear()
        client.shop.orders.notify.void(
            module.CreateOrder(customer="fire", items=[module.LineItem(sku="f", quantity=1)])
        )
        assert service.voided.wait(5)
        assert service.received[-1].customer == "fire"
        with pytest.raises(ResponseValidationError):
            # Not None: SDK 0.25 leaves `data` out for a None payload, which the engine refuses
            # (protocol.md §2.8); our SDK always sends it.
            client.shop.total({})
    finally:
        shutdown_official(other)


def test_enqueue_goes_through_the_queue_provider(fresh_engine: EngineProcess, tmp_path: Path) -> None:
    """Action ``enqueue`` reaches ``engine::queue::enqueue`` (protocol.md §4.1) and the job runs.

    The engine's built-in queue provides it when enabled; otherwise a worker plays the provider
    and records what the engine hands it.
    """
    runs: list[Any] = []
    enqueued: list[Any] = []
    worker = register_worker(fresh_engine.url, _options("jobs-worker"))
    caller = register_worker(fresh_engine.url, _options("enqueue-caller"))
    try:
        builtin = any(
            f.function_id == "engine::queue::enqueue" for f in fetch_catalog(fresh_engine.url).functions
        )
        if not builtin:
            worker.register_function("engine::queue::enqueue", lambda data: enqueued.append(data) or {})
        worker.register_function(
            "jobs::run", lambda data: runs.append(data) or data, request_format=TOTAL_SCHEMA
        )
        _wait_registered(fresh_engine.url, {"jobs::run"})
        out = tmp_path / "jobs_client.py"
        assert main(["generate", "--url", fresh_engine.url, "--functions", "jobs::*", "-o", str(out)]) == 0
        module = import_path(out, "jobs_client_live")
        receipt = module.Client(caller).jobs.run.enqueue(module.RunInput(total=7), queue="default")
        assert isinstance(receipt, EnqueueResult) and receipt.message_receipt_id
        if builtin:
            wait_for(lambda: runs, 10, what="the queued job to run")
            assert runs[0]["total"] == 7
        else:
            wait_for(lambda: enqueued, 5, what="the provider to be called")
            assert enqueued[0]["queue"] == "default" and enqueued[0]["function_id"] == "jobs::run"
            assert enqueued[0]["data"] == {"total": 7}
            assert enqueued[0]["messageReceiptId"] == receipt.message_receipt_id
    finally:
        caller.shutdown()
        worker.shutdown()


class TickProvider(TriggerHandler[TickConfig]):
    def __init__(self) -> None:
        self.bindings: list[TriggerConfig[TickConfig]] = []

    async def register_trigger(self, config: TriggerConfig[TickConfig]) -> None:
        self.bindings.append(config)

    async def unregister_trigger(self, config: TriggerConfig[TickConfig]) -> None:
        return None


def test_trigger_helper_registers_a_typed_handler(fresh_engine: EngineProcess, tmp_path: Path) -> None:
    provider_handler = TickProvider()
    provider = register_worker(fresh_engine.url, _options("tick-provider"))
    consumer = register_worker(fresh_engine.url, _options("tick-consumer"))
    try:
        provider.register_trigger_type(
            {
                "id": "clock::tick",
                "description": "Fires every few seconds.",
                "trigger_request_format": TickConfig,
                "call_request_format": TickPayload,
            },
            provider_handler,
        )
        wait_for(
            lambda: any(t.id == "clock::tick" for t in fetch_catalog(fresh_engine.url).trigger_types), 10
        )
        out = tmp_path / "clock_client.py"
        assert main(["generate", "--url", fresh_engine.url, "--triggers", "clock::*", "-o", str(out)]) == 0
        module = import_path(out, "clock_client_live")
        seen: list[Any] = []

        def on_tick(payload: Any) -> dict[str, int]:
            seen.append(payload)
            return {"doubled": payload.n * 2}

        client = module.Client(consumer)
        client.clock.on_tick("clock::on-tick", on_tick, module.TickConfig(every_s=5))
        wait_for(lambda: provider_handler.bindings, 10, what="the binding to reach the provider")
        binding = provider_handler.bindings[0]
        assert binding.function_id == "clock::on-tick"
        assert binding.config == TickConfig(every_s=5)
        result = provider.trigger({"function_id": binding.function_id, "payload": {"n": 21}})
        assert result == {"doubled": 42}
        assert type(seen[0]).__name__ == "TickPayload" and seen[0].n == 21
        with pytest.raises(InvocationError):
            provider.trigger({"function_id": binding.function_id, "payload": {"n": "not a number"}})
    finally:
        consumer.shutdown()
        provider.shutdown()


def test_check_detects_a_changed_schema(fresh_engine: EngineProcess, tmp_path: Path) -> None:
    worker = register_worker(fresh_engine.url, _options("drift-worker"))
    try:
        worker.register_function("drift::f", lambda d: d, request_format=TOTAL_SCHEMA)
        _wait_registered(fresh_engine.url, {"drift::f"})
        out = tmp_path / "drift_client.py"
        assert main(["generate", "--url", fresh_engine.url, "-o", str(out)]) == 0
        assert main(["generate", "--url", fresh_engine.url, "-o", str(out), "--check"]) == 0
    finally:
        worker.shutdown()
    changed = {**TOTAL_SCHEMA, "properties": {"total": {"type": "string"}}}
    worker = register_worker(fresh_engine.url, _options("drift-worker-2"))
    try:
        worker.register_function("drift::f", lambda d: d, request_format=changed)
        worker.register_function("drift::g", lambda d: d)
        wait_for(
            lambda: any(
                f.function_id == "drift::f" and f.request_schema == changed
                for f in fetch_catalog(fresh_engine.url).functions
            ),
            10,
        )
        assert main(["generate", "--url", fresh_engine.url, "-o", str(out), "--check"]) == 1
    finally:
        worker.shutdown()


def test_check_output_names_the_change(
    fresh_engine: EngineProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    worker = register_worker(fresh_engine.url, _options("report-worker"))
    try:
        worker.register_function("rep::a", lambda d: d, request_format=TOTAL_SCHEMA)
        _wait_registered(fresh_engine.url, {"rep::a"})
        snap = tmp_path / "before.json"
        assert main(["snapshot", "--url", fresh_engine.url, "-o", str(snap)]) == 0
        out = tmp_path / "rep.py"
        assert main(["generate", "--snapshot", str(snap), "-o", str(out)]) == 0
        worker.register_function("rep::b", lambda d: d)
        _wait_registered(fresh_engine.url, {"rep::b"})
        capsys.readouterr()
        assert main(["generate", "--url", fresh_engine.url, "-o", str(out), "--check"]) == 1
        assert "appeared: function rep::b" in capsys.readouterr().out
    finally:
        worker.shutdown()


def test_a_function_with_an_unusable_schema_does_not_break_generation(
    fresh_engine: EngineProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Another worker's garbage schemas make only that function's sides ``Any`` (with warnings)."""
    worker = register_worker(fresh_engine.url, _options("garbage-worker"))
    try:
        worker.register_function(
            "garbage::broken",
            lambda d: d,
            request_format={"type": "object", "properties": 5},
            response_format={"type": "object", "title": 5, "properties": {"total": {"type": "integer"}}},
        )
        worker.register_function(
            "garbage::fine", lambda d: d, request_format=TOTAL_SCHEMA, response_format=TOTAL_SCHEMA
        )
        _wait_registered(fresh_engine.url, {"garbage::broken", "garbage::fine"})
        out = tmp_path / "garbage_client.py"
        argv = ["generate", "--url", fresh_engine.url, "--functions", "garbage::*", "-o", str(out)]
        capsys.readouterr()
        assert main(argv) == 0
        assert capsys.readouterr().err.splitlines() == [
            f"warning: {out}: function garbage::broken (request): not a usable JSON Schema"
            " (#/properties is an integer, not an object): typed Any",
            f"warning: {out}: function garbage::broken (response): datamodel-code-generator cannot generate"
            " it (title: Input should be a valid string (got 5)): typed Any",
        ]
        source = out.read_text()
        assert "    broken: _stubs.Function[Any, Any] = _stubs.Function(" in source
        assert "    fine: _stubs.Function[FineInput, FineResult] = _stubs.Function(" in source
        module = import_path(out, "garbage_client_live")
        client = module.Client(worker)
        result = client.garbage.fine(module.FineInput(total=3))
        assert isinstance(result, module.FineResult) and result.total == 3
        assert client.garbage.broken({"free": "form"})["free"] == "form"  # Any passes through
        assert main([*argv, "--check"]) == 0
    finally:
        worker.shutdown()


def test_unreachable_engine_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with EngineProcess() as engine:
        url = engine.url
    code = main(["snapshot", "--url", url, "-o", str(tmp_path / "x.json")])
    assert code == 2
    assert "cannot" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_committed_example_catalog_matches_the_live_demo() -> None:
    committed = load_snapshot(REPO / "examples" / "catalog.json")
    assert dump_snapshot(demo_snapshot(REPO)) == dump_snapshot(committed), "run `make catalog` and commit"
