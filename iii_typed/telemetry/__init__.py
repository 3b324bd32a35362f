"""OpenTelemetry for iii-typed workers: spans, logs and metrics sent to the engine (protocol.md §8).

Telemetry is on by default (the seed: "Enabled by default") and off with ``OTEL_ENABLED=false``
or ``InitOptions(otel={"enabled": False})``; when off, nothing here runs: OpenTelemetry's SDK is
not even imported, no provider is installed, no ``/otel`` socket opens, no thread starts, and
:class:`~iii_typed.Logger` writes to :mod:`logging`.

When on, every client

* runs each handler in a span ``execute <function_id>`` parented on the incoming ``traceparent``
  (sync handlers on their thread, async ones in their task; cases.md B21), with the input and
  output payloads captured (redacted, capped) and status ERROR plus an ``exception`` event when the
  handler raises; the ``invocationresult`` carries the span's ``traceparent``;
* puts the current ``traceparent``/``baggage`` on every outgoing ``invokefunction`` (§4.5);
* reports its resource gauges (CPU, RSS, heap, event-loop lag, uptime) tagged ``worker.id`` so
  ``engine::workers::info`` shows ``latest_metrics`` (when ``enable_metrics_reporting``);
* shares the process's ``/otel`` socket (:mod:`._sender`): its own reconnect loop and bounded
  queues that drop and count instead of blocking.

Module map: :mod:`._config` (options and environment), :mod:`._hub` (process-global providers,
handler spans, propagation), :mod:`._sender` (the socket), :mod:`._encode` (OTLP/JSON),
:mod:`._payload` (redaction, cap), :mod:`._resources` (gauges), :mod:`._fetch` (``urllib`` spans).
User guide: ``docs/telemetry.md``.
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, Any

from ..options import InitOptions
from . import _state
from ._config import ResolvedOtel, resolve_otel

if TYPE_CHECKING:
    from ._hub import ClientTelemetry

__all__ = ["ResolvedOtel", "client_telemetry", "flush", "resolve_otel", "sender_threads", "stats"]


def client_telemetry(
    options: InitOptions, address: str, headers: dict[str, str], loop: asyncio.AbstractEventLoop
) -> ClientTelemetry | None:
    """The telemetry of a new client, or ``None`` when telemetry is off for it.

    The first call with telemetry on installs the process-global providers; every call attaches
    the client to the shared ``/otel`` sender (started when none runs).

    Args:
        options: The client's options.
        address: The client's engine URL.
        headers: The client's handshake headers.
        loop: The client's event loop.
    """
    config = resolve_otel(options, address, headers)
    if not config.enabled:
        return None
    from ._hub import ClientTelemetry, hub_for

    hub = hub_for(config)
    if config.fetch_instrumentation_enabled:
        from ._fetch import install

        install()
    return ClientTelemetry(hub, config, loop)


def stats() -> dict[str, Any]:
    """Counters of the process's telemetry: ``connected``, ``connects``, ``frames_sent``,
    ``frames_dropped``, ``spans_sent``/``spans_dropped``, ``logs_sent``/``logs_dropped``,
    ``metrics_sent``, ``queued_frames``, ``queued_bytes``, ``clients``… (``{"connected": False,
    "clients": 0}`` when telemetry never ran)."""
    hub = _state.HUB
    if hub is None:
        return {"connected": False, "clients": 0}
    return hub.stats()


def flush(timeout: float = 2.0) -> bool:
    """Send what is buffered now and wait up to ``timeout`` seconds for it to be written.

    Returns:
        ``True`` when nothing is left queued (``False`` when disconnected or telemetry is off).
    """
    hub = _state.HUB
    sender = hub.sender if hub is not None else None
    return sender.flush(timeout) if sender is not None else False


def sender_threads() -> list[threading.Thread]:
    """The live ``iii-otel`` threads (diagnostics and tests)."""
    return [t for t in threading.enumerate() if t.name.startswith("iii-otel")]
