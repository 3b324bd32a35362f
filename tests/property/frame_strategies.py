"""Hypothesis strategies for protocol frames, derived from the frame models themselves.

:func:`frames` builds any member of :data:`iii_typed.protocol.frames.FrameModel` by walking its pydantic
fields (literals, strings, UUIDs, free-form JSON, nested protocol models, discriminated unions,
``ge=`` bounds), setting a random subset of the optional fields — so a frame type added to the
schema is covered without touching this file. :func:`invalid_messages` produces messages the
codec must refuse with :class:`~iii_typed.errors.FrameDecodeError`, each with the expected
``reason``.
"""

from __future__ import annotations

import json
import types
import typing
import uuid
from typing import Any, Literal, get_args, get_origin

from annotated_types import Ge
from hypothesis import strategies as st
from pydantic import BaseModel
from typing_extensions import TypeAliasType

from iii_typed.protocol import codec
from iii_typed.protocol.frames import FrameModel

__all__ = [
    "FRAME_MODELS",
    "FRAME_TYPES",
    "frame_dicts",
    "frames",
    "invalid_messages",
    "json_values",
    "text",
]

#: Every frame model of the discriminated union, in schema order.
FRAME_MODELS: tuple[type[BaseModel], ...] = get_args(FrameModel)
#: Their ``type`` values.
FRAME_TYPES: frozenset[str] = frozenset(get_args(typing.get_type_hints(m)["type"])[0] for m in FRAME_MODELS)

#: Text without lone surrogates (they have no UTF-8 form, so no JSON message can carry them).
text = st.text(st.characters(exclude_categories=("Cs",)), max_size=24)
_INTS = st.integers(min_value=-(2**63), max_value=2**63 - 1)
_FLOATS = st.floats(allow_nan=False, allow_infinity=False)

#: Any JSON value (bounded in size and depth).
json_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | _INTS | _FLOATS | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=8,
)


def _strategy(annotation: Any, metadata: list[Any]) -> st.SearchStrategy[Any]:
    if isinstance(annotation, TypeAliasType):  # e.g. TriggerAction, HttpAuth
        return _strategy(annotation.__value__, metadata)
    origin = get_origin(annotation)
    if origin is typing.Annotated:
        inner, *extra = get_args(annotation)
        return _strategy(inner, [*metadata, *extra])
    if origin is Literal:
        return st.sampled_from(get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        options = [a for a in get_args(annotation) if a is not type(None)]
        return st.one_of(*(_strategy(a, metadata) for a in options))
    if origin is list:
        return st.lists(_strategy(get_args(annotation)[0], []), max_size=4)
    if origin is dict:
        return st.dictionaries(text, _strategy(get_args(annotation)[1], []), max_size=4)
    if annotation is Any:
        return json_values
    if annotation is str:
        return text
    if annotation is bool:
        return st.booleans()
    if annotation is int:
        low = next((m.ge for m in metadata if isinstance(m, Ge)), -(2**31))
        return st.integers(min_value=int(low), max_value=2**31)
    if annotation is float:
        return _FLOATS
    if annotation is uuid.UUID:
        return st.uuids()
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return st.deferred(lambda: frame_dicts(annotation))
    raise NotImplementedError(f"no strategy for {annotation!r}")


@st.composite
def frame_dicts(draw: st.DrawFn, model: type[BaseModel]) -> dict[str, Any]:
    """Field values for ``model``: every required field, and a random subset of the optional ones
    (``None`` included where allowed)."""
    hints = typing.get_type_hints(model, include_extras=True)
    values: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        annotation = hints[name]
        if not info.is_required() and not draw(st.booleans()):
            continue
        values[name] = draw(_strategy(annotation, list(info.metadata)))
    return values


@st.composite
def frames(draw: st.DrawFn, models: tuple[type[BaseModel], ...] = FRAME_MODELS) -> BaseModel:
    """A valid frame of any (or one of ``models``) type."""
    model = draw(st.sampled_from(models))
    return model.model_validate(draw(frame_dicts(model)))


def _wire(frame: BaseModel) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(codec.encode(frame))
    return value


def _required_keys(frame_type: str) -> list[str]:
    model = next(m for m in FRAME_MODELS if _type_of(m) == frame_type)
    return [name for name, info in model.model_fields.items() if info.is_required() and name != "type"]


def _typed_required_keys(frame_type: str) -> list[str]:
    """Required fields with a definite JSON type (not free-form ``Any``)."""
    model = next(m for m in FRAME_MODELS if _type_of(m) == frame_type)
    hints = typing.get_type_hints(model)
    return [k for k in _required_keys(frame_type) if hints[k] is not Any]


def _type_of(model: type[BaseModel]) -> str:
    value: str = get_args(typing.get_type_hints(model)["type"])[0]
    return value


@st.composite
def invalid_messages(draw: st.DrawFn) -> tuple[bytes, str]:
    """A message the codec must refuse, and the ``FrameDecodeError.reason`` it must give."""
    kind = draw(
        st.sampled_from(
            ["not-json", "truncated", "non-object", "no-type", "unknown-type", "missing", "wrong"]
        )
    )
    if kind == "not-json":
        raw = draw(st.binary(max_size=64).filter(lambda b: not _is_json(b)))
        return raw, "json"
    if kind == "non-object":
        value = draw(json_values.filter(lambda v: not isinstance(v, dict)))
        return json.dumps(value).encode(), "json"
    wire = _wire(draw(frames()))
    if kind == "truncated":
        encoded = json.dumps(wire).encode()
        return encoded[: draw(st.integers(0, len(encoded) - 1))], "json"
    if kind == "no-type":
        del wire["type"]
        return json.dumps(wire).encode(), "type"
    if kind == "unknown-type":
        wire["type"] = draw(text.filter(lambda t: t not in FRAME_TYPES))
        return json.dumps(wire).encode(), "type"
    frame_type = wire["type"]
    if kind == "missing":
        keys = _required_keys(frame_type)
        if not keys:  # ping/pong have nothing to remove: break the type instead
            wire["type"] = frame_type.upper()
            return json.dumps(wire).encode(), "type"
        del wire[draw(st.sampled_from(keys))]
        return json.dumps(wire).encode(), "fields"
    keys = _typed_required_keys(frame_type)
    if not keys:
        wire["type"] = frame_type + "x"
        return json.dumps(wire).encode(), "type"
    wire[draw(st.sampled_from(keys))] = draw(st.sampled_from([{}, [], [1], {"k": "v"}]))
    return json.dumps(wire).encode(), "fields"


def _is_json(raw: bytes) -> bool:
    try:
        json.loads(raw)
    except ValueError:
        return False
    return True
