"""Fixtures of the engine tests: raw worker factory and a module-scoped engine."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from engine_raw import RawWorker, open_worker

from iii_typed.engine.process import EngineProcess


@pytest.fixture
async def workers() -> AsyncIterator[Callable[..., Awaitable[RawWorker]]]:
    """``await workers(url, name=..., namespace=..., register=True)``; all closed at teardown."""
    opened: list[RawWorker] = []

    async def factory(url: str, **kwargs: Any) -> RawWorker:
        worker = await open_worker(url, **kwargs)
        opened.append(worker)
        return worker

    yield factory
    for worker in opened:
        if not worker.closed.is_set():
            await worker.close()


@pytest.fixture(scope="module")
def module_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    """An engine of this test module's own (for tests that use fixed ids such as the golden ones)."""
    log = tmp_path_factory.mktemp("module-engine") / "engine.log"
    proc = EngineProcess(log_path=log).start()
    yield proc
    proc.stop()
