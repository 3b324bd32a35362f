"""Engine and user data is never parsed as markup: span names and attributes, log messages,
function ids, payloads and error messages holding ``[b]``, ``[/]``, ``[@click=…]``, ``",200]]``
(a ``urllib`` span's ``url.full`` with a query string next to its status code), backslashes and
escape sequences are shown as they are, on every screen, detail pane and modal, in the app and
in ``--snapshot``."""

from __future__ import annotations

import html
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from iii_tui.app import IIIApp, NullSource
from iii_tui.cli import main
from iii_tui.modals import ConfirmScreen, HelpScreen, InvokeOutcome, InvokeScreen, ResultScreen
from iii_tui.screens import DashScreen, StreamsScreen, TraceScreen
from iii_tui.session import write_session
from iii_tui.snapshot import rendered_text
from iii_tui.store import Event, Store
from iii_tui.views import SCREENS
from iii_tui.widgets import KeyedTable, RingView
from textual.widgets import Input

from .conftest import ROOT, wait_text, wait_until
from .sessions import T0

#: Each one failed to parse, or was shown changed, when it went through markup.
HOSTILE = [
    '[["url.full","http://127.0.0.1:3111/hello?name=zed"],["http.response.status_code",200]]',
    "[b]bold[/b]",
    "close [/] tag",
    "[@click=app.quit]quit[/]",
    'tail",200]]',
    "C:\\new\\[b]dir\\",
    "[red]not red",
    "\x1b[31mred\x1b[0m",
]
#: How ``clean_text`` shows each one (control characters as ``\\xNN``).
SHOWN = [h.replace("\x1b", "\\x1b") for h in HOSTILE]
FN = "odd::[b]fn[/b]\\x"  # a function id
WORKER = "w[/]orker"
TRACE = "trace-[b]1"


def _ns(ms: float) -> int:
    return int((T0 + ms / 1000) * 1e9)


def _events() -> list[Event]:
    """One of everything, each field holding a hostile string."""
    attrs = [
        ["http.request.method", "GET"],
        ["url.full", "http://127.0.0.1:3111/hello?name=zed"],
        ["http.response.status_code", 200],
        *[[f"k{i}", h] for i, h in enumerate(HOSTILE)],
    ]
    spans: list[dict[str, Any]] = [
        {  # the root client span of the report: its attributes broke the detail pane
            "trace_id": TRACE,
            "span_id": "s-root",
            "parent_span_id": None,
            "name": "GET [b]",
            "start_time_unix_nano": _ns(0),
            "end_time_unix_nano": _ns(30),
            "status": "ok",
            "attributes": attrs,
            "service_name": "svc[/]",
        },
        *(
            {
                "trace_id": TRACE,
                "span_id": f"s-{i}",
                "parent_span_id": "s-root",
                "name": f"execute {FN}{i}",
                "start_time_unix_nano": _ns(2 + i),
                "end_time_unix_nano": _ns(20),
                "status": "error",
                "status_description": h,
                "attributes": [["iii.function.id", FN], ["note", h]],
                "service_name": "svc",
            }
            for i, h in enumerate(HOSTILE)
        ),
        {
            "trace_id": "trace-2",
            "span_id": "r2",
            "parent_span_id": None,
            "name": f"execute {FN}",
            "start_time_unix_nano": _ns(40),
            "end_time_unix_nano": _ns(45),
            "status": "error",
            "status_description": HOSTILE[0],
            "attributes": [["iii.function.id", FN]],
            "service_name": "svc",
        },
    ]
    schema = {
        "type": "object",
        "properties": {h: {"type": "string", "description": h, "enum": [h, "plain"]} for h in HOSTILE[:4]}
        | {"[b]flag": {"type": "boolean"}, "[/]n": {"type": "integer", "description": "\\[b]"}},
        "required": [HOSTILE[1]],
    }
    functions = [
        {"function_id": FN, "worker_name": WORKER, "description": h, "metadata": {}} for h in HOSTILE[:1]
    ] + [{"function_id": f"{FN}{i}", "worker_name": WORKER, "description": h} for i, h in enumerate(HOSTILE)]
    channel = {
        "channel_id": HOSTILE[4],
        "owner": HOSTILE[1],
        "owner_worker_id": None,
        "reader": {"state": "waiting"},
        "writer": {"state": "connected"},
        "created_at_ms": int(T0 * 1000),
        "note": HOSTILE[0],
    }
    items = [{"key": h, "value": h} for h in HOSTILE]
    return [
        Event(T0, "conn", {"state": "connected", "url": "ws://127.0.0.1:1/[b]"}),
        Event(T0, "functions", {"functions": functions}),
        Event(T0, "function_info", {"function_id": FN, "request_schema": schema}),
        Event(
            T0,
            "workers",
            {"workers": [{"id": "w-[b]1", "name": WORKER, "runtime": HOSTILE[3], "version": HOSTILE[5]}]},
        ),
        Event(T0, "worker_info", {"worker": {"id": "w-[b]1", "os": HOSTILE[0], "ip_address": HOSTILE[4]}}),
        Event(T0, "registry", {"event": HOSTILE[1], "worker_id": HOSTILE[0]}),
        Event(
            T0,
            "triggers",
            {
                "registered_triggers": [
                    {"id": f"t{i}{h}", "trigger_type": h, "function_id": FN, "config": {"p": h}}
                    for i, h in enumerate(HOSTILE)
                ]
            },
        ),
        Event(T0, "trigger_types", {"triggers": [{"id": HOSTILE[1], "description": HOSTILE[0]}]}),
        Event(T0, "health", {"status": HOSTILE[1], "components": {HOSTILE[2]: {"status": HOSTILE[4]}}}),
        Event(T0, "missing", {"function_id": "engine::[b]x"}),
        Event(T0 + 0.1, "spans", {"spans": spans}),
        Event(
            T0 + 0.1,
            "logs",
            {
                "logs": [
                    {
                        "timestamp_unix_nano": _ns(i),
                        "severity_text": "ERROR",
                        "body": h,
                        "service_name": "svc[/]",
                        "trace_id": TRACE,
                        "span_id": "s-root",
                    }
                    for i, h in enumerate(HOSTILE)
                ]
            },
        ),
        Event(T0 + 0.1, "channels", {"channels": [channel]}),
        Event(T0 + 0.1, "streams", {"stream": [{"id": HOSTILE[1], "groups": [HOSTILE[4]]}]}),
        Event(T0 + 0.1, "stream_items", {"stream": HOSTILE[1], "groups": {HOSTILE[4]: items}}),
        Event(T0 + 0.1, "state_groups", {"groups": [HOSTILE[2]]}),
        Event(T0 + 0.1, "state_items", {"scope": HOSTILE[2], "items": items}),
        Event(T0 + 0.1, "queues", {"topics": [HOSTILE[1]]}),
        Event(T0 + 0.1, "dlq", {"topics": [{"topic": HOSTILE[1], "message_count": 1}]}),
        Event(
            T0 + 0.1,
            "dlq_messages",
            {"topic": HOSTILE[1], "messages": [{"id": HOSTILE[4], "error": HOSTILE[0], "payload": HOSTILE}]},
        ),
    ]


def _store() -> Store:
    store = Store()
    store.apply_all(_events())
    return store


def _compact(text: str) -> str:
    return "".join(text.split())


async def test_every_screen_detail_and_modal_shows_hostile_text_literally() -> None:
    store = _store()
    app = IIIApp(NullSource(), store=store, flush_interval=0.05)
    app.animation_level = "none"
    seen = ""
    async with app.run_test(size=(200, 60)) as pilot:
        for index, name in enumerate(SCREENS):
            await pilot.press(str((index + 1) % 10))
            await wait_until(lambda n=name: app.current_mode == n, what=name)
            screen = app.screen
            assert isinstance(screen, DashScreen)
            if isinstance(screen, StreamsScreen):
                screen.query_one("#state-table", KeyedTable).focus()
            # every row of every list, so each detail pane draws each row
            for view in screen.query(RingView):
                for row in range(len(view.items)):
                    view.focus()
                    view.cursor = row
                    view.refresh()
                    if isinstance(view, KeyedTable):
                        view.action_cursor(0)
                        view._notify_highlight()
                    screen.refresh_view(force=True)
                    if hasattr(screen, "update_detail"):
                        screen.update_detail()
                    await pilot.pause()
                    seen += rendered_text(app)
            screen.apply_filter("[b]")  # the filter text is shown in the title
            await pilot.pause()
            seen += rendered_text(app)
            screen.apply_filter("")
        for shown in SHOWN:
            assert _compact(shown) in _compact(seen), shown
        assert "ws://127.0.0.1:1/[b]" in seen and "engine::[b]x" in seen and "filter: [b]" in seen

        # modals: the invoke form (field names, enums, descriptions), its result, a confirmation
        app.push_screen(InvokeScreen(FN, store.function_info[FN]["request_schema"]))
        form = await wait_text(app, f"Invoke {FN}")
        assert f"{HOSTILE[1]} *  enum" in form and f"{HOSTILE[2]}  enum" in form
        assert _compact(HOSTILE[0]) in _compact(form)
        app.screen.query_one("#fld-5", Input).value = "[b]not a number"
        await pilot.press("ctrl+s")
        problems = await wait_text(app, "need attention")
        assert f"2 field(s) need attention: [/]n, {HOSTILE[1]}" in problems
        app.pop_screen()
        outcome = InvokeOutcome(FN, {}, ok=False, error=" | ".join(HOSTILE), trace_id=TRACE)
        app.push_screen(ResultScreen(outcome))
        result = _compact(await wait_text(app, f"{FN}: error"))
        assert all(_compact(s) in result for s in SHOWN) and _compact(TRACE) in result
        app.pop_screen()
        app.push_screen(ConfirmScreen(f"Discard {HOSTILE[4]} of {HOSTILE[3]}?"))
        await wait_text(app, f"Discard {HOSTILE[4]} of {HOSTILE[3]}?")
        app.pop_screen()
        app.push_screen(HelpScreen([("[b]odd[/b]", [("[", "[/]")])]))
        await wait_text(app, "[b]odd[/b]")
        app.pop_screen()
        # the command palette matches and lists function ids and workers as typed
        await pilot.press("ctrl+p")
        names = {"[": "left_square_bracket", "]": "right_square_bracket", "/": "slash"}
        await pilot.press(*(names.get(key, key) for key in "fn[/b]"))
        await wait_until(lambda: "Function odd::[b]fn[/b]" in rendered_text(app), what="palette hit")


def test_snapshot_of_hostile_data_exits_0_without_a_traceback(tmp_path: Path) -> None:
    session = tmp_path / "hostile.jsonl"
    write_session(session, _events())
    out = tmp_path / "snap"
    proc = subprocess.run(
        [sys.executable, "-m", "iii_tui", "--replay", str(session), "--snapshot", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OTEL_ENABLED": "false"},
        cwd=ROOT,
    )
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    for name in SCREENS:
        assert (out / f"{name}.svg").read_text().startswith("<svg")
    trace_svg = (out / "trace.svg").read_text()
    # the waterfall's detail pane shows the root span's attributes as they are
    assert html.escape('zed"],["http.response.status_code",200]', quote=True) in trace_svg


def test_a_screen_that_cannot_be_drawn_fails_the_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A drawing bug is not a silent exit 0 with a traceback: exit 3 and one line saying so."""

    def broken(self: TraceScreen) -> None:
        raise RuntimeError("a drawing bug")

    monkeypatch.setattr(TraceScreen, "update_detail", broken)
    session = tmp_path / "hostile.jsonl"
    write_session(session, _events())
    assert main(["--replay", str(session), "--snapshot", str(tmp_path / "snap")]) == 3
    assert "iii-tui: drawing the screens failed" in capsys.readouterr().err
