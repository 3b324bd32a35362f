"""Telemetry-fed screens on real telemetry: the engine's ``engine::traces::*`` /
``engine::logs::list`` built-ins, the ``trace`` and ``log`` trigger push paths, and a worker
process (our SDK) with OpenTelemetry on (``telemetry_worker.py``).

The dashboards here poll traces and logs only once (interval one hour): everything that arrives
after the first read came through the ``trace`` / ``log`` triggers.
"""

from __future__ import annotations

import uuid

import pytest
from iii_tui.modals import InvokeScreen, ResultScreen
from iii_tui.screens import FunctionsScreen, InvocationsScreen, LogsScreen, TraceScreen, WorkersScreen
from iii_tui.store import LogLine
from iii_tui.views import function_rows, invocation_cells, worker_rows
from iii_tui.waterfall import waterfall_rows
from iii_tui.widgets import KeyedTable
from textual.widgets import Input

from iii_typed import InvocationError
from iii_typed.engine.process import EngineProcess

from .conftest import TelemetryWorker, find_invocation, make_app, wait_text, wait_until

PUSH_ONLY = {"traces": 3600.0, "logs": 3600.0}


def _token() -> str:
    return uuid.uuid4().hex[:10]


async def test_invocations_waterfall_and_pivots_on_real_traces(
    engine: EngineProcess, telemetry_worker: TelemetryWorker
) -> None:
    tw = telemetry_worker
    fn_a, fn_b = tw.fn("checkout"), tw.fn("charge")
    app = make_app(engine.url, intervals=PUSH_ONLY)
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_until(lambda: fn_a in app.store.functions, what="functions read")
        await pilot.press("5", "slash", *f"fn:{tw.prefix}::", "enter")
        screen = app.screen
        assert isinstance(screen, InvocationsScreen)

        # a failing invocation, then A -> B: both arrive through the trace trigger
        failing = _token()
        with pytest.raises(InvocationError, match="card declined"):
            tw.call("refund", {"tag": failing})
        first = _token()
        assert tw.call("checkout", {"tag": first}) == 21
        inv = await wait_until(lambda: find_invocation(app, fn_a, first), what="A's root span")
        bad = await wait_until(lambda: find_invocation(app, tw.fn("refund"), failing), what="failed span")
        assert app.source.pushed_traces > 0
        # the worker column names the worker (from the function registry), not the span's
        # OpenTelemetry service name that every worker process shares
        assert inv.service == "iii-python-sdk" and inv.worker == tw.name
        assert invocation_cells(inv)[4] == tw.name
        assert (bad.status, bad.error) == ("error", "card declined")
        text = await wait_text(app, "card declined")
        assert tw.name in text and fn_a in text
        # B ran nested in A's trace: it is not a root, so not in the stream
        assert not [i for i in app.store.invocations if i.function == fn_b]

        # pause: three more invocations are counted, not shown at the end
        await pilot.press("space")
        await wait_text(app, "▼ 0 new")
        tokens = [_token() for _ in range(3)]
        for token in tokens:
            tw.call("checkout", {"tag": token})
        await wait_until(lambda: all(find_invocation(app, fn_a, t) for t in tokens), what="3 more")
        await wait_text(app, "▼ 3 new")
        assert screen.ring.new_count == 3 and not screen.ring.follow
        await pilot.press("end")
        await wait_text(app, "following")
        last = find_invocation(app, fn_a, tokens[-1])
        assert screen.ring.selected is last  # following: the newest is selected

        # invocation -> trace: the real A -> B chain as a waterfall
        await pilot.press("t")
        await wait_until(lambda: isinstance(app.screen, TraceScreen), what="trace screen")
        await wait_until(lambda: last.trace_id in app.store.trace_trees, what="tree fetched")
        text = await wait_text(app, "2 span(s)")
        rows = waterfall_rows(app.store.trace_spans(last.trace_id), app.store.worker_of)
        assert [(r.depth, r.name, r.critical, r.service) for r in rows] == [
            (0, fn_a, True, tw.name),
            (1, fn_b, True, tw.name),
        ]
        assert rows[1].offset_ms > 0 and rows[0].duration_ms >= rows[1].duration_ms
        assert f"*{fn_a}" in text and f"*  {fn_b}" in text and "█" in text

        # trace -> logs of the trace: both handlers' Logger records, nothing else
        await pilot.press("l")
        await wait_until(lambda: isinstance(app.screen, LogsScreen), what="logs screen")
        logs = app.screen
        assert isinstance(logs, LogsScreen) and logs.flt.text == f"trace={last.trace_id}"
        await wait_until(
            lambda: (
                [x.message for x in logs.ring.items] == [f"checkout {tokens[-1]}", f"charge {tokens[-1]}"]
            ),
            what="the trace's two log lines",
        )
        assert [x.level for x in logs.ring.items] == ["INFO", "WARN"]

        # log line -> its trace
        await pilot.press("enter")
        await wait_until(lambda: isinstance(app.screen, TraceScreen), what="back to the trace")
        assert app.current_trace == last.trace_id

        # trace span B -> function B: the nested calls count in B's statistics (CALLS is the
        # engine's count, read every 0.5 s; the error count comes from the spans)
        trace = app.screen
        assert isinstance(trace, TraceScreen)
        await wait_until(lambda: len(trace.ring.items) == 2, what="waterfall rows")
        await pilot.press("down", "f")
        await wait_until(lambda: isinstance(app.screen, FunctionsScreen), what="functions screen")
        assert app.screen.flt.text == f"id={fn_b}"
        await wait_until(lambda: app.screen.query_one("#main-table", KeyedTable).keys == [fn_b], what="B")
        await wait_until(
            lambda: [r.fields["calls"] for r in function_rows(app.store, app.screen.flt)] == [4],
            what="B's 4 calls counted by the engine",
        )
        (row_b,) = function_rows(app.store, app.screen.flt)
        assert row_b.fields["errors"] == 0 and app.store.fn_stats[fn_b].calls == 4

        # function -> worker: resource sparklines from real latest_metrics
        await pilot.press("w")
        await wait_until(lambda: isinstance(app.screen, WorkersScreen), what="workers screen")
        workers = app.screen
        table = workers.query_one("#main-table", KeyedTable)
        await wait_until(lambda: table.keys == [tw.worker_id], what="the worker row")
        await wait_until(
            lambda: len({m["timestamp_ms"] for m in app.store.worker_metrics.get(tw.worker_id, ())}) >= 3,
            what="three latest_metrics samples",
        )
        history = list(app.store.worker_metrics[tw.worker_id])
        assert all(m["memory_rss"] > 0 and m["event_loop_lag_ms"] >= 0 for m in history)
        (wrow,) = worker_rows(app.store, workers.flt)
        assert wrow.cells[8].endswith("MiB") and wrow.cells[7] != "-"
        assert len(wrow.cells[9]) >= 3 and set(wrow.cells[9]) <= set("▁▂▃▄▅▆▇█")
        text = await wait_text(app, "sample(s)")
        detail = [ln.strip() for ln in text.splitlines() if ln.strip().startswith(("cpu ", "rss ", "lag "))]
        assert len(detail) == 3 and "MiB" in detail[1] and detail[2].endswith("ms"), detail

        # worker -> its invocations (the worker filter matches the registry's worker name)
        await pilot.press("v")
        await wait_until(lambda: isinstance(app.screen, InvocationsScreen), what="invocations again")
        inv_screen = app.screen
        assert isinstance(inv_screen, InvocationsScreen)
        await wait_until(
            lambda: (
                {i.function for i in inv_screen.ring.items} == {fn_a, tw.fn("refund")}
                and len(inv_screen.ring.items) >= 5
            ),
            what="the worker's invocations",
        )
        # invocation -> worker
        await pilot.press("w")
        await wait_until(lambda: isinstance(app.screen, WorkersScreen), what="workers from an invocation")
        await wait_until(
            lambda: app.screen.query_one("#main-table", KeyedTable).keys == [tw.worker_id],
            what="the invocation's worker",
        )

        # invoke from the dashboard: the result screen finds the call's trace, `t` opens it
        app.open_invoke(fn_a)
        await wait_until(lambda: isinstance(app.screen, InvokeScreen), what="invoke form")
        form = app.screen
        assert isinstance(form, InvokeScreen) and [s.key for s in form.flat] == [""]  # no schema: JSON
        invoked = _token()
        await wait_until(lambda: form.query("#fld-0"), what="the form's field mounted")
        form.query_one("#fld-0", Input).value = f'{{"tag": "{invoked}"}}'
        await pilot.press("ctrl+s")
        await wait_until(lambda: isinstance(app.screen, ResultScreen), what="result screen")
        result = app.screen
        assert isinstance(result, ResultScreen) and result.outcome.result == 21
        await wait_until(lambda: result.outcome.trace_id, what="the invoke's trace found")
        mine = await wait_until(lambda: find_invocation(app, fn_a, invoked), what="the invoke's root span")
        assert result.outcome.trace_id == mine.trace_id
        await wait_text(app, f"trace: {mine.trace_id}")
        await pilot.press("t")
        await wait_until(lambda: isinstance(app.screen, TraceScreen), what="the invoke's waterfall")
        assert app.current_trace == mine.trace_id
        await wait_text(app, "2 span(s)")


async def test_log_tail_from_the_log_trigger_with_filters(
    engine: EngineProcess, telemetry_worker: TelemetryWorker
) -> None:
    tw = telemetry_worker
    early = _token()
    # records written before the dashboard starts: its first engine::logs::list (newest first)
    tw.call("log", {"lines": [{"level": "info", "message": f"{early} seq-{i}"} for i in range(1, 4)]})
    listed = await wait_until(
        lambda: [
            r["body"]
            for r in tw.caller.trigger({"function_id": "engine::logs::list", "payload": {"limit": 500}})[
                "logs"
            ]
            if early in r["body"]
        ],
        what="the early records stored",
    )
    assert listed == [f"{early} seq-3", f"{early} seq-2", f"{early} seq-1"]  # the engine: newest first

    app = make_app(engine.url, intervals=PUSH_ONLY)
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("7")
        await wait_until(lambda: isinstance(app.screen, LogsScreen), what="logs screen")
        screen = app.screen
        assert isinstance(screen, LogsScreen)

        def mine(token: str) -> list[LogLine]:
            return [x for x in app.store.logs if token in x.message]

        await wait_until(lambda: len(mine(early)) == 3, what="the early records")
        assert [x.message for x in mine(early)] == [f"{early} seq-{i}" for i in (1, 2, 3)]  # oldest first
        assert app.source.pushed_logs == 0

        # live tail: new records arrive through the log trigger only (polling is off)
        tail = _token()
        lines = [
            {"level": "info", "message": f"{tail} tail-info"},
            {"level": "warn", "message": f"{tail} tail-warn"},
            {"level": "error", "message": f"{tail} tail-error \x1b[31mred"},
        ]
        tw.call("log", {"lines": lines})
        await wait_until(lambda: len(mine(tail)) == 3, what="the tail records")
        assert app.source.pushed_logs >= 3
        assert [x.level for x in mine(tail)] == ["INFO", "WARN", "ERROR"]
        assert {x.service for x in mine(tail)} == {f"{tw.prefix}-svc"}
        trace_id = mine(tail)[0].trace_id
        assert len(trace_id) == 32 and {x.trace_id for x in mine(tail)} == {trace_id}
        text = await wait_text(app, "tail-error")
        assert "\\x1b[31mred" in text and "\x1b" not in text

        async def shown_after(filter_text: str) -> list[str]:
            screen.apply_filter(filter_text)  # what `/` + typing does (typed in test_live_pilot)
            await wait_until(lambda: screen.flt.text == filter_text, what=f"filter {filter_text}")
            return [x.message for x in screen.ring.items]

        assert await shown_after(f"{tail} level=error") == [f"{tail} tail-error \\x1b[31mred"]
        assert await shown_after(f"msg:{tail}") == [x["message"].replace("\x1b", "\\x1b") for x in lines]
        assert await shown_after(f"trace={trace_id} lvl=warn") == [f"{tail} tail-warn"]
        assert await shown_after(f"msg:{tail} !warn") == [
            lines[0]["message"],
            f"{tail} tail-error \\x1b[31mred",
        ]

        # pause: later records are counted; follow shows them
        await pilot.press("escape", "space")
        await wait_text(app, "paused")
        later = _token()
        tw.call("log", {"lines": [{"level": "debug", "message": f"{later} {n}"} for n in range(2)]})
        await wait_until(lambda: len(mine(later)) == 2, what="records while paused")
        await wait_text(app, "▼ 2 new")
        await pilot.press("space")
        await wait_text(app, f"{later} 1")


async def test_help_and_command_palette() -> None:
    from iii_tui.app import IIIApp
    from iii_tui.modals import HelpScreen
    from iii_tui.session import ReplaySource
    from textual.command import CommandPalette
    from textual.widgets import Static

    from .sessions import SESSION

    source = ReplaySource(SESSION, speed=0)
    app = IIIApp(source, clock=source.clock, replay=True)
    app.animation_level = "none"
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(lambda: source.done.is_set() and app.store.functions, what="replayed")
        await pilot.press("3", "question_mark")
        await wait_until(lambda: isinstance(app.screen, HelpScreen), what="help")
        text = await wait_text(app, "Invoke")
        assert "Functions" in text
        help_text = str(app.screen.query_one("#help-text", Static).content)
        assert "Filter grammar" in help_text and "field=value" in help_text
        await pilot.press("escape")
        await wait_until(lambda: not isinstance(app.screen, HelpScreen), what="help closed")
        await pilot.press("ctrl+p")
        await wait_until(lambda: isinstance(app.screen, CommandPalette), what="palette")
        await pilot.press(*"orders::cancel")
        await wait_text(app, "Function orders::cancel")
        await pilot.press("enter")
        await wait_until(
            lambda: app.current_mode == "functions" and app.screen.flt.text == "id=orders::cancel",
            what="palette pivot",
        )
