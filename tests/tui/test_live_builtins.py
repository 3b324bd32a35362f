"""Screens fed by the engine's built-ins (queues/DLQ, state) against a real engine process."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from iii_tui.modals import ConfirmScreen
from iii_tui.widgets import KeyedTable

from iii_typed import InitOptions, register_worker
from iii_typed.engine.process import EngineProcess

from .conftest import make_app, wait_until


def _has(engine_url: str, *function_ids: str) -> bool:
    with register_worker(engine_url, InitOptions(worker_name=f"probe-{uuid.uuid4().hex[:6]}")) as probe:
        listed = probe.trigger(
            {"function_id": "engine::functions::list", "payload": {"include_internal": True}}
        )
    names = {f["function_id"] for f in listed["functions"]}
    return all(f in names for f in function_ids)


async def test_queues_and_dead_letters_with_confirmed_redrive(engine: EngineProcess) -> None:
    if not _has(engine.url, "engine::queue::list_topics", "iii::queue::redrive"):
        pytest.skip("the queue built-in is not in this engine")
    topic = f"mail-{uuid.uuid4().hex[:6]}"
    received: list[Any] = []
    worker = register_worker(engine.url, InitOptions(worker_name=f"mailer-{topic}"))
    try:
        worker.register_function(f"{topic}::send", lambda data: received.append(data))
        worker.register_trigger(
            {"type": "durable:subscriber", "function_id": f"{topic}::send", "config": {"topic": topic}}
        )
        app = make_app(engine.url)
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_until(lambda: app.store.connected_once, what="connected")
            await app.invoke("iii::durable::publish", {"topic": topic, "data": {"to": "a@example.com"}})
            await wait_until(lambda: received, what="message delivered")
            await pilot.press("0")
            await pilot.press("slash", *f"topic={topic}", "enter")
            await wait_until(
                lambda: app.screen.query_one("#main-table", KeyedTable).keys == [topic], what="topic listed"
            )
            queue = app.store.queues[topic]
            assert queue.get("consumer_count", queue.get("subscriber_count")) == 1
            dlq = app.screen.query_one("#dlq-table", KeyedTable)
            await wait_until(lambda: dlq.keys == [topic], what="dead-letter topic listed")
            dlq.focus()
            await pilot.press("r")
            await wait_until(lambda: isinstance(app.screen, ConfirmScreen), what="confirmation asked")
            assert app.screen.focused is not None and app.screen.focused.id == "confirm-no"  # safe default
            await pilot.press("n")
            await wait_until(lambda: not isinstance(app.screen, ConfirmScreen), what="cancelled")
            assert not any(r.get("function_id") == "iii::queue::redrive" for r in app.store.invoke_results)
            await pilot.press("r")
            await wait_until(lambda: isinstance(app.screen, ConfirmScreen), what="asked again")
            await pilot.press("y")
            await wait_until(
                lambda: any(r.get("function_id") == "iii::queue::redrive" for r in app.store.invoke_results),
                what="redrive called",
            )
            outcome = next(
                r for r in app.store.invoke_results if r.get("function_id") == "iii::queue::redrive"
            )
            assert outcome["ok"], outcome
    finally:
        worker.shutdown()


async def test_state_scopes_and_items(engine: EngineProcess) -> None:
    if not _has(engine.url, "state::list_groups", "state::list"):
        pytest.skip("the state built-in is not in this engine")
    scope = f"carts-{uuid.uuid4().hex[:6]}"
    with register_worker(engine.url, InitOptions(worker_name=f"writer-{scope}")) as writer:
        writer.trigger(
            {"function_id": "state::set", "payload": {"scope": scope, "key": "c1", "value": {"total": 3}}}
        )
    app = make_app(engine.url)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("9")
        await pilot.press("slash", *f"scope={scope}", "enter")
        states = app.screen.query_one("#state-table", KeyedTable)
        await wait_until(lambda: states.keys == [scope], what="scope listed")
        states.focus()
        await pilot.press("enter")
        await wait_until(lambda: app.store.state_items.get(scope) == [{"total": 3}], what="items loaded")
