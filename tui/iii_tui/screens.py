"""The dashboard's screens, one per mode (number keys 1 to 9 and 0)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, cast

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Footer, Input, Static

from .clock import format_clock
from .filtering import Filter
from .messages import StoreChanged
from .schema_form import fields_from_schema, flatten
from .store import Invocation, LogLine, as_dict, as_list, clean_text
from .text import Part, join_lines, styled
from .views import (
    COLUMNS,
    SCREEN_TITLES,
    channel_rows,
    dlq_message_rows,
    dlq_rows,
    format_bytes,
    function_rows,
    invocation_cells,
    log_cells,
    missing_note,
    overview_lines,
    plural,
    queue_rows,
    sampling_note,
    sparkline,
    state_rows,
    stream_rows,
    trigger_rows,
    trigger_type_rows,
    worker_rows,
)
from .waterfall import WaterfallRow, bar, total_ms, waterfall_rows
from .widgets import KeyedTable, RingView

if TYPE_CHECKING:
    from .app import IIIApp

__all__ = [
    "SCREEN_CLASSES",
    "ChannelsScreen",
    "DashScreen",
    "FunctionsScreen",
    "InvocationsScreen",
    "LogsScreen",
    "OverviewScreen",
    "QueuesScreen",
    "StreamsScreen",
    "TraceScreen",
    "TriggersScreen",
    "WorkersScreen",
]

_FILTER_HELP = (
    "filter: word  field:value  field=value  dur>100ms  /regex/  !negate   (Enter keeps, Esc clears)"
)


class DashScreen(Screen[None]):
    """Common frame: connection banner, title line, `/` filter bar, body, footer.

    Subclasses set ``NAME``, ``SECTIONS`` (store sections that trigger a redraw) and implement
    ``compose_body`` and ``update_view``.
    """

    NAME = ""
    AUTO_FOCUS = "KeyedTable, RingView"
    SECTIONS: ClassVar[tuple[str, ...]] = ()
    FILTER_FIELDS: ClassVar[set[str]] = set()
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "filter", "Filter"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]

    def __init__(self) -> None:
        super().__init__(name=self.NAME)
        self.flt = Filter()
        self._seen: dict[str, int] = {}
        self._lines: dict[str, str] = {}

    def set_line(self, widget_id: str, text: Content, *, layout: bool = False) -> None:
        """Show ``text`` in the ``Static`` ``#widget_id`` (banner, title, status line…).

        ``text`` is Content (:func:`~iii_tui.text.styled`), never markup: engine data is shown
        as it is. Nothing happens when the text (or its styling) is unchanged. ``layout=False``
        (one-row widgets, whose size does not depend on their text) skips the layout pass, so a
        flush that changes a count repaints one row instead of laying the whole screen out again.
        """
        key = text.markup  # Content compares by its plain text only: keep style changes
        if self._lines.get(widget_id) == key:
            return
        self._lines[widget_id] = key
        self.query_one(f"#{widget_id}", Static).update(text, layout=layout)

    @property
    def dash(self) -> IIIApp:
        """The dashboard app."""
        return cast("IIIApp", self.app)

    def compose(self) -> ComposeResult:
        yield Static("", id="banner", markup=False)
        yield Static("", id="title", markup=False)
        yield Input(placeholder=_FILTER_HELP, id="filter")
        yield from self.compose_body()
        yield Footer()

    def compose_body(self) -> ComposeResult:
        """The screen's own widgets."""
        yield from ()

    def on_mount(self) -> None:
        self.query_one("#filter", Input).display = False
        self.refresh_view(force=True)

    def on_screen_resume(self) -> None:
        self.refresh_view(force=True)

    def on_store_changed(self, message: StoreChanged) -> None:
        self.refresh_view(sections=message.sections)

    def refresh_view(self, force: bool = False, sections: frozenset[str] = frozenset()) -> None:
        """Redraw when a section this screen shows changed (or always with ``force``)."""
        store = self.dash.store
        watched = (*self.SECTIONS, "conn", "missing")
        changed = force or "clock" in sections
        for name in watched:
            version = store.versions[name]
            if self._seen.get(name) != version:
                self._seen[name] = version
                changed = True
        if not changed or not self.is_mounted:
            return
        self._update_banner()
        self.update_view()

    def _update_banner(self) -> None:
        app = self.dash
        store = app.store
        banner = self.query_one("#banner", Static)
        flags = []
        if app.readonly:
            flags.append("READ-ONLY")
        if app.replay:
            flags.append("REPLAY")
        if app.recording:
            flags.append("REC")
        state = store.conn_state
        health = store.health.get("status") if store.health else None
        parts: list[Part] = [f" iii-tui  {clean_text(store.url) or '-'}  ● {state}"]
        if health:
            parts.append(f"  health: {clean_text(health)}")
        if store.failure_banner:
            parts.append(f"  ⚠ {store.failure_banner}")
        elif store.stale_since is not None:
            parts.append(f"  ⚠ stale since {format_clock(store.stale_since)}")
            if store.last_error:
                parts.append(f" ({store.last_error})")
        if flags:
            parts += ["  ", (" ".join(flags), "bold")]
        self.set_line("banner", styled(*parts))
        banner.set_class(store.stale_since is not None or bool(store.failure_banner), "stale")

    def set_title(self, *text: Part) -> None:
        """Set the title line (the missing-function note and filter problems are appended)."""
        note = missing_note(self.dash.store, self.NAME)
        parts: list[Part] = [(SCREEN_TITLES.get(self.NAME, self.NAME), "bold"), "  ", *text]
        if self.flt.text:
            parts.append(f"  ·  filter: {self.flt.text}")
        if self.flt.error:
            parts += ["  ·  ", (self.flt.error, "red")]
        elif self.FILTER_FIELDS and (unknown := self.flt.unknown_fields(self.FILTER_FIELDS)):
            parts += ["  ·  ", (f"unknown field(s): {', '.join(unknown)}", "yellow")]
        if note:
            parts += ["  ·  ", (note, "yellow")]
        self.set_line("title", styled(*parts))

    def update_view(self) -> None:
        """Redraw the body from the store."""

    # -- filter --------------------------------------------------------------------------------
    def action_filter(self) -> None:
        """Open the filter bar."""
        bar_ = self.query_one("#filter", Input)
        bar_.display = True
        bar_.focus()

    def action_clear_filter(self) -> None:
        """Clear and close the filter bar."""
        bar_ = self.query_one("#filter", Input)
        if bar_.value or bar_.display:
            bar_.value = ""
            bar_.display = False
            self.apply_filter("")
            self.focus_body()

    def apply_filter(self, text: str) -> None:
        """Filter the screen's list with ``text`` (the grammar of :mod:`iii_tui.filtering`)."""
        self.flt = Filter.parse(text)
        bar_ = self.query_one("#filter", Input)
        if bar_.value != text:
            bar_.value = text
        if text:
            bar_.display = True
        self.refresh_view(force=True)

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter":
            self.flt = Filter.parse(event.value)
            self.refresh_view(force=True)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            if not event.value:
                event.input.display = False
            self.focus_body()

    def focus_body(self) -> None:
        """Focus the main list."""
        for widget in self.query("KeyedTable, RingView"):
            widget.focus()
            return


class OverviewScreen(DashScreen):
    """Health, counts, invocations/s, error %, p95 and the registry change feed."""

    NAME = "overview"
    SECTIONS = (
        "health",
        "metrics",
        "workers",
        "functions",
        "triggers",
        "stats",
        "feed",
        "logs",
        "channels",
        "queues",
    )

    def compose_body(self) -> ComposeResult:
        with Vertical(id="overview-body"):
            yield Static("", id="overview-stats", markup=False)
            yield Static("", id="overview-feed", markup=False)

    def update_view(self) -> None:
        store = self.dash.store
        self.set_title(f"as of {format_clock(store.now)}")
        lines = [styled((f"{label:<15}", "bold"), " ", value) for label, value in overview_lines(store)]
        self.set_line("overview-stats", join_lines(lines), layout=True)
        feed = list(store.feed)[-8:]
        rows = [f"  {format_clock(t)} {line}" for t, line in feed] if feed else ["  (none yet)"]
        self.set_line("overview-feed", join_lines([styled(("Recent changes", "bold")), *rows]), layout=True)


class _TableScreen(DashScreen):
    """A screen whose body is one keyed table plus a detail pane."""

    TABLE_COLUMNS: ClassVar[tuple[str, ...]] = ()

    def compose_body(self) -> ComposeResult:
        yield KeyedTable(self.TABLE_COLUMNS, id="main-table")
        yield Static("", id="detail", classes="detail", markup=False)

    @property
    def table(self) -> KeyedTable:
        """The main table."""
        return self.query_one("#main-table", KeyedTable)

    def on_keyed_table_row_highlighted(self, event: KeyedTable.RowHighlighted) -> None:
        self.update_detail()

    def update_detail(self) -> None:
        """Redraw the detail pane for the selected row."""


def _metric(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


class WorkersScreen(_TableScreen):
    """Connected workers with runtime, version, pid, functions, activity and resource sparklines."""

    NAME = "workers"
    SECTIONS = ("workers", "clock")
    TABLE_COLUMNS = COLUMNS["workers"]
    FILTER_FIELDS: ClassVar[set[str]] = {
        "name",
        "worker",
        "id",
        "runtime",
        "version",
        "namespace",
        "status",
        "active",
    }
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f", "functions", "Functions"),
        Binding("v", "invocations", "Invocations"),
        Binding("enter", "refresh_detail", "Details", show=False),
    ]

    def update_view(self) -> None:
        rows = worker_rows(self.dash.store, self.flt)
        self.table.sync(rows)
        self.set_title(f"{len(rows)} of {len(self.dash.store.workers)}")
        self.update_detail()

    def _selected(self) -> dict[str, Any] | None:
        key = self.table.selected_key
        return self.dash.store.workers.get(key) if key else None

    def update_detail(self) -> None:
        store = self.dash.store
        key = self.table.selected_key
        worker = store.workers.get(key) if key else None
        pane = self.query_one("#detail", Static)
        if worker is None:
            pane.update("no worker selected")
            return
        info = as_dict(store.worker_info.get(key or ""))
        detail = as_dict(info.get("worker"))
        history = list(store.worker_metrics.get(key or "", ()))

        def series(name: str, unit: Callable[[float], str]) -> str:
            values = [_metric(m.get(name)) for m in history]
            last = history[-1].get(name) if history else None
            shown = unit(float(last)) if isinstance(last, int | float) and not isinstance(last, bool) else "-"
            return f"{sparkline(values, 30)} {shown}"

        fns = [clean_text(as_dict(f).get("function_id")) for f in as_list(info.get("functions"))]

        def g(name: str) -> str:
            return clean_text(worker.get(name) if worker else None) or "-"

        lines: list[Content | str] = [
            styled((g("name"), "bold"), f"  id {clean_text(key)}  ns {g('namespace')}"),
            f"runtime {g('runtime')} {g('version')}  pid {detail.get('pid', '-')}"
            f"  os {g('os')}  ip {g('ip_address')}  metrics: {len(history)} sample(s)",
            f"cpu    {series('cpu_percent', lambda v: f'{v:.1f} %')}",
            f"rss    {series('memory_rss', format_bytes)}",
            f"lag    {series('event_loop_lag_ms', lambda v: f'{v:.2f} ms')}",
            f"functions: {', '.join(fns) if fns else '-'}",
        ]
        pane.update(join_lines(lines))

    def on_keyed_table_row_selected(self, event: KeyedTable.RowSelected) -> None:
        self.action_refresh_detail()

    def action_functions(self) -> None:
        """Functions of the selected worker."""
        worker = self._selected()
        if worker is not None:
            self.dash.pivot("functions", f"worker={clean_text(worker.get('name'))}")

    def action_invocations(self) -> None:
        """Invocations served by the selected worker."""
        worker = self._selected()
        if worker is not None:
            self.dash.pivot("invocations", f"worker:{clean_text(worker.get('name'))}")

    def action_refresh_detail(self) -> None:
        """Fetch the selected worker's details now."""
        worker = self._selected()
        if worker is not None and isinstance(worker.get("name"), str):
            self.dash.source.request("worker_info", worker["name"])


class FunctionsScreen(_TableScreen):
    """Functions grouped by namespace with calls, error %, p50/p95, latency sparkline and schemas."""

    NAME = "functions"
    SECTIONS = ("functions", "stats", "metrics", "sampling", "function_info", "clock")
    TABLE_COLUMNS = COLUMNS["functions"]
    FILTER_FIELDS: ClassVar[set[str]] = {
        "function",
        "id",
        "group",
        "worker",
        "namespace",
        "description",
        "calls",
        "errors",
        "p95",
    }
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("i,enter", "invoke", "Invoke"),
        Binding("v", "invocations", "Invocations"),
        Binding("w", "worker", "Worker"),
        Binding("full_stop", "toggle_internal", "Internal"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.show_internal = False

    def update_view(self) -> None:
        store = self.dash.store
        rows = function_rows(store, self.flt, self.show_internal)
        self.table.sync(rows)
        internal = " (internal shown)" if self.show_internal else ""
        sampled: list[Part] = (
            [" · ", ("ERR%, P50/P95, LATENCY of sampled traces", "yellow")] if sampling_note(store) else []
        )
        self.set_title(f"{len(rows)} shown of {len(store.functions)}{internal}", *sampled)
        self.update_detail()

    def update_detail(self) -> None:
        store = self.dash.store
        fid = self.table.selected_key
        pane = self.query_one("#detail", Static)
        if fid is None:
            pane.update("no function selected")
            return
        info = store.function_info.get(fid)
        fn = store.functions.get(fid, {})
        if info is None:
            self.dash.request_once("function_info", fid)
            info = {}
        lines: list[Content | str] = [
            styled(
                (clean_text(fid), "bold"),
                f"  worker {clean_text(fn.get('worker_name'))}  {clean_text(fn.get('description') or '')}",
            )
        ]
        for title, key in (("request", "request_schema"), ("response", "response_schema")):
            schema = info.get(key)
            if schema is None:
                lines.append(f"{title}: -")
                continue
            fields = flatten(fields_from_schema(schema))
            parts = []
            for spec in fields[:12]:
                default = (
                    "" if spec.default.__class__.__name__ == "_Missing" else f"={json.dumps(spec.default)}"
                )
                enum = f" {spec.enum}" if spec.enum else ""
                parts.append(
                    f"{spec.key or '(payload)'}{'*' if spec.required else ''}: {spec.kind}{enum}{default}"
                )
            more = f" … +{len(fields) - 12}" if len(fields) > 12 else ""
            lines.append(f"{title}: " + clean_text("  ".join(parts), 400) + more)
        bound = as_list(info.get("registered_triggers"))
        triggers = [clean_text(as_dict(t).get("trigger_type")) for t in bound]
        if triggers:
            lines.append("triggers: " + ", ".join(triggers))
        pane.update(join_lines(lines))

    def on_keyed_table_row_selected(self, event: KeyedTable.RowSelected) -> None:
        self.action_invoke()

    def action_invoke(self) -> None:
        """Open the invoke form of the selected function."""
        fid = self.table.selected_key
        if fid is not None:
            self.dash.open_invoke(fid)

    def action_invocations(self) -> None:
        """Invocations of the selected function."""
        fid = self.table.selected_key
        if fid is not None:
            self.dash.pivot("invocations", f"fn={fid}")

    def action_worker(self) -> None:
        """The worker that serves the selected function."""
        fid = self.table.selected_key
        fn = self.dash.store.functions.get(fid or "")
        if fn is not None:
            self.dash.pivot("workers", f"name={clean_text(fn.get('worker_name'))}")

    def action_toggle_internal(self) -> None:
        """Show or hide engine and internal functions."""
        self.show_internal = not self.show_internal
        self.refresh_view(force=True)


class TriggersScreen(_TableScreen):
    """Registered triggers by type (config summary, bound function, live/pending) and the types."""

    NAME = "triggers"
    SECTIONS = ("triggers",)
    TABLE_COLUMNS = COLUMNS["triggers"]
    FILTER_FIELDS: ClassVar[set[str]] = {"type", "id", "function", "config", "worker", "status"}
    BINDINGS: ClassVar[list[BindingType]] = [Binding("f", "function", "Function")]

    def compose_body(self) -> ComposeResult:
        yield KeyedTable(self.TABLE_COLUMNS, id="main-table")
        yield KeyedTable(COLUMNS["trigger_types"], id="types-table")
        yield Static("", id="detail", classes="detail", markup=False)

    def update_view(self) -> None:
        store = self.dash.store
        rows = trigger_rows(store, self.flt)
        self.table.sync(rows)
        self.query_one("#types-table", KeyedTable).sync(trigger_type_rows(store))
        pending = sum(1 for r in rows if "pending" in str(r.fields.get("status")))
        types = plural(len(store.trigger_types), "type")
        self.set_title(f"{len(rows)} of {len(store.triggers)} ({pending} pending) · {types}")
        self.update_detail()

    def update_detail(self) -> None:
        key = self.table.selected_key
        trig = self.dash.store.triggers.get(key or "")
        pane = self.query_one("#detail", Static)
        if trig is None:
            pane.update("no trigger selected")
            return
        config = clean_text(json.dumps(trig.get("config"), sort_keys=True, default=str), 600)
        pane.update(
            join_lines(
                [
                    styled(
                        (clean_text(key), "bold"),
                        f" {clean_text(trig.get('trigger_type'))} → {clean_text(trig.get('function_id'))}",
                    ),
                    f"config {config}",
                ]
            )
        )

    def action_function(self) -> None:
        """The bound function."""
        trig = self.dash.store.triggers.get(self.table.selected_key or "")
        if trig is not None:
            self.dash.pivot("functions", f"id={clean_text(trig.get('function_id'))}")


def _inv_segments(inv: Invocation) -> list[tuple[str, str]]:
    cells = invocation_cells(inv)
    status_cls = {"error": "ring--error", "running": "ring--running", "ok": "ring--ok"}.get(inv.status, "")
    return [
        (cells[0] + " ", "ring--dim"),
        (f"{cells[1]:<8}", status_cls),
        (f"{cells[2]:>9} ", ""),
        (f"{cells[3]:<28} ", ""),
        (f"{cells[4]:<16} ", "ring--dim"),
        (f"{cells[5]} ", "ring--dim"),
        (cells[6], "ring--error"),
    ]


class InvocationsScreen(DashScreen):
    """The live invocation stream (root spans), follow/pause with an "N new" badge."""

    NAME = "invocations"
    SECTIONS = ("invocations", "sampling")
    FILTER_FIELDS: ClassVar[set[str]] = {
        "function",
        "worker",
        "service",
        "status",
        "duration",
        "trace",
        "span",
        "error",
    }
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "pause", "Pause/follow"),
        Binding("t", "trace", "Trace"),
        Binding("l", "logs", "Logs"),
        Binding("f", "function", "Function"),
        Binding("w", "worker", "Worker"),
    ]

    def compose_body(self) -> ComposeResult:
        yield Static(
            f"{'TIME':<9}{'STATUS':<8}{'DURATION':>9} {'FUNCTION':<28} {'WORKER':<16} TRACE / ERROR",
            classes="colhead",
        )
        yield RingView(_inv_segments, id="ring")
        yield Static("", id="ring-status", markup=False)

    @property
    def ring(self) -> RingView:
        """The invocation list."""
        return self.query_one("#ring", RingView)

    def update_view(self) -> None:
        store = self.dash.store
        # the list is redrawn only when it changed (not on every clock tick): a redraw of a
        # following list repaints every row
        key = (store.versions["invocations"], self.flt)
        if key != getattr(self, "_ring_key", None):
            self._ring_key = key
            items = store.invocations
            shown: list[Invocation] = (
                list(items) if not self.flt else [i for i in items if self.flt.matches(i.row())]
            )
            previous_total = getattr(self, "_last_total", store.invocations_total)
            self._last_total = store.invocations_total
            self.ring.set_items(shown, appended=max(0, store.invocations_total - previous_total))
        badge: list[Part] = ["  ", (" SAMPLED ", "reverse")] if sampling_note(store) else []
        count = len(self.ring.items)
        self.set_title(f"{count} shown · {store.invocations_total} seen · {store.rate():.1f}/s", *badge)
        self._update_status()

    def _update_status(self) -> None:
        ring = self.ring
        note = sampling_note(self.dash.store)
        if not ring.items:
            if self.flt:
                text = "No matching invocations"
            elif self.dash.store.is_missing("engine::traces::list"):
                text = "No invocations: the engine has no engine::traces::list"
            else:
                text = "No invocations yet"
        elif ring.follow:
            text = "following · space pause · Enter/t trace · l logs · f function · w worker"
        else:
            text = f"paused · ▼ {ring.new_count} new (End or space to follow)"
        if note and ring.items:
            text = f"{note} · {text}"
        self.set_line("ring-status", styled(text))

    def on_ring_view_follow_changed(self, event: RingView.FollowChanged) -> None:
        self._update_status()

    def on_ring_view_selected(self, event: RingView.Selected) -> None:
        if isinstance(event.item, Invocation):
            self.dash.open_trace(event.item.trace_id)

    def _selected(self) -> Invocation | None:
        item = self.ring.selected
        return item if isinstance(item, Invocation) else None

    def action_pause(self) -> None:
        """Pause or follow the stream."""
        self.ring.toggle_follow()
        self._update_status()

    def action_trace(self) -> None:
        """The selected invocation's trace."""
        inv = self._selected()
        if inv is not None:
            self.dash.open_trace(inv.trace_id)

    def action_logs(self) -> None:
        """Logs of the selected invocation's trace."""
        inv = self._selected()
        if inv is not None:
            self.dash.pivot("logs", f"trace={inv.trace_id}")

    def action_function(self) -> None:
        """The selected invocation's function."""
        inv = self._selected()
        if inv is not None:
            self.dash.pivot("functions", f"id={inv.function}")

    def action_worker(self) -> None:
        """The worker that served the selected invocation."""
        inv = self._selected()
        if inv is not None and inv.worker:
            self.dash.pivot("workers", f"name={inv.worker}")


class TraceScreen(DashScreen):
    """A trace as a terminal waterfall (tree, eighth-block bars, critical path marked ``*``)."""

    NAME = "trace"
    SECTIONS = ("traces", "invocations")
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("l", "logs", "Logs"),
        Binding("f", "function", "Function"),
        Binding("r", "reload", "Reload"),
        Binding("left_square_bracket", "step(-1)", "Older"),
        Binding("right_square_bracket", "step(1)", "Newer"),
    ]

    def compose_body(self) -> ComposeResult:
        yield Static("", id="trace-head", classes="colhead", markup=False)
        yield RingView(self._segments, id="ring")
        yield Static("", id="detail", classes="detail", markup=False)

    @property
    def ring(self) -> RingView:
        """The span rows."""
        return self.query_one("#ring", RingView)

    def on_mount(self) -> None:
        super().on_mount()
        self.ring.pause()

    def _segments(self, row: WaterfallRow) -> list[tuple[str, str]]:
        width = max(20, (self.size.width or 100) - 60)
        total = getattr(self, "_total", 1.0)
        name = ("  " * row.depth + row.name)[:30]
        cls = {"error": "ring--error", "running": "ring--running"}.get(row.status, "")
        duration = "running" if row.duration_ms is None else f"{row.duration_ms:.1f}ms"
        return [
            ("*" if row.critical else " ", "ring--critical"),
            (f"{name:<30} ", "ring--critical" if row.critical else cls),
            (f"{row.service[:12]:<12} ", "ring--dim"),
            (f"{duration:>10} ", cls),
            (
                bar(row.offset_ms, row.duration_ms, total, width),
                "ring--error" if row.status == "error" else "ring--bar",
            ),
        ]

    def trace_id(self) -> str | None:
        """The trace shown: the one opened last, else the newest."""
        store = self.dash.store
        if self.dash.current_trace:
            return self.dash.current_trace
        return store.invocations[-1].trace_id if store.invocations else None

    def update_view(self) -> None:
        store = self.dash.store
        tid = self.trace_id()
        head = self.query_one("#trace-head", Static)
        if tid is None:
            self.set_title("no trace yet")
            head.update("")
            self.ring.set_items([])
            self.query_one("#detail", Static).update("Open one from Invocations (Enter or t).")
            return
        # rebuilt only when the trace (or the worker names) changed, not on every clock tick
        key = (
            tid,
            store.versions["traces"],
            store.versions["functions"],
            store.versions["missing"],
            self.flt,
        )
        if key == getattr(self, "_rows_key", None):
            return
        self._rows_key = key
        rows = waterfall_rows(store.trace_spans(tid), store.worker_of)
        self._total = total_ms(rows) or 1.0
        self.set_title(f"{tid} · {len(rows)} span(s) · {self._total:.1f} ms")
        head.update(f" {'SPAN':<30} {'WORKER':<12} {'DURATION':>10} 0 … {self._total:.1f} ms")
        selected = self.ring.selected if self.ring.cursor is not None else None
        self.ring.set_items(rows)
        if isinstance(selected, WaterfallRow):  # the rows are new objects: keep the span selected
            same = [i for i, row in enumerate(rows) if row.span_id == selected.span_id]
            self.ring.cursor = same[0] if same else self.ring.cursor
        if self.ring.cursor is None and rows:
            self.ring.cursor = 0
        self.update_detail()

    def update_detail(self) -> None:
        row = self.ring.selected
        pane = self.query_one("#detail", Static)
        if not isinstance(row, WaterfallRow):
            pane.update("")
            return
        tid = self.trace_id() or ""
        span = next((s for s in self.dash.store.trace_spans(tid) if s.get("span_id") == row.span_id), {})
        attrs = span.get("attributes")
        attr_text = clean_text(attrs, 500) if attrs else "-"
        pane.update(
            join_lines(
                [
                    styled(
                        (clean_text(row.name), "bold"),
                        f" span {clean_text(row.span_id)} · {clean_text(row.status)}"
                        f" · +{row.offset_ms:.1f} ms",
                    ),
                    clean_text(row.error) if row.error else "",
                    f"attributes {attr_text}",
                ]
            )
        )

    def on_key(self) -> None:
        self.call_after_refresh(self.update_detail)

    def action_logs(self) -> None:
        """Logs of this trace."""
        tid = self.trace_id()
        if tid:
            self.dash.pivot("logs", f"trace={tid}")

    def action_function(self) -> None:
        """The selected span's function."""
        row = self.ring.selected
        if isinstance(row, WaterfallRow):
            self.dash.pivot("functions", f"id={row.name.strip()}")

    def action_reload(self) -> None:
        """Fetch the trace tree again."""
        tid = self.trace_id()
        if tid:
            self.dash.source.request("trace_tree", tid)

    def action_step(self, delta: int) -> None:
        """Open the previous or next trace of the invocation stream."""
        ids = list(dict.fromkeys(i.trace_id for i in self.dash.store.invocations))
        if not ids:
            return
        tid = self.trace_id()
        index = ids.index(tid) if tid in ids else len(ids) - 1
        self.dash.open_trace(ids[max(0, min(len(ids) - 1, index + delta))])


def _log_segments(line: LogLine) -> list[tuple[str, str]]:
    cells = log_cells(line)
    cls = {"ERROR": "ring--error", "FATAL": "ring--error", "WARN": "ring--warn", "WARNING": "ring--warn"}.get(
        line.level, ""
    )
    return [
        (cells[0] + " ", "ring--dim"),
        (f"{cells[1]:<5} ", cls),
        (f"{cells[2][:14]:<14} ", "ring--dim"),
        (f"{cells[3][:8]} ", "ring--dim"),
        (cells[4], ""),
    ]


class LogsScreen(DashScreen):
    """Live log tail with level/text/trace filters, pause and wrap."""

    NAME = "logs"
    SECTIONS = ("logs",)
    FILTER_FIELDS: ClassVar[set[str]] = {"level", "service", "message", "trace", "span"}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "pause", "Pause/follow"),
        Binding("w", "wrap", "Wrap"),
        Binding("t", "trace", "Trace"),
    ]

    def compose_body(self) -> ComposeResult:
        yield Static(f"{'TIME':<9}{'LEVEL':<6}{'SERVICE':<15}{'TRACE':<9}MESSAGE", classes="colhead")
        yield RingView(_log_segments, id="ring")
        yield Static("", id="ring-status", markup=False)

    @property
    def ring(self) -> RingView:
        """The log lines."""
        return self.query_one("#ring", RingView)

    def update_view(self) -> None:
        store = self.dash.store
        key = (store.versions["logs"], self.flt)
        if key != getattr(self, "_ring_key", None):  # redrawn only when the tail changed
            self._ring_key = key
            shown = list(store.logs) if not self.flt else [x for x in store.logs if self.flt.matches(x.row())]
            previous = getattr(self, "_last_total", store.logs_total)
            self._last_total = store.logs_total
            self.ring.set_items(shown, appended=max(0, store.logs_total - previous))
        self.set_title(f"{len(self.ring.items)} shown · {store.logs_total} seen")
        self._update_status()

    def _update_status(self) -> None:
        ring = self.ring
        wrap = "wrap on" if ring.wrap else "wrap off"
        if not ring.items:
            if self.flt:
                text = "No matching log lines"
            elif self.dash.store.is_missing("engine::logs::list"):
                text = "No logs: the engine has no engine::logs::list"
            else:
                text = "No logs yet"
        elif ring.follow:
            text = f"following · {wrap} · space pause · w wrap · t trace"
        else:
            text = f"paused · ▼ {ring.new_count} new (End or space to follow) · {wrap}"
        self.set_line("ring-status", styled(text))

    def on_ring_view_follow_changed(self, event: RingView.FollowChanged) -> None:
        self._update_status()

    def on_ring_view_selected(self, event: RingView.Selected) -> None:
        self.action_trace()

    def action_pause(self) -> None:
        """Pause or follow the tail."""
        self.ring.toggle_follow()
        self._update_status()

    def action_wrap(self) -> None:
        """Wrap long lines or not."""
        self.ring.set_wrap(not self.ring.wrap)
        self._update_status()

    def action_trace(self) -> None:
        """The trace of the selected line."""
        line = self.ring.selected
        if isinstance(line, LogLine) and line.trace_id:
            self.dash.open_trace(line.trace_id)


class ChannelsScreen(_TableScreen):
    """Open channels: sides, bytes and messages moved, owner, age."""

    NAME = "channels"
    SECTIONS = ("channels", "clock")
    TABLE_COLUMNS = COLUMNS["channels"]
    FILTER_FIELDS: ClassVar[set[str]] = {"channel", "id", "state", "owner", "worker"}

    def update_view(self) -> None:
        rows = channel_rows(self.dash.store, self.flt)
        self.table.sync(rows)
        self.set_title(f"{len(rows)} of {len(self.dash.store.channels)}")
        key = self.table.selected_key
        channel = next(
            (c for c in self.dash.store.channels if str(c.get("channel_id") or c.get("id")) == key), None
        )
        self.query_one("#detail", Static).update(
            styled(clean_text(json.dumps(channel, sort_keys=True, default=str), 800)) if channel else ""
        )


class StreamsScreen(_TableScreen):
    """Streams (``stream::list_all``; Enter loads a stream's items with ``stream::list`` per
    group) and state scopes (``state::list_groups``; Enter loads ``state::list``)."""

    NAME = "streams"
    SECTIONS = ("streams",)
    TABLE_COLUMNS = COLUMNS["streams"]
    FILTER_FIELDS: ClassVar[set[str]] = {"stream", "id", "group", "scope"}
    BINDINGS: ClassVar[list[BindingType]] = [Binding("enter", "open_selected", "Items", show=False)]

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="streams-body"):
            yield KeyedTable(self.TABLE_COLUMNS, id="main-table")
            yield KeyedTable(COLUMNS["state"], id="state-table")
        yield Static("", id="detail", classes="detail", markup=False)

    def update_view(self) -> None:
        store = self.dash.store
        rows = stream_rows(store, self.flt)
        self.table.sync(rows)
        states = state_rows(store, self.flt)
        self.query_one("#state-table", KeyedTable).sync(states)
        self.set_title(f"{len(rows)} stream(s) · {len(states)} state scope(s)")
        self.update_detail()

    def on_descendant_focus(self) -> None:
        self.update_detail()

    def update_detail(self) -> None:
        pane = self.query_one("#detail", Static)
        states = self.query_one("#state-table", KeyedTable)
        if states.has_focus:
            scope = states.selected_key
            items = self.dash.store.state_items.get(scope or "")
            if scope is None:
                pane.update("")
            elif items is None:
                pane.update(styled(f"scope {clean_text(scope)}: Enter loads its items"))
            else:
                pane.update(
                    join_lines([f"scope {clean_text(scope)}: {len(items)} item(s)", clean_text(items, 800)])
                )
            return
        stream = self.table.selected_key
        groups = self.dash.store.stream_items.get(stream or "")
        if stream is None:
            pane.update("")
        elif groups is None:
            pane.update(styled(f"stream {clean_text(stream)}: Enter loads its items"))
        else:
            lines = [f"stream {clean_text(stream)}: {sum(len(v) for v in groups.values())} item(s)"]
            for group, items in list(groups.items())[:8]:
                lines.append(f"  {clean_text(group)} ({len(items)}): {clean_text(items, 300)}")
            pane.update(join_lines(lines))

    def on_keyed_table_row_selected(self, event: KeyedTable.RowSelected) -> None:
        if event.table.id == "state-table":
            self.action_open_scope()
        else:
            self.action_open_stream()

    def action_open_selected(self) -> None:
        """Load the items of the selected stream or state scope (whichever table has focus)."""
        if self.query_one("#state-table", KeyedTable).has_focus:
            self.action_open_scope()
        else:
            self.action_open_stream()

    def action_open_scope(self) -> None:
        """Load the items of the selected state scope."""
        scope = self.query_one("#state-table", KeyedTable).selected_key
        if scope:
            self.dash.source.request("state_items", scope)

    def action_open_stream(self) -> None:
        """Load the items of every group of the selected stream."""
        stream = self.table.selected_key
        if stream:
            self.dash.source.request("stream_items", stream)


class QueuesScreen(_TableScreen):
    """Queue topics and the dead-letter queue (redrive and discard confirm; read-only hides them)."""

    NAME = "queues"
    SECTIONS = ("queues",)
    TABLE_COLUMNS = COLUMNS["queues"]
    FILTER_FIELDS: ClassVar[set[str]] = {"topic", "id", "queue"}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("m", "messages", "Dead letters"),
        Binding("r", "redrive", "Redrive all"),
        Binding("x", "discard", "Discard"),
    ]

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="queues-body"):
            yield KeyedTable(self.TABLE_COLUMNS, id="main-table")
            yield KeyedTable(COLUMNS["dlq"], id="dlq-table")
        yield KeyedTable(COLUMNS["dlq_messages"], id="dlq-messages")

    def _dlq_topic(self) -> str | None:
        return self.query_one("#dlq-table", KeyedTable).selected_key

    def update_view(self) -> None:
        store = self.dash.store
        rows = queue_rows(store, self.flt)
        self.table.sync(rows)
        dlq = dlq_rows(store, self.flt)
        self.query_one("#dlq-table", KeyedTable).sync(dlq)
        topic = self._dlq_topic()
        self.query_one("#dlq-messages", KeyedTable).sync(dlq_message_rows(store, topic) if topic else [])
        self.set_title(f"{plural(len(rows), 'topic')} · {plural(len(dlq), 'dead-letter topic')}")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("redrive", "discard") and self.dash.readonly:
            return None
        return True

    def on_keyed_table_row_selected(self, event: KeyedTable.RowSelected) -> None:
        if event.table.id == "dlq-table":
            self.action_messages()

    def action_messages(self) -> None:
        """Load the dead letters of the selected DLQ topic."""
        topic = self._dlq_topic()
        if topic:
            self.dash.source.request("dlq_messages", topic)

    def action_redrive(self) -> None:
        """Redrive every dead letter of the selected topic (asks first)."""
        topic = self._dlq_topic()
        if topic:
            self.dash.confirm_then_call(
                f"Redrive every dead letter of {topic}?", "iii::queue::redrive", {"queue": topic}, "queues"
            )

    def action_discard(self) -> None:
        """Discard the selected dead letter (asks first)."""
        topic = self._dlq_topic()
        message = self.query_one("#dlq-messages", KeyedTable).selected_key
        if topic and message:
            self.dash.confirm_then_call(
                f"Discard message {message} of {topic}? This cannot be undone.",
                "iii::queue::discard_message",
                {"queue": topic, "message_id": message},
                "queues",
            )


SCREEN_CLASSES: dict[str, type[DashScreen]] = {
    "overview": OverviewScreen,
    "workers": WorkersScreen,
    "functions": FunctionsScreen,
    "triggers": TriggersScreen,
    "invocations": InvocationsScreen,
    "trace": TraceScreen,
    "logs": LogsScreen,
    "channels": ChannelsScreen,
    "streams": StreamsScreen,
    "queues": QueuesScreen,
}
