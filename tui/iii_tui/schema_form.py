"""Invoke forms generated from a function's request schema (pure logic, no widgets).

:func:`fields_from_schema` turns a JSON Schema (as registered in ``request_format``, protocol.md
§9; pydantic-style ``$defs``/``$ref``, ``anyOf`` with ``null``, enums, defaults, nested objects)
into :class:`FieldSpec` s; :func:`build_value` turns what the user typed back into a payload and
lists every validation problem by field path.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "MISSING",
    "FieldSpec",
    "build_value",
    "fields_from_schema",
    "flatten",
    "initial_raw",
    "raw_from_value",
]


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


#: No default value.
MISSING: Any = _Missing()

#: Nested objects deeper than this are edited as JSON text.
MAX_DEPTH = 4


@dataclass
class FieldSpec:
    """One form field.

    Attributes:
        path: Keys from the payload root to this field.
        kind: ``string``, ``integer``, ``number``, ``boolean``, ``enum``, ``object`` or ``json``.
        required: The schema lists it as required.
        nullable: ``null`` is allowed.
        default: The schema default (``MISSING`` when none).
        enum: The allowed values of an ``enum`` field.
        description: The schema's description or title.
        children: The fields of an ``object``.
        constraints: ``minimum``/``maximum``/``minLength``/``maxLength``/``pattern`` when given.
    """

    path: tuple[str, ...]
    kind: str
    required: bool = False
    nullable: bool = False
    default: Any = MISSING
    enum: list[Any] = field(default_factory=list)
    description: str = ""
    children: list[FieldSpec] = field(default_factory=list)
    constraints: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """The dotted path (``customer.address.city``)."""
        return ".".join(self.path)

    @property
    def name(self) -> str:
        """The last path segment."""
        return self.path[-1] if self.path else "(payload)"


def _resolve(schema: Any, root: Mapping[str, Any], depth: int = 0) -> dict[str, Any]:
    if not isinstance(schema, dict):
        return {}
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/") and depth < 16:
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part) if isinstance(target, dict) else None
        merged = {**_resolve(target, root, depth + 1), **{k: v for k, v in schema.items() if k != "$ref"}}
        return merged
    all_of = schema.get("allOf")
    if isinstance(all_of, list) and len(all_of) == 1:
        return {**_resolve(all_of[0], root, depth + 1), **{k: v for k, v in schema.items() if k != "allOf"}}
    return schema


def _unwrap_nullable(schema: dict[str, Any], root: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list):
            resolved = [_resolve(o, root) for o in options]
            non_null = [o for o in resolved if o.get("type") != "null"]
            nullable = len(non_null) < len(resolved)
            if len(non_null) == 1:
                rest = {k: v for k, v in schema.items() if k != key}
                return {**non_null[0], **rest}, nullable
            return schema, nullable
    types = schema.get("type")
    if isinstance(types, list):
        non_null = [t for t in types if t != "null"]
        if len(non_null) == 1:
            return {**schema, "type": non_null[0]}, len(non_null) < len(types)
    return schema, False


def _field(
    path: tuple[str, ...], schema: Any, required: bool, root: Mapping[str, Any], depth: int
) -> FieldSpec:
    resolved, nullable = _unwrap_nullable(_resolve(schema, root), root)
    description = str(resolved.get("description") or resolved.get("title") or "")
    default = resolved.get("default", MISSING)
    constraints: dict[str, Any] = {
        k: resolved[k] for k in ("minimum", "maximum", "minLength", "maxLength", "pattern") if k in resolved
    }
    spec = FieldSpec(
        path, "json", required, nullable, default, description=description, constraints=constraints
    )
    if "enum" in resolved and isinstance(resolved["enum"], list):
        spec.kind, spec.enum = "enum", [v for v in resolved["enum"] if v is not None]
        spec.nullable = spec.nullable or None in resolved["enum"]
        return spec
    if "const" in resolved:
        spec.kind, spec.enum = "enum", [resolved["const"]]
        return spec
    kind = resolved.get("type")
    if kind in ("string", "integer", "number", "boolean"):
        spec.kind = str(kind)
    elif (kind == "object" or "properties" in resolved) and isinstance(resolved.get("properties"), dict):
        if depth >= MAX_DEPTH:
            return spec
        spec.kind = "object"
        req = set(resolved.get("required") or [])
        spec.children = [
            _field((*path, str(name)), sub, name in req, root, depth + 1)
            for name, sub in resolved["properties"].items()
        ]
    return spec


def fields_from_schema(schema: Any) -> list[FieldSpec]:
    """The form fields of a request schema.

    An object schema gives one field per property; anything else (no schema, an array, a
    scalar) gives a single field for the whole payload (path ``()``).
    """
    if not isinstance(schema, dict) or not schema:
        return [FieldSpec((), "json", False, True)]
    root = schema
    top = _field((), schema, False, root, 0)
    if top.kind == "object":
        return top.children
    if top.kind == "json" and top.default is MISSING and _resolve(schema, root).get("type") == "object":
        top.default = {}
    return [top]


def flatten(specs: list[FieldSpec]) -> list[FieldSpec]:
    """Every field, parents before their children."""
    out: list[FieldSpec] = []
    for spec in specs:
        out.append(spec)
        out.extend(flatten(spec.children))
    return out


def _text_of(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value)


def initial_raw(specs: list[FieldSpec]) -> dict[str, Any]:
    """The form's starting values (schema defaults), by field key."""
    raw: dict[str, Any] = {}
    for spec in flatten(specs):
        if spec.kind == "object":
            continue
        if spec.kind == "boolean":
            raw[spec.key] = bool(spec.default) if spec.default is not MISSING else False
        elif spec.kind == "enum":
            raw[spec.key] = spec.default if spec.default is not MISSING else MISSING
        elif spec.default is not MISSING and spec.default is not None:
            raw[spec.key] = _text_of(spec.default)
        else:
            raw[spec.key] = ""
    return raw


def raw_from_value(specs: list[FieldSpec], value: Any) -> dict[str, Any]:
    """Form values from a payload (the raw-JSON editor switching back to the form)."""
    raw = initial_raw(specs)
    for spec in flatten(specs):
        if spec.kind == "object":
            continue
        cursor: Any = value
        for part in spec.path:
            cursor = cursor.get(part, MISSING) if isinstance(cursor, dict) else MISSING
        if cursor is MISSING:
            continue
        if spec.kind == "boolean":
            raw[spec.key] = bool(cursor)
        elif spec.kind == "enum":
            raw[spec.key] = cursor if cursor in spec.enum else MISSING
        elif cursor is None:
            raw[spec.key] = ""
        else:
            raw[spec.key] = _text_of(cursor)
    return raw


def _convert(spec: FieldSpec, text: Any) -> tuple[Any, str | None]:
    if spec.kind == "boolean":
        return bool(text), None
    if spec.kind == "enum":
        if text is MISSING:
            return MISSING, ("required" if spec.required else None)
        return text, None if text in spec.enum else f"must be one of {spec.enum}"
    text = "" if text is None else str(text)
    if text.strip() == "":
        if spec.required and not spec.nullable:
            return MISSING, "required"
        if spec.required:
            return None, None
        return MISSING, None
    if spec.kind == "integer":
        try:
            number: Any = int(text.strip())
        except ValueError:
            return MISSING, "must be an integer"
    elif spec.kind == "number":
        try:
            number = float(text.strip())
        except ValueError:
            return MISSING, "must be a number"
        if number.is_integer() and re.fullmatch(r"\s*-?\d+\s*", text):
            number = int(number)
    elif spec.kind == "string":
        cons = spec.constraints
        if "minLength" in cons and len(text) < int(cons["minLength"]):
            return MISSING, f"at least {cons['minLength']} characters"
        if "maxLength" in cons and len(text) > int(cons["maxLength"]):
            return MISSING, f"at most {cons['maxLength']} characters"
        if isinstance(cons.get("pattern"), str):
            try:
                if not re.search(cons["pattern"], text):
                    return MISSING, f"must match {cons['pattern']}"
            except re.error:
                pass
        return text, None
    else:
        try:
            return json.loads(text), None
        except ValueError as exc:
            return MISSING, f"invalid JSON ({exc.args[0] if exc.args else exc})"
    cons = spec.constraints
    if "minimum" in cons and number < cons["minimum"]:
        return MISSING, f"must be ≥ {cons['minimum']}"
    if "maximum" in cons and number > cons["maximum"]:
        return MISSING, f"must be ≤ {cons['maximum']}"
    return number, None


def _build(specs: list[FieldSpec], raw: Mapping[str, Any], errors: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for spec in specs:
        if spec.kind == "object":
            child = _build(spec.children, raw, errors)
            if child or spec.required:
                out[spec.name] = child
            continue
        value, error = _convert(spec, raw.get(spec.key, MISSING if spec.kind == "enum" else ""))
        if error:
            errors[spec.key or "(payload)"] = error
            continue
        if spec.kind == "boolean" and not spec.required and value == (spec.default is True):
            continue
        if value is not MISSING:
            out[spec.name] = value
    return out


def build_value(specs: list[FieldSpec], raw: Mapping[str, Any]) -> tuple[Any, dict[str, str]]:
    """The payload for the form values ``raw`` (by field key), and the errors by field key."""
    errors: dict[str, str] = {}
    if len(specs) == 1 and specs[0].path == ():
        value, error = _convert(specs[0], raw.get("", ""))
        if error:
            errors["(payload)"] = error
        return (None if value is MISSING else value), errors
    return _build(specs, raw, errors), errors
