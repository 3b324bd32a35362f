"""The update-op engine behind ``state::update`` (and ``stream::update``), protocol.md §6.1.

An update is a list of operations applied in order to the stored value; an operation that cannot
apply is skipped and reported as an :class:`UpdateOpError` (``op_index``, ``code``, ``message``,
``doc_url``) while the others still apply. A key that does not exist yet starts as ``{}``.

Operations (tagged by ``type``):

* ``{"type": "set", "path": "f", "value": v}`` — set field ``f`` of the object (``path: ""``
  replaces the whole value; a missing ``value`` sets ``null``).
* ``{"type": "merge", "path"?: "f" | ["a", "b"], "value": {...}}`` — shallow merge of an object
  into the root (path absent, ``""`` or ``[]``) or into a nested object, creating (or replacing
  non-object) intermediates.
* ``{"type": "increment" | "decrement", "path": "f", "by": int}`` — add/subtract; a missing field
  starts at ``by`` / ``-by``; a missing root becomes ``by`` / ``-by``.
* ``{"type": "append", "path"?: "f" | ["a", "b"], "value": v}`` — push onto an array, or concatenate
  when both are strings; a missing (or ``null``) target becomes ``[v]`` (or the string itself for a
  root or single-segment path; a nested path always starts an array).
* ``{"type": "remove", "path": "f"}`` — delete field ``f`` (``""`` sets the whole value to ``null``).

A *field path* (``set``, ``increment``, ``decrement``, ``remove``) is one literal key: dots are not
separators. ``merge`` and ``append`` also take a list of segments. Bounds: at most 32 segments of
at most 256 UTF-8 bytes, none empty and none of ``__proto__``, ``constructor``, ``prototype``; a
merge value is an object of at most 1024 top-level keys (none a prototype-pollution key) nested at
most 16 levels deep.

Error codes: ``<op>.path.too_deep``, ``<op>.path.segment_too_long``, ``<op>.path.empty_segment``,
``<op>.path.proto_polluted`` (``<op>`` the operation type, e.g. ``merge.path.too_deep``),
``merge.value.not_an_object``, ``merge.value.too_many_keys``, ``merge.value.too_deep``,
``merge.value.proto_polluted``, ``set.target_not_object``, ``append.type_mismatch``,
``append.target_not_object``, ``increment.not_number``, ``increment.target_not_object``,
``decrement.not_number``, ``decrement.target_not_object``, ``remove.target_not_object``.

This module is pure (no I/O); :func:`apply_update_ops` never mutates its input.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, Field, TypeAdapter

__all__ = [
    "DOC_URL",
    "MAX_PATH_DEPTH",
    "MAX_SEGMENT_BYTES",
    "MAX_VALUE_DEPTH",
    "MAX_VALUE_KEYS",
    "MISSING",
    "PROTO_POLLUTION_KEYS",
    "AppendOp",
    "DecrementOp",
    "IncrementOp",
    "MergeOp",
    "RemoveOp",
    "SetOp",
    "UpdateOp",
    "UpdateOpError",
    "apply_update_ops",
    "parse_ops",
]

#: ``doc_url`` of every op error (protocol.md §6.1).
DOC_URL: Final = "https://iii.dev/docs/workers/iii-state#error-codes"
#: Most segments in a path.
MAX_PATH_DEPTH: Final = 32
#: Most UTF-8 bytes in one path segment.
MAX_SEGMENT_BYTES: Final = 256
#: Deepest nesting of a merge value (an object or array counts one level).
MAX_VALUE_DEPTH: Final = 16
#: Most top-level keys of a merge value.
MAX_VALUE_KEYS: Final = 1024
#: Keys refused in paths and at the top level of merge values.
PROTO_POLLUTION_KEYS: Final = frozenset({"__proto__", "constructor", "prototype"})

_I64_MIN: Final = -(2**63)
_I64_MAX: Final = 2**63 - 1
_U64_MAX: Final = 2**64 - 1


class _Missing:
    """Type of :data:`MISSING`."""

    def __repr__(self) -> str:
        return "MISSING"


#: Pass as the old value of a key that does not exist.
MISSING: Final = _Missing()


class SetOp(BaseModel):
    """``{"type": "set", "path": "f", "value": v}``."""

    type: Literal["set"]
    path: str = ""
    value: Any = None


class MergeOp(BaseModel):
    """``{"type": "merge", "path"?: "f" | ["a", "b"], "value": {...}}``."""

    type: Literal["merge"]
    path: str | list[str] | None = None
    value: Any


class IncrementOp(BaseModel):
    """``{"type": "increment", "path": "f", "by": int}``."""

    type: Literal["increment"]
    path: str = ""
    by: Annotated[int, Field(ge=_I64_MIN, le=_I64_MAX)]


class DecrementOp(BaseModel):
    """``{"type": "decrement", "path": "f", "by": int}``."""

    type: Literal["decrement"]
    path: str = ""
    by: Annotated[int, Field(ge=_I64_MIN, le=_I64_MAX)]


class AppendOp(BaseModel):
    """``{"type": "append", "path"?: "f" | ["a", "b"], "value": v}``."""

    type: Literal["append"]
    path: str | list[str] | None = None
    value: Any


class RemoveOp(BaseModel):
    """``{"type": "remove", "path": "f"}``."""

    type: Literal["remove"]
    path: str = ""


#: One operation, discriminated by ``type``.
UpdateOp = Annotated[
    SetOp | MergeOp | IncrementOp | DecrementOp | AppendOp | RemoveOp, Field(discriminator="type")
]

_OPS_ADAPTER: TypeAdapter[list[UpdateOp]] = TypeAdapter(list[UpdateOp])


def parse_ops(raw: Any) -> list[UpdateOp]:
    """Parse a JSON list of operations strictly.

    Raises:
        pydantic.ValidationError: not a list, an unknown ``type``, a missing or wrongly typed field.
    """
    return _OPS_ADAPTER.validate_python(raw, strict=True)


@dataclass(frozen=True, slots=True)
class UpdateOpError:
    """One skipped operation.

    Attributes:
        op_index: Position of the operation in ``ops`` (0-based).
        code: Error code, e.g. ``increment.not_number``.
        message: What went wrong.
        doc_url: Where the codes are documented.
    """

    op_index: int
    code: str
    message: str
    doc_url: str = DOC_URL

    def to_json(self) -> dict[str, Any]:
        """The wire shape, keys sorted: ``{"code", "doc_url", "message", "op_index"}``."""
        return {
            "code": self.code,
            "doc_url": self.doc_url,
            "message": self.message,
            "op_index": self.op_index,
        }


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _label(path: str) -> str:
    return "root" if path == "" else path


def _segments_label(segments: Sequence[str]) -> str:
    return "root" if not segments else "[" + ", ".join(segments) + "]"


def _field_segments(path: str) -> list[str]:
    return [] if path == "" else [path]


def _multi_segments(path: str | list[str] | None) -> list[str]:
    if path is None or path == "":
        return []
    if isinstance(path, str):
        return [path]
    return list(path)


def _check_path(op: str, index: int, segments: Sequence[str], errors: list[UpdateOpError], doc: str) -> bool:
    if len(segments) > MAX_PATH_DEPTH:
        errors.append(
            UpdateOpError(
                index,
                f"{op}.path.too_deep",
                f"the path has {len(segments)} segments; at most {MAX_PATH_DEPTH} are allowed",
                doc,
            )
        )
        return False
    for segment in segments:
        if segment == "":
            errors.append(
                UpdateOpError(index, f"{op}.path.empty_segment", "the path has an empty segment", doc)
            )
            return False
        size = len(segment.encode("utf-8"))
        if size > MAX_SEGMENT_BYTES:
            errors.append(
                UpdateOpError(
                    index,
                    f"{op}.path.segment_too_long",
                    f"a path segment is {size} bytes long; at most {MAX_SEGMENT_BYTES} are allowed",
                    doc,
                )
            )
            return False
        if segment in PROTO_POLLUTION_KEYS:
            errors.append(
                UpdateOpError(
                    index,
                    f"{op}.path.proto_polluted",
                    f"the path segment {segment!r} is refused (prototype pollution)",
                    doc,
                )
            )
            return False
    return True


def _depth(value: Any) -> int:
    """Nesting depth: scalars 0, an object or array 1 + its deepest member (stops past the limit)."""
    best = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        level += 1
        if level > best:
            best = level
            if best > MAX_VALUE_DEPTH:
                return best
        stack.extend((child, level) for child in children)
    return best


def _check_merge_value(index: int, value: Any, errors: list[UpdateOpError], doc: str) -> bool:
    if not isinstance(value, dict):
        errors.append(
            UpdateOpError(
                index,
                "merge.value.not_an_object",
                f"a merge value must be an object, got {_type_name(value)}",
                doc,
            )
        )
        return False
    if len(value) > MAX_VALUE_KEYS:
        errors.append(
            UpdateOpError(
                index,
                "merge.value.too_many_keys",
                f"the merge value has {len(value)} top-level keys; at most {MAX_VALUE_KEYS} are allowed",
                doc,
            )
        )
        return False
    for key in value:
        if key in PROTO_POLLUTION_KEYS:
            errors.append(
                UpdateOpError(
                    index,
                    "merge.value.proto_polluted",
                    f"the merge value's top-level key {key!r} is refused (prototype pollution)",
                    doc,
                )
            )
            return False
    depth = _depth(value)
    if depth > MAX_VALUE_DEPTH:
        errors.append(
            UpdateOpError(
                index,
                "merge.value.too_deep",
                f"the merge value is nested more than {MAX_VALUE_DEPTH} levels deep",
                doc,
            )
        )
        return False
    return True


def _walk_or_create(root: dict[str, Any], segments: Sequence[str]) -> dict[str, Any]:
    """The object at ``segments`` below ``root``, creating or replacing non-object intermediates."""
    node = root
    for segment in segments:
        child = node.get(segment)
        if not isinstance(child, dict):
            child = {}
            node[segment] = child
        node = child
    return node


def _add(value: Any, by: int) -> Any:
    """``value + by`` as the real engine computes it, or ``None`` when not a (representable) number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        total = value + by
        return total if _I64_MIN <= total <= _U64_MAX else None
    if isinstance(value, float):
        result = value + float(by)
        return result if math.isfinite(result) else None
    return None


def _initial_append(value: Any) -> Any:
    return value if isinstance(value, str) else [value]


def _append_to(
    target: Any, value: Any, label: str, index: int, errors: list[UpdateOpError], doc: str
) -> tuple[bool, Any]:
    """Append ``value`` to ``target``; returns ``(applied, new_target)``."""
    if isinstance(target, list):
        target.append(value)
        return True, target
    if isinstance(target, str):
        if isinstance(value, str):
            return True, target + value
        errors.append(
            UpdateOpError(
                index,
                "append.type_mismatch",
                f"cannot append {_type_name(value)} to the string at path {label!r}; append a string",
                doc,
            )
        )
        return False, target
    if target is None:
        return True, _initial_append(value)
    errors.append(
        UpdateOpError(
            index,
            "append.type_mismatch",
            f"cannot append at path {label!r}: it holds {_type_name(target)}, "
            "expected an array, a string, null or a missing field",
            doc,
        )
    )
    return False, target


def apply_update_ops(
    old_value: Any, ops: Sequence[UpdateOp], *, doc_url: str = DOC_URL
) -> tuple[Any, list[UpdateOpError]]:
    """Apply ``ops`` in order to a copy of ``old_value`` (see the module docstring).

    Args:
        old_value: The current value, or :data:`MISSING` when the key does not exist.
        ops: Parsed operations (:func:`parse_ops`).
        doc_url: ``doc_url`` of the reported errors.

    Returns:
        ``(new_value, errors)``: the value after every applicable operation, and one error per
        skipped operation in ``ops`` order.
    """
    errors: list[UpdateOpError] = []
    pristine = old_value is MISSING  # still the implicit {} of a missing key
    current: Any = {} if old_value is MISSING else copy.deepcopy(old_value)
    for index, op in enumerate(ops):
        if isinstance(op, SetOp):
            if not _check_path("set", index, _field_segments(op.path), errors, doc_url):
                continue
            value = copy.deepcopy(op.value)
            if op.path == "":
                current = value
            elif isinstance(current, dict):
                current[op.path] = value
            else:
                errors.append(
                    UpdateOpError(
                        index,
                        "set.target_not_object",
                        f"cannot set {_label(op.path)!r}: the value is {_type_name(current)}, not an object",
                        doc_url,
                    )
                )
                continue
            pristine = False
        elif isinstance(op, MergeOp):
            segments = _multi_segments(op.path)
            if not _check_path("merge", index, segments, errors, doc_url):
                continue
            if not _check_merge_value(index, op.value, errors, doc_url):
                continue
            patch: dict[str, Any] = copy.deepcopy(op.value)
            if not segments:
                if isinstance(current, dict):
                    current.update(patch)
                    pristine = False
                # A root merge into a non-object value is ignored, as in the real engine.
            else:
                if not isinstance(current, dict):
                    current = {}
                _walk_or_create(current, segments).update(patch)
                pristine = False
        elif isinstance(op, IncrementOp | DecrementOp):
            name = op.type
            by = op.by if isinstance(op, IncrementOp) else -op.by
            if not _check_path(name, index, _field_segments(op.path), errors, doc_url):
                continue
            if op.path == "":
                if pristine:
                    current = by
                else:
                    total = _add(current, by)
                    if total is None:
                        errors.append(
                            UpdateOpError(
                                index,
                                f"{name}.not_number",
                                f"cannot {name} the root: it holds {_type_name(current)}, not a number",
                                doc_url,
                            )
                        )
                        continue
                    current = total
            elif isinstance(current, dict):
                if op.path in current:
                    total = _add(current[op.path], by)
                    if total is None:
                        errors.append(
                            UpdateOpError(
                                index,
                                f"{name}.not_number",
                                f"cannot {name} {op.path!r}: it holds "
                                f"{_type_name(current[op.path])}, not a number",
                                doc_url,
                            )
                        )
                        continue
                    current[op.path] = total
                else:
                    current[op.path] = by
            else:
                errors.append(
                    UpdateOpError(
                        index,
                        f"{name}.target_not_object",
                        f"cannot {name} {op.path!r}: the value is {_type_name(current)}, not an object",
                        doc_url,
                    )
                )
                continue
            pristine = False
        elif isinstance(op, AppendOp):
            segments = _multi_segments(op.path)
            if not _check_path("append", index, segments, errors, doc_url):
                continue
            value = copy.deepcopy(op.value)
            if not segments:
                applied, current = _append_to(
                    None if pristine else current, value, "root", index, errors, doc_url
                )
                if applied:
                    pristine = False
            elif not isinstance(current, dict):
                errors.append(
                    UpdateOpError(
                        index,
                        "append.target_not_object",
                        f"cannot append at {_segments_label(segments)}: the value is "
                        f"{_type_name(current)}, not an object",
                        doc_url,
                    )
                )
            elif len(segments) == 1:
                leaf = segments[0]
                if leaf in current:
                    _, current[leaf] = _append_to(current[leaf], value, leaf, index, errors, doc_url)
                else:
                    current[leaf] = _initial_append(value)
                pristine = False
            else:
                parent = _walk_or_create(current, segments[:-1])
                leaf = segments[-1]
                if leaf in parent:
                    _, parent[leaf] = _append_to(parent[leaf], value, leaf, index, errors, doc_url)
                else:
                    parent[leaf] = [value]
                pristine = False
        else:  # RemoveOp
            if not _check_path("remove", index, _field_segments(op.path), errors, doc_url):
                continue
            if op.path == "":
                current = None
            elif isinstance(current, dict):
                current.pop(op.path, None)
            else:
                errors.append(
                    UpdateOpError(
                        index,
                        "remove.target_not_object",
                        f"cannot remove {op.path!r}: the value is {_type_name(current)}, not an object",
                        doc_url,
                    )
                )
                continue
            pristine = False
    return current, errors
