"""One filter grammar for every list and log view (`/` on any screen).

Grammar (terms are separated by spaces and must all match)::

    word            the word appears in any field (case-insensitive substring)
    field:value     the field contains value          e.g.  fn:orders::   worker:py
    field=value     the field equals value            e.g.  status=error
    field>N, <, >=, <=   numeric comparison; N may end in ms or s   e.g.  dur>250ms
    /regex/         a regular expression searched in every field
    !term           negates any of the above          e.g.  !status=ok
    "two words"     quotes keep spaces in a word or a value

Field names are the lower-case column names of the view, plus short aliases (``fn`` for
``function``, ``w`` for ``worker``, ``lvl`` for ``level``, ``dur`` for ``duration``, ``ns`` for
``namespace``, ``id`` for the view's id column).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["ALIASES", "Filter", "FilterTerm"]

ALIASES: dict[str, str] = {
    "fn": "function",
    "func": "function",
    "w": "worker",
    "lvl": "level",
    "sev": "level",
    "dur": "duration",
    "ns": "namespace",
    "t": "trace",
    "svc": "service",
    "msg": "message",
}

_OPS = (">=", "<=", ">", "<", "=", ":")
_FIELD_RE = re.compile(r"^([a-z_][a-z0-9_]*)(>=|<=|>|<|=|:)(.*)$", re.IGNORECASE)


def _number(text: str) -> float | None:
    text = text.strip().lower()
    scale = 1.0
    if text.endswith("ms"):
        text = text[:-2]
    elif text.endswith("s"):
        text, scale = text[:-1], 1000.0
    try:
        return float(text) * scale
    except ValueError:
        return None


@dataclass(frozen=True)
class FilterTerm:
    """One parsed term: ``kind`` is ``word``, ``regex`` or ``field``."""

    kind: str
    negate: bool = False
    field: str = ""
    op: str = ""
    value: str = ""
    number: float | None = None
    pattern: re.Pattern[str] | None = None

    def _test(self, row: Mapping[str, object]) -> bool:
        if self.kind == "word":
            needle = self.value.lower()
            return any(needle in str(v).lower() for v in row.values())
        if self.kind == "regex":
            assert self.pattern is not None
            return any(self.pattern.search(str(v)) for v in row.values())
        if self.field not in row:
            return False
        cell = row[self.field]
        if self.op == ":":
            return self.value.lower() in str(cell).lower()
        if self.op == "=":
            return str(cell).lower() == self.value.lower()
        left = cell if isinstance(cell, int | float) else _number(str(cell))
        if left is None or self.number is None:
            return False
        left = float(left)
        if self.op == ">":
            return left > self.number
        if self.op == "<":
            return left < self.number
        if self.op == ">=":
            return left >= self.number
        return left <= self.number

    def matches(self, row: Mapping[str, object]) -> bool:
        """Whether ``row`` (field name → value) satisfies this term."""
        return self._test(row) != self.negate


@dataclass
class Filter:
    """A parsed filter expression; an empty filter matches everything.

    Attributes:
        text: The source text.
        terms: The parsed terms (all must match).
        error: A parse problem to show to the user (the filter then matches everything).
    """

    text: str = ""
    terms: list[FilterTerm] = field(default_factory=list)
    error: str | None = None

    @classmethod
    def parse(cls, text: str) -> Filter:
        """Parse ``text`` with the grammar in this module's docstring (never raises)."""
        text = text.strip()
        if not text:
            return cls()
        try:
            words = shlex.split(text)
        except ValueError as exc:
            return cls(text, [], f"unbalanced quotes ({exc})")
        terms: list[FilterTerm] = []
        for word in words:
            negate = word.startswith("!") and len(word) > 1
            if negate:
                word = word[1:]
            if len(word) >= 2 and word.startswith("/") and word.endswith("/"):
                try:
                    terms.append(FilterTerm("regex", negate, pattern=re.compile(word[1:-1], re.IGNORECASE)))
                except re.error as exc:
                    return cls(text, [], f"bad regular expression {word!r}: {exc}")
                continue
            m = _FIELD_RE.match(word)
            if m and m.group(3) != "":
                name = m.group(1).lower()
                name = ALIASES.get(name, name)
                op, value = m.group(2), m.group(3)
                number = _number(value) if op in (">", "<", ">=", "<=") else None
                if op in (">", "<", ">=", "<=") and number is None:
                    return cls(text, [], f"{word!r}: {value!r} is not a number")
                terms.append(FilterTerm("field", negate, field=name, op=op, value=value, number=number))
                continue
            terms.append(FilterTerm("word", negate, value=word))
        return cls(text, terms)

    def unknown_fields(self, known: set[str]) -> list[str]:
        """Field names used by the terms that are not in ``known`` (shown as a warning)."""
        return sorted({t.field for t in self.terms if t.kind == "field" and t.field not in known})

    def __bool__(self) -> bool:
        return bool(self.terms)

    def matches(self, row: Mapping[str, object]) -> bool:
        """Whether every term matches ``row``."""
        return all(term.matches(row) for term in self.terms)
