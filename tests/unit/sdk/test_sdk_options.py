"""InitOptions and its parts: defaults, validation, backoff formula, handshake headers."""

from __future__ import annotations

import pytest

from iii_typed import InitOptions, OtelConfig, ReconnectionConfig, TelemetryOptions
from iii_typed._connection import build_headers


def test_defaults_match_the_seed() -> None:
    opts = InitOptions()
    assert opts.invocation_timeout_ms == 30000
    assert opts.enable_metrics_reporting is True
    assert opts.worker_name is None and opts.namespace is None and opts.headers is None
    rc = opts.reconnection
    assert (
        rc.initial_delay_ms,
        rc.max_delay_ms,
        rc.backoff_multiplier,
        rc.jitter_factor,
        rc.max_retries,
    ) == (
        1000,
        30000,
        2.0,
        0.3,
        -1,
    )
    otel = opts.otel_config
    assert otel.metrics_export_interval_ms == 60000 and otel.fetch_instrumentation_enabled is True
    assert TelemetryOptions().framework is None


def test_dicts_are_accepted_for_nested_options() -> None:
    opts = InitOptions(
        otel={"enabled": False, "service_name": "svc"},
        reconnection_config={"initial_delay_ms": 100, "max_retries": 2},
        telemetry={"project_name": "p"},
    )
    assert isinstance(opts.otel, OtelConfig) and opts.otel.enabled is False
    assert isinstance(opts.reconnection_config, ReconnectionConfig)
    assert opts.reconnection.initial_delay_ms == 100 and opts.reconnection.max_retries == 2
    assert isinstance(opts.telemetry, TelemetryOptions) and opts.telemetry.project_name == "p"


def test_unknown_nested_option_names_the_key() -> None:
    with pytest.raises(TypeError, match="'enabeld'"):
        InitOptions(otel={"enabeld": False})


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"namespace": "   "}, "namespace"),
        ({"invocation_timeout_ms": 0}, "invocation_timeout_ms"),
        ({"keepalive_interval_ms": 0}, "keepalive_interval_ms"),
        ({"keepalive_timeout_ms": -5}, "keepalive_timeout_ms"),
    ],
)
def test_bad_values_are_refused_naming_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        InitOptions(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "error", "field"),
    [
        ({"invocation_timeout_ms": float("nan")}, ValueError, "InitOptions.invocation_timeout_ms"),
        ({"invocation_timeout_ms": float("inf")}, ValueError, "InitOptions.invocation_timeout_ms"),
        ({"invocation_timeout_ms": "5000"}, TypeError, "InitOptions.invocation_timeout_ms"),
        ({"keepalive_interval_ms": float("nan")}, ValueError, "InitOptions.keepalive_interval_ms"),
        ({"keepalive_timeout_ms": "1"}, TypeError, "InitOptions.keepalive_timeout_ms"),
        ({"namespace": 5}, TypeError, "InitOptions.namespace"),
        ({"worker_name": b"w"}, TypeError, "InitOptions.worker_name"),
        ({"reconnection_config": {"initial_delay_ms": float("nan")}}, ValueError, "initial_delay_ms"),
        ({"reconnection_config": {"max_delay_ms": float("inf")}}, ValueError, "max_delay_ms"),
        ({"reconnection_config": {"jitter_factor": "0.1"}}, TypeError, "jitter_factor"),
        ({"reconnection_config": {"max_retries": 1.5}}, TypeError, "max_retries"),
    ],
)
def test_non_numbers_and_non_finite_numbers_are_refused(
    kwargs: dict[str, object], error: type[Exception], field: str
) -> None:
    """NaN was accepted: a NaN timeout then failed every call with "cannot convert float NaN to
    integer", a NaN keepalive made every ping fail; a str failed with a bare comparison error and
    ``namespace=5`` with an AttributeError."""
    with pytest.raises(error, match=field):
        InitOptions(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial_delay_ms": -1},
        {"initial_delay_ms": 100, "max_delay_ms": 50},
        {"backoff_multiplier": 0.5},
        {"jitter_factor": 1.5},
        {"max_retries": -2},
    ],
)
def test_reconnection_config_validation(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="reconnection_config"):
        ReconnectionConfig(**kwargs)


def test_backoff_delay_formula_with_cap_and_jitter() -> None:
    rc = ReconnectionConfig(
        initial_delay_ms=100, max_delay_ms=1000, backoff_multiplier=2.0, jitter_factor=0.3
    )
    mid = [rc.delay_ms(n, rand=lambda: 0.5) for n in range(6)]
    assert mid == [100, 200, 400, 800, 1000, 1000]
    assert rc.delay_ms(0, rand=lambda: 0.0) == pytest.approx(70)
    assert rc.delay_ms(0, rand=lambda: 1.0) == pytest.approx(130)
    assert rc.delay_ms(10, rand=lambda: 1.0) == pytest.approx(1300)
    no_jitter = ReconnectionConfig(initial_delay_ms=0, jitter_factor=0.0)
    assert no_jitter.delay_ms(3) == 0


def test_backoff_delay_stays_at_the_cap_however_long_the_outage() -> None:
    """2.0 ** retry overflowed at retry 1024 (about 8.5 hours of retries with the defaults): the
    OverflowError ended the connection task and the client never reconnected again."""
    rc = ReconnectionConfig(jitter_factor=0.0)
    assert [rc.delay_ms(n) for n in (30, 1024, 10**6)] == [30000, 30000, 30000]
    assert ReconnectionConfig(initial_delay_ms=0, max_delay_ms=0).delay_ms(5000) == 0
    assert ReconnectionConfig(backoff_multiplier=1.0, jitter_factor=0.0).delay_ms(10**6) == 1000


def test_handshake_headers_add_iii_token_unless_authorization_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("III_TOKEN", "secret")
    assert build_headers(InitOptions(headers={"x-a": "b"})) == {"x-a": "b", "Authorization": "Bearer secret"}
    assert build_headers(InitOptions(headers={"authorization": "Basic x"})) == {"authorization": "Basic x"}
    monkeypatch.setenv("III_TOKEN", "  ")
    assert build_headers(InitOptions()) == {}
    monkeypatch.delenv("III_TOKEN")
    assert build_headers(InitOptions(headers={"x": "y"})) == {"x": "y"}


def test_headers_must_be_strings() -> None:
    with pytest.raises(TypeError, match="headers"):
        InitOptions(headers={"x": 1})
