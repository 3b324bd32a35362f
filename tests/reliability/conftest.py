"""Fixtures of the reliability tests: fault proxies and SDK clients that are always shut down."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from reliability_support import fast_options, sdk_threads

from iii_typed import III, InitOptions, register_worker
from tests.support.waiting import wait_for
from tests.support.ws_proxy import WsProxy


@pytest.fixture
def proxies() -> Iterator[Callable[[int], WsProxy]]:
    """``proxies(engine_port)`` -> a started :class:`WsProxy` in front of that port; stopped at teardown."""
    started: list[WsProxy] = []

    def factory(port: int) -> WsProxy:
        proxy = WsProxy(port).start()
        started.append(proxy)
        return proxy

    yield factory
    for proxy in started:
        proxy.stop()


@pytest.fixture
def connect() -> Iterator[Callable[..., III]]:
    """``connect(url, **options)`` -> a connected client (test-sized options), shut down at teardown."""
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
