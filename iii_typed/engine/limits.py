"""What one worker may send the engine, and the clear errors beyond it (protocol.md §1.3, §11;
docs/reliability.md "Limits").

* **Message size**: up to 64 MiB (:data:`~iii_typed.protocol.frames.MAX_MESSAGE_BYTES`). A larger
  ``invokefunction`` is answered ``payload_too_large`` when its envelope can be read (below);
  other oversized frames are dropped with a WARNING. Over 128 MiB the connection is closed with
  1009 (``iii_typed.engine.server``).
* **Nesting depth**: the JSON parser (pydantic-core) accepts about :data:`JSON_DEPTH_LIMIT` levels
  for the whole frame, the frame object included: a payload nested up to 199 levels always
  decodes (the real engine's serde_json stops at 128). A deeper ``invokefunction`` is answered
  ``payload_too_deep``. The iii-typed SDK refuses payloads deeper than 254 levels before sending
  (pydantic's serializer limit); between the two the engine's answer is the error.
* **Registrations**: at most ``[engine] max_registrations_per_worker`` (default
  :data:`DEFAULT_MAX_REGISTRATIONS`) functions, trigger types, triggers and services per
  connection, counting those still buffered before ``engine::workers::register``. Re-registering
  something the connection already has is not counted. A refused ``registertrigger`` is answered
  with a ``triggerregistrationresult`` error ``LIMIT_EXCEEDED``; any other refused registration with
  an ``{"type": "error", "error": {"code": "LIMIT_EXCEEDED", …}}`` frame (not fatal: SDKs log it).

An undecodable frame's envelope is read from its *top-level prefix* only — the text before the
first nested object or array — so a nested ``invocation_id`` inside a payload is never mistaken for
the frame's. SDKs write ``invocation_id`` and ``function_id`` before ``data``; a frame written
otherwise is dropped with a WARNING and its caller times out (as with the real engine).
"""

from __future__ import annotations

import re
from typing import Final
from uuid import UUID

from ..protocol import codec
from ..protocol.frames import ErrorBody, ErrorFrame, InvocationResult

__all__ = [
    "DEFAULT_MAX_REGISTRATIONS",
    "JSON_DEPTH_LIMIT",
    "LIMIT_EXCEEDED",
    "envelope",
    "limit_error",
    "refusal",
    "too_deep",
]

#: Nesting levels the frame decoder accepts for a whole frame (pydantic-core's JSON parser; arrays
#: may go one level further).
JSON_DEPTH_LIMIT: Final = 200
#: Default of ``[engine] max_registrations_per_worker``.
DEFAULT_MAX_REGISTRATIONS: Final = 10_000
#: Error code of a refused registration.
LIMIT_EXCEEDED: Final = "LIMIT_EXCEEDED"

_PREFIX_BYTES: Final = 4096
_NESTED: Final = re.compile(rb"[\[{]")
_TYPE: Final = re.compile(rb'"type"\s*:\s*"([a-z]+)"')
_INVOCATION_ID: Final = re.compile(rb'"invocation_id"\s*:\s*"([0-9a-fA-F-]{32,36})"')
_FUNCTION_ID: Final = re.compile(rb'"function_id"\s*:\s*"((?:[^"\\]|\\.){1,512})"')


def envelope(message: bytes) -> tuple[str | None, UUID | None, str | None]:
    """Best-effort ``(type, invocation_id, function_id)`` of a frame that cannot be decoded.

    Only the top-level prefix (before the first nested value, within the first 4 KiB) is read.

    Returns:
        Each part, or ``None`` when it is not in the prefix (or malformed).
    """
    head = message[:_PREFIX_BYTES].lstrip()
    if not head.startswith(b"{"):
        return None, None, None
    nested = _NESTED.search(head, 1)
    prefix = head[: nested.start()] if nested is not None else head
    kind = _TYPE.search(prefix)
    found = _INVOCATION_ID.search(prefix)
    function = _FUNCTION_ID.search(prefix)
    invocation_id: UUID | None = None
    if found is not None:
        try:
            invocation_id = UUID(found.group(1).decode())
        except ValueError:
            invocation_id = None
    function_id = function.group(1).decode("utf-8", "replace") if function is not None else None
    return (kind.group(1).decode() if kind is not None else None), invocation_id, function_id


def refusal(message: bytes, code: str, text: str) -> bytes | None:
    """The ``invocationresult`` error answering an undecodable ``invokefunction``, if its envelope
    names the call (an ``invocation_id`` in the top-level prefix), else ``None``."""
    kind, invocation_id, function_id = envelope(message)
    if kind != "invokefunction" or invocation_id is None:
        return None
    frame = InvocationResult(
        type="invocationresult",
        invocation_id=invocation_id,
        function_id=function_id or "",
        error=ErrorBody(code=code, message=text),
    )
    return codec.encode(frame)


def too_deep(reason: str) -> bool:
    """Whether a decode failure's reason is the parser's nesting limit."""
    return "recursion limit" in reason


def limit_error(message: str) -> bytes:
    """An ``error`` frame with code :data:`LIMIT_EXCEEDED` (a refused registration)."""
    return codec.encode(ErrorFrame(type="error", error=ErrorBody(code=LIMIT_EXCEEDED, message=message)))
