"""Resolving :class:`~iii_typed.OtelConfig` against the environment (protocol.md §8.3, sdk.md §1.3).

Every field of the seed's and 0.25's ``OtelConfig`` has a documented default and, for most, an
environment variable that applies when the field is ``None``:

========================= ================================ ==========================
field                     environment                      default
========================= ================================ ==========================
enabled                   ``OTEL_ENABLED``                 on (``false/0/no/off``)
service_name              ``OTEL_SERVICE_NAME``            ``iii-python-sdk``
service_version           ``SERVICE_VERSION``              ``unknown``
service_namespace         ``SERVICE_NAMESPACE``            none
service_instance_id       ``SERVICE_INSTANCE_ID``          a random UUID
engine_ws_url             (the worker's address)           ``III_URL``, then default
engine_ws_headers         (the worker's handshake headers) ``{}`` means none
fetch_instrumentation     ``OTEL_FETCH_IGNORE_URLS``       on
spans_flush_interval_ms   ``OTEL_SPANS_FLUSH_INTERVAL_MS`` 100
logs_enabled              —                                on
logs_flush_interval_ms    ``OTEL_LOGS_FLUSH_INTERVAL_MS``  100
logs_batch_size           ``OTEL_LOGS_BATCH_SIZE``         1
metrics_enabled           —                                on
metrics_export_interval   —                                60 000 ms
========================= ================================ ==========================

Payload capture on handler spans: ``III_DISABLE_TRACE_PAYLOADS`` (``1``/``true``) turns it off;
``III_TRACE_PAYLOAD_MAX_BYTES`` caps each captured payload (an integer, or ``unlimited``; our
default is :data:`DEFAULT_PAYLOAD_MAX_BYTES`, the official SDK's is unlimited). A malformed value
in the environment is reported with one WARNING naming the variable and the default applies.
"""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlsplit, urlunsplit

from ..options import DEFAULT_ENGINE_URL, InitOptions, OtelConfig, ReconnectionConfig

__all__ = [
    "DEFAULT_PAYLOAD_MAX_BYTES",
    "DEFAULT_SERVICE_NAME",
    "ResolvedOtel",
    "env_disabled",
    "otel_url",
    "resolve_otel",
]

log = logging.getLogger("iii_typed.telemetry")

#: ``service.name`` when neither the option nor ``OTEL_SERVICE_NAME`` gives one (protocol.md §8.3).
DEFAULT_SERVICE_NAME: Final = "iii-python-sdk"
#: Cap of each captured payload (``iii.payload.json``) unless ``III_TRACE_PAYLOAD_MAX_BYTES`` says
#: otherwise.
DEFAULT_PAYLOAD_MAX_BYTES: Final = 8192

_FALSE: Final = frozenset({"false", "0", "no", "off"})


def env_disabled(value: str | None) -> bool:
    """Whether an ``OTEL_ENABLED`` value turns telemetry off (``false``/``0``/``no``/``off``)."""
    return value is not None and value.strip().lower() in _FALSE


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        value = 0
    if value <= 0:
        log.warning("%s=%r is not a positive integer; using %d", name, raw, default)
        return default
    return value


def _env_str(name: str) -> str | None:
    raw = os.environ.get(name)
    return raw.strip() if raw is not None and raw.strip() else None


def payload_max_bytes_from_env() -> int | None:
    """The payload cap: ``III_TRACE_PAYLOAD_MAX_BYTES`` (bytes, or ``unlimited`` → ``None``)."""
    raw = os.environ.get("III_TRACE_PAYLOAD_MAX_BYTES")
    if raw is None or not raw.strip():
        return DEFAULT_PAYLOAD_MAX_BYTES
    text = raw.strip().lower()
    if text == "unlimited":
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        log.warning(
            "III_TRACE_PAYLOAD_MAX_BYTES=%r is neither a positive integer nor 'unlimited'; using %d",
            raw,
            DEFAULT_PAYLOAD_MAX_BYTES,
        )
        return DEFAULT_PAYLOAD_MAX_BYTES
    return value


def otel_url(address: str) -> str:
    """``address`` with ``/otel`` appended to its path, query string kept (protocol.md §8.1).

    Example: ``ws://127.0.0.1:49134`` → ``ws://127.0.0.1:49134/otel``.
    """
    parts = urlsplit(address)
    path = parts.path.rstrip("/")
    if not path.endswith("/otel"):
        path += "/otel"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


@dataclass(frozen=True)
class ResolvedOtel:
    """The effective telemetry settings of one client (every ``None`` resolved).

    Attributes:
        enabled: Whether telemetry runs for this client.
        service_name, service_version, service_namespace, service_instance_id: Resource
            attributes (protocol.md §8.2).
        url: The ``/otel`` WebSocket URL.
        headers: Handshake headers of the ``/otel`` socket.
        fetch_instrumentation_enabled: Client spans around ``urllib`` requests.
        fetch_ignore_urls: URL substrings never traced (``OTEL_FETCH_IGNORE_URLS``, comma list).
        spans_flush_interval_ms: How often buffered spans are sent, ms.
        logs_enabled: Export log records (``Logger`` and the SDK's WARNING+ records).
        logs_flush_interval_ms: How often buffered log records are sent, ms.
        logs_batch_size: Log records per ``LOGS`` frame.
        metrics_enabled: Export metrics (``MTRC`` frames).
        metrics_export_interval_ms: Metrics export interval, ms.
        metrics_reporting: ``InitOptions.enable_metrics_reporting``: report this worker's
            resource gauges (CPU, memory, event-loop lag, uptime).
        payloads: Capture invocation payloads on handler spans.
        payload_max_bytes: Cap of a captured payload (``None`` = unlimited).
        reconnection: Reconnect policy of the ``/otel`` socket (the worker's; retries forever).
    """

    enabled: bool
    service_name: str = DEFAULT_SERVICE_NAME
    service_version: str = "unknown"
    service_namespace: str | None = None
    service_instance_id: str = ""
    url: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    fetch_instrumentation_enabled: bool = True
    fetch_ignore_urls: tuple[str, ...] = ()
    spans_flush_interval_ms: int = 100
    logs_enabled: bool = True
    logs_flush_interval_ms: int = 100
    logs_batch_size: int = 1
    metrics_enabled: bool = True
    metrics_export_interval_ms: int = 60000
    metrics_reporting: bool = True
    payloads: bool = True
    payload_max_bytes: int | None = DEFAULT_PAYLOAD_MAX_BYTES
    reconnection: ReconnectionConfig = field(default_factory=ReconnectionConfig)


def resolve_otel(options: InitOptions, address: str, headers: dict[str, str]) -> ResolvedOtel:
    """Resolve a client's ``OtelConfig`` (see the module docstring for every default).

    Args:
        options: The client's options (``otel``, ``enable_metrics_reporting``,
            ``reconnection_config``).
        address: The worker's engine URL (the ``/otel`` URL is derived from it unless
            ``engine_ws_url`` is set).
        headers: The worker's handshake headers (used unless ``engine_ws_headers`` is set).

    Returns:
        The resolved settings; ``enabled`` is ``False`` when telemetry is off.
    """
    config: OtelConfig = options.otel_config
    enabled = config.enabled
    if enabled is None:
        enabled = not env_disabled(os.environ.get("OTEL_ENABLED"))
    if not enabled:
        return ResolvedOtel(enabled=False)
    base = config.engine_ws_url or address or _env_str("III_URL") or DEFAULT_ENGINE_URL
    ignore = tuple(
        part.strip() for part in os.environ.get("OTEL_FETCH_IGNORE_URLS", "").split(",") if part.strip()
    )
    disabled_payloads = os.environ.get("III_DISABLE_TRACE_PAYLOADS", "").strip().lower() in ("1", "true")
    return ResolvedOtel(
        enabled=True,
        service_name=config.service_name or _env_str("OTEL_SERVICE_NAME") or DEFAULT_SERVICE_NAME,
        service_version=config.service_version or _env_str("SERVICE_VERSION") or "unknown",
        service_namespace=config.service_namespace or _env_str("SERVICE_NAMESPACE"),
        service_instance_id=config.service_instance_id
        or _env_str("SERVICE_INSTANCE_ID")
        or str(uuid.uuid4()),
        url=otel_url(base),
        headers=dict(config.engine_ws_headers) if config.engine_ws_headers is not None else dict(headers),
        fetch_instrumentation_enabled=config.fetch_instrumentation_enabled,
        fetch_ignore_urls=ignore,
        spans_flush_interval_ms=config.spans_flush_interval_ms
        or _env_int("OTEL_SPANS_FLUSH_INTERVAL_MS", 100),
        logs_enabled=config.logs_enabled if config.logs_enabled is not None else True,
        logs_flush_interval_ms=config.logs_flush_interval_ms or _env_int("OTEL_LOGS_FLUSH_INTERVAL_MS", 100),
        logs_batch_size=config.logs_batch_size or _env_int("OTEL_LOGS_BATCH_SIZE", 1),
        metrics_enabled=config.metrics_enabled,
        metrics_export_interval_ms=config.metrics_export_interval_ms,
        metrics_reporting=options.enable_metrics_reporting,
        payloads=not disabled_payloads,
        payload_max_bytes=payload_max_bytes_from_env(),
        reconnection=options.reconnection,
    )
