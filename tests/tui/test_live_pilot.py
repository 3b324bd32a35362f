"""Pilot tests of every screen against a real engine process with real SDK workers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from iii_tui.modals import InvokeScreen, ResultScreen
from iii_tui.screens import DashScreen, FunctionsScreen, WorkersScreen
from iii_tui.snapshot import rendered_text
from iii_tui.source import ReadOnlyError
from iii_tui.widgets import KeyedTable

from iii_typed.engine.process import EngineProcess

from .conftest import OrdersWorker, make_app, wait_text, wait_until


def _mode(app: object) -> str:
    return str(getattr(app, "current_mode", ""))


async def test_navigation_filter_and_pivots(engine: EngineProcess, orders_worker: OrdersWorker) -> None:
    app = make_app(engine.url)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(lambda: orders_worker.create in app.store.functions, what="functions read")
        for key, mode in (
            ("2", "workers"),
            ("3", "functions"),
            ("4", "triggers"),
            ("5", "invocations"),
            ("6", "trace"),
            ("7", "logs"),
            ("8", "channels"),
            ("9", "streams"),
            ("0", "queues"),
            ("1", "overview"),
        ):
            await pilot.press(key)
            await wait_until(lambda m=mode: _mode(app) == m and isinstance(app.screen, DashScreen), what=mode)
        await pilot.press("3")
        await wait_text(app, orders_worker.create)
        await pilot.press("slash", *f"id={orders_worker.prefix}::fail", "enter")
        screen = app.screen
        assert isinstance(screen, FunctionsScreen)
        table = screen.query_one("#main-table", KeyedTable)
        await wait_until(lambda: table.keys == [f"{orders_worker.prefix}::fail"], what="filtered to one")
        # pivot function -> worker
        await pilot.press("w")
        await wait_until(lambda: _mode(app) == "workers", what="pivot to workers")
        wscreen = app.screen
        assert isinstance(wscreen, WorkersScreen)
        wtable = wscreen.query_one("#main-table", KeyedTable)
        await wait_until(
            lambda: (
                len(wtable.keys) == 1 and app.store.workers[wtable.keys[0]].get("name") == orders_worker.name
            ),
            what="worker filtered",
        )
        # pivot worker -> functions of that worker
        await pilot.press("f")
        await wait_until(lambda: _mode(app) == "functions", what="pivot to functions")
        await wait_until(
            lambda: (
                sorted(app.screen.query_one("#main-table", KeyedTable).keys)
                == sorted([orders_worker.create, f"{orders_worker.prefix}::fail"])
            ),
            what="functions of the worker",
        )
        # a filter that matches nothing says so
        await pilot.press("5", "slash", *"zzz-no-match")
        await wait_text(app, "No matching invocations")


async def test_invoke_form_valid_and_invalid(engine: EngineProcess, orders_worker: OrdersWorker) -> None:
    app = make_app(engine.url)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("3")
        await wait_until(lambda: orders_worker.create in app.store.functions, what="functions read")
        await pilot.press("slash", *f"id={orders_worker.create}", "enter")
        await wait_until(
            lambda: app.screen.query_one("#main-table", KeyedTable).keys == [orders_worker.create], what="row"
        )
        await pilot.press("i")
        await wait_until(lambda: isinstance(app.screen, InvokeScreen), what="invoke form")
        form = app.screen
        assert isinstance(form, InvokeScreen)
        keys = [s.key for s in form.flat]
        assert keys == ["name", "qty", "kind", "gift", "address", "address.city", "address.zip"]
        assert [s.key for s in form.flat if s.required] == ["name", "address", "address.city"]
        # invalid: qty not an integer, required name and city empty
        form.query_one("#fld-1").value = "three"
        await pilot.press("ctrl+s")
        await wait_until(lambda: form.errors, what="errors shown")
        assert set(form.errors) == {"name", "qty", "address.city"}, form.errors
        assert isinstance(app.screen, InvokeScreen)
        text = rendered_text(app)
        assert "must be an integer" in text and "required" in text
        assert orders_worker.calls == []
        # valid
        form.query_one("#fld-0").value = "pens"
        form.query_one("#fld-1").value = "3"
        form.query_one("#fld-5").value = "Oslo"
        await pilot.press("ctrl+s")
        await wait_until(lambda: isinstance(app.screen, ResultScreen), what="result screen")
        result = app.screen
        assert isinstance(result, ResultScreen)
        assert result.outcome.ok, result.outcome.error
        assert result.outcome.result == {"id": "o-1", "name": "pens", "qty": 3}
        assert result.outcome.duration_ms > 0
        assert orders_worker.calls == [
            {
                "name": "pens",
                "qty": 3,
                "kind": "standard",
                "gift": False,
                "address": {"city": "Oslo", "zip": None},
            }
        ]
        screen_text = rendered_text(app)
        assert " ms" in screen_text and "trace:" in screen_text
        # invoke again, through the raw JSON editor this time
        await pilot.press("r")
        await wait_until(lambda: isinstance(app.screen, InvokeScreen), what="form again")
        form = app.screen
        assert isinstance(form, InvokeScreen)
        await pilot.press("ctrl+j")
        await wait_until(lambda: form.raw_mode, what="raw mode")
        area = form.query_one("#invoke-raw")
        assert '"pens"' in area.text
        area.text = '{"name": "ink", "address": {"city": "Rome"}, "kind": "express"}'
        await pilot.press("ctrl+s")
        await wait_until(lambda: isinstance(app.screen, ResultScreen), what="second result")
        assert orders_worker.calls[-1]["kind"] == "express"
        # a failing function shows its error
        await pilot.press("escape")
        app.open_invoke(f"{orders_worker.prefix}::fail")
        await wait_until(lambda: isinstance(app.screen, InvokeScreen), what="fail form")
        await pilot.press("ctrl+s")
        await wait_until(lambda: isinstance(app.screen, ResultScreen), what="fail result")
        assert isinstance(app.screen, ResultScreen)
        assert not app.screen.outcome.ok and "boom" in app.screen.outcome.error


async def test_readonly_disables_writing_actions(engine: EngineProcess, orders_worker: OrdersWorker) -> None:
    app = make_app(engine.url, readonly=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("3")
        await wait_until(lambda: orders_worker.create in app.store.functions, what="functions read")
        await pilot.press("slash", *f"id={orders_worker.create}", "enter")
        await wait_text(app, "READ-ONLY")
        await pilot.press("i")
        await pilot.press("enter")
        app.open_invoke(orders_worker.create)
        await pilot.pause()
        assert not isinstance(app.screen, InvokeScreen)
        assert app.check_action("invoke", ()) is None
        await pilot.press("0")
        await wait_until(lambda: _mode(app) == "queues", what="queues")
        assert app.screen.check_action("redrive", ()) is None
        assert app.screen.check_action("discard", ()) is None
        try:
            await app.source.call(orders_worker.create, {"name": "x", "address": {"city": "y"}})
        except ReadOnlyError:
            pass
        else:
            raise AssertionError("the read-only source made a call")
        assert orders_worker.calls == []


async def test_missing_views_say_so(engine_factory: Callable[..., EngineProcess], tmp_path: Path) -> None:
    """An engine without the queue built-in (the real engine's default) lacks engine::queue::*."""
    config = tmp_path / "engine.toml"
    config.write_text("[queue]\nenabled = false\n", encoding="utf-8")
    engine = engine_factory(config=config)
    app = make_app(engine.url)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(lambda: app.store.functions, what="connected")
        await pilot.press("0")
        await wait_until(lambda: _mode(app) == "queues", what="queues")
        text = await wait_text(app, "engine::queue::list_topics")
        assert "Not available on this engine" in text
        assert app.store.view_missing("queues") == ["engine::queue::list_topics", "engine::queue::dlq_topics"]
        await pilot.press("8")  # a view whose built-in runs says nothing of the kind
        await wait_until(lambda: "engine::channels::list" in app.store.functions, what="channels listed")
        assert not app.store.view_missing("channels")
        assert "Not available" not in rendered_text(app)


async def test_reconnect_after_engine_restart(fresh_engine: EngineProcess) -> None:
    app = make_app(fresh_engine.url)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("2")
        await wait_until(lambda: app.store.conn_state == "connected" and app.store.workers, what="connected")
        fresh_engine.restart()
        await wait_until(lambda: app.store.stale_since is not None, what="stale banner")
        await wait_until(lambda: app.store.conn_state == "connected", timeout=15, what="reconnected")
        await wait_until(lambda: app.store.stale_since is None, what="banner cleared")
        await wait_until(
            lambda: any(str(w.get("name", "")).startswith("iii-tui:") for w in app.store.workers.values()),
            what="workers re-read after the restart",
        )
        # the banner is redrawn at the next flush after the store changed
        await wait_until(lambda: "stale since" not in rendered_text(app), what="banner redrawn")
