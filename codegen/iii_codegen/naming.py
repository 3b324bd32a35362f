"""Naming rules of the typed client stubs: function ids to attributes, schemas to class names.

One documented rule set (codegen.md §1.5, adapted to Python):

* **Attributes** (namespaces, methods, trigger helpers): each ``::`` segment of an id becomes the
  snake_case of its words: ``session-manager`` → ``session_manager``, ``getUser`` → ``get_user``,
  ``/todos`` → ``todos``. Characters that cannot be in an identifier separate words and are
  dropped; a leading digit gets a ``_`` (``2fa`` → ``_2fa``); a Python keyword gets a trailing
  ``_`` (``class`` → ``class_``); a segment with nothing usable becomes ``unnamed``.
* **Type names**: a schema's ``title`` in PascalCase, else ``<Leaf>Input`` / ``<Leaf>Result`` for
  functions and ``<Leaf>Config`` / ``<Leaf>Payload`` / ``<Leaf>Return`` for trigger types, where
  ``<Leaf>`` is the PascalCase of the last ``::`` segment. ``$defs``/``definitions`` keep their key.
  When two different types want one name, *every* one of them is qualified with the PascalCase of
  its owner's whole id (``PaymentsRefundMoney``, ``OrdersCreateMoney``); identical types share the
  name. Only if qualified names still clash is ``_2``, ``_3``… appended, in sorted owner order.
  Non-ASCII letters are transliterated where NFKD allows it (``Ünïcode`` → ``Unicode``).
"""

from __future__ import annotations

import keyword
import re
import unicodedata
from collections.abc import Iterable, Sequence

__all__ = [
    "RESERVED_MODULE_NAMES",
    "attribute_name",
    "pascal_case",
    "qualifier",
    "snake_case",
    "split_words",
    "unique_attribute_names",
]

#: Module-level names a type may not take: what generated modules import or define themselves,
#: and what datamodel-code-generator may import into them.
RESERVED_MODULE_NAMES: frozenset[str] = frozenset(
    {
        "Annotated",
        "Any",
        "AnyUrl",
        "AsyncClient",
        "AwareDatetime",
        "Base64Bytes",
        "Base64Str",
        "BaseModel",
        "ChannelEndpoint",
        "ChannelReader",
        "ChannelRefArg",
        "ChannelWriter",
        "Client",
        "ConfigDict",
        "Decimal",
        "Dict",
        "EmailStr",
        "Enum",
        "Field",
        "IPv4Address",
        "IPv4Network",
        "IPv6Address",
        "IPv6Network",
        "IntEnum",
        "List",
        "Literal",
        "NaiveDatetime",
        "Optional",
        "Path",
        "ReaderRef",
        "ReaderRefArg",
        "RootModel",
        "StrEnum",
        "StreamChannelRef",
        "StubModel",
        "TypeAlias",
        "TypeAliasType",
        "UUID",
        "Union",
        "WriterRef",
        "WriterRefArg",
    }
)

_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_NON_WORD = re.compile(r"[^0-9A-Za-z]+")


def _ascii(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if ord(ch) < 128)


def split_words(text: str) -> list[str]:
    """Split ``text`` into words at non-alphanumerics and camelCase boundaries (ASCII only).

    >>> split_words("getHTTPResponse-v2")
    ['get', 'HTTP', 'Response', 'v2']
    """
    words: list[str] = []
    for chunk in _NON_WORD.split(_ascii(text)):
        if chunk:
            words.extend(w for w in _CAMEL_BOUNDARY.split(chunk) if w)
    return words


def snake_case(text: str) -> str:
    """``getUser`` → ``get_user``; ``session-manager`` → ``session_manager``; may return ``""``."""
    return "_".join(w.lower() for w in split_words(text))


def pascal_case(text: str) -> str:
    """``session-manager`` → ``SessionManager``; ``HTTPServer`` → ``HTTPServer``; may return ``""``.

    Words keep their inner capitals (acronyms stay upper case); a leading digit gets ``_``.
    """
    out = "".join(w[:1].upper() + w[1:] for w in split_words(text))
    if out[:1].isdigit():
        out = "_" + out
    return out


def attribute_name(segment: str) -> str:
    """The Python attribute for one ``::`` segment of a function or trigger-type id.

    Rules in the module docstring; the result is always a valid, non-keyword identifier.
    """
    name = snake_case(segment) or "unnamed"
    if name[0].isdigit():
        name = "_" + name
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        name += "_"
    return name


def qualifier(owner_id: str) -> str:
    """PascalCase of every ``::`` segment of an id: ``payments::refund`` → ``PaymentsRefund``."""
    return "".join(pascal_case(seg) for seg in owner_id.split("::")).lstrip("_") or "Unnamed"


def unique_attribute_names(raw: Sequence[str], taken: Iterable[str] = ()) -> dict[str, str]:
    """Map raw names (segments) to distinct attribute names within one namespace.

    Raw names are processed in sorted order; when two map to the same attribute, the first keeps
    it and the others get ``_2``, ``_3``… Names in ``taken`` are never given out.

    Returns:
        ``{raw: attribute}`` for every entry of ``raw``.
    """
    used = set(taken)
    out: dict[str, str] = {}
    for item in sorted(set(raw)):
        base = attribute_name(item)
        name = base
        n = 2
        while name in used:
            name = f"{base}_{n}"
            n += 1
        used.add(name)
        out[item] = name
    return out
