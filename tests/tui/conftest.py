"""Fixtures of the dashboard tests: real SDK workers on the shared engine, pilot helpers."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
from iii_tui.app import IIIApp
from iii_tui.snapshot import rendered_text
from iii_tui.source import EngineSource
from pydantic import BaseModel

from iii_typed import III, InitOptions, register_worker
from iii_typed.engine.process import EngineProcess
from tests.support.waiting import FACTOR, wait_for, wait_for_async

HERE = Path(__file__).parent
ROOT = HERE.parents[1]

#: Environment of a worker process with telemetry on and short flush intervals.
TELEMETRY_ENV = {
    "OTEL_ENABLED": "true",
    "OTEL_SPANS_FLUSH_INTERVAL_MS": "20",
    "OTEL_LOGS_FLUSH_INTERVAL_MS": "20",
}

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
    """A dashboard on a live engine with short poll intervals (``intervals`` overrides some;
    ``source_options`` are more :class:`EngineSource` arguments)."""
    readonly = kwargs.pop("readonly", False)
    retry = kwargs.pop("missing_retry_s", 10.0)
    intervals = {**FAST, **kwargs.pop("intervals", {})}
    source = EngineSource(
        url,
        readonly=readonly,
        intervals=intervals,
        reconnect_initial_ms=100,
        reconnect_max_ms=500,
        missing_retry_s=retry,
        **kwargs.pop("source_options", {}),
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


@dataclass
class TelemetryWorker:
    """``tests/tui/telemetry_worker.py`` running with telemetry on, and a caller (telemetry off)."""

    proc: subprocess.Popen[str]
    caller: III
    prefix: str
    name: str
    worker_id: str

    def fn(self, suffix: str) -> str:
        """The full id of one of its functions (``checkout``, ``charge``, ``refund``, ``log``)."""
        return f"{self.prefix}::{suffix}"

    def call(self, suffix: str, payload: Any) -> Any:
        """Invoke one of its functions from outside any span (so the worker's span is a root)."""
        return self.caller.trigger({"function_id": self.fn(suffix), "payload": payload})


def _read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """The child's next stdout line, waiting at most ``timeout`` seconds."""
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    stdout = proc.stdout
    threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
    try:
        return lines.get(timeout=timeout * FACTOR)
    except queue.Empty:
        raise AssertionError(f"no line from the telemetry worker within {timeout} s") from None


@pytest.fixture(scope="module")
def telemetry_worker(engine: EngineProcess) -> Iterator[TelemetryWorker]:
    """A telemetry-on worker process on the shared engine (one per test module)."""
    tag = uuid.uuid4().hex[:6]
    prefix, name = f"tel{tag}", f"tel-worker-{tag}"
    env = {**os.environ, **TELEMETRY_ENV, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "telemetry_worker.py"), engine.url, prefix, name],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    caller = register_worker(engine.url, InitOptions(worker_name=f"tel-caller-{tag}"))
    try:
        assert _read_line(proc, 30).strip() == "ready"

        def registered() -> str | None:
            workers = caller.trigger({"function_id": "engine::workers::list", "payload": {}})["workers"]
            ids = [w["id"] for w in workers if w["name"] == name and w.get("function_count") == 4]
            return ids[0] if ids else None

        worker_id = wait_for(registered, 20, 0.02, "the telemetry worker registered its functions")
        yield TelemetryWorker(proc, caller, prefix, name, worker_id)
    finally:
        caller.shutdown()
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()  # else a ResourceWarning (unclosed file) at the module's teardown


def span_payload(app: IIIApp, trace_id: str, span_id: str) -> str:
    """The input payload a span captured (``iii.invocation.input``), as JSON text ("" if none)."""
    span = app.store.traces.get(trace_id, {}).get(span_id, {})
    for event in span.get("events") or []:
        if event.get("name") == "iii.invocation.input":
            for key, value in event.get("attributes") or []:
                if key == "iii.payload.json":
                    return str(value)
    return ""


def find_invocation(app: IIIApp, function_id: str, token: str) -> Any:
    """The invocation of ``function_id`` whose input payload contains ``token`` (else None)."""
    for inv in reversed(app.store.invocations):
        if inv.function == function_id and token in span_payload(app, inv.trace_id, inv.span_id):
            return inv
    return None
