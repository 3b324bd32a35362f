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

from pydantic_core import to_jsonable_python

from ._encode import dumps

__all__ = [
    "MAX_DEPTH",
    "NOT_CAPTURED",
    "REDACTED",
    "SENSITIVE_PARTS",
    "TOO_DEEP",
    "TRUNCATED_MARK",
    "capture",
    "is_sensitive",
    "redact",
]

#: Replacement of a sensitive value.
REDACTED: Final = "[REDACTED]"
#: The capture of a value that could not be walked for redaction.
NOT_CAPTURED: Final = '"[not captured]"'
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
_SCALARS: Final = (str, int, float, bool, type(None))

#: Containers nested deeper than this are not walked: capture writes :data:`TOO_DEEP` instead
#: (this also ends cyclic structures).
MAX_DEPTH: Final = 64
#: Replacement of a container nested deeper than :data:`MAX_DEPTH`.
TOO_DEEP: Final = "[too deep]"


def redact(value: Any, depth: int = 0) -> Any:
    """A copy of ``value`` with the values of sensitive keys replaced, down to :data:`MAX_DEPTH`
    levels (deeper containers, and so cycles, become :data:`TOO_DEEP`).

    Other objects (pydantic models, dataclasses, UUIDs, sets…) are first turned into their JSON
    form, as on the wire, so a model's sensitive fields are redacted too.

    Raises:
        ValueError: an object's JSON form cannot be built (e.g. a cycle through a model).
    """
    if isinstance(value, Mapping):
        if depth >= MAX_DEPTH:
            return TOO_DEEP
        return {
            k: (REDACTED if isinstance(k, str) and is_sensitive(k) else redact(v, depth + 1))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        if depth >= MAX_DEPTH:
            return TOO_DEEP
        return [redact(item, depth + 1) for item in value]
    if isinstance(value, _SCALARS):
        return value
    if depth >= MAX_DEPTH:
        return TOO_DEEP
    return redact(to_jsonable_python(value, by_alias=True, fallback=str), depth + 1)


def _needs_redaction(value: Any, depth: int = 0) -> bool:
    """Whether ``value`` may hold a sensitive key: one is found, or an object (a model, a
    dataclass…) must be put in its JSON form to tell (concrete types first: this runs on every
    captured payload)."""
    if depth > MAX_DEPTH:
        return True
    kind = type(value)
    if kind is dict:
        for key, item in value.items():
            if type(key) is str and is_sensitive(key):
                return True
            if type(item) not in _SCALARS and _needs_redaction(item, depth + 1):
                return True
        return False
    if kind is list or kind is tuple:
        for item in value:  # noqa: SIM110 - a plain loop: faster than any() with a generator
            if type(item) not in _SCALARS and _needs_redaction(item, depth + 1):
                return True
        return False
    if kind in _SCALARS:
        return False
    if isinstance(value, Mapping):
        return _needs_redaction(dict(value), depth)
    if isinstance(value, list | tuple):
        return _needs_redaction(list(value), depth)
    return not isinstance(value, _SCALARS)


def _as_text(value: Any) -> str:
    """``str(value)`` as valid UTF-8 text (lone surrogates escaped), or the type name when even
    ``str`` fails (a custom ``__str__`` raising, a structure nested beyond the recursion limit)."""
    try:
        text = str(value)
    except Exception:
        text = f"<{type(value).__name__} without a text form>"
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def capture(value: Any, max_bytes: int | None) -> tuple[str, bool]:
    """The redacted JSON text of ``value`` and whether it was cut to ``max_bytes`` bytes.

    Values without a JSON form are written as their ``str`` (cycles, nesting beyond the encoder's
    limit, lone surrogates…). Capturing never raises: it runs after the handler, and an exception
    here would lose the invocation's answer.
    """
    try:
        if _needs_redaction(value):
            value = redact(value)
    except Exception:  # a mapping that cannot be walked: capture nothing rather than a secret
        return NOT_CAPTURED, False
    try:
        data = dumps(value)
    except Exception:
        data = dumps(_as_text(value))
    if max_bytes is None or len(data) <= max_bytes:
        return data.decode("utf-8", errors="replace"), False
    mark = TRUNCATED_MARK.encode()
    keep = max(0, max_bytes - len(mark))
    while keep > 0 and (data[keep] & 0xC0) == 0x80:  # do not split a UTF-8 sequence
        keep -= 1
    return (data[:keep] + mark).decode("utf-8", errors="ignore"), True
