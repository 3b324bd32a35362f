"""``iii-tui`` as a command: ``--snapshot`` against a demo-like engine, unreachable engines,
``--record`` then ``--snapshot --replay`` of the recording."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from iii_tui.cli import parse_args
from iii_tui.session import read_session
from iii_tui.views import SCREENS

from iii_typed.engine.process import EngineProcess
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]


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
def demo_engine(engine_factory: object) -> object:
    engine = engine_factory()  # type: ignore[operator]
    env = {
        **os.environ,
        "III_URL": engine.url,
        "OTEL_ENABLED": "false",
        "III_WORKER_NAME": "orders-worker-cli",
    }
    worker = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "orders_worker.py")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    yield engine
    worker.terminate()
    worker.wait(10)


def test_snapshot_against_a_demo_like_engine(demo_engine: EngineProcess, tmp_path: Path) -> None:
    from iii_typed import InitOptions, register_worker

    with register_worker(demo_engine.url, InitOptions(worker_name="probe")) as probe:

        def ready() -> bool:
            listed = probe.trigger({"function_id": "engine::functions::list", "payload": {}})["functions"]
            return any(f["function_id"] == "orders::create" for f in listed)

        wait_for(ready, 20, 0.05, "the orders worker registered")
    out = tmp_path / "snap"
    proc = _run("--url", demo_engine.url, "--snapshot", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in SCREENS:
        assert (out / f"{name}.txt").stat().st_size > 0
        assert (out / f"{name}.svg").read_text().startswith("<svg")
    workers = (out / "workers.txt").read_text()
    assert "orders-worker-cli" in workers
    # ids in full: the worker's UUID is not cut
    line = next(ln for ln in workers.splitlines() if ln.startswith("orders-worker-cli"))
    assert len(line.split()[1]) == 36
    functions = (out / "functions.txt").read_text()
    assert "orders::create" in functions and "orders::list" in functions
    overview = (out / "overview.txt").read_text()
    assert "health          healthy" in overview


def test_snapshot_of_an_unreachable_engine_exits_1(tmp_path: Path) -> None:
    proc = _run("--url", "ws://127.0.0.1:9", "--snapshot", str(tmp_path / "s"), "--connect-timeout", "1")
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "unreachable" in (tmp_path / "s" / "overview.txt").read_text()


def test_record_then_replay(engine: EngineProcess, tmp_path: Path) -> None:
    record = tmp_path / "session.jsonl.gz"
    proc = _run("--url", engine.url, "--snapshot", str(tmp_path / "live"), "--record", str(record))
    assert proc.returncode == 0, proc.stderr[-2000:]
    header, events = read_session(record)
    assert header["url"] == engine.url
    kinds = {e.kind for e in events}
    assert {"conn", "functions", "workers", "health"} <= kinds
    proc = _run("--replay", str(record), "--snapshot", str(tmp_path / "replayed"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    live = (tmp_path / "live" / "functions.txt").read_text()
    again = (tmp_path / "replayed" / "functions.txt").read_text()
    assert live.splitlines()[3:] == again.splitlines()[3:]


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
