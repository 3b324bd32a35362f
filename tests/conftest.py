"""Fixtures shared by the whole suite.

* ``engine`` — one dev engine process for the session (ports picked by the OS, 127.0.0.1 only).
* ``fresh_engine`` — a dev engine process of its own for a test that restarts, kills or fills it.
* ``engine_factory`` — start engines with custom arguments; all are stopped at teardown.

Tests turn OpenTelemetry off unless they test it (``OTEL_ENABLED=false``), and use short
reconnect delays, so nothing waits on library defaults.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from iii_typed.engine.process import EngineProcess

os.environ.setdefault("OTEL_ENABLED", "false")


def _start(tmp: Path | None = None, **kwargs: Any) -> EngineProcess:
    log = (tmp / "engine.log") if tmp is not None else None
    return EngineProcess(log_path=log, **kwargs).start()


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    proc = _start(tmp_path_factory.mktemp("engine"))
    yield proc
    proc.stop()


@pytest.fixture
def fresh_engine(tmp_path: Path) -> Iterator[EngineProcess]:
    proc = _start(tmp_path)
    yield proc
    proc.stop()


@pytest.fixture
def engine_factory(tmp_path: Path) -> Iterator[Callable[..., EngineProcess]]:
    started: list[EngineProcess] = []

    def factory(**kwargs: Any) -> EngineProcess:
        proc = _start(tmp_path, **kwargs)
        started.append(proc)
        return proc

    yield factory
    for proc in started:
        proc.stop()
