"""Trace waterfall rows for the terminal (pure): tree order, offsets, critical path, bars."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .store import clean_text, span_function

__all__ = ["WaterfallRow", "bar", "span_logs_filter", "total_ms", "waterfall_rows"]

_EIGHTHS = " ▏▎▍▌▋▊▉█"


@dataclass(frozen=True)
class WaterfallRow:
    """One span in tree order.

    Attributes:
        depth: Nesting level (0 for roots).
        span_id: The span id.
        name: Function or span name.
        service: The worker serving the span's function (from the function registry), else the
            span's service name.
        offset_ms: Start relative to the trace start.
        duration_ms: Length (``None`` while running).
        status: ``ok``, ``error``, ``unset`` or ``running``.
        critical: On the critical path (the chain of last-ending children from the root).
        error: The status description.
    """

    depth: int
    span_id: str
    name: str
    service: str
    offset_ms: float
    duration_ms: float | None
    status: str
    critical: bool
    error: str = ""


def _n(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def waterfall_rows(
    spans: Iterable[dict[str, Any]], worker_of: Callable[[str], str] | None = None
) -> list[WaterfallRow]:
    """Order a trace's spans as a tree (parents first, children by start time).

    Spans whose parent is unknown are treated as roots; cycles are broken. ``worker_of`` maps a
    function id to its worker's name (``""`` when unknown), shown instead of the service name.
    """
    by_id: dict[str, dict[str, Any]] = {}
    for span in spans:
        sid = span.get("span_id")
        if isinstance(sid, str):
            flat = {k: v for k, v in span.items() if k != "children"}
            by_id.setdefault(sid, flat)
    if not by_id:
        return []
    children: dict[str | None, list[str]] = {}
    for sid, span in by_id.items():
        parent = span.get("parent_span_id")
        key = parent if isinstance(parent, str) and parent in by_id and parent != sid else None
        children.setdefault(key, []).append(sid)

    def start(sid: str) -> float:
        return _n(by_id[sid].get("start_time_unix_nano")) or 0.0

    def end(sid: str) -> float:
        span = by_id[sid]
        value = _n(span.get("end_time_unix_nano"))
        return value if value and not span.get("pending") else start(sid)

    for ids in children.values():
        ids.sort(key=lambda s: (start(s), s))
    t0 = min(start(s) for s in by_id)
    critical: set[str] = set()
    roots = children.get(None, [])
    if roots:
        node: str | None = max(roots, key=end)
        while node is not None:
            critical.add(node)
            kids = children.get(node, [])
            node = max(kids, key=end) if kids else None
    rows: list[WaterfallRow] = []
    seen: set[str] = set()
    stack: list[tuple[str, int]] = [(sid, 0) for sid in reversed(roots)]
    while stack:
        sid, depth = stack.pop()
        if sid in seen:
            continue
        seen.add(sid)
        span = by_id[sid]
        pending = bool(span.get("pending")) or not _n(span.get("end_time_unix_nano"))
        function = clean_text(span_function(span), 200)
        worker = worker_of(function) if worker_of is not None else ""
        rows.append(
            WaterfallRow(
                depth=depth,
                span_id=sid,
                name=function,
                service=worker or clean_text(span.get("service_name") or "", 80),
                offset_ms=(start(sid) - t0) / 1e6,
                duration_ms=None if pending else (end(sid) - start(sid)) / 1e6,
                status="running" if pending else clean_text(span.get("status") or "unset", 12),
                critical=sid in critical,
                error=clean_text(span.get("status_description") or "", 300),
            )
        )
        stack.extend((kid, depth + 1) for kid in reversed(children.get(sid, [])))
    return rows


def total_ms(rows: list[WaterfallRow]) -> float:
    """The trace's length: the latest end of any span."""
    return max(((r.offset_ms + (r.duration_ms or 0.0)) for r in rows), default=0.0)


def bar(offset: float, length: float | None, total: float, width: int) -> str:
    """A bar ``width`` cells wide with eighth-block resolution at its end (``…`` while running)."""
    if width <= 0:
        return ""
    total = total or 1.0
    start_cell = min(width - 1, int(offset / total * width))
    if length is None:
        return (" " * start_cell + "▶…")[:width].ljust(width)
    eighths = max(1, round(length / total * width * 8))
    eighths = min(eighths, (width - start_cell) * 8)
    full, part = divmod(eighths, 8)
    text = " " * start_cell + "█" * full + (_EIGHTHS[part] if part else "")
    return text.ljust(width)[:width]


def span_logs_filter(trace_id: str) -> str:
    """The logs filter that shows a trace's logs."""
    return f"trace={trace_id}"
