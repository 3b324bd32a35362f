"""The documented :class:`Logger`: structured logs correlated with the active trace (protocol.md §8.2).

Each call emits one OpenTelemetry log record (instrumentation scope ``iii.logger``) through the
process's telemetry, so the engine stores it (``engine::logs::list``) and fires ``log`` triggers.
The record carries:

* the message as its body, the severity (``debug`` 5, ``info`` 9, ``warn`` 13, ``error`` 17);
* the trace and span ids of the span active where the call is made — inside a handler, the
  handler's ``execute <function_id>`` span, also on the error path (cases.md B22);
* attributes: ``service.name`` (the logger's, else the process's service name), ``log.data``
  (the ``data`` argument, as the official SDK sends it) and, when ``data`` is a mapping, each of
  its keys as an attribute of its own so backends can filter on it.

When telemetry is off (``OTEL_ENABLED=false``, or no client with telemetry is running) the call
goes to the standard :mod:`logging` logger ``iii_typed.logger`` instead, at the matching level,
with ``data``, ``service_name`` and (inside a span) ``trace_id``/``span_id`` in the record's
``extra`` fields.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Final

from .telemetry import _state

__all__ = ["Logger"]

_fallback = logging.getLogger("iii_typed.logger")
_LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
}
#: Attribute names a ``data`` key may not replace.
_RESERVED: Final = frozenset({"service.name", "log.data"})


#: Containers deeper than this in ``data`` are written as :data:`_TOO_DEEP` (this also ends cycles).
_MAX_DEPTH: Final = 32
_TOO_DEEP: Final = "[too deep]"


def _text(value: Any) -> str:
    """``str(value)``, or a description when even that fails (a log call must not raise)."""
    try:
        return str(value)
    except Exception:
        return f"<{type(value).__name__} without a text form>"


def _attribute_value(value: Any, depth: int = 0) -> Any:
    """An OpenTelemetry ``AnyValue``-compatible copy (unknown objects become their ``str``),
    :data:`_MAX_DEPTH` levels deep at most."""
    if value is None or isinstance(value, str | bool | int | float | bytes):
        return value
    if depth >= _MAX_DEPTH:
        return _TOO_DEEP
    if isinstance(value, Mapping):
        return {_text(k): _attribute_value(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_attribute_value(v, depth + 1) for v in value]
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        try:
            return _attribute_value(dump(mode="json"), depth + 1)
        except Exception:
            pass
    return _text(value)


class Logger:
    """Structured logger whose records follow the active trace (the seed's ``Logger``).

    Args:
        service_name: ``service.name`` attribute of the records (default: the process's
            service name, ``OtelConfig.service_name`` / ``OTEL_SERVICE_NAME``).

    Example::

        logger = Logger("orders")
        logger.info("Order processed", {"order_id": "ord_123", "status": "completed"})
    """

    __slots__ = ("service_name",)

    def __init__(self, service_name: str | None = None) -> None:
        self.service_name = service_name

    def debug(self, message: str, data: Any = None) -> None:
        """Log a debug-level message (severity 5) with optional structured ``data``."""
        self._emit("debug", message, data)

    def info(self, message: str, data: Any = None) -> None:
        """Log an info-level message (severity 9) with optional structured ``data``."""
        self._emit("info", message, data)

    def warn(self, message: str, data: Any = None) -> None:
        """Log a warning (severity 13) with optional structured ``data``."""
        self._emit("warn", message, data)

    def error(self, message: str, data: Any = None) -> None:
        """Log an error (severity 17) with optional structured ``data``."""
        self._emit("error", message, data)

    def _emit(self, level: str, message: str, data: Any) -> None:
        text = message if isinstance(message, str) else _text(message)
        hub = _state.HUB
        if hub is None or not hub.logs_active:
            self._fallback(level, text, data)
            return
        try:  # a log call never breaks the caller
            attributes: dict[str, Any] = {"service.name": self.service_name or hub.config.service_name}
            if data is not None:
                value = _attribute_value(data)
                attributes["log.data"] = value
                if isinstance(value, dict):
                    for key, item in value.items():
                        if key not in _RESERVED and item is not None:
                            attributes[key] = item
            hub.emit_log(level, text, attributes)
        except Exception:
            _fallback.debug("telemetry log emit failed", exc_info=True)
            self._fallback(level, text, data)

    def _fallback(self, level: str, text: str, data: Any) -> None:
        try:
            self._log_locally(level, text, data)
        except Exception:  # e.g. a repr that raises or recurses without end
            _fallback.log(_LEVELS[level], "%s (its data could not be written)", text)

    def _log_locally(self, level: str, text: str, data: Any) -> None:
        levelno = _LEVELS[level]
        if not _fallback.isEnabledFor(levelno):
            return
        extra: dict[str, Any] = {"data": data, "service_name": self.service_name}
        if _state.HUB is not None:  # spans exist only once telemetry ran in this process
            from opentelemetry import trace

            context = trace.get_current_span().get_span_context()
            if context.is_valid:
                extra["trace_id"] = f"{context.trace_id:032x}"
                extra["span_id"] = f"{context.span_id:016x}"
        prefix = f"[{self.service_name}] " if self.service_name else ""
        suffix = f" {data!r}" if data is not None else ""
        _fallback.log(levelno, "%s%s%s", prefix, text, suffix, extra=extra)
