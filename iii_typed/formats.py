"""Request/response formats extracted from a handler's type hints (protocol.md §9).

When ``register_function`` gets no explicit ``request_format``/``response_format`` (or ``None``),
the SDK derives a JSON Schema from the annotation of the handler's **first** parameter and from
its return annotation. The top-level schema gets ``"$schema"`` (draft 2020-12) as its **last**
key; nested schemas never do. Anything this module cannot describe yields ``None`` and the field
is left out of the ``registerfunction`` frame.

Mapping (protocol.md §9, sdk.md §2.4):

============================  =====================================================
hint                          schema
============================  =====================================================
``str``/``int``/``float``     ``{"type": "string"}`` / ``"integer"`` / ``"number"``
``bool``                      ``{"type": "boolean"}``
``None`` (``-> None``)        ``{"type": "null"}``
``X | None``                  X's schema with ``"type": [<t>, "null"]``
``list`` / ``list[X]``        ``{"type": "array"}`` (+ ``"items"`` when X is known)
``dict`` / ``dict[K, V]``     ``{"type": "object"}`` (+ ``"additionalProperties"``)
pydantic ``BaseModel``        ``Model.model_json_schema()``
anything else                 ``None`` (``Any``, ``TypedDict``, dataclasses, ``Enum``,
                              ``Literal``, unions of several types, ``tuple``, ``set``…)
============================  =====================================================
"""

from __future__ import annotations

import copy
import inspect
import types
import typing
from collections.abc import Callable
from typing import Any, Final, Literal, Union

from pydantic import BaseModel

__all__ = [
    "CHANNEL_MARKER",
    "JSON_SCHEMA_DIALECT",
    "channel_ref_schema",
    "extract_request_format",
    "extract_response_format",
    "first_parameter_annotation",
    "python_type_to_format",
    "resolve_format",
    "type_to_schema",
    "unresolved_hints",
]

#: The ``$schema`` value appended to every top-level extracted schema (protocol.md §9).
JSON_SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"

#: Annotation keyword that marks a channel ref's schema: ``"reader"`` (the receiver reads, the ref's
#: direction is ``read``) or ``"writer"``. Unknown keywords are annotations in JSON Schema, so
#: validators ignore it; code generators use it to type the field as a channel (docs/codegen.md).
CHANNEL_MARKER: Final = "x-iii-channel"


def channel_ref_schema(direction: Literal["read", "write"]) -> dict[str, Any]:
    """The JSON Schema of a channel ref field (a ``ChannelReader``/``ChannelWriter`` annotation).

    The shape of :class:`~iii_typed.channels.StreamChannelRef` with the direction fixed, titled
    ``StreamChannelRef`` and marked with :data:`CHANNEL_MARKER`.
    """
    return {
        "type": "object",
        "title": "StreamChannelRef",
        "description": f"A channel ref (direction {direction!r})",
        CHANNEL_MARKER: "reader" if direction == "read" else "writer",
        "properties": {
            "channel_id": {"type": "string"},
            "access_key": {"type": "string"},
            "direction": {"const": direction},
        },
        "required": ["channel_id", "access_key", "direction"],
    }


_SCALARS: Final[dict[Any, str]] = {str: "string", int: "integer", float: "number", bool: "boolean"}


def type_to_schema(tp: Any) -> dict[str, Any] | None:
    """Describe a Python type as a JSON Schema fragment, without ``$schema``.

    Args:
        tp: A type or typing construct (``int``, ``list[str]``, ``Model | None``…).

    Returns:
        A new dict (safe to mutate), or ``None`` when the type has no supported description.
    """
    if tp is None or tp is type(None):
        return {"type": "null"}
    if tp in _SCALARS:
        return {"type": _SCALARS[tp]}
    if tp is list:
        return {"type": "array"}
    if tp is dict:
        return {"type": "object"}
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp.model_json_schema()
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is list:
        schema: dict[str, Any] = {"type": "array"}
        item = type_to_schema(args[0]) if args else None
        if item is not None:
            schema["items"] = item
        return schema
    if origin is dict:
        schema = {"type": "object"}
        value = type_to_schema(args[1]) if len(args) == 2 else None
        if value is not None:
            schema["additionalProperties"] = value
        return schema
    if origin is Union or origin is types.UnionType:
        members = [a for a in args if a is not type(None)]
        if len(members) != 1 or len(members) == len(args):
            return None  # a union of several types, or without None: not described
        inner = type_to_schema(members[0])
        if inner is None or not isinstance(inner.get("type"), str):
            return None
        inner["type"] = [inner["type"], "null"]
        return inner
    return None


def python_type_to_format(tp: Any) -> dict[str, Any] | None:
    """The top-level format for ``tp``: :func:`type_to_schema` plus ``"$schema"`` as last key."""
    schema = type_to_schema(tp)
    if schema is None:
        return None
    schema.pop("$schema", None)
    schema["$schema"] = JSON_SCHEMA_DIALECT
    return schema


def _hints_of(
    handler: Callable[..., Any], localns: dict[str, Any] | None = None
) -> tuple[inspect.Signature, dict[str, Any]] | None:
    target: Any = handler
    if not (inspect.isroutine(target) or isinstance(target, type)) and callable(target):
        target = target.__call__  # a callable object: describe its __call__ method
    try:
        signature = inspect.signature(target)
        hints = typing.get_type_hints(target, localns=localns)
    except Exception:  # unresolved forward references, builtins without signatures, …
        return None
    return signature, hints


def unresolved_hints(handler: Callable[..., Any], localns: dict[str, Any] | None = None) -> str | None:
    """Why ``handler``'s annotations cannot be resolved (e.g. ``name 'Model' is not defined``),
    or ``None`` when they can (or it has none)."""
    target: Any = handler
    if not (inspect.isroutine(target) or isinstance(target, type)) and callable(target):
        target = target.__call__
    if not getattr(target, "__annotations__", None):
        return None
    try:
        typing.get_type_hints(target, localns=localns)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def first_parameter_annotation(
    handler: Callable[..., Any], localns: dict[str, Any] | None = None
) -> tuple[bool, Any]:
    """The resolved annotation of ``handler``'s first parameter.

    Args:
        handler: The callable.
        localns: Extra names for resolving string annotations (e.g. the registering scope's
            locals, for models defined inside a function).

    Returns:
        ``(True, annotation)`` when the first parameter is annotated, else ``(False, None)``.
    """
    found = _hints_of(handler, localns)
    if found is None:
        return False, None
    signature, hints = found
    params = list(signature.parameters.values())
    if not params or params[0].name not in hints:
        return False, None
    return True, hints[params[0].name]


def extract_request_format(
    handler: Callable[..., Any], localns: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """The request format of ``handler``: its first parameter's annotation (any kind), or ``None``."""
    present, annotation = first_parameter_annotation(handler, localns)
    return python_type_to_format(annotation) if present else None


def extract_response_format(
    handler: Callable[..., Any], localns: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """The response format of ``handler``: its return annotation (``-> None`` gives null), or ``None``."""
    found = _hints_of(handler, localns)
    if found is None:
        return None
    _, hints = found
    if "return" not in hints:
        return None
    return python_type_to_format(hints["return"])


def resolve_format(value: Any) -> Any:
    """Turn an explicit format argument into its wire value.

    Args:
        value: A :class:`~iii_typed.models.RegisterFunctionFormat` (dumped without ``None``
            fields), a pydantic model **class** (its JSON Schema plus ``$schema``), or any JSON
            value such as a dict (deep-copied so later changes by the caller have no effect).

    Returns:
        The JSON value to put in the frame.
    """
    if isinstance(value, type) and issubclass(value, BaseModel):
        return python_type_to_format(value)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True, exclude_none=True)
    return copy.deepcopy(value)
