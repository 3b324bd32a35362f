"""The datamodel-code-generator call used for every unit (kept small: worker processes import it).

Options follow codegen.md §2.8, with the traps of §2.2 to §3 handled:

* ``standard-py310-20261027`` preset: ``Annotated`` fields plus ``populate_by_name`` (aliases
  usable under mypy with or without the pydantic plugin), PEP 604 unions, builtin formatter;
* ``use_type_alias``: constrained primitives in unions/arrays and non-object roots become
  ``TypeAliasType`` aliases, not ``RootModel`` wrappers that break typed call sites;
* string enums as ``Literal`` (``enum_field_as_literal="all"``);
* ``date-time`` as plain ``datetime`` (naive and aware both accepted: the wire carries ISO text
  and the caller keeps whatever offset the callee sent), ``email`` as ``str`` (no extra package);
* ``parent-prefixed`` names for anonymous nested objects (``CreateOrderInputAddress``), never
  order-dependent numbers; the class names of roots and definitions are chosen by the caller
  (the ``$defs`` keys of the document), ``use_title_as_name`` is off because it overrides them;
* descriptions become class and attribute docstrings (kept in ``model_json_schema``);
* no timestamp, no version header, a fixed line length (the builtin formatter would otherwise
  read it from a ``pyproject.toml`` in the working directory).

A document the generator cannot convert gives a :class:`Result` with a one-line ``error`` instead
of an exception, the same in-process and in a worker process (:func:`main`), so the caller can
type the failing side ``Any`` and carry on.
"""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Sequence
from typing import Any, NamedTuple

__all__ = ["LINE_LENGTH", "Result", "convert", "error_reason", "generate_many", "generate_one", "main"]

LINE_LENGTH = 110
_BASE_CLASS = "iii_typed.stubs.StubModel"
_CONFIG: Any = None


def _config() -> Any:
    global _CONFIG
    if _CONFIG is None:
        from datamodel_code_generator import GenerateConfig, InputFileType, LiteralType
        from datamodel_code_generator.enums import DataModelType, NamingStrategy
        from datamodel_code_generator.format import DatetimeClassType

        _CONFIG = GenerateConfig(
            input_file_type=InputFileType.JsonSchema,
            output_model_type=DataModelType.PydanticV2BaseModel,
            preset="standard-py310-20261027",
            use_type_alias=True,
            enum_field_as_literal=LiteralType.All,
            output_datetime_class=DatetimeClassType.Datetime,
            type_mappings=["email=string", "idn-email=string"],
            treat_dot_as_module=False,
            use_double_quotes=True,
            skip_root_model=True,
            naming_strategy=NamingStrategy.ParentPrefixed,
            builtin_format_line_length=LINE_LENGTH,
            base_class=_BASE_CLASS,
            use_schema_description=True,
            use_field_description=True,
            use_attribute_docstrings=True,
            collapse_root_models=False,
            use_tag_as_union_variant_name=True,
            custom_file_header="# unit",
        )
    return _CONFIG


def generate_one(document: str) -> tuple[str, list[str]]:
    """Run the generator on one JSON document (``{"$defs": {...}}``).

    Returns:
        ``(source, warnings)``: the module text and the generator's warning messages.

    Raises:
        Exception: whatever datamodel-code-generator raises for an input it cannot handle.
    """
    from datamodel_code_generator import generate

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        source = generate(document, config=_config())
    if not isinstance(source, str):
        raise TypeError("datamodel-code-generator returned several modules for one document")
    messages = sorted({str(w.message) for w in caught})
    return source, messages


class Result(NamedTuple):
    """What the generator made of one document.

    Attributes:
        source: The module text (``""`` when it failed).
        warnings: The generator's warning messages, sorted.
        error: ``None``, or one line saying why the generator failed (:func:`error_reason`).
    """

    source: str
    warnings: list[str]
    error: str | None = None


_MAX_REASON = 300


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _MAX_REASON else line[: _MAX_REASON - 3] + "..."


def _short(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False)  # JSON, as the schema was written
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _resolve(document: Any, pointer: str) -> Any:
    node = document
    for raw in pointer.removeprefix("#").strip("/").split("/") if pointer.strip("#/") else []:
        part = raw.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def error_reason(exc: BaseException, document: str = "null") -> str:
    """One line saying why the generator failed on ``document``.

    For a schema the generator's own pydantic model refuses, the first error's location inside
    the failing type (union-member tags such as ``JsonSchemaObject`` dropped) and message, with the
    offending value: ``properties.a.maxLength: Input should be a valid integer, unable to parse
    string as an integer (got "q")``. Otherwise the exception's first line (or its type name).
    """
    from pydantic import ValidationError

    if isinstance(exc, RecursionError):
        return "the schema is nested too deeply (RecursionError)"
    original = getattr(exc, "original_error", None) or exc.__cause__
    if isinstance(original, RecursionError):
        return "the schema is nested too deeply (RecursionError)"
    invalid = original if isinstance(original, ValidationError) else exc
    if isinstance(invalid, ValidationError) and invalid.errors():
        first = invalid.errors(include_url=False)[0]
        path = getattr(exc, "path", None) or ["#"]
        try:
            node: Any = _resolve(json.loads(document), str(path[0]))
        except ValueError:
            node = None
        parts: list[str] = []
        for part in first["loc"]:
            in_object = isinstance(node, dict) and part in node
            in_array = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
            if not (in_object or in_array):
                continue  # a union member's tag, not a place in the schema
            node = node[part]
            parts.append(str(part))
        where = ".".join(parts) or "the schema"
        got = f" (got {_short(first['input'])})" if "input" in first else ""
        return _one_line(f"{where}: {first['msg']}{got}")
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return _one_line(f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__)


def convert(document: str) -> Result:
    """:func:`generate_one`, with a failure returned as :attr:`Result.error` instead of raised."""
    try:
        source, messages = generate_one(document)
    except Exception as exc:  # the caller names the function and side, and types it Any
        return Result("", [], error_reason(exc, document))
    return Result(source, messages)


def generate_many(documents: Sequence[str]) -> list[Result]:
    """:func:`convert` over several documents, in order (the unit of a worker process)."""
    return [convert(doc) for doc in documents]


def main() -> int:
    """Worker process: a JSON list of documents on stdin, a JSON list of results on stdout.

    Each result is ``{"source": str, "warnings": [str]}`` or ``{"error": str}``.
    """
    documents = json.loads(sys.stdin.buffer.read())
    results: list[dict[str, Any]] = []
    for result in generate_many(documents):
        if result.error is not None:
            results.append({"error": result.error})
        else:
            results.append({"source": result.source, "warnings": result.warnings})
    sys.stdout.buffer.write(json.dumps(results).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
