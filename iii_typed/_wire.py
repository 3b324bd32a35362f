"""Client-side wire helpers: frame bytes, payload checks and fragmentation (protocol.md §1.2-§1.4).

Frames are encoded by the codec (only the fields that were set are written, compact UTF-8 JSON;
values inside ``data``/``result``/``metadata`` are written whole in pydantic JSON mode).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

from pydantic import BaseModel
from pydantic_core import PydanticSerializationError

from .errors import InvocationError
from .protocol import codec
from .protocol.frames import MAX_MESSAGE_BYTES, FrameModel

__all__ = [
    "FRAGMENT_BYTES",
    "SINGLE_FRAME_BYTES",
    "check_size",
    "encode_frame",
    "find_unserialisable",
    "fragments",
    "too_large_error",
]

#: Messages larger than this are sent as a fragmented text message (protocol.md §1.3: the real
#: engine's frame limit is 16 MiB).
SINGLE_FRAME_BYTES: Final = 16 * 1024 * 1024

#: Size of each fragment of a large message.
FRAGMENT_BYTES: Final = 1024 * 1024


def encode_frame(frame: FrameModel) -> bytes:
    """Compact UTF-8 JSON of ``frame`` (see :func:`iii_typed.protocol.codec.encode` for the rule).

    Raises:
        pydantic_core.PydanticSerializationError: a value has no JSON representation.
    """
    return codec.encode(frame)


def too_large_error(size: int, what: str, function_id: str | None = None) -> InvocationError:
    """The ``payload_too_large`` error for a message of ``size`` bytes (decisions "Size")."""
    return InvocationError(
        "payload_too_large",
        f"{what} is {size} bytes, over the 64 MiB message limit ({MAX_MESSAGE_BYTES} bytes); "
        "send large data through a channel (iii.create_channel()) and pass its ref instead",
        function_id=function_id,
    )


def check_size(data: bytes, what: str, function_id: str | None = None) -> bytes:
    """Return ``data`` unchanged, or raise ``payload_too_large`` when it exceeds 64 MiB."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise too_large_error(len(data), what, function_id)
    return data


def fragments(data: bytes, size: int = FRAGMENT_BYTES) -> Iterator[bytes]:
    """Split UTF-8 ``data`` into chunks of at most ``size`` bytes, never inside a code point."""
    view = memoryview(data)
    start = 0
    total = len(data)
    while start < total:
        end = min(start + size, total)
        while end < total and end > start and (data[end] & 0xC0) == 0x80:
            end -= 1  # back off from a UTF-8 continuation byte
        if end == start:  # a code point longer than ``size``: keep it whole
            end = start + 1
            while end < total and (data[end] & 0xC0) == 0x80:
                end += 1
        yield bytes(view[start:end])
        start = end


#: Nesting depth at which pydantic's serializer gives up ("Maximum serialization depth exceeded").
MAX_SERIALISATION_DEPTH: Final = 254


def find_unserialisable(value: Any, path: str = "payload") -> str:
    """Describe the first part of ``value`` that has no JSON representation, e.g.
    ``payload['items'][2] (socket)``, a container that contains itself, or the point where the
    nesting exceeds :data:`MAX_SERIALISATION_DEPTH`. Used to build a clear ``TypeError``; never
    recurses deeper than that limit, so it cannot raise ``RecursionError``."""
    found = _find(value, path, set(), 0)
    head, sep, tail = found.partition(" (")
    if len(head) > 160:  # a deep path: keep its start and its end
        found = f"{head[:100]}…{head[-40:]}{sep}{tail}"
    return found


def _find(value: Any, path: str, enclosing: set[int], depth: int) -> str:
    if not isinstance(value, dict | list | tuple | set | frozenset | BaseModel):
        try:
            codec.encode_json_value(value)
        except (PydanticSerializationError, ValueError, TypeError):
            return f"{path} ({type(value).__name__}: {_short_repr(value)})"
        return ""
    if id(value) in enclosing:
        return f"{path} (a circular reference: it contains itself)"
    if depth >= MAX_SERIALISATION_DEPTH:
        return f"{path} (nested deeper than {MAX_SERIALISATION_DEPTH} levels)"
    enclosing.add(id(value))
    try:
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str | int | float | bool) and key is not None:
                    return f"{path} key {key!r} ({type(key).__name__})"
                found = _find(item, f"{path}[{key!r}]", enclosing, depth + 1)
                if found:
                    return found
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                found = _find(getattr(value, name, None), f"{path}.{name}", enclosing, depth + 1)
                if found:
                    return found
        else:
            for index, item in enumerate(value):
                found = _find(item, f"{path}[{index}]", enclosing, depth + 1)
                if found:
                    return found
        return ""
    finally:
        enclosing.discard(id(value))


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
