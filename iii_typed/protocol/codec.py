"""The only place where protocol frames become bytes and bytes become frames (protocol.md §1.2).

Frames travel as one JSON object per WebSocket text message. :func:`decode` validates a message
against the discriminated union of every frame model (unknown extra fields are ignored, as the
real engine does; a missing required field, an unknown ``type`` or malformed JSON raises
:class:`~iii_typed.errors.FrameDecodeError`). :func:`encode` writes compact UTF-8 JSON containing
exactly the fields that were set on the model (and on its nested protocol models): a field
explicitly set to ``None`` is written as ``null`` (``data``, ``result``), an unset optional field
is omitted; free-form values (``data``, ``result``…) are written whole.

Sans-I/O: this module imports no networking or event-loop code.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from uuid import UUID

from pydantic import BaseModel, TypeAdapter, ValidationError

from ..errors import FrameDecodeError
from .frames import MAX_MESSAGE_BYTES, Frame, FrameModel

__all__ = [
    "decode",
    "encode",
    "encode_invoke",
    "encode_json_value",
    "encode_result",
    "peek_type",
    "uuid_text",
]

_FRAME_ADAPTER: TypeAdapter[FrameModel] = TypeAdapter(Frame)
#: The adapter's core validator, called directly: the adapter's Python wrapper costs about a
#: tenth of a frame's validation.
_FRAME_VALIDATOR = _FRAME_ADAPTER.validator
_VALUE_ADAPTER: TypeAdapter[Any] = TypeAdapter(Any)


def encode(frame: FrameModel) -> bytes:
    """Serialise ``frame`` to compact UTF-8 JSON bytes (send them as a text message).

    Only the fields that were set are written, on the frame and on its nested protocol models
    (``error``, ``action``, ``invocation``…). The free-form fields (``data``, ``result``,
    ``metadata``, ``config``, formats) are written whole: values inside them may be pydantic
    models, dataclasses, UUIDs, datetimes, sets…, written in pydantic's JSON mode by alias with
    *all* their fields (a model's default-valued fields are kept).

    Raises:
        pydantic_core.PydanticSerializationError: a value cannot be represented as JSON.
    """
    fields = frame.__pydantic_fields_set__
    writer = _WRITERS.get(type(frame))
    if writer is None:
        writer = _writer(type(frame))
    to_json, nested = writer
    # Fast path (every hot-path frame): no nested protocol model is set, so the set of set fields
    # is the whole ``include`` spec (a set is much cheaper for pydantic than the nested dict).
    if nested.isdisjoint(fields):
        return to_json(frame, include=fields, by_alias=True)
    return to_json(frame, include=_set_fields(frame), by_alias=True)


_FREE_FORM: dict[type[BaseModel], frozenset[str]] = {}
#: Per frame class: its serializer's ``to_json`` and the fields that may hold a protocol model.
_WRITERS: dict[type[BaseModel], tuple[Callable[..., bytes], frozenset[str]]] = {}


def _writer(cls: type[BaseModel]) -> tuple[Callable[..., bytes], frozenset[str]]:
    # Reading an attribute of the serializer builds it first if pydantic deferred that.
    writer = (cls.__pydantic_serializer__.to_json, _NESTED.get(cls) or _nested_fields(cls))
    _WRITERS[cls] = writer
    return writer


_NESTED: dict[type[BaseModel], frozenset[str]] = {}


_SCALARS: frozenset[Any] = frozenset({str, int, float, bool, bytes, type(None), UUID})


def _model_free(annotation: Any) -> bool:
    """Whether ``annotation`` provably holds no pydantic model (scalars, literals, and unions or
    containers of them); anything else (a model, a forward reference, an alias) counts as nested."""
    if annotation in _SCALARS:
        return True
    origin = get_origin(annotation)
    if origin is Literal:
        return True
    if origin in (Union, UnionType, Annotated, list, dict, tuple, set, frozenset):
        args = get_args(annotation)
        if origin is Annotated:
            args = args[:1]
        return all(arg is Ellipsis or _model_free(arg) for arg in args)
    return False


def _nested_fields(cls: type[BaseModel]) -> frozenset[str]:
    """Fields of ``cls`` that may hold a protocol model (``_set_fields`` recurses into them)."""
    free = _free_form_fields(cls)
    nested = frozenset(
        name
        for name, info in cls.model_fields.items()
        if name not in free and not _model_free(info.annotation)
    )
    _NESTED[cls] = nested
    return nested


def _free_form_fields(cls: type[BaseModel]) -> frozenset[str]:
    cached = _FREE_FORM.get(cls)
    if cached is None:
        cached = frozenset(
            name for name, info in cls.model_fields.items() if info.annotation in (Any, Any | None)
        )
        _FREE_FORM[cls] = cached
    return cached


def _set_fields(model: BaseModel) -> dict[str, Any]:
    """The ``include`` spec selecting set fields, recursing into nested protocol models only."""
    free = _free_form_fields(type(model))
    include: dict[str, Any] = {}
    for name in model.model_fields_set:
        value = getattr(model, name)
        include[name] = _set_fields(value) if name not in free and isinstance(value, BaseModel) else True
    return include


def encode_json_value(value: Any) -> bytes:
    """Serialise an arbitrary value the way frame payloads are serialised (pydantic JSON mode)."""
    return _VALUE_ADAPTER.dump_json(value, by_alias=True)


# -- the two frames of every round trip, written without building their models -----------------
# Byte for byte what :func:`encode` writes for the same model (field order, set fields only,
# compact JSON, the same pydantic serializer for every value); a test compares both.
_to_json = _VALUE_ADAPTER.serializer.to_json
_STRINGS: dict[str, bytes] = {}  # JSON of recurring strings (function ids, namespaces)
_STRINGS_MAX = 4096


def _json_str(text: str) -> bytes:
    data = _STRINGS.get(text)
    if data is None:
        data = _to_json(text)
        if len(_STRINGS) >= _STRINGS_MAX:
            _STRINGS.clear()
        _STRINGS[text] = data
    return data


def encode_invoke(
    function_id: str,
    data: Any,
    invocation_id: str | None = None,
    *,
    traceparent: str | None = None,
    baggage: str | None = None,
    metadata: Any = None,
    namespace: str | None = None,
) -> bytes:
    """``encode(InvokeFunction(type="invokefunction", ...))`` of a call without ``action``: ``data``
    always set, each other field set when not ``None``.

    Args:
        invocation_id: A UUID in canonical form (lowercase, hyphenated), as the model writes it.

    Raises:
        pydantic_core.PydanticSerializationError: a value cannot be represented as JSON.
    """
    out = b'{"type":"invokefunction"'
    if invocation_id is not None:
        out += b',"invocation_id":"' + invocation_id.encode() + b'"'
    out += b',"function_id":' + _json_str(function_id) + b',"data":' + _to_json(data, by_alias=True)
    if traceparent is not None:
        out += b',"traceparent":' + _to_json(traceparent)
    if baggage is not None:
        out += b',"baggage":' + _to_json(baggage)
    if metadata is not None:
        out += b',"metadata":' + _to_json(metadata, by_alias=True)
    if namespace is not None:
        out += b',"namespace":' + _json_str(namespace)
    return out + b"}"


def uuid_text(value: UUID) -> str:
    """The canonical text of a UUID, as frames carry it (``str(value)``, at less than half the cost)."""
    text: str = _to_json(value)[1:-1].decode()
    return text


def encode_result(
    invocation_id: UUID | str, function_id: str, result: Any, traceparent: str | None = None
) -> bytes:
    """``encode(InvocationResult(type="invocationresult", invocation_id=..., function_id=...,
    result=...))``, with ``traceparent`` set when not ``None``.

    Args:
        invocation_id: A UUID, or its canonical text (:func:`uuid_text`).

    Raises:
        pydantic_core.PydanticSerializationError: a value cannot be represented as JSON.
    """
    quoted = (
        _to_json(invocation_id) if isinstance(invocation_id, UUID) else b'"' + invocation_id.encode() + b'"'
    )
    out = (
        b'{"type":"invocationresult","invocation_id":'
        + quoted
        + b',"function_id":'
        + _json_str(function_id)
        + b',"result":'
        + _to_json(result, by_alias=True)
    )
    if traceparent is not None:
        out += b',"traceparent":' + _to_json(traceparent)
    return out + b"}"


def decode(message: bytes | bytearray | memoryview | str) -> FrameModel:
    """Parse one WebSocket message into a frame model.

    Args:
        message: The message payload, text or bytes (UTF-8 JSON).

    Returns:
        The frame, an instance of one of the :data:`~iii_typed.protocol.frames.Frame` members.

    Raises:
        FrameDecodeError: ``reason`` is ``"size"`` over 64 MiB, ``"json"`` for malformed JSON or
            a non-object, ``"type"`` for a missing/unknown ``type``, ``"fields"`` for missing or
            wrongly typed fields. The message names the offending field.
    """
    size = len(message)
    if size > MAX_MESSAGE_BYTES:
        raise FrameDecodeError("size", f"message of {size} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit")
    if type(message) is memoryview:
        message = bytes(message)
    try:
        frame: FrameModel = _FRAME_VALIDATOR.validate_json(message)
    except ValidationError as exc:
        raise _classify(message, exc) from None
    return frame


def peek_type(message: bytes | bytearray | str) -> str | None:
    """Return the ``type`` of a JSON object message without validating it (``None`` if unreadable)."""
    try:
        obj = json.loads(message)
    except (ValueError, UnicodeDecodeError):
        return None
    value = obj.get("type") if isinstance(obj, dict) else None
    return value if isinstance(value, str) else None


def _classify(message: bytes | bytearray | str, exc: ValidationError) -> FrameDecodeError:
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0] if errors else {"type": "unknown", "loc": (), "msg": str(exc)}
    kind = str(first.get("type", ""))
    if kind in ("union_tag_not_found", "union_tag_invalid"):
        frame_type = peek_type(message)
        what = "missing 'type'" if frame_type is None else f"unknown frame type {frame_type!r}"
        return FrameDecodeError("type", what, frame_type)
    if kind.startswith("json") or not first.get("loc"):
        return FrameDecodeError("json", f"not a JSON object: {first.get('msg', '')}")
    frame_type = peek_type(message)
    detail = "; ".join(
        f"{'.'.join(str(p) for p in e['loc'][1:]) or '<frame>'}: {e['msg']}" for e in errors[:5]
    )
    return FrameDecodeError("fields", f"invalid {frame_type or 'frame'} frame: {detail}", frame_type)
