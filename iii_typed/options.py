"""Client options: :class:`InitOptions` and its parts (the seed's ``InitOptions``,
``ReconnectionConfig``, ``OtelConfig``, ``TelemetryOptions``, plus 0.25 extras and keepalive).

All are plain dataclasses validated on construction: a bad value raises ``ValueError`` (or
``TypeError`` for a wrong type) naming the field.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, Literal, TypeVar

__all__ = [
    "DEFAULT_ENGINE_URL",
    "InitOptions",
    "OtelConfig",
    "ReconnectionConfig",
    "TelemetryOptions",
]

#: Address used when neither an argument nor ``III_URL`` gives one (protocol.md §1.1).
DEFAULT_ENGINE_URL = "ws://127.0.0.1:49134"

T = TypeVar("T")


def _finite(where: str, value: Any, *, integer: bool = False) -> None:
    """Check that ``value`` is a finite number (an ``int`` when ``integer``), naming ``where``.

    Raises:
        TypeError: not a number (``bool`` and ``str`` included).
        ValueError: NaN or infinite (a NaN timeout failed every call later with an unrelated
            message; a NaN delay or keepalive broke reconnection and pings).
    """
    kinds: tuple[type, ...] = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        kind = "an integer" if integer else "a number"
        raise TypeError(f"{where} must be {kind}, not {type(value).__name__} {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where} must be a finite number, not {value!r}")


def _from_mapping(cls: type[T], value: Any, field_name: str) -> T:
    """Accept an instance of ``cls`` or a dict of its fields (unknown keys raise ``TypeError``)."""
    if isinstance(value, cls):
        return value
    if isinstance(value, dict):
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(value) - known)
        if unknown:
            raise TypeError(f"{field_name}: unknown option(s) {', '.join(map(repr, unknown))}")
        return cls(**value)
    raise TypeError(f"{field_name} must be a {cls.__name__} or a dict, not {type(value).__name__}")


@dataclass
class ReconnectionConfig:
    """How the client reconnects after the socket ends (protocol.md §10).

    The delay before retry *n* (0, 1, 2, …) is ``d = min(initial_delay_ms x backoff_multiplier^n,
    max_delay_ms)`` plus a uniform jitter of ``± jitter_factor x d``. The retry counter resets
    after each fully successful (re)connection.

    Attributes:
        initial_delay_ms: Delay before the first retry, in ms (default 1000).
        max_delay_ms: Cap of the delay, in ms (default 30 000).
        backoff_multiplier: Growth factor per retry (default 2.0, at least 1).
        jitter_factor: Relative random jitter, 0-1 (default 0.3).
        max_retries: Retries before the state becomes ``failed``; ``-1`` retries forever (default).
    """

    initial_delay_ms: int = 1000
    max_delay_ms: int = 30000
    backoff_multiplier: float = 2.0
    jitter_factor: float = 0.3
    max_retries: int = -1

    def __post_init__(self) -> None:
        for name in ("initial_delay_ms", "max_delay_ms", "backoff_multiplier", "jitter_factor"):
            _finite(f"reconnection_config.{name}", getattr(self, name))
        _finite("reconnection_config.max_retries", self.max_retries, integer=True)
        if self.initial_delay_ms < 0:
            raise ValueError("reconnection_config.initial_delay_ms must be >= 0")
        if self.max_delay_ms < self.initial_delay_ms:
            raise ValueError("reconnection_config.max_delay_ms must be >= initial_delay_ms")
        if self.backoff_multiplier < 1:
            raise ValueError("reconnection_config.backoff_multiplier must be >= 1")
        if not 0 <= self.jitter_factor <= 1:
            raise ValueError("reconnection_config.jitter_factor must be between 0 and 1")
        if self.max_retries < -1:
            raise ValueError("reconnection_config.max_retries must be -1 (forever) or >= 0")

    def delay_ms(self, retry: int, rand: Callable[[], float] = random.random) -> float:
        """Delay in ms before retry number ``retry`` (0-based), jitter included (never negative).

        Bounded for any ``retry``: the growth is capped before it can overflow a float (which ended
        the reconnect loop after 1024 retries).
        """
        try:
            grown = self.initial_delay_ms * self.backoff_multiplier**retry
        except OverflowError:
            grown = math.inf
        base = min(grown, float(self.max_delay_ms)) if self.initial_delay_ms > 0 else 0.0
        return max(0.0, base + base * self.jitter_factor * (2 * rand() - 1))


@dataclass
class OtelConfig:
    """OpenTelemetry settings (every seed and 0.25 field; protocol.md §8.3, ``docs/telemetry.md``).

    ``None`` values mean "use the environment or the default" as documented for each field:
    ``enabled`` (``OTEL_ENABLED`` = ``false``/``0``/``no``/``off`` disables; default on),
    ``service_name`` (``OTEL_SERVICE_NAME``, ``iii-python-sdk``), ``service_version``
    (``SERVICE_VERSION``, ``unknown``), ``service_namespace`` (``SERVICE_NAMESPACE``),
    ``service_instance_id`` (``SERVICE_INSTANCE_ID``, a random UUID), ``engine_ws_url`` (the
    worker's address, ``/otel`` appended), ``spans_flush_interval_ms``
    (``OTEL_SPANS_FLUSH_INTERVAL_MS``, 100), ``logs_enabled`` (on), ``logs_flush_interval_ms``
    (``OTEL_LOGS_FLUSH_INTERVAL_MS``, 100), ``logs_batch_size`` (``OTEL_LOGS_BATCH_SIZE``, 1),
    ``engine_ws_headers`` (the worker's handshake headers; ``{}`` sends none).
    ``fetch_instrumentation_enabled`` traces ``urllib`` requests (``OTEL_FETCH_IGNORE_URLS``
    lists URL parts to skip); ``metrics_enabled`` and ``metrics_export_interval_ms`` (default
    60 000) govern metrics.

    Raises:
        ValueError: an interval or the batch size is not a positive integer.
    """

    enabled: bool | None = None
    service_name: str | None = None
    service_version: str | None = None
    service_namespace: str | None = None
    service_instance_id: str | None = None
    engine_ws_url: str | None = None
    fetch_instrumentation_enabled: bool = True
    spans_flush_interval_ms: int | None = None
    logs_enabled: bool | None = None
    logs_flush_interval_ms: int | None = None
    logs_batch_size: int | None = None
    metrics_enabled: bool = True
    metrics_export_interval_ms: int = 60000
    engine_ws_headers: dict[str, str] | None = None

    def __post_init__(self) -> None:
        for name in (
            "spans_flush_interval_ms",
            "logs_flush_interval_ms",
            "logs_batch_size",
            "metrics_export_interval_ms",
        ):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise ValueError(f"OtelConfig.{name} must be a positive integer, not {value!r}")
        if self.engine_ws_headers is not None and not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.engine_ws_headers.items()
        ):
            raise TypeError("OtelConfig.engine_ws_headers must map str to str")


@dataclass
class TelemetryOptions:
    """Metadata reported in ``engine::workers::register.telemetry`` (protocol.md §3.3).

    Attributes:
        language: Worker language (default: ``$LANG`` before the first ``.``).
        project_name: Project name (default: ``[project].name`` of ``./pyproject.toml``, else the
            current folder's name).
        framework: Framework name (default ``iii-typed``).
        amplitude_api_key: Seed field, accepted and not sent.
    """

    language: str | None = None
    project_name: str | None = None
    framework: str | None = None
    amplitude_api_key: str | None = None


@dataclass
class InitOptions:
    """Options of :func:`~iii_typed.register_worker` and :class:`~iii_typed.III`.

    Attributes:
        worker_name: Display name; ``III_WORKER_NAME`` wins over it, default ``hostname:pid``
            (``hostname:pid:N`` for the N-th unnamed client of a process).
        worker_description: Description reported to the engine.
        namespace: Namespace of this worker (default ``III_NAMESPACE``, then none = ``default``);
            blank is a ``ValueError``.
        enable_metrics_reporting: Report this worker's resource gauges (CPU, memory, event-loop
            lag, uptime) so ``engine::workers::info`` shows ``latest_metrics`` (default on; needs
            telemetry and ``OtelConfig.metrics_enabled``).
        invocation_timeout_ms: Default timeout of ``trigger`` in ms (default 30 000).
        reconnection_config: Reconnection policy (a dict of its fields is accepted).
        otel: OpenTelemetry settings (a dict of its fields is accepted); telemetry is on unless
            ``enabled=False`` or ``OTEL_ENABLED=false``.
        headers: Extra HTTP headers of the WebSocket handshake. ``Authorization: Bearer
            $III_TOKEN`` is added when ``III_TOKEN`` is set and no Authorization header is given.
        telemetry: Telemetry metadata reported to the engine.
        keepalive_interval_ms: WebSocket ping interval in ms (default 20 000; ``None`` turns
            keepalive off).
        keepalive_timeout_ms: How long a ping may stay unanswered before the connection is
            considered dead and reconnection starts, in ms (default 20 000).
        offline_calls: What ``trigger`` does while the client is not connected: ``"queue"``
            (default) keeps the call in the bounded offline queue until the next connection, still
            bounded by its own timeout; ``"fail"`` raises ``InvocationError`` code
            ``DISCONNECTED`` at once.
    """

    worker_name: str | None = None
    worker_description: str | None = None
    namespace: str | None = None
    enable_metrics_reporting: bool = True
    invocation_timeout_ms: int = 30000
    reconnection_config: ReconnectionConfig | None = None
    otel: OtelConfig | dict[str, Any] | None = None
    headers: dict[str, str] | None = None
    telemetry: TelemetryOptions | None = None
    keepalive_interval_ms: int | None = 20000
    keepalive_timeout_ms: int | None = 20000
    offline_calls: Literal["queue", "fail"] = "queue"

    def __post_init__(self) -> None:
        for name in ("worker_name", "worker_description", "namespace"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise TypeError(f"InitOptions.{name} must be a str or None, not {type(value).__name__}")
        _finite("InitOptions.invocation_timeout_ms", self.invocation_timeout_ms)
        for name in ("keepalive_interval_ms", "keepalive_timeout_ms"):
            if getattr(self, name) is not None:
                _finite(f"InitOptions.{name}", getattr(self, name))
        if self.offline_calls not in ("queue", "fail"):
            raise ValueError(
                f"InitOptions.offline_calls must be 'queue' or 'fail', not {self.offline_calls!r}"
            )
        if self.namespace is not None and not self.namespace.strip():
            raise ValueError("InitOptions.namespace is blank: give it a name, or omit it to use 'default'")
        if isinstance(self.invocation_timeout_ms, bool) or self.invocation_timeout_ms <= 0:
            raise ValueError("InitOptions.invocation_timeout_ms must be a positive number of ms")
        for name in ("keepalive_interval_ms", "keepalive_timeout_ms"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"InitOptions.{name} must be > 0 ms, or None to turn keepalive off")
        if self.reconnection_config is not None:
            self.reconnection_config = _from_mapping(
                ReconnectionConfig, self.reconnection_config, "InitOptions.reconnection_config"
            )
        if self.otel is not None:
            self.otel = _from_mapping(OtelConfig, self.otel, "InitOptions.otel")
        if self.telemetry is not None:
            self.telemetry = _from_mapping(TelemetryOptions, self.telemetry, "InitOptions.telemetry")
        if self.headers is not None and not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.headers.items()
        ):
            raise TypeError("InitOptions.headers must map str to str")

    @property
    def otel_config(self) -> OtelConfig:
        """The effective :class:`OtelConfig` (defaults when none was given)."""
        return self.otel if isinstance(self.otel, OtelConfig) else OtelConfig()

    @property
    def reconnection(self) -> ReconnectionConfig:
        """The effective :class:`ReconnectionConfig` (defaults when none was given)."""
        return self.reconnection_config or ReconnectionConfig()
