"""The Textual application: modes per screen, the flush timer, pivots and actions.

Data flow (tui.md §3.2, §3.3): the data source runs as one async worker and hands events to
:meth:`IIIApp.sink`, which only queues them. A timer (``flush_interval``, 100 ms by default)
applies the queued events to the :class:`~iii_tui.store.Store` in one batch and posts one
:class:`~iii_tui.messages.StoreChanged` to the visible screens, which redraw only the sections
that changed. Nothing waits on I/O on the UI path.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, ClassVar, Protocol

from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.content import Content
from textual.fuzzy import Matcher
from textual.screen import Screen
from textual.theme import Theme

from .clock import Clock, SystemClock
from .messages import StoreChanged
from .modals import ConfirmScreen, HelpScreen, InvokeOutcome, InvokeScreen, ResultScreen
from .schema_form import MISSING
from .screens import SCREEN_CLASSES, DashScreen, FunctionsScreen, InvocationsScreen, LogsScreen
from .session import SessionWriter
from .store import Event, Store, clean_text
from .views import SCREEN_TITLES, SCREENS

__all__ = ["WRITE_ACTIONS", "DataSource", "IIIApp", "NullSource"]

#: Bindings that write to the engine: disabled by ``--readonly`` (and in replays).
WRITE_ACTIONS = frozenset({"invoke", "redrive", "discard"})
#: How often, and how far apart, an invoke's trace is looked for (workers flush spans every
#: 100 ms by default; the engine coalesces trace notifications over 300 ms).
TRACE_LOOKUPS = 12
TRACE_LOOKUP_INTERVAL_S = 0.25

III_THEME = Theme(
    name="iii",
    primary="#7AA2F7",
    secondary="#9D7CD8",
    accent="#F3F724",
    foreground="#E6E6E6",
    background="#000000",
    surface="#0A0A0A",
    panel="#161616",
    success="#3FB950",
    warning="#D29922",
    error="#F85149",
    dark=True,
)


class DataSource(Protocol):
    """What the app needs from a source (live engine, replay, or nothing)."""

    readonly: bool

    async def run(self, sink: Callable[[Event], None]) -> None:
        """Emit events until done or cancelled."""
        ...

    def request(self, kind: str, arg: str) -> None:
        """Fetch a detail now (answer arrives as an event)."""
        ...

    async def call(self, function_id: str, payload: Any, timeout_ms: int = 30000) -> Any:
        """Invoke a function (a writing action)."""
        ...

    async def stop(self) -> None:
        """Release resources."""
        ...


class NullSource:
    """A source with nothing to say (a pre-filled store: ``--snapshot``, tests)."""

    readonly = True

    async def run(self, sink: Callable[[Event], None]) -> None:
        """Return at once."""

    def request(self, kind: str, arg: str) -> None:
        """Nothing to fetch."""

    async def call(self, function_id: str, payload: Any, timeout_ms: int = 30000) -> Any:
        """Actions are not possible."""
        raise PermissionError("no engine connection")

    async def stop(self) -> None:
        """Nothing to release."""


def _highlight(matcher: Matcher, text: str) -> Content:
    """``text`` with the fuzzy match highlighted, taken literally (``Matcher.highlight`` parses
    it as markup, and function ids or worker names may hold ``[``)."""
    content = Content(text)
    _score, offsets = matcher.fuzzy_search.match(matcher.query, text)
    for offset in offsets:
        if not text[offset].isspace():
            content = content.stylize(matcher.match_style, offset, offset + 1)
    return content


class EntityCommands(Provider):
    """Command palette over screens, functions, workers, triggers, traces and actions."""

    def _candidates(self) -> Iterable[tuple[str, Callable[[], Any], str]]:
        app = self.app
        assert isinstance(app, IIIApp)
        store = app.store
        for index, name in enumerate(SCREENS):
            key = str((index + 1) % 10)
            yield f"Go to {SCREEN_TITLES[name]}", partial(app.pivot, name), f"screen (key {key})"
        for fid in list(store.functions)[:20000]:
            shown = clean_text(fid)
            yield f"Function {shown}", partial(app.pivot, "functions", f"id={fid}"), "show the function"
            if not app.readonly:
                yield f"Invoke {shown}", partial(app.open_invoke, fid), "open the invoke form"
        for w in list(store.workers.values())[:5000]:
            name = str(w.get("name"))
            go = partial(app.pivot, "workers", f"name={name}")
            yield f"Worker {clean_text(name)}", go, "show the worker"
        for tid, trig in list(store.triggers.items())[:5000]:
            label = f"Trigger {clean_text(trig.get('trigger_type'))} {clean_text(tid)}"
            yield label, partial(app.pivot, "triggers", f"id={tid}"), "show the trigger"
        for inv in list(store.invocations)[-50:]:
            tid = inv.trace_id
            label = f"Trace {clean_text(tid)} {clean_text(inv.function)}"
            yield label, partial(app.open_trace, tid), "open the waterfall"
        yield "Toggle internal functions", app.toggle_internal, "functions screen"
        yield "Pause or follow invocations", app.toggle_invocations_follow, "invocations screen"
        yield "Wrap log lines", app.toggle_log_wrap, "logs screen"

    async def discover(self) -> Hits:
        app = self.app
        assert isinstance(app, IIIApp)
        for index, name in enumerate(SCREENS):
            yield DiscoveryHit(
                f"Go to {SCREEN_TITLES[name]}", partial(app.pivot, name), help=f"key {(index + 1) % 10}"
            )

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for text, callback, help_text in self._candidates():
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, _highlight(matcher, text), callback, text=text, help=help_text)


class IIIApp(App[int]):
    """The iii-tui dashboard.

    Args:
        source: Where events come from (:class:`~iii_tui.source.EngineSource`,
            :class:`~iii_tui.session.ReplaySource`, :class:`NullSource`).
        store: The model (a fresh one by default).
        clock: Time source (the replay's clock in replays).
        readonly: Disable every action that writes.
        replay: Show the REPLAY flag (also implies read-only).
        recorder: Write every event to a session file.
        flush_interval: Seconds between batched UI updates.
        initial: The first screen.
    """

    CSS_PATH = "app.tcss"
    TITLE = "iii-tui"
    COMMANDS: ClassVar[set[Any]] = {EntityCommands}
    BINDINGS: ClassVar[list[BindingType]] = [
        *(
            Binding(str((i + 1) % 10), f"switch_mode('{name}')", SCREEN_TITLES[name], show=False)
            for i, name in enumerate(SCREENS)
        ),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
    ]
    MODES: ClassVar[dict[str, Any]] = dict(SCREEN_CLASSES)

    def __init__(
        self,
        source: DataSource,
        *,
        store: Store | None = None,
        clock: Clock | None = None,
        readonly: bool = False,
        replay: bool = False,
        recorder: SessionWriter | None = None,
        flush_interval: float = 0.1,
        initial: str = "overview",
    ) -> None:
        super().__init__()
        self.source = source
        self.store = store or Store()
        self.clock: Clock = clock or SystemClock()
        self.replay = replay
        self.readonly = readonly or replay or getattr(source, "readonly", False)
        self.recorder = recorder
        self.flush_interval = flush_interval
        self.initial = initial
        self.current_trace: str | None = None
        self._pending: list[Event] = []
        self._requested: set[tuple[str, str]] = set()
        self._last_second = 0
        self._section_events: dict[str, asyncio.Event] = {}
        self.flushes = 0
        self.flush_seconds = 0.0

    @property
    def recording(self) -> bool:
        """Whether events are written to a session file."""
        return self.recorder is not None

    # -- lifecycle -----------------------------------------------------------------------------
    def on_mount(self) -> None:
        self.register_theme(III_THEME)
        self.theme = "iii"
        self.switch_mode(self.initial)
        self.set_interval(self.flush_interval, self.flush)
        self.run_worker(self._run_source(), name="source", group="source", exit_on_error=False)

    async def _run_source(self) -> None:
        await self.source.run(self.sink)

    async def on_unmount(self) -> None:
        await self.source.stop()
        if self.recorder is not None:
            self.recorder.close()

    def sink(self, event: Event) -> None:
        """Queue one event from the source (applied at the next flush)."""
        self._pending.append(event)
        if self.recorder is not None:
            self.recorder.write(event)

    def flush(self) -> None:
        """Apply queued events in one batch and tell the visible screens what changed."""
        started = time.perf_counter()
        store = self.store
        changed: set[str] = set()
        if self._pending:
            before = dict(store.versions)
            pending, self._pending = self._pending, []
            store.apply_all(pending)
            changed = {k for k, v in store.versions.items() if before.get(k) != v}
        store.tick(self.clock.now())
        second = int(store.now)
        if second != self._last_second:
            self._last_second = second
            changed.add("clock")
        for name in changed:
            if name in self._section_events:
                self._section_events[name].set()
        if changed:
            message = frozenset(changed)
            for screen in self.screen_stack:
                if isinstance(screen, DashScreen):
                    screen.post_message(StoreChanged(message))
        self.flushes += 1
        self.flush_seconds += time.perf_counter() - started

    # -- navigation and pivots -------------------------------------------------------------------
    def dash_screen(self) -> DashScreen | None:
        """The current mode's dashboard screen (under any modal)."""
        for screen in reversed(self.screen_stack):
            if isinstance(screen, DashScreen):
                return screen
        return None

    def pivot(self, mode: str, filter_text: str | None = None) -> None:
        """Switch to ``mode`` and filter its list with ``filter_text``."""

        async def go() -> None:
            await self.switch_mode(mode)
            screen = self.dash_screen()
            if screen is not None and filter_text is not None:
                screen.apply_filter(filter_text)
                screen.focus_body()

        self.run_worker(go(), group="nav", exclusive=True)

    def open_trace(self, trace_id: str) -> None:
        """Show a trace's waterfall (its tree is fetched)."""
        self.current_trace = trace_id
        self.source.request("trace_tree", trace_id)
        self.pivot("trace")
        self.store.touch("traces")

    def request_once(self, kind: str, arg: str) -> None:
        """Ask the source for a detail unless it was already asked."""
        if (kind, arg) not in self._requested:
            self._requested.add((kind, arg))
            self.source.request(kind, arg)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in WRITE_ACTIONS and self.readonly:
            return None
        return True

    def action_help(self) -> None:
        """Show the key bindings and the filter grammar."""
        screen = self.dash_screen()
        sections: list[tuple[str, list[tuple[str, str]]]] = []
        if screen is not None:
            keys = [
                (b.key, b.description)
                for b in screen.BINDINGS + DashScreen.BINDINGS
                if isinstance(b, Binding) and b.description
            ]
            sections.append((SCREEN_TITLES.get(screen.NAME, screen.NAME), keys))
        sections.append(
            (
                "Everywhere",
                [
                    *((str((i + 1) % 10), SCREEN_TITLES[n]) for i, n in enumerate(SCREENS)),
                    ("/", "filter this list"),
                    ("ctrl+p", "command palette (entities and actions)"),
                    ("?", "this help"),
                    ("q", "quit"),
                ],
            )
        )
        if self.readonly:
            sections.append(("Read-only", [("", "invoke, redrive and discard are disabled")]))
        self.push_screen(HelpScreen(sections))

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Help", "Key bindings and filter grammar", self.action_help)

    def toggle_internal(self) -> None:
        """Show or hide internal functions."""
        screen = self.dash_screen()
        if isinstance(screen, FunctionsScreen):
            screen.action_toggle_internal()
        else:
            self.pivot("functions")

    def toggle_invocations_follow(self) -> None:
        """Pause or follow the invocation stream."""
        screen = self.dash_screen()
        if isinstance(screen, InvocationsScreen):
            screen.action_pause()
        else:
            self.pivot("invocations")

    def toggle_log_wrap(self) -> None:
        """Wrap log lines."""
        screen = self.dash_screen()
        if isinstance(screen, LogsScreen):
            screen.action_wrap()
        else:
            self.pivot("logs")

    # -- actions that write ----------------------------------------------------------------------
    def _refuse(self) -> bool:
        if self.readonly:
            self.notify("read-only: actions that write are disabled", severity="warning")
            return True
        return False

    def open_invoke(self, function_id: str, initial: Any = MISSING) -> None:
        """Open the invoke form of ``function_id`` (its schema is fetched first if needed)."""
        if self._refuse():
            return
        info = self.store.function_info.get(function_id)
        if info is None:
            self.source.request("function_info", function_id)

        async def run() -> None:
            detail = self.store.function_info.get(function_id)
            if detail is None:
                for _ in range(50):
                    if function_id in self.store.function_info:
                        break
                    await self.wait_for_event("function_info")
                detail = self.store.function_info.get(function_id, {})
            payload = await self.push_screen_wait(
                InvokeScreen(function_id, detail.get("request_schema"), initial)
            )
            if payload is MISSING:
                return
            started = self.clock.now()
            outcome = await self.invoke(function_id, payload)
            screen = ResultScreen(outcome, looking=True)
            lookup = asyncio.ensure_future(self._lookup_trace(outcome, started, screen))
            try:
                choice = await self.push_screen_wait(screen)
            finally:
                lookup.cancel()
            if choice == "trace" and outcome.trace_id:
                self.open_trace(outcome.trace_id)
            elif choice == "again":
                self.open_invoke(function_id, payload)

        self.run_worker(run(), group="invoke", exclusive=True)

    async def wait_for_event(self, section: str, timeout: float = 0.1) -> None:
        """Wait up to ``timeout`` for the store section to change (bounded, condition-based)."""
        event = self._section_events.setdefault(section, asyncio.Event())
        event.clear()
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            pass

    async def invoke(self, function_id: str, payload: Any) -> InvokeOutcome:
        """Call a function and measure it; the outcome also goes to the store (and the recording)."""
        from iii_typed import IIIError

        started = time.perf_counter()
        try:
            result = await self.source.call(function_id, payload)
            outcome = InvokeOutcome(
                function_id,
                payload,
                ok=True,
                result=result,
                duration_ms=(time.perf_counter() - started) * 1000,
            )
        except (IIIError, PermissionError) as exc:
            outcome = InvokeOutcome(
                function_id,
                payload,
                ok=False,
                error=str(exc),
                duration_ms=(time.perf_counter() - started) * 1000,
            )
        self.sink(Event(self.clock.now(), "invoke", outcome.as_dict()))
        return outcome

    async def _lookup_trace(self, outcome: InvokeOutcome, since: float, screen: ResultScreen) -> None:
        """Find the trace of an invoke (its root span reaches the engine after the worker's next
        telemetry flush, so ask a few times) and show it on the result screen."""
        finder = getattr(self.source, "find_trace", None)
        found: str | None = None
        if finder is not None:
            for attempt in range(TRACE_LOOKUPS):
                if attempt:
                    await asyncio.sleep(TRACE_LOOKUP_INTERVAL_S)
                try:
                    found = await finder(outcome.function_id, since)
                except Exception:
                    found = None
                if found:
                    break
        screen.show_trace(found)

    def confirm_then_call(self, question: str, function_id: str, payload: Any, wake: str) -> None:
        """Ask ``question``; on yes call ``function_id`` and refresh ``wake``."""
        if self._refuse():
            return

        async def run() -> None:
            if not await self.push_screen_wait(ConfirmScreen(question)):
                return
            outcome = await self.invoke(function_id, payload)
            if outcome.ok:
                self.notify(clean_text(f"{function_id}: done"), markup=False)
            else:
                problem = clean_text(f"{function_id}: {outcome.error}", 600)
                self.notify(problem, severity="error", markup=False)
            self.source.request(wake, "")

        self.run_worker(run(), group="confirm", exclusive=True)
