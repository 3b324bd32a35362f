"""Literal text for widgets: nothing the engine or a user sent is ever parsed as markup.

Span names and attributes, log messages, function ids, payloads and error messages may hold
``[b]``, ``[/]``, ``[@click=…]``, ``",200]]`` or backslashes. Escaping them for Textual's markup
parser is not enough (``[["a",200]]`` still fails to parse, and ``escape`` doubles
backslashes), so every widget of the dashboard is given :class:`~textual.content.Content`
built here: plain strings are taken as they are, only the ``(text, style)`` pieces the code
itself writes carry a style.
"""

from __future__ import annotations

from collections.abc import Iterable

from textual.content import Content

__all__ = ["Part", "join_lines", "styled"]

#: A piece of a line: literal text, ``(literal text, style)`` (e.g. ``"bold"``), or Content.
Part = str | tuple[str, str] | Content


def styled(*parts: Part) -> Content:
    """Join literal pieces into one Content; no piece is parsed as markup."""
    return Content.assemble(*parts)


def join_lines(lines: Iterable[Content | str]) -> Content:
    """Lines joined with newlines (strings taken literally, control codes dropped)."""
    return Content("\n").join(line if isinstance(line, Content) else Content(line) for line in lines)
