"""Fixtures of the dashboard tests: real SDK workers on the shared engine, pilot helpers."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest
from iii_tui.app import IIIApp
from iii_tui.snapshot import rendered_text
from iii_tui.source import EngineSource
from pydantic import BaseModel

from iii_typed import III, InitOptions, register_worker
from iii_typed.engine.process import EngineProcess
from tests.support.waiting import wait_for_async

FAST = {
    "functions": 0.3,
    "workers": 0.3,
    "triggers": 0.5,
    "health": 0.5,
    "metrics": 0.5,
    "traces": 0.3,
    "logs": 0.3,
    "channels": 0.5,
    "streams": 0.5,
    "queues": 0.5,
}


class Address(BaseModel):
    city: str
    zip: str | None = None


class OrderIn(BaseModel):
    name: str
    qty: int = 1
    kind: Literal["standard", "express"] = "standard"
    gift: bool = False
    address: Address


@dataclass
class OrdersWorker:
    """A real worker (our SDK) serving ``<prefix>::create`` and ``<prefix>::fail``."""

    client: III
    prefix: str
    name: str
    calls: list[Any] = field(default_factory=list)

    @property
    def create(self) -> str:
        return f"{self.prefix}::create"


@pytest.fixture
def orders_worker(engine: EngineProcess) -> Iterator[OrdersWorker]:
    tag = uuid.uuid4().hex[:6]
    name = f"orders-{tag}"
    client = register_worker(
        engine.url,
        InitOptions(worker_name=name, reconnection_config={"initial_delay_ms": 100, "max_delay_ms": 500}),
    )
    worker = OrdersWorker(client, f"shop{tag}", name)

    def create(data: OrderIn) -> dict[str, Any]:
        worker.calls.append(data.model_dump())
        return {"id": f"o-{len(worker.calls)}", "name": data.name, "qty": data.qty}

    def fail(data: dict[str, Any]) -> None:
        raise RuntimeError("boom")

    client.register_function(worker.create, create, description="create an order")
    client.register_function(f"{worker.prefix}::fail", fail, description="always fails")
    yield worker
    client.shutdown()


def make_app(url: str, **kwargs: Any) -> IIIApp:
    """A dashboard on a live engine with short poll intervals."""
    readonly = kwargs.pop("readonly", False)
    retry = kwargs.pop("missing_retry_s", 10.0)
    source = EngineSource(
        url,
        readonly=readonly,
        intervals=FAST,
        reconnect_initial_ms=100,
        reconnect_max_ms=500,
        missing_retry_s=retry,
    )
    app = IIIApp(source, readonly=readonly, flush_interval=0.05, **kwargs)
    app.animation_level = "none"
    return app


async def wait_text(app: IIIApp, needle: str, timeout: float = 10.0) -> str:
    """Wait until the screen shows ``needle``; returns the screen text."""
    await wait_for_async(lambda: needle in rendered_text(app), timeout, 0.02, f"{needle!r} on screen")
    return rendered_text(app)


async def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    """Bounded, condition-based wait (cases.md B19)."""
    return await wait_for_async(predicate, timeout, 0.02, what)
