"""``iii-tui`` as a command: ``--snapshot`` (and ``--record``) against a demo-like engine with
telemetry on, ``--snapshot --replay`` of that recording, an unreachable engine."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from iii_tui.cli import parse_args
from iii_tui.session import read_session
from iii_tui.views import SCREENS

from iii_typed.engine.process import EngineProcess
from tests.support.waiting import wait_for

from .conftest import ROOT, TELEMETRY_ENV


def _run(*args: str, timeout: float = 45) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OTEL_ENABLED": "false"}
    return subprocess.run(
        [sys.executable, "-m", "iii_tui", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )


@pytest.fixture
def demo_engine(engine_factory: Callable[..., EngineProcess]) -> Iterator[EngineProcess]:
    """An engine like ``make demo``'s: ``examples/engine.toml``, the orders worker and one run of
    the orders caller, both with telemetry on."""
    from iii_typed import InitOptions, register_worker
    from iii_typed.demo import WORKER_FUNCTIONS

    engine = engine_factory(config=ROOT / "examples" / "engine.toml")
    env = {
        **os.environ,
        **TELEMETRY_ENV,
        "III_URL": engine.url,
        "III_HTTP_URL": engine.http_url,
        "III_STREAMS_URL": engine.streams_url,
    }
    worker = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "orders_worker.py")],
        env={**env, "III_WORKER_NAME": "orders-worker-cli"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    try:
        with register_worker(engine.url, InitOptions(worker_name="probe")) as probe:

            def ready() -> bool:
                listed = probe.trigger({"function_id": "engine::functions::list", "payload": {}})["functions"]
                return {f["function_id"] for f in listed} >= set(WORKER_FUNCTIONS)

            wait_for(ready, 20, 0.05, "the orders worker registered")
        caller = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "orders_caller.py")],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
        assert caller.returncode == 0, caller.stderr[-2000:]
        yield engine
    finally:
        worker.terminate()
        worker.wait(10)


def test_snapshot_of_a_demo_like_engine_then_replay(demo_engine: EngineProcess, tmp_path: Path) -> None:
    out, record = tmp_path / "live", tmp_path / "session.jsonl.gz"
    proc = _run("--url", demo_engine.url, "--snapshot", str(out), "--record", str(record))
    assert proc.returncode == 0, proc.stderr[-2000:]
    texts = {name: (out / f"{name}.txt").read_text() for name in SCREENS}
    for name in SCREENS:
        assert (out / f"{name}.svg").read_text().startswith("<svg")
    workers = texts["workers"]
    assert "orders-worker-cli" in workers
    # ids in full: the worker's UUID is not cut
    line = next(ln for ln in workers.splitlines() if ln.startswith("orders-worker-cli"))
    assert len(line.split()[1]) == 36
    assert "orders::create" in texts["functions"] and "orders::list" in texts["functions"]
    assert "health          healthy" in texts["overview"]
    # the caller's telemetry: invocations (root spans), a call chain, Logger records
    invocations = texts["invocations"].splitlines()[3:]
    assert any("orders::create" in ln and "orders-worker-cli" in ln for ln in invocations), invocations
    assert any(ln.split()[1] == "error" and "does not exist" in ln for ln in invocations), invocations
    trace = texts["trace"].splitlines()
    head = next(ln for ln in trace if ln.startswith("SPAN"))
    spans, name = trace[trace.index(head) + 1 :], head.index("NAME")
    assert len(spans) >= 2 and spans[0][name] != " ", trace
    assert spans[1][name : name + 2] == "  " and spans[1][name + 2] != " ", trace  # a child, indented
    assert "order created" in texts["logs"] and "unknown order requested" in texts["logs"]
    assert "orders-live" in texts["streams"] and "orders-receipts" in texts["streams"]

    # the recording replays to the same screens
    header, events = read_session(record)
    assert header["url"] == demo_engine.url
    assert {"conn", "functions", "workers", "health", "spans", "logs", "channels"} <= {e.kind for e in events}
    proc = _run("--replay", str(record), "--snapshot", str(tmp_path / "replayed"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in SCREENS:
        assert (tmp_path / "replayed" / f"{name}.txt").read_text() == texts[name], name


def test_snapshot_of_an_unreachable_engine_exits_1(tmp_path: Path) -> None:
    proc = _run("--url", "ws://127.0.0.1:9", "--snapshot", str(tmp_path / "s"), "--connect-timeout", "1")
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "unreachable" in (tmp_path / "s" / "overview.txt").read_text()
    # one line on stderr says so (not a silent exit 1)
    assert proc.stderr.splitlines() == [
        f"iii-tui: the engine at ws://127.0.0.1:9 is unreachable (no answer within 1 s); "
        f"the snapshots in {tmp_path / 's'} show it so"
    ], proc.stderr[-2000:]


@pytest.mark.parametrize("url", ["garbage", "http://127.0.0.1:1", "ws://"])
def test_a_malformed_url_is_a_usage_error_not_a_traceback(url: str, tmp_path: Path) -> None:
    proc = _run("--url", url, "--snapshot", str(tmp_path / "s"))
    assert proc.returncode == 2
    assert proc.stderr.startswith("iii-tui: ") and "Traceback" not in proc.stderr, proc.stderr[-2000:]


def test_command_line_contract() -> None:
    args = parse_args(["--url", "ws://h:1", "--readonly", "--snapshot", "d", "--record", "f"])
    assert (args.url, args.readonly, args.snapshot, args.record, args.replay) == (
        "ws://h:1",
        True,
        "d",
        "f",
        None,
    )
    with pytest.raises(SystemExit):
        parse_args(["--record", "a", "--replay", "b"])
