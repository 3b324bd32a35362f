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
"""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Sequence
from typing import Any

__all__ = ["LINE_LENGTH", "generate_many", "generate_one", "main"]

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


def generate_many(documents: Sequence[str]) -> list[tuple[str, list[str]]]:
    """:func:`generate_one` over several documents, in order (the unit of a worker process)."""
    return [generate_one(doc) for doc in documents]


def main() -> int:
    """Worker process: a JSON list of documents on stdin, a JSON list of results on stdout.

    Each result is ``{"source": str, "warnings": [str]}`` or ``{"error": str}``.
    """
    documents = json.loads(sys.stdin.buffer.read())
    results: list[dict[str, Any]] = []
    for doc in documents:
        try:
            source, messages = generate_one(doc)
            results.append({"source": source, "warnings": messages})
        except Exception as exc:  # reported by the parent, which names the unit
            results.append({"error": f"{type(exc).__name__}: {exc}"})
    sys.stdout.buffer.write(json.dumps(results).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
