"""What each screen shows, computed from the store (pure; shared by the widgets and ``--snapshot``).

Every table view is a list of :class:`Row` s: a stable key, display cells in column order and the
fields the filter grammar matches. :func:`screen_text` renders a whole screen as plain text with
every id in full (the ``<screen>.txt`` of ``--snapshot`` and the demo's printout).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .clock import format_age, format_clock
from .filtering import Filter
from .store import (
    SAMPLING_WINDOW_S,
    VIEW_FUNCTIONS,
    Invocation,
    LogLine,
    Store,
    as_dict,
    as_list,
    clean_text,
)

__all__ = [
    "COLUMNS",
    "SCREENS",
    "SCREEN_TITLES",
    "Row",
    "channel_owner",
    "channel_rows",
    "channel_state",
    "default_trace",
    "dlq_message_rows",
    "dlq_rows",
    "format_bytes",
    "function_rows",
    "invocation_cells",
    "is_internal",
    "log_cells",
    "missing_note",
    "overview_lines",
    "plural",
    "queue_rows",
    "sampling_note",
    "screen_text",
    "sparkline",
    "state_rows",
    "stream_rows",
    "trigger_rows",
    "trigger_type_rows",
    "worker_rows",
]

#: Screens in number-key order (key 1 … 9, then 0).
SCREENS: tuple[str, ...] = (
    "overview",
    "workers",
    "functions",
    "triggers",
    "invocations",
    "trace",
    "logs",
    "channels",
    "streams",
    "queues",
)

SCREEN_TITLES: dict[str, str] = {
    "overview": "Overview",
    "workers": "Workers",
    "functions": "Functions",
    "triggers": "Triggers",
    "invocations": "Invocations",
    "trace": "Trace",
    "logs": "Logs",
    "channels": "Channels",
    "streams": "Streams & state",
    "queues": "Queues & DLQ",
}

_SPARK = " ▁▂▃▄▅▆▇█"


@dataclass
class Row:
    """One table row: ``key`` is stable across refreshes; ``fields`` feed the filter."""

    key: str
    cells: tuple[str, ...]
    fields: dict[str, object] = field(default_factory=dict)
    style: str = ""


def sparkline(values: Sequence[float], width: int = 12) -> str:
    """A one-line bar chart of the last ``width`` values (scaled to their maximum)."""
    values = list(values)[-width:]
    if not values:
        return ""
    top = max(values)
    if top <= 0:
        return _SPARK[1] * len(values) if any(v == 0 for v in values) else ""
    return "".join(_SPARK[max(1, min(8, round(v / top * 8)))] if v > 0 else _SPARK[1] for v in values)


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 10_000:
        return f"{value / 1000:.1f}s"
    if value >= 100:
        return f"{value:.0f}ms"
    return f"{value:.1f}ms"


def plural(count: int, noun: str) -> str:
    """``1 topic``, ``2 topics``, ``0 topics`` (English nouns that take an ``s``)."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}%"


def format_bytes(value: Any) -> str:
    """A byte count as B/KiB/MiB/GiB ("-" for anything that is not a number)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1024
    return "-"


def _s(value: Any, limit: int = 300) -> str:
    return "-" if value is None or value == "" else clean_text(value, limit)


def is_internal(fn: dict[str, Any]) -> bool:
    """Hidden unless "show internal" is on: ``engine::*`` (except queues), ``metadata.internal``."""
    fid = str(fn.get("function_id", ""))
    if fid.startswith("engine::") and not fid.startswith("engine::queue::"):
        return True
    return as_dict(fn.get("metadata")).get("internal") is True


def missing_note(store: Store, view: str) -> str | None:
    """A sentence naming the engine functions this view needs and the engine lacks."""
    lacking = store.view_missing(view)
    if not lacking:
        return None
    needed = VIEW_FUNCTIONS.get(view, ())
    if len(lacking) == len(needed):
        return f"Not available on this engine: {', '.join(lacking)} is missing."
    return f"Partly available: {', '.join(lacking)} is missing on this engine."


# -- rows --------------------------------------------------------------------------------------
COLUMNS: dict[str, tuple[str, ...]] = {
    "workers": ("NAME", "ID", "RUNTIME", "VERSION", "PID", "FNS", "ACTIVE", "CPU%", "RSS", "CPU", "UP"),
    "functions": ("GROUP", "FUNCTION", "WORKER", "CALLS", "ERR%", "P50", "P95", "LATENCY", "LAST"),
    "triggers": ("TYPE", "ID", "FUNCTION", "CONFIG", "WORKER", "STATUS"),
    "trigger_types": ("TRIGGER TYPE", "WORKER", "DESCRIPTION"),
    "invocations": ("TIME", "STATUS", "DURATION", "FUNCTION", "WORKER", "TRACE", "ERROR"),
    "logs": ("TIME", "LEVEL", "SERVICE", "TRACE", "MESSAGE"),
    "channels": ("CHANNEL", "STATE", "READER", "WRITER", "MESSAGES", "BYTES", "OWNER", "AGE"),
    "streams": ("STREAM", "GROUPS", "ITEMS", "GROUP IDS"),
    "state": ("SCOPE", "ITEMS"),
    "queues": ("TOPIC", "BROKER", "DEPTH", "CONSUMERS", "DLQ"),
    "dlq": ("DLQ TOPIC", "MESSAGES"),
    "dlq_messages": ("MESSAGE", "ATTEMPTS", "ERROR", "PAYLOAD"),
}


def _filtered(rows: list[Row], flt: Filter | None) -> list[Row]:
    if not flt:
        return rows
    return [r for r in rows if flt.matches(r.fields)]


def worker_rows(store: Store, flt: Filter | None = None) -> list[Row]:
    """Workers sorted by name, with the latest resource metrics and a CPU sparkline."""
    rows: list[Row] = []
    for wid, w in sorted(store.workers.items(), key=lambda kv: (str(kv[1].get("name")), kv[0])):
        info = as_dict(as_dict(store.worker_info.get(wid)).get("worker"))
        history = list(store.worker_metrics.get(wid, ()))
        latest = history[-1] if history else {}
        cpu = latest.get("cpu_percent")
        cpu_series = [float(m.get("cpu_percent") or 0.0) for m in history]
        connected = w.get("connected_at_ms")
        age = store.now - connected / 1000 if isinstance(connected, int | float) and store.now else None
        name = _s(w.get("name"))
        rows.append(
            Row(
                wid,
                (
                    name,
                    clean_text(wid),
                    _s(w.get("runtime")),
                    _s(w.get("version")),
                    _s(info.get("pid") or w.get("pid")),
                    _s(w.get("function_count")),
                    _s(w.get("active_invocations")),
                    "-" if not isinstance(cpu, int | float) else f"{cpu:.1f}",
                    format_bytes(latest.get("memory_rss")),
                    sparkline(cpu_series, 10),
                    format_age(age),
                ),
                {
                    "name": name,
                    "worker": name,
                    "id": wid,
                    "runtime": _s(w.get("runtime")),
                    "version": _s(w.get("version")),
                    "namespace": _s(w.get("namespace")),
                    "status": _s(w.get("status")),
                    "active": w.get("active_invocations") or 0,
                },
            )
        )
    return _filtered(rows, flt)


def function_rows(store: Store, flt: Filter | None = None, show_internal: bool = False) -> list[Row]:
    """Functions grouped by namespace prefix (text before the first ``::``) with call statistics:
    CALLS from the engine's metrics (exact), error %, latency and last call from the spans seen
    (a sample while pushed traces are sampled)."""
    rows: list[Row] = []
    last_group = None
    items = sorted(store.functions.items())
    for fid, fn in items:
        if not show_internal and is_internal(fn):
            continue
        stats = store.fn_stats.get(fid)
        calls = store.calls_of(fid)
        group = fid.split("::", 1)[0] if "::" in fid else "(none)"
        spark = sparkline(stats.sparkline(store.now, 12), 12) if stats else ""
        row = Row(
            fid,
            (
                "",
                fid,
                _s(fn.get("worker_name")),
                str(calls),
                _pct(stats.error_pct()) if stats else "-",
                _ms(stats.p(0.5)) if stats else "-",
                _ms(stats.p(0.95)) if stats else "-",
                spark,
                format_clock(stats.last) if stats else "-",
            ),
            {
                "function": fid,
                "id": fid,
                "group": group,
                "worker": _s(fn.get("worker_name")),
                "namespace": _s(fn.get("namespace")),
                "description": _s(fn.get("description")),
                "calls": calls,
                "errors": stats.errors if stats else 0,
                "p95": (stats.p(0.95) or 0.0) if stats else 0.0,
            },
            "error" if stats and stats.errors else "",
        )
        rows.append(row)
    rows = _filtered(rows, flt)
    out: list[Row] = []
    counts: dict[str, int] = {}
    for r in rows:
        counts[str(r.fields["group"])] = counts.get(str(r.fields["group"]), 0) + 1
    for r in rows:
        group = str(r.fields["group"])
        if group != last_group:
            r.cells = (f"{group} ({counts[group]})", *r.cells[1:])
            last_group = group
        out.append(r)
    return out


def trigger_rows(store: Store, flt: Filter | None = None) -> list[Row]:
    """Registered triggers grouped by type; ``STATUS`` is ``active`` or ``pending`` (parked)."""
    rows: list[Row] = []
    for tid, t in sorted(store.triggers.items(), key=lambda kv: (str(kv[1].get("trigger_type")), kv[0])):
        summary = t.get("config_summary")
        if not isinstance(summary, str):
            summary = json.dumps(t.get("config"), sort_keys=True, default=str)
        status = _s(t.get("status") or "active")
        error = as_dict(t.get("error"))
        if error:
            status = f"{status}: {clean_text(error.get('code'), 60)}"
        rows.append(
            Row(
                tid,
                (
                    _s(t.get("trigger_type")),
                    tid,
                    _s(t.get("function_id")),
                    clean_text(summary, 200),
                    _s(t.get("worker_name")),
                    status,
                ),
                {
                    "type": _s(t.get("trigger_type")),
                    "id": tid,
                    "function": _s(t.get("function_id")),
                    "config": clean_text(summary, 500),
                    "worker": _s(t.get("worker_name")),
                    "status": status,
                },
                "warn" if "pending" in status else "",
            )
        )
    return _filtered(rows, flt)


def trigger_type_rows(store: Store, flt: Filter | None = None) -> list[Row]:
    """Trigger types known to the engine."""
    rows = [
        Row(
            tid,
            (tid, _s(t.get("worker_name")), _s(t.get("description"))),
            {
                "type": tid,
                "id": tid,
                "worker": _s(t.get("worker_name")),
                "description": _s(t.get("description")),
            },
        )
        for tid, t in sorted(store.trigger_types.items())
    ]
    return _filtered(rows, flt)


def invocation_cells(inv: Invocation) -> tuple[str, ...]:
    """Display cells of one invocation (see ``COLUMNS["invocations"]``)."""
    return (
        format_clock(inv.start),
        inv.status,
        _ms(inv.duration_ms),
        inv.function,
        inv.shown_worker or "-",
        inv.trace_id,
        inv.error,
    )


def log_cells(line: LogLine) -> tuple[str, ...]:
    """Display cells of one log line (see ``COLUMNS["logs"]``)."""
    return (format_clock(line.ts), line.level, line.service or "-", line.trace_id or "-", line.message)


def _first(d: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if key in d and d[key] is not None:
            return d[key]
    return None


def channel_state(ch: dict[str, Any]) -> str:
    """A channel's state from its sides (``engine::channels::list`` has no state of its own):
    ``broken`` (an error), ``done`` (both sides finished), ``ended`` (the writer ended, the reader
    is still draining), ``open`` (both sides connected), else ``waiting`` (a side has not
    connected yet). A ``state``/``status`` field, where an engine sends one, wins."""
    given = _first(ch, "state", "status")
    if given is not None:
        return _s(given)
    if ch.get("error"):
        return "broken"
    sides = [_side(_first(ch, "reader", "reader_connected")), _side(_first(ch, "writer", "writer_connected"))]
    if sides == ["done", "done"]:
        return "done"
    if ch.get("ended"):
        return "ended"
    if all(side in ("connected", "open") for side in sides):
        return "open"
    return "waiting"


def channel_owner(store: Store, ch: dict[str, Any]) -> str:
    """Who created a channel: the built-in (``owner``, e.g. ``iii-http``), else the creating
    worker's name (``owner_worker_id`` looked up in the worker list; ``<name> (gone)`` once it
    disconnected, if the dashboard saw it), else its id."""
    owner = _first(ch, "owner", "owner_worker_name", "owner_worker")
    if owner is not None:
        return _s(owner)
    wid = ch.get("owner_worker_id")
    if wid is None:
        return "-"
    key = clean_text(wid, 300)
    name = as_dict(store.workers.get(key)).get("name")
    if isinstance(name, str) and name:
        return clean_text(name, 120)
    last = store.worker_names.get(key)
    return f"{last} (gone)" if last else _s(wid)


def channel_rows(store: Store, flt: Filter | None = None) -> list[Row]:
    """Open channels (our ``engine::channels::list`` extension, docs/channels.md): state, each
    side's state (``connected``, ``waiting``, ``done``), messages and bytes the writer moved, the
    owner and the age."""
    rows: list[Row] = []
    for ch in store.channels:
        cid = clean_text(_first(ch, "channel_id", "id") or "?", 200)
        reader = _first(ch, "reader", "reader_connected")
        writer = _first(ch, "writer", "writer_connected")
        created = _first(ch, "created_at_ms", "created_ms")
        age = store.now - created / 1000 if isinstance(created, int | float) and store.now else None
        messages = _first(ch, "messages", "messages_moved", "message_count")
        state = channel_state(ch)
        owner = channel_owner(store, ch)
        rows.append(
            Row(
                cid,
                (
                    cid,
                    state,
                    _side(reader),
                    _side(writer),
                    _s(messages),
                    format_bytes(_first(ch, "bytes", "bytes_moved", "byte_count")),
                    owner,
                    format_age(age),
                ),
                {
                    "channel": cid,
                    "id": cid,
                    "state": state,
                    "reader": _side(reader),
                    "writer": _side(writer),
                    "owner": owner,
                    "worker": owner,
                    "messages": _num(messages),
                    "bytes": _num(_first(ch, "bytes", "bytes_moved", "byte_count")),
                },
                "error" if state == "broken" else "",
            )
        )
    return _filtered(rows, flt)


def _num(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _side(value: Any) -> str:
    """One side of a channel: ``{"state": …}`` (the engine's shape) or a connected flag."""
    if value is True:
        return "open"
    if value is False:
        return "-"
    if isinstance(value, dict):
        return _s(value.get("state") or ("open" if value.get("connected") else "-"))
    return _s(value)


def stream_rows(store: Store, flt: Filter | None = None) -> list[Row]:
    """Streams from ``stream::list_all``; ``ITEMS`` once the stream was opened (``stream::list``
    of each group)."""
    rows: list[Row] = []
    for st in store.streams:
        sid = clean_text(st.get("id") or st.get("stream_name") or "?", 200)
        groups = [clean_text(g, 100) for g in as_list(st.get("groups"))]
        loaded = store.stream_items.get(sid)
        items = "-" if loaded is None else str(sum(len(v) for v in loaded.values()))
        rows.append(
            Row(
                sid,
                (sid, str(len(groups)), items, ", ".join(groups)),
                {"stream": sid, "id": sid, "group": " ".join(groups)},
            )
        )
    return _filtered(rows, flt)


def state_rows(store: Store, flt: Filter | None = None) -> list[Row]:
    """State scopes from ``state::list_groups`` (item counts once a scope was opened)."""
    rows = []
    for scope in store.state_groups:
        items = store.state_items.get(scope)
        rows.append(
            Row(scope, (scope, "-" if items is None else str(len(items))), {"scope": scope, "id": scope})
        )
    return _filtered(rows, flt)


def queue_rows(store: Store, flt: Filter | None = None) -> list[Row]:
    """Queue topics with their statistics (``engine::queue::topic_stats``)."""
    rows = []
    for name, q in sorted(store.queues.items()):
        dlq = store.dlq.get(name)
        dlq_count = _first(q, "dlq_depth")
        if dlq_count is None and dlq:
            dlq_count = _first(as_dict(dlq), "message_count", "count", "depth", "messages")
        rows.append(
            Row(
                name,
                (
                    name,
                    _s(_first(q, "broker_type", "broker")),
                    _s(_first(q, "depth", "pending", "messages", "size")),
                    _s(_first(q, "consumer_count", "subscriber_count", "consumers", "subscribers")),
                    _s(dlq_count),
                ),
                {"topic": name, "id": name, "queue": name},
            )
        )
    return _filtered(rows, flt)


def dlq_rows(store: Store, flt: Filter | None = None) -> list[Row]:
    """Dead-letter topics, those holding messages first (``engine::queue::dlq_topics`` lists
    every queue, empty ones too), then by name."""

    def count(d: dict[str, Any]) -> Any:
        return _first(d, "message_count", "count", "depth", "messages")

    def order(item: tuple[str, dict[str, Any]]) -> tuple[float, str]:
        value = count(item[1])
        return (-_num(value), item[0])

    rows = [
        Row(
            name, (name, _s(count(d))), {"topic": name, "id": name, "queue": name, "messages": _num(count(d))}
        )
        for name, d in sorted(store.dlq.items(), key=order)
    ]
    return _filtered(rows, flt)


def dlq_message_rows(store: Store, topic: str) -> list[Row]:
    """The dead letters of one topic (after they were fetched)."""
    rows = []
    for m in store.dlq_messages.get(topic, []):
        mid = clean_text(_first(m, "message_id", "id") or "?", 200)
        rows.append(
            Row(
                mid,
                (
                    mid,
                    _s(_first(m, "attempts", "retries", "attempt")),
                    _s(_first(m, "error", "last_error"), 200),
                    clean_text(_first(m, "payload", "data"), 200),
                ),
                {"id": mid},
            )
        )
    return rows


def sampling_note(store: Store) -> str | None:
    """What the invocation stream shows of the traces the engine named, when it shows a sample
    (``None`` when every named trace was fetched)."""
    sampled = store.sampling_in()
    if not sampled.active:
        return None
    return (
        f"sampling: showing newest {sampled.fetched:,} of {sampled.notified:,} new traces"
        f" in the last {SAMPLING_WINDOW_S:.0f} s"
    )


def overview_lines(store: Store) -> list[tuple[str, str]]:
    """``(label, value)`` pairs of the overview screen."""
    health = store.health or {}
    engine_metrics = as_dict(as_dict(store.metrics).get("engine_metrics"))
    invocations = as_dict(engine_metrics.get("invocations"))
    perf = as_dict(engine_metrics.get("performance"))
    components = as_dict(health.get("components"))
    comp = ", ".join(f"{k}={_s(as_dict(v).get('status'))}" for k, v in sorted(components.items())) or "-"
    user_functions = [f for f in store.functions.values() if not is_internal(f)]
    conn = store.conn_state
    if store.failure_banner:
        conn += f": {store.failure_banner}"
    elif store.stale_since is not None:
        conn += f" (stale since {format_clock(store.stale_since)})"
    p95_engine = perf.get("p95_duration_ms")
    total = invocations.get("total")
    err = invocations.get("error")
    engine_err = (
        100.0 * err / total
        if isinstance(total, int | float) and total and isinstance(err, int | float)
        else None
    )
    note = sampling_note(store)
    sampled = " (of sampled traces)" if note else ""
    lines = [
        ("engine", store.url or "-"),
        ("connection", conn),
        ("health", _s(health.get("status")) if store.health is not None else "-"),
        ("version", _s(health.get("version"))),
        ("components", comp),
        ("workers", str(len(store.workers))),
        ("functions", f"{len(user_functions)} ({len(store.functions)} with internal)"),
        ("triggers", f"{len(store.triggers)} registered, {plural(len(store.trigger_types), 'type')}"),
        ("invocations/s", f"{store.rate():.1f}"),
        ("error %", _pct(store.error_pct()) + sampled if store.error_pct() is not None else _pct(engine_err)),
        ("p95", _ms(store.p95()) + sampled if store.p95() is not None else _ms(_num_or_none(p95_engine))),
        ("engine totals", f"total={_s(total)} ok={_s(invocations.get('success'))} error={_s(err)}"),
        ("logs", f"{store.logs_total} seen"),
        ("channels", str(len(store.channels))),
        ("queues", f"{plural(len(store.queues), 'topic')}, {plural(len(store.dlq), 'dead-letter topic')}"),
    ]
    if note:
        lines.append(("traces", note))
    if store.missing:
        lines.append(("missing", ", ".join(sorted(store.missing))))
    return lines


def _num_or_none(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def default_trace(store: Store) -> str | None:
    """The trace a snapshot shows: the newest invocation's trace that has more than one span
    (a call chain), else the newest invocation's trace."""
    newest: str | None = None
    for count, inv in enumerate(reversed(store.invocations)):
        newest = newest or inv.trace_id
        if count >= 500:
            break
        if len(store.trace_spans(inv.trace_id)) > 1:
            return inv.trace_id
    return newest


# -- plain text ----------------------------------------------------------------------------------
def _table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [len(c) for c in columns]
    for cells in rows:
        for i, cell in enumerate(cells):
            widths[i] = max(widths[i], len(cell))

    def fmt(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(widths[i]) for i, c in enumerate(cells)).rstrip()

    return [fmt(columns), *(fmt(r) for r in rows)]


def screen_text(store: Store, screen: str, trace_id: str | None = None) -> str:
    """A screen as plain text, ids in full (``--snapshot``'s ``<screen>.txt``)."""
    out = [f"iii-tui — {SCREEN_TITLES.get(screen, screen)} — {store.url or '-'} — {store.conn_state}"]
    if store.failure_banner:
        out.append(store.failure_banner)
    elif store.stale_since is not None:
        out.append(f"stale since {format_clock(store.stale_since)}")
    note = missing_note(store, screen)
    if note:
        out.append(note)
    out.append("")
    if screen == "overview":
        out += [f"{label:<15} {value}" for label, value in overview_lines(store)]
        if store.feed:
            out += ["", "recent changes:"]
            out += [f"  {format_clock(t)} {text}" for t, text in list(store.feed)[-10:]]
    elif screen == "workers":
        out += _table(COLUMNS["workers"], [r.cells for r in worker_rows(store)])
    elif screen == "functions":
        out += _table(COLUMNS["functions"], [r.cells for r in function_rows(store)])
    elif screen == "triggers":
        out += _table(COLUMNS["triggers"], [r.cells for r in trigger_rows(store)])
        out += ["", *_table(COLUMNS["trigger_types"], [r.cells for r in trigger_type_rows(store)])]
    elif screen == "invocations":
        out += _table(COLUMNS["invocations"], [invocation_cells(i) for i in list(store.invocations)[-200:]])
    elif screen == "trace":
        from .waterfall import waterfall_rows

        tid = trace_id or default_trace(store)
        if tid is None:
            out.append("no trace yet")
        else:
            out.append(f"trace {tid}")
            rows = waterfall_rows(store.trace_spans(tid), store.worker_of)
            out += _table(
                ("SPAN", "NAME", "WORKER", "START", "DURATION", "STATUS"),
                [
                    (
                        r.span_id,
                        "  " * r.depth + r.name + (" *" if r.critical else ""),
                        r.service or "-",
                        f"+{_ms(r.offset_ms)}",
                        _ms(r.duration_ms),
                        r.status,
                    )
                    for r in rows
                ],
            )
    elif screen == "logs":
        out += _table(COLUMNS["logs"], [log_cells(x) for x in list(store.logs)[-200:]])
    elif screen == "channels":
        out += _table(COLUMNS["channels"], [r.cells for r in channel_rows(store)])
    elif screen == "streams":
        out += _table(COLUMNS["streams"], [r.cells for r in stream_rows(store)])
        out += ["", *_table(COLUMNS["state"], [r.cells for r in state_rows(store)])]
    elif screen == "queues":
        out += _table(COLUMNS["queues"], [r.cells for r in queue_rows(store)])
        out += ["", *_table(COLUMNS["dlq"], [r.cells for r in dlq_rows(store)])]
    return "\n".join(out).rstrip() + "\n"
