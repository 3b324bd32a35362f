"""Fixtures of the SDK integration tests: a scripted fake engine and clients that are always shut down."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from iii_typed import III, InitOptions, register_worker
from tests.integration.sdk.sdk_support import fast_options, sdk_threads
from tests.support.fake_engine import FakeEngine
from tests.support.waiting import wait_for


@pytest.fixture
def fake() -> Iterator[FakeEngine]:
    engine = FakeEngine().start()
    yield engine
    engine.close()


@pytest.fixture
def connect() -> Iterator[Callable[..., III]]:
    """``connect(url, **options)`` -> a connected client, shut down at teardown."""
    made: list[III] = []

    def factory(url: str, options: InitOptions | None = None, **kwargs: Any) -> III:
        client = register_worker(url, options if options is not None else fast_options(**kwargs))
        made.append(client)
        return client

    yield factory
    for client in made:
        client.shutdown()


@pytest.fixture(autouse=True)
def _no_leaked_sdk_threads() -> Iterator[None]:
    before = set(sdk_threads())
    yield
    wait_for(lambda: not (set(sdk_threads()) - before), timeout=5, what="SDK threads exit after shutdown")
