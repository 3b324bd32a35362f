"""A worker's own ``urllib`` request to an ``http`` trigger, with telemetry on: the root client
span (``GET``, attributes with the URL's query string next to ``200``) is not an invocation,
the function span under it is; the waterfall shows both, and ``--snapshot`` draws them
(the span attributes once stopped it with a markup error)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from iii_tui.screens import TraceScreen

from iii_typed import III, InitOptions, register_worker
from iii_typed.engine.process import EngineProcess
from tests.support.waiting import wait_for

from .conftest import HERE, ROOT, TELEMETRY_ENV, _read_line, make_app, wait_text, wait_until


@dataclass
class HttpClientWorker:
    proc: subprocess.Popen[str]
    probe: III
    fn: str

    def request(self) -> None:
        """One ``urlopen`` in the worker; returns when it answered 200."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        assert _read_line(self.proc, 30).strip() == "done 200"

    def root_spans(self) -> list[dict[str, object]]:
        spans = self.probe.trigger({"function_id": "engine::traces::list", "payload": {"limit": 500}})[
            "spans"
        ]
        return [s for s in spans if s["name"] == "GET" and not s.get("parent_span_id")]


@pytest.fixture
def http_worker(fresh_engine: EngineProcess) -> Iterator[HttpClientWorker]:
    prefix = f"web{uuid.uuid4().hex[:6]}"
    env = {**os.environ, **TELEMETRY_ENV, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [
            sys.executable,
            str(HERE / "http_client_worker.py"),
            fresh_engine.url,
            fresh_engine.http_url,
            prefix,
            prefix,
        ],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    probe = register_worker(fresh_engine.url, InitOptions(worker_name="probe"))
    try:
        assert _read_line(proc, 30).strip() == "ready"
        fn = f"{prefix}::hello"

        def bound() -> bool:
            listed = probe.trigger({"function_id": "engine::registered-triggers::list", "payload": {}})
            return any(t.get("function_id") == fn for t in listed["registered_triggers"])

        wait_for(bound, 20, 0.02, "the http trigger registered")
        yield HttpClientWorker(proc, probe, fn)
    finally:
        probe.shutdown()
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


async def test_a_root_client_span_is_not_an_invocation(
    fresh_engine: EngineProcess, http_worker: HttpClientWorker
) -> None:
    hw = http_worker
    hw.request()
    wait_for(lambda: hw.root_spans(), 20, 0.02, "the worker's GET span stored")
    app = make_app(fresh_engine.url)
    async with app.run_test(size=(160, 40)):
        inv = await wait_until(
            lambda: next((i for i in app.store.invocations if i.function == hw.fn), None), what="hello listed"
        )
        assert [i.function for i in app.store.invocations if i.trace_id == inv.trace_id] == [hw.fn]
        assert not [i for i in app.store.invocations if i.function == "GET"]
        # the waterfall: the client span is the root, the function under it
        app.open_trace(inv.trace_id)
        await wait_until(lambda: isinstance(app.screen, TraceScreen), what="trace screen")
        screen = app.screen
        assert isinstance(screen, TraceScreen)
        await wait_until(lambda: len(screen.ring.items) == 2, what="both spans")
        assert [r.name.strip() for r in screen.ring.items] == ["GET", hw.fn]
        screen.ring.cursor = 0
        screen.update_detail()
        await wait_text(app, "hello?name=zed")


def test_snapshot_draws_the_client_span_and_lists_the_function(
    fresh_engine: EngineProcess, http_worker: HttpClientWorker, tmp_path: Path
) -> None:
    """The trace shown is the newest with more than one span: its root's attributes hold
    ``…hello?name=zed"],["http.response.status_code",200]]``."""
    http_worker.request()
    wait_for(lambda: http_worker.root_spans(), 20, 0.02, "the worker's GET span stored")
    out = tmp_path / "snap"
    proc = subprocess.run(
        [sys.executable, "-m", "iii_tui", "--url", fresh_engine.url, "--snapshot", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OTEL_ENABLED": "false"},
        cwd=ROOT,
    )
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    invocations = (out / "invocations.txt").read_text()
    assert http_worker.fn in invocations and " GET " not in invocations
    assert "hello?name=zed" in (out / "trace.svg").read_text()
