"""Prepare registered schemas for datamodel-code-generator (codegen.md §2.8, §3).

Functions register JSON Schema from pydantic (2020-12, ``$defs``, ``anyOf`` with null, titles),
schemars (draft-07, ``definitions``, ``format: uint64``), zod (2020-12, no titles), by hand, or the
legacy ``RegisterFunctionFormat`` (protocol.md §9). This module turns one such schema into a
*prepared side*: its root and every local definition as separate schemas whose ``$ref``\\ s point
at other entries by a local key, ready to be named and handed to the generator.

What it handles:

* a schema that is clearly not JSON Schema (see :func:`schema_problem`) is typed ``Any`` with a
  warning, before the generator is tried on it;
* an absent, ``true``, ``false``, empty or annotation-only schema is *open*: typed ``Any``;
  ``{"type": "null"}`` is typed ``None``;
* a root that is only a ``$ref`` to one of its definitions is that definition (no wrapper class),
  and so is a root identical to one of its definitions (schemars' recursive enums);
* a root ``"type": ["object", "null"]`` (the Python SDK's ``Optional[Model]``) is generated
  without ``null`` and typed ``Model | None``;
* ``$defs`` and ``definitions`` (and ``#`` and other local JSON pointers) become entries;
  refs to other documents become open schemas;
* union members (``oneOf``/``anyOf``) that are titled inline objects are lifted into entries
  named by their title instead of the generator's numbered ``Parent1``, ``Parent2``;
* defaults the generator cannot type under mypy are dropped (objects, arrays other than ``[]``,
  defaults beside ``$ref``/``allOf``/``anyOf``/``oneOf``, defaults of formatted strings, defaults of
  the wrong type): the server applies its own defaults, and requests leave unset fields out;
* an object's title with spaces and no description becomes the description (the docstring);
  a property's title that pydantic derived from its name (``Unit Price Cents``) is dropped;
* a channel ref (protocol.md §5; see :func:`channel_kind`), inline or behind a ``$ref``, is typed
  by the side's :class:`ChannelTypes` (a ref a caller sends, a ref a caller receives, or the live
  ``ChannelReader``/``ChannelWriter`` a handler receives) instead of becoming a model.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CALLER_RECEIVES",
    "CALLER_SENDS",
    "CHANNEL_MARKER",
    "HANDLER_RECEIVES",
    "LOCAL_REF",
    "MAX_SCHEMA_DEPTH",
    "NULL",
    "OPEN",
    "ChannelTypes",
    "Entry",
    "PreparedSide",
    "canonical_json",
    "channel_kind",
    "legacy_format_to_schema",
    "prepare_side",
    "schema_problem",
    "unusable",
]

#: Marker key of a rewritten local reference: ``{"$ref": "#/$defs/<placeholder>"}`` is built later.
LOCAL_REF = "x-iii-local-ref"

OPEN = "open"
NULL = "null"

#: The SDK's marker of a channel ref schema (``iii_typed.formats.CHANNEL_MARKER``):
#: ``"reader"`` or ``"writer"``, what the receiver of the ref gets.
CHANNEL_MARKER = "x-iii-channel"
_CHANNEL_REF_KEYS = frozenset({"channel_id", "access_key", "direction"})
#: Keyword datamodel-code-generator reads as "this is the type at this dotted path" (imported).
_CUSTOM_TYPE = "customTypePath"


@dataclass(frozen=True)
class ChannelTypes:
    """Dotted paths of the types a channel ref is generated as, by what its receiver gets.

    Attributes:
        reader: A ref whose receiver reads (direction ``read``).
        writer: A ref whose receiver writes (direction ``write``).
        either: A ref whose schema does not fix the direction.
    """

    reader: str
    writer: str
    either: str

    def path(self, kind: str) -> str:
        return self.reader if kind == "reader" else self.writer if kind == "writer" else self.either


#: A caller sends the ref (function requests, trigger configs, what a trigger handler returns):
#: ``channel.reader_ref`` / ``channel.writer_ref``, or the SDK's channel object itself.
CALLER_SENDS = ChannelTypes(
    "iii_typed.stubs.ReaderRefArg", "iii_typed.stubs.WriterRefArg", "iii_typed.stubs.ChannelRefArg"
)
#: A caller receives the ref in a function's result: a ``StreamChannelRef``.
CALLER_RECEIVES = ChannelTypes(
    "iii_typed.stubs.ReaderRef", "iii_typed.stubs.WriterRef", "iii_typed.channels.StreamChannelRef"
)
#: A handler receives the ref in its payload: the SDK hands it the live channel side.
HANDLER_RECEIVES = ChannelTypes(
    "iii_typed.ChannelReader", "iii_typed.ChannelWriter", "iii_typed.stubs.ChannelEndpoint"
)
#: Description the SDK gives every channel ref schema: not worth a docstring on each field.
_SDK_CHANNEL_DESCRIPTION = re.compile(r"A channel ref \(direction '(read|write)'\)")


def channel_kind(node: Any) -> str | None:
    """Whether ``node`` is the schema of a channel ref, and which: ``"reader"``, ``"writer"``,
    ``"either"`` or ``None``.

    A schema marked ``"x-iii-channel": "reader" | "writer"`` (what the SDK registers for a
    ``ChannelReader``/``ChannelWriter`` field, and the engine publishes for the ``http`` payload's
    ``request_body``/``response``) is one. So is an object whose properties are exactly
    ``channel_id``, ``access_key`` and ``direction`` (the ``StreamChannelRef`` shape of other
    producers): ``direction`` fixed to ``read`` (``const`` or a one-value ``enum``) makes it a
    reader, ``write`` a writer, anything else either.
    """
    if not isinstance(node, dict):
        return None
    marker = node.get(CHANNEL_MARKER)
    if marker in ("reader", "writer"):
        return str(marker)
    props = node.get("properties")
    if not isinstance(props, dict) or set(props) != _CHANNEL_REF_KEYS:
        return None
    if node.get("type", "object") != "object":
        return None
    direction = props["direction"]
    values: Any = None
    if isinstance(direction, dict):
        values = [direction["const"]] if "const" in direction else direction.get("enum")
    if values == ["read"]:
        return "reader"
    if values == ["write"]:
        return "writer"
    return "either"


#: Sub-schemas nested deeper than this (``properties`` in ``items`` in …) are not generated: the
#: generator's cost grows fast with depth and it fails with a ``RecursionError`` somewhere past 100.
MAX_SCHEMA_DEPTH = 64

_ANNOTATION_KEYS = frozenset(
    {
        "$schema",
        "$id",
        "$comment",
        "title",
        "description",
        "examples",
        "default",
        "deprecated",
        "readOnly",
        "writeOnly",
        "$defs",
        "definitions",
        "$anchor",
    }
)
_SCHEMA_VALUED = (
    "additionalProperties",
    "additionalItems",
    "contains",
    "not",
    "if",
    "then",
    "else",
    "propertyNames",
    "unevaluatedProperties",
    "unevaluatedItems",
    "contentSchema",
)
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
_SCHEMA_MAPS = ("properties", "patternProperties", "dependentSchemas")
_NUMERIC_FORMATS = frozenset(
    {
        "int",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "float",
        "double",
    }
)
_LEGACY_TYPES = frozenset({"string", "number", "boolean", "object", "array", "null", "map"})
_JSON_TYPES = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def canonical_json(value: Any) -> str:
    """Compact JSON with sorted keys: the identity of a schema."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass
class Entry:
    """One type a side needs: its root or a local definition.

    Attributes:
        key: Local key, unique within the side (``#`` for the root, else a JSON pointer or a
            lifted member's key).
        preferred: Preferred class name before collision handling (a title or a definition key,
            not yet sanitised), or ``None`` for the root (named from the owner).
        schema: The schema with local refs replaced by ``{"x-iii-local-ref": key}``.
        refs: Local keys this entry refers to directly.
    """

    key: str
    preferred: str | None
    schema: dict[str, Any]
    refs: set[str] = field(default_factory=set)


@dataclass
class PreparedSide:
    """A prepared request/response/config/payload/return schema.

    Attributes:
        kind: ``"open"`` (typed ``Any``), ``"null"`` (typed ``None``) or ``"schema"``.
        root_key: Key of the entry that *is* this side's type (``#`` or a definition's key).
        nullable: The side's type is ``<root> | None``.
        entries: Entries by key, in a stable order; empty unless ``kind == "schema"``.
        warnings: What was dropped or replaced, for the user.
        unusable: ``kind`` is ``"open"`` because a schema was registered but cannot be used (see
            :func:`unusable`), not because none was.
    """

    kind: str
    root_key: str = "#"
    nullable: bool = False
    entries: dict[str, Entry] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    unusable: bool = False

    def deep_hash(self, key: str, names: Mapping[str, str]) -> str:
        """Identity of entry ``key`` with everything it reaches, for sharing one class.

        Two entries are the same type when their schemas are equal and every entry they refer
        to (transitively) is equal and wants the same class name; local keys do not matter.

        Args:
            key: The entry.
            names: Preferred class name of every entry of this side, by key.
        """
        order: dict[str, int] = {}
        todo = [key]
        while todo:
            current = todo.pop(0)
            if current not in order:
                order[current] = len(order)
                todo.extend(sorted(self.entries[current].refs))

        def relabel(node: Any) -> Any:
            if isinstance(node, dict):
                if LOCAL_REF in node:
                    return {**node, LOCAL_REF: order[node[LOCAL_REF]]}
                return {k: relabel(v) for k, v in node.items()}
            if isinstance(node, list):
                return [relabel(v) for v in node]
            return node

        parts = [[names[k], relabel(self.entries[k].schema)] for k in order]
        return hashlib.sha256(canonical_json(parts).encode()).hexdigest()


#: Characters the generator would copy raw into docstrings: line breaks other than LF (the
#: generator splits lines on them and loses the docstring's end) and other control characters (a
#: NUL cannot be compiled).
_LINE_BREAKS = re.compile("\r\n?|[\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")
_CONTROLS = re.compile("[\x00-\x08\x0e-\x1b\x1f\x7f-\x84\x86-\x9f]")


def doc_text(text: str) -> str:
    """A description as documentation text: line breaks become LF and other control
    characters a visible backslash escape (``\\xNN``), so the generated docstring is valid Python
    and still says what was sent."""
    text = _LINE_BREAKS.sub("\n", text)
    return _CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def legacy_format_to_schema(fmt: dict[str, Any]) -> dict[str, Any]:
    """Convert a legacy ``RegisterFunctionFormat`` (protocol.md §9) to JSON Schema."""
    kind = fmt.get("type")
    out: dict[str, Any] = {}
    if isinstance(fmt.get("description"), str):
        out["description"] = fmt["description"]
    if kind == "map":
        out["type"] = "object"
    elif kind in _LEGACY_TYPES:
        out["type"] = kind
    if kind == "object" and isinstance(fmt.get("body"), list):
        props: dict[str, Any] = {}
        required: list[str] = []
        for item in fmt["body"]:
            if isinstance(item, dict) and isinstance(item.get("name"), str):
                props[item["name"]] = legacy_format_to_schema(item)
                if item.get("required") is True:
                    required.append(item["name"])
        out["properties"] = props
        if required:
            out["required"] = sorted(required)
    if kind == "array" and isinstance(fmt.get("items"), dict):
        out["items"] = legacy_format_to_schema(fmt["items"])
    return out


# -- validation ----------------------------------------------------------------------------

_TYPE_NAMES = frozenset({"string", "integer", "number", "boolean", "object", "array", "null"})
#: Keywords whose value is a map from a name (or, for ``patternProperties``, a regex) to a schema.
_NAMED_SCHEMAS = ("properties", "patternProperties", "dependentSchemas", "$defs", "definitions")
_COUNTS = (
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "minContains",
    "maxContains",
)


def _kind(value: Any) -> str:
    """``value``'s JSON type with an article, for messages (``an integer``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object" if isinstance(value, dict) else f"a {type(value).__name__}"


def _pointer(base: str, part: str | int) -> str:
    text = str(part).replace("~", "~0").replace("/", "~1")
    return f"{base}/{text}"


def _short(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False)  # JSON, as the schema was written
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


@functools.lru_cache(maxsize=1024)
def _regex_problem(pattern: str) -> str | None:
    """Why neither of pydantic's regex engines (Python's ``re``, Rust's ``regex``) compiles
    ``pattern``, or ``None`` when one does (the generated module picks the one that works)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # FutureWarning: "possible nested set", …
            re.compile(pattern)
        return None
    except (re.error, ValueError, RecursionError, OverflowError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    from pydantic_core import SchemaError, SchemaValidator, core_schema

    try:
        SchemaValidator(core_schema.str_schema(pattern=pattern))
    except SchemaError:
        return reason
    return None


def _keyword_problem(node: dict[str, Any], at: str) -> str | None:
    """A problem with the non-schema keywords of one schema object (``type``, ``required``, …)."""
    kind = node.get("type")
    if "type" in node:
        names = kind if isinstance(kind, list) else [kind]
        for name in names:
            if not isinstance(name, str) or name not in _TYPE_NAMES:
                return f"{at}/type: {_short(name)} is not a JSON Schema type"
    required = node.get("required")
    if "required" in node and not (isinstance(required, list) and all(isinstance(r, str) for r in required)):
        return f"{at}/required is not an array of property names"
    if "enum" in node and not isinstance(node["enum"], list):
        return f"{at}/enum is {_kind(node['enum'])}, not an array"
    if "$ref" in node and not isinstance(node["$ref"], str):
        return f"{at}/$ref is {_kind(node['$ref'])}, not a string"
    if "pattern" in node:
        pattern = node["pattern"]
        if not isinstance(pattern, str):
            return f"{at}/pattern is {_kind(pattern)}, not a string"
        reason = _regex_problem(pattern)
        if reason is not None:
            return f"{at}/pattern {_short(pattern)} is not a regular expression ({reason})"
    for key in _COUNTS:
        if key in node and not _is_count(node[key]):
            return f"{at}/{key} is {_short(node[key])}, not a non-negative integer"
    if "multipleOf" in node:
        value = node["multipleOf"]
        if not (_is_number(value) and math.isfinite(value) and value > 0):
            return f"{at}/multipleOf is {_short(value)}, not a number greater than 0"
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_count(value: Any) -> bool:
    """A JSON Schema non-negative integer (``2.0`` counts: JSON does not tell them apart)."""
    if isinstance(value, float):
        return value.is_integer() and value >= 0
    return _is_number(value) and value >= 0


def schema_problem(schema: Any) -> str | None:
    """Why ``schema`` is clearly not a JSON Schema that can be generated, or ``None``.

    Cheap structural checks, so the generator is never run on garbage: every sub-schema is an
    object or a boolean; ``properties``, ``patternProperties``, ``dependentSchemas``, ``$defs`` and
    ``definitions`` are objects of sub-schemas; ``items`` is a sub-schema or an array of them;
    ``allOf``, ``anyOf``, ``oneOf`` and ``prefixItems`` are arrays of sub-schemas; ``type`` is a
    JSON type name or an array of them; ``required`` is an array of strings; ``enum`` is an array;
    ``$ref`` is a string; every ``pattern`` (and ``patternProperties`` key) compiles under Python's
    ``re`` or pydantic's Rust engine; length and count bounds are non-negative integers;
    ``multipleOf`` is positive; nesting stays within :data:`MAX_SCHEMA_DEPTH`; the reserved key
    ``x-iii-local-ref`` is not used. Keywords that are only unusual (unknown keywords, formats,
    empty ``enum``, contradictory bounds) are not problems.

    Args:
        schema: A registered schema (after legacy-format conversion), any JSON value.

    Returns:
        One line naming the first problem found by JSON pointer (``#/properties is an integer,
        not an object``), in a stable order, or ``None``.
    """
    stack: list[tuple[Any, str, int]] = [(schema, "#", 0)]
    while stack:
        node, at, depth = stack.pop()
        if isinstance(node, bool):
            continue
        if not isinstance(node, dict):
            return f"{at} is {_kind(node)}, not a schema"
        if depth > MAX_SCHEMA_DEPTH:
            return f"sub-schemas are nested more than {MAX_SCHEMA_DEPTH} levels deep"
        if LOCAL_REF in node:
            return f"{at} uses the reserved key {LOCAL_REF!r}"
        problem = _keyword_problem(node, at)
        if problem is not None:
            return problem
        children: list[tuple[Any, str]] = []
        for key in _NAMED_SCHEMAS:
            if key not in node:
                continue
            value = node[key]
            where = _pointer(at, key)
            if not isinstance(value, dict):
                return f"{where} is {_kind(value)}, not an object"
            for name, sub in value.items():
                if key == "patternProperties":
                    reason = _regex_problem(name)
                    if reason is not None:
                        return f"{where}: key {_short(name)} is not a regular expression ({reason})"
                children.append((sub, _pointer(where, name)))
        for key in _SCHEMA_VALUED:
            if key in node:
                children.append((node[key], _pointer(at, key)))
        for key in (*_SCHEMA_LISTS, "items"):
            if key not in node:
                continue
            value = node[key]
            where = _pointer(at, key)
            if isinstance(value, list):
                children.extend((sub, _pointer(where, i)) for i, sub in enumerate(value))
            elif key == "items":
                children.append((value, where))
            else:
                return f"{where} is {_kind(value)}, not an array of schemas"
        stack.extend((sub, where, depth + 1) for sub, where in reversed(children))
    return None


def unusable(reason: str) -> PreparedSide:
    """A side whose registered schema cannot be used: typed ``Any``, with ``reason`` as its only
    warning (the caller prefixes the function or trigger type and the side)."""
    return PreparedSide(kind=OPEN, warnings=[f"{reason}: typed Any"], unusable=True)


def _is_legacy_format(schema: dict[str, Any]) -> bool:
    return (
        isinstance(schema.get("name"), str)
        and schema.get("type") in _LEGACY_TYPES
        and "properties" not in schema
        and "$schema" not in schema
        and (schema.get("type") == "map" or "body" in schema or "required" in schema or len(schema) <= 3)
    )


def _is_open(schema: Any) -> bool:
    if schema is None or schema is True or schema is False:
        return True
    if not isinstance(schema, dict):
        return True
    return all(k in _ANNOTATION_KEYS for k in schema)


def _default_fits(node: dict[str, Any], value: Any) -> bool:
    if value is None:
        return True
    if any(k in node for k in ("$ref", "allOf", "anyOf", "oneOf", "format", "not")):
        return False
    if "enum" in node and isinstance(node["enum"], list):
        return value in node["enum"] and isinstance(value, str | int | float | bool)
    if "const" in node:
        return bool(node["const"] == value)
    kind = node.get("type")
    kinds = kind if isinstance(kind, list) else [kind]
    if isinstance(value, bool):
        return "boolean" in kinds
    for k in kinds:
        if k in _JSON_TYPES and isinstance(value, _JSON_TYPES[k]) and not isinstance(value, bool):
            return True
    return value == [] and "array" in kinds


class _Preparer:
    def __init__(self, root: dict[str, Any], channels: ChannelTypes | None = None) -> None:
        self.root = root
        self.channels = channels
        self.entries: dict[str, Entry] = {}
        self.warnings: list[str] = []
        self._pending: list[tuple[str, str | None, Any]] = []
        self._lifted = 0

    # -- references ------------------------------------------------------------------------
    def _resolve_pointer(self, pointer: str) -> Any:
        node: Any = self.root
        for raw in pointer[2:].split("/") if pointer != "#" else []:
            part = raw.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                return None
        return node

    def _ref(self, ref: str, refs: set[str]) -> dict[str, Any]:
        if ref == "#" or ref == "#/":
            refs.add("#")
            return {LOCAL_REF: "#"}
        if not ref.startswith("#/"):
            self.warnings.append(f"$ref {ref!r} points outside the schema: typed Any")
            return {}
        target = self._resolve_pointer(ref)
        if target is None:
            self.warnings.append(f"$ref {ref!r} does not resolve: typed Any")
            return {}
        channel = self.channel(target, describe=False)  # a definition's description is its type's
        if channel is not None:
            return channel
        if ref not in self.entries and all(ref != key for key, _, _ in self._pending):
            preferred = ref.rsplit("/", 1)[-1].replace("~1", "/").replace("~0", "~")
            self._pending.append((ref, preferred, target))
        refs.add(ref)
        return {LOCAL_REF: ref}

    def channel(self, node: Any, *, describe: bool = True) -> dict[str, Any] | None:
        """The generator's schema for ``node`` when it is a channel ref (and this side types
        channels), else ``None``; with ``describe``, it keeps ``node``'s own description."""
        kind = channel_kind(node) if self.channels is not None else None
        if kind is None or self.channels is None:
            return None
        out: dict[str, Any] = {_CUSTOM_TYPE: self.channels.path(kind)}
        description = node.get("description")
        if describe and isinstance(description, str) and not _SDK_CHANNEL_DESCRIPTION.fullmatch(description):
            out["description"] = doc_text(description)
        return out

    # -- walking ---------------------------------------------------------------------------
    def rewrite(self, node: Any, refs: set[str], *, in_union: bool = False) -> Any:
        if node is True:
            return {}
        if node is False:
            self.warnings.append("a `false` sub-schema (nothing allowed) is typed Any")
            return {}
        if not isinstance(node, dict):
            return node
        channel = self.channel(node)
        if channel is not None:
            return channel
        if in_union and node.get("type") == "object" and isinstance(node.get("title"), str) and node["title"]:
            self._lifted += 1
            key = f"#lifted/{self._lifted}"
            self._pending.append((key, node["title"], node))
            refs.add(key)
            return {LOCAL_REF: key}
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in ("$defs", "definitions", "$schema", "$id", "$anchor", "$comment"):
                continue
            if key == "$ref" and isinstance(value, str):
                out.update(self._ref(value, refs))
            elif isinstance(value, bool) and (key in _SCHEMA_VALUED or key == "items"):
                out[key] = value  # `additionalProperties: false` closes an object: keep it
            elif key in _SCHEMA_VALUED:
                out[key] = self.rewrite(value, refs)
            elif key == "items":
                if isinstance(value, list):
                    out[key] = [self.rewrite(v, refs) for v in value]
                else:
                    out[key] = self.rewrite(value, refs)
            elif key in _SCHEMA_LISTS and isinstance(value, list):
                out[key] = [self.rewrite(v, refs, in_union=key in ("oneOf", "anyOf")) for v in value]
            elif key in _SCHEMA_MAPS and isinstance(value, dict):
                out[key] = {
                    name: self.rewrite(_without_auto_title(name, sub), refs) for name, sub in value.items()
                }
            elif key == "description" and isinstance(value, str):
                out[key] = doc_text(value)
            else:
                out[key] = value
        if out.get("format") in _NUMERIC_FORMATS and out.get("type") in ("integer", "number"):
            del out["format"]  # schemars' width hints (uint64, int32, double): bounds say enough
        if "default" in out and (LOCAL_REF in out or not _default_fits(out, out["default"])):
            del out["default"]
        if out.get("type") == "object" and not any(
            k in out
            for k in ("properties", "patternProperties", "additionalProperties", "allOf", "anyOf", "oneOf")
        ):
            # A bare object is a free-form map, not an empty model that would drop every key.
            out["additionalProperties"] = {}
        title = out.get("title")
        if (
            isinstance(title, str)
            and " " in title.strip()
            and "description" not in out
            and (out.get("type") == "object" or "properties" in out)
        ):
            # A sentence-like title of a model is its docstring (pydantic's per-field titles such
            # as "Created At" are not: they only repeat the field name).
            out["description"] = doc_text(title.strip())
        return out

    def add_entry(self, key: str, preferred: str | None, schema: Any) -> None:
        refs: set[str] = set()
        body = self.rewrite(schema, refs) if isinstance(schema, dict) else {}
        if not isinstance(body, dict):
            body = {}
        self.entries[key] = Entry(key=key, preferred=preferred, schema=body, refs=refs)

    def drain(self) -> None:
        # Lifted union members are rewritten as entries of their own (top level: not lifted again).
        while self._pending:
            key, preferred, schema = self._pending.pop(0)
            if key not in self.entries:
                self.add_entry(key, preferred, schema)


def _without_auto_title(name: str, schema: Any) -> Any:
    # pydantic titles every property after its name ("unit_price_cents" -> "Unit Price Cents"):
    # that says nothing the field name does not, and would only add Field(title=...) noise.
    if isinstance(schema, dict) and schema.get("title") == name.replace("_", " ").title():
        return {k: v for k, v in schema.items() if k != "title"}
    return schema


def _only_ref(schema: dict[str, Any]) -> str | None:
    keys = {k for k in schema if k not in _ANNOTATION_KEYS}
    if keys == {"$ref"} and isinstance(schema["$ref"], str):
        return str(schema["$ref"])
    return None


def prepare_side(schema: Any, channels: ChannelTypes | None = None) -> PreparedSide:
    """Prepare one side's schema (see the module docstring for every rule).

    Args:
        schema: The registered schema.
        channels: How channel refs in it are typed (:data:`CALLER_SENDS`, :data:`CALLER_RECEIVES`
            or :data:`HANDLER_RECEIVES`); ``None`` generates them as ordinary models.
    """
    if isinstance(schema, dict) and _is_legacy_format(schema):
        schema = legacy_format_to_schema(schema)
    if schema is not None and not isinstance(schema, bool):
        problem = schema_problem(schema)
        if problem is not None:
            return unusable(f"not a usable JSON Schema ({problem})")
    if _is_open(schema):
        side = PreparedSide(kind=OPEN)
        if schema is False:
            side.warnings.append("a `false` schema (nothing allowed) is typed Any")
        return side
    assert isinstance(schema, dict)
    core = {k: v for k, v in schema.items() if k not in _ANNOTATION_KEYS}
    if core == {"type": "null"}:
        return PreparedSide(kind=NULL)
    nullable = False
    kind = schema.get("type")
    if isinstance(kind, list) and "null" in kind and "object" in kind:
        rest = [k for k in kind if k != "null"]
        schema = {**schema, "type": rest[0] if len(rest) == 1 else rest}
        nullable = True
    prep = _Preparer(schema, channels)
    root_ref = _only_ref(schema)
    if (
        root_ref is not None
        and root_ref.startswith("#/")
        and prep._resolve_pointer(root_ref) is not None
        and prep.channel(prep._resolve_pointer(root_ref)) is None
    ):
        refs: set[str] = set()
        prep._ref(root_ref, refs)
        prep.drain()
        root_key = root_ref
    else:
        prep.add_entry("#", None, schema)
        prep.drain()
        root_key = "#"
        # A root identical to one of its own definitions (schemars recursive enums) is that
        # definition; keep "#" only when something refers to it.
        root_schema = canonical_json(prep.entries["#"].schema)
        for key, entry in prep.entries.items():
            if key != "#" and canonical_json(entry.schema) == root_schema:
                root_key = key
                break
        if root_key != "#" and not any("#" in e.refs for k, e in prep.entries.items() if k != "#"):
            del prep.entries["#"]
    problem = _reference_problem(prep.entries, root_key)
    if problem is not None:
        return unusable(f"not a usable JSON Schema ({problem})")
    return PreparedSide(
        kind="schema",
        root_key=root_key,
        nullable=nullable,
        entries=dict(sorted(prep.entries.items(), key=lambda kv: (kv[0] != "#", kv[0]))),
        warnings=prep.warnings,
    )


#: Keywords under which a reference is inside a container type (a model's field, a list's or a
#: dict's items): a reference cycle through one of them is an ordinary recursive type.
_CONTAINERS = frozenset(
    {
        "properties",
        "patternProperties",
        "additionalProperties",
        "dependentSchemas",
        "items",
        "prefixItems",
        "additionalItems",
        "contains",
        "unevaluatedProperties",
        "unevaluatedItems",
        "propertyNames",
        "contentSchema",
    }
)
#: Most type references a side's root may stand for once its type aliases (definitions that do not
#: become classes) are expanded. Definitions that each refer to the previous one several times
#: (``L2 = L1 | list[L1]``…) double or triple it per level: past this, mypy needs minutes and
#: gigabytes to check the module (40 such levels exhaust the memory of a machine).
MAX_EXPANDED_REFERENCES = 1000


def _references(schema: Any, guarded: bool, out: list[tuple[str, bool]]) -> None:
    """Every local reference in ``schema`` with whether a container keyword is above it."""
    stack: list[tuple[Any, bool]] = [(schema, guarded)]
    while stack:
        node, inside = stack.pop()
        if isinstance(node, list):
            stack.extend((item, inside) for item in node)
        elif isinstance(node, dict):
            if LOCAL_REF in node:
                out.append((node[LOCAL_REF], inside))
                continue
            for key, value in node.items():
                if key in _SCHEMA_MAPS:
                    if isinstance(value, dict):
                        stack.extend((sub, True) for sub in value.values())
                elif key in _SCHEMA_VALUED or key in _SCHEMA_LISTS or key == "items":
                    stack.append((value, inside or key in _CONTAINERS))


def _reference_problem(entries: Mapping[str, Entry], root_key: str) -> str | None:
    """A reference structure no generated module can type, or ``None``.

    * a cycle of references with no container in between (``A`` is ``B``, ``B`` is ``A | int``):
      the aliases would be defined by each other (mypy: "cannot resolve name");
    * a root that stands for more than :data:`MAX_EXPANDED_REFERENCES` references once type
      aliases are expanded (a reference bomb): mypy cannot check it in reasonable time or memory.
    """
    refs: dict[str, list[tuple[str, bool]]] = {}
    for key, entry in entries.items():
        found: list[tuple[str, bool]] = []
        _references(entry.schema, False, found)
        refs[key] = [(target, guarded) for target, guarded in found if target in entries]
    # 1. cycles through unguarded references only (iterative depth-first search, three colours)
    state: dict[str, int] = {}
    for start in entries:
        if state.get(start):
            continue
        path: list[str] = [start]
        todo: list[list[str]] = [[t for t, guarded in refs[start] if not guarded]]
        state[start] = 1
        while todo:
            if not todo[-1]:
                state[path.pop()] = 2
                todo.pop()
                continue
            target = todo[-1].pop()
            if state.get(target) == 1:
                cycle = [*path[path.index(target) :], target]
                return "$ref cycle with no object or array in between: " + " -> ".join(cycle)
            if not state.get(target):
                state[target] = 1
                path.append(target)
                todo.append([t for t, guarded in refs[target] if not guarded])

    # 2. expanded size; a definition that becomes a class (it has properties) counts once
    def is_class(key: str) -> bool:
        properties = entries[key].schema.get("properties")
        return isinstance(properties, dict) and bool(properties)

    sizes: dict[str, int] = {}

    def size(key: str, active: set[str]) -> int:
        if key in sizes:
            return sizes[key]
        if key in active or is_class(key):
            return 1
        active.add(key)
        total = 1
        for target, _ in refs[key]:
            total += size(target, active)
            if total > MAX_EXPANDED_REFERENCES:
                break
        active.discard(key)
        sizes[key] = total
        return total

    # Depth-first on definitions: entries are at most a few thousand, each visited once.
    for key in entries:
        if not is_class(key) and size(key, set()) > MAX_EXPANDED_REFERENCES:
            return (
                f"its type aliases expand to more than {MAX_EXPANDED_REFERENCES} type references (from {key})"
            )
    return None
