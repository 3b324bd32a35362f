"""Payload capture for handler spans: redaction and a size cap (protocol.md §8.2).

A handler span gets two events, ``iii.invocation.input`` and ``iii.invocation.output``, each with
``iii.payload.json`` (the payload as JSON text, values of sensitive keys replaced by
``"[REDACTED]"``, cut to the cap), ``iii.payload.truncated`` and, on the output,
``iii.payload.ok``. A key is sensitive when its lower-cased name contains one of
:data:`SENSITIVE_PARTS`, or is ``token`` or ends with ``_token``/``-token``.

Truncation keeps the text valid UTF-8 and ends it with :data:`TRUNCATED_MARK`, so a reader sees
that the JSON is incomplete; the whole result is at most ``max_bytes`` bytes.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, Final

from ._encode import dumps

__all__ = ["REDACTED", "SENSITIVE_PARTS", "TRUNCATED_MARK", "capture", "is_sensitive", "redact"]

#: Replacement of a sensitive value.
REDACTED: Final = "[REDACTED]"
#: Appended to a cut payload.
TRUNCATED_MARK: Final = "…[truncated]"
#: Lower-case fragments that make a key sensitive.
SENSITIVE_PARTS: Final = (
    "password",
    "passwd",
    "secret",
    "api_key",
    "apikey",
    "api-key",
    "authorization",
    "auth_token",
    "access_token",
    "refresh_token",
    "id_token",
    "bearer",
    "credential",
    "private_key",
    "cookie",
    "session_key",
)


@functools.lru_cache(maxsize=4096)
def is_sensitive(key: str) -> bool:
    """Whether values under ``key`` are redacted (cached: keys repeat from call to call)."""
    lowered = key.lower()
    if lowered == "token" or lowered.endswith(("_token", "-token")):
        return True
    return any(part in lowered for part in SENSITIVE_PARTS)


_CONTAINERS: Final = (dict, list, tuple)


def redact(value: Any) -> Any:
    """A copy of ``value`` with the values of sensitive keys replaced, at any depth."""
    if isinstance(value, Mapping):
        return {
            k: (REDACTED if isinstance(k, str) and is_sensitive(k) else redact(v)) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    return value


def _needs_redaction(value: Any, depth: int = 0) -> bool:
    """Whether ``value`` holds a sensitive key anywhere (concrete types first: this runs on every
    captured payload)."""
    if depth > 64:
        return True
    kind = type(value)
    if kind is dict:
        for key, item in value.items():
            if type(key) is str and is_sensitive(key):
                return True
            if type(item) in _CONTAINERS and _needs_redaction(item, depth + 1):
                return True
        return False
    if kind is list or kind is tuple:
        for item in value:  # noqa: SIM110 - a plain loop: faster than any() with a generator
            if type(item) in _CONTAINERS and _needs_redaction(item, depth + 1):
                return True
        return False
    if isinstance(value, Mapping):
        return _needs_redaction(dict(value), depth)
    if isinstance(value, list | tuple):
        return _needs_redaction(list(value), depth)
    return False


def capture(value: Any, max_bytes: int | None) -> tuple[str, bool]:
    """The redacted JSON text of ``value`` and whether it was cut to ``max_bytes`` bytes.

    Values without a JSON form are written as their ``str`` (a captured payload never raises).
    """
    if _needs_redaction(value):
        value = redact(value)
    try:
        data = dumps(value)
    except (TypeError, ValueError, RecursionError):
        data = dumps(str(value))
    if max_bytes is None or len(data) <= max_bytes:
        return data.decode("utf-8", errors="replace"), False
    mark = TRUNCATED_MARK.encode()
    keep = max(0, max_bytes - len(mark))
    while keep > 0 and (data[keep] & 0xC0) == 0x80:  # do not split a UTF-8 sequence
        keep -= 1
    return (data[:keep] + mark).decode("utf-8", errors="ignore"), True
