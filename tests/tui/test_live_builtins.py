"""Screens fed by the engine's built-ins (queues/DLQ, state, channels, streams) against a real
engine process."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from iii_tui.modals import ConfirmScreen
from iii_tui.views import channel_rows, stream_rows
from iii_tui.widgets import KeyedTable

from iii_typed import InitOptions, register_worker
from iii_typed.engine.process import EngineProcess

from .conftest import make_app, wait_text, wait_until


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
            await wait_until(lambda: app.current_mode == "queues", what="queues screen")
            app.screen.apply_filter(f"topic={topic}")
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
        await wait_until(lambda: app.current_mode == "streams", what="streams screen")
        app.screen.apply_filter(f"scope={scope}")
        states = app.screen.query_one("#state-table", KeyedTable)
        await wait_until(lambda: states.keys == [scope], what="scope listed")
        states.focus()
        await pilot.press("enter")
        await wait_until(lambda: app.store.state_items.get(scope) == [{"total": 3}], what="items loaded")


async def test_channels_screen_on_a_real_open_channel(engine: EngineProcess) -> None:
    name = f"chan-owner-{uuid.uuid4().hex[:6]}"
    with register_worker(engine.url, InitOptions(worker_name=name)) as owner:
        channel = owner.create_channel()
        cid = channel.writer_ref.channel_id
        channel.writer.write(b"x" * 5000)  # one binary frame, buffered while nobody reads
        channel.writer.send_message("hello")  # one text frame
        app = make_app(engine.url)
        async with app.run_test(size=(140, 40)) as pilot:
            await pilot.press("8")
            await wait_until(lambda: app.current_mode == "channels", what="channels screen")
            app.screen.apply_filter(f"id={cid}")
            table = app.screen.query_one("#main-table", KeyedTable)
            await wait_until(lambda: table.keys == [cid], what="the channel listed")

            def row() -> tuple[str, ...]:
                return channel_rows(app.store, app.screen.flt)[0].cells

            # columns: CHANNEL STATE READER WRITER MESSAGES BYTES OWNER AGE
            assert row()[1:7] == ("waiting", "waiting", "connected", "2", "4.9KiB", name)
            assert f"{cid}  waiting" in await wait_text(app, name)
            # the reader connects and drains the buffer: both sides open
            received: list[bytes] = []
            reader = threading.Thread(target=lambda: received.append(channel.reader.read_all()))
            reader.start()
            await wait_until(lambda: row()[1:4] == ("open", "connected", "connected"), what="reader attached")
            channel.writer.write(b"y" * 3000)
            await wait_until(lambda: row()[4:6] == ("3", "7.8KiB"), what="bytes and messages moved")
            # closing ends the channel: both sides done, the engine forgets it
            channel.writer.close()
            reader.join(10)
            assert received == [b"x" * 5000 + b"y" * 3000]
            await wait_until(lambda: table.keys == [], what="the finished channel gone")


async def test_streams_screen_on_real_stream_data(engine: EngineProcess) -> None:
    stream = f"rooms-{uuid.uuid4().hex[:6]}"
    with register_worker(engine.url, InitOptions(worker_name=f"writer-{stream}")) as writer:
        for group, item in (("lobby", "ada"), ("lobby", "bob"), ("kitchen", "cy")):
            writer.trigger(
                {
                    "function_id": "stream::set",
                    "payload": {
                        "stream_name": stream,
                        "group_id": group,
                        "item_id": item,
                        "data": {"who": item},
                    },
                }
            )
    app = make_app(engine.url)
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.press("9")
        await wait_until(lambda: app.current_mode == "streams", what="streams screen")
        app.screen.apply_filter(f"stream={stream}")
        table = app.screen.query_one("#main-table", KeyedTable)
        await wait_until(lambda: table.keys == [stream], what="the stream listed")
        # columns: STREAM GROUPS ITEMS GROUP IDS (stream::list_all; items not loaded yet)
        assert stream_rows(app.store, app.screen.flt)[0].cells == (stream, "2", "-", "kitchen, lobby")
        table.focus()
        await pilot.press("enter")  # stream::list_groups + stream::list of each group
        await wait_until(lambda: stream in app.store.stream_items, what="items loaded")
        assert app.store.stream_items[stream] == {
            "kitchen": [{"who": "cy"}],
            "lobby": [{"who": "ada"}, {"who": "bob"}],
        }
        assert stream_rows(app.store, app.screen.flt)[0].cells[2] == "3"
        text = await wait_text(app, "3 item(s)")
        assert '"who":"bob"' in text
