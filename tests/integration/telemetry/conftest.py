"""Fixtures of the telemetry tests: worker processes and an in-process client (telemetry off)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from iii_typed import III, InitOptions, ReconnectionConfig, register_worker
from iii_typed.engine.process import EngineProcess
from tests.integration.telemetry.telemetry_support import App


@pytest.fixture
def apps() -> Iterator[Callable[..., App]]:
    """``apps(config, env=None)`` starts a ``telemetry_app.py`` process; all are killed at teardown."""
    started: list[App] = []

    def factory(config: dict[str, Any], env: dict[str, str] | None = None) -> App:
        app = App(config, env)
        started.append(app)
        return app

    yield factory
    for app in started:
        app.kill()


@pytest.fixture
def query() -> Iterator[Callable[[EngineProcess], III]]:
    """``query(engine)`` -> a connected iii-typed client without telemetry (shut down at teardown)."""
    made: list[III] = []

    def factory(engine: EngineProcess) -> III:
        options = InitOptions(
            otel={"enabled": False},
            reconnection_config=ReconnectionConfig(initial_delay_ms=50, max_delay_ms=200),
            keepalive_interval_ms=500,
            keepalive_timeout_ms=500,
        )
        client = register_worker(engine.url, options)
        made.append(client)
        return client

    yield factory
    for client in made:
        client.shutdown()
