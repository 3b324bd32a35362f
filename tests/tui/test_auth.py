"""An engine that requires a token (``III_ENGINE_TOKEN``): the dashboard connects as a worker,
so it sends ``III_TOKEN``; a missing or wrong token is reported at once as a refusal, not as
"unreachable" after ``--connect-timeout``, and the live banner says "authentication failed"."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from iii_tui.snapshot import rendered_text

from iii_typed.engine.process import EngineProcess

from .conftest import ROOT, make_app, wait_text

TOKEN = "tui-test-token"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    """An engine of this module that requires ``TOKEN``."""
    log = tmp_path_factory.mktemp("secured") / "engine.log"
    proc = EngineProcess(log_path=log, env={"III_ENGINE_TOKEN": TOKEN}).start()
    yield proc
    proc.stop()


def _snapshot(url: str, out: Path, token: str | None) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {**os.environ, "OTEL_ENABLED": "false"}
    env.pop("III_TOKEN", None)
    if token is not None:
        env["III_TOKEN"] = token
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "iii_tui", "--url", url, "--snapshot", str(out), "--connect-timeout", "60"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT,
    )
    return proc, time.monotonic() - started


@pytest.mark.parametrize("token", [None, "not-the-token"])
def test_snapshot_with_a_refused_token_says_so_at_once(
    secured: EngineProcess, tmp_path: Path, token: str | None
) -> None:
    proc, took = _snapshot(secured.url, tmp_path / "s", token)
    assert proc.returncode == 1, proc.stderr[-2000:]
    refused = f"iii-tui: the engine at {secured.url} refused the connection (HTTP 401): set III_TOKEN"
    assert refused in proc.stderr and "unreachable" not in proc.stderr
    assert took < 30  # not the 60 s connect timeout: the refusal is final at once
    overview = (tmp_path / "s" / "overview.txt").read_text()
    assert "authentication failed (HTTP 401): set III_TOKEN" in overview and "stale" not in overview
    # with the token in III_TOKEN the same command connects
    proc, _ = _snapshot(secured.url, tmp_path / "ok", TOKEN)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "health          healthy" in (tmp_path / "ok" / "overview.txt").read_text()


async def test_live_banner_says_authentication_failed(
    secured: EngineProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("III_TOKEN", "not-the-token")
    app = make_app(secured.url)
    async with app.run_test(size=(120, 30)):
        text = await wait_text(app, "authentication failed (HTTP 401): set III_TOKEN")
        assert "● failed" in text and "stale" not in rendered_text(app)
        assert app.store.failure == "refused the connection (HTTP 401): set III_TOKEN"
