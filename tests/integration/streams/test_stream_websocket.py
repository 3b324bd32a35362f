"""The stream WebSocket API with raw ``websockets`` clients (protocol.md §6.2, golden frames
S01-S06, cases.md B09): both URL forms, sync then live events, item subscriptions, leave, join
authorisation through ``stream:join``, ``stream:leave`` on disconnect, slow subscribers.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from iii_typed import III
from iii_typed.engine.process import EngineProcess
from tests.integration.streams.stream_support import (
    Recorder,
    client,
    recv_json,
    send_join,
    unique,
    wait_bindings,
)
from tests.support.waiting import FACTOR

pytestmark = pytest.mark.filterwarnings("ignore:register_trigger is deprecated:DeprecationWarning")

FRAME_KEYS = ["type", "timestamp", "streamName", "groupId", "id", "event"]


def _set(iii: III, stream: str, group: str, item: str, data: Any) -> Any:
    return iii.trigger_async(
        {
            "function_id": "stream::set",
            "payload": {"stream_name": stream, "group_id": group, "item_id": item, "data": data},
        }
    )


async def _silent(ws: Any, window: float = 0.3) -> bool:
    """No frame within ``window`` s (a bounded negative check)."""
    try:
        await asyncio.wait_for(ws.recv(), window)
    except TimeoutError:
        return True
    return False


async def test_b09_both_url_forms_upgrade_and_receive_create_then_update(engine: EngineProcess) -> None:
    stream = unique("presence")
    with client(engine.url) as iii:
        async with (
            connect(engine.streams_url + "/") as root,
            connect(f"{engine.streams_url}/stream/{stream}/room-1/") as by_path,
        ):
            await send_join(root, "s1", stream, "room-1")
            for ws in (root, by_path):
                sync = await recv_json(ws)
                assert list(sync) == FRAME_KEYS
                assert sync["event"] == {"type": "sync", "data": []} and sync["id"] is None
            result = await _set(iii, stream, "room-1", "u1", {"online": True})
            assert result == {"old_value": None, "new_value": {"online": True}}
            for ws in (root, by_path):
                frame = await recv_json(ws)
                assert (frame["streamName"], frame["groupId"], frame["id"]) == (stream, "room-1", "u1")
                assert frame["event"] == {"type": "create", "data": {"online": True}}
                assert await _silent(ws, 0.1)  # exactly one message
            await _set(iii, stream, "room-1", "u1", {"online": False})
            for ws in (root, by_path):
                assert (await recv_json(ws))["event"] == {"type": "update", "data": {"online": False}}
        with pytest.raises(InvalidStatus) as caught:
            async with connect(engine.streams_url + "/elsewhere"):
                pass
        assert caught.value.response.status_code == 404


async def test_sync_then_live_changes_for_groups_and_items(engine: EngineProcess) -> None:
    stream = unique("rooms")
    with client(engine.url) as iii:
        await _set(iii, stream, "g", "a", {"v": 1})
        await _set(iii, stream, "g", "b", {"v": 2})
        async with connect(engine.streams_url) as ws:
            await send_join(ws, "group", stream, "g")
            await send_join(ws, "item-a", stream, "g", "a")
            await send_join(ws, "item-z", stream, "g", "z")
            group_sync, item_sync, missing_sync = [await recv_json(ws) for _ in range(3)]
            assert group_sync["id"] is None and group_sync["event"] == {
                "type": "sync",
                "data": [{"v": 1}, {"v": 2}],
            }
            assert item_sync["id"] == "a" and item_sync["event"] == {"type": "sync", "data": {"v": 1}}
            assert missing_sync["id"] == "z" and missing_sync["event"] == {"type": "sync", "data": None}

            await _set(iii, stream, "g", "b", {"v": 3})  # only the group subscription
            await _set(iii, stream, "g", "a", {"v": 4})  # the group and item-a
            await iii.trigger_async(
                {
                    "function_id": "stream::send",
                    "payload": {
                        "stream_name": stream,
                        "group_id": "g",
                        "type": "typing",
                        "data": {"who": "x"},
                    },
                }
            )
            await iii.trigger_async(
                {
                    "function_id": "stream::delete",
                    "payload": {"stream_name": stream, "group_id": "g", "item_id": "a"},
                }
            )
            await iii.trigger_async(
                {
                    "function_id": "stream::update",
                    "payload": {
                        "stream_name": stream,
                        "group_id": "g",
                        "item_id": "z",
                        "ops": [{"type": "increment", "path": "n", "by": 1}],
                    },
                }
            )
            events = [(frame["id"], frame["event"]) for frame in [await recv_json(ws) for _ in range(8)]]
            assert events == [
                ("b", {"type": "update", "data": {"v": 3}}),
                ("a", {"type": "update", "data": {"v": 4}}),
                ("a", {"type": "update", "data": {"v": 4}}),
                (None, {"type": "event", "event": {"type": "typing", "data": {"who": "x"}}}),
                ("a", {"type": "delete", "data": {"v": 4}}),
                ("a", {"type": "delete", "data": {"v": 4}}),
                ("z", {"type": "create", "data": {"n": 1}}),
                ("z", {"type": "create", "data": {"n": 1}}),
            ]
            await send_join(ws, "group", stream, "g", kind="leave")
            await send_join(ws, "item-a", stream, "g", kind="leave")
            await send_join(ws, "item-z", stream, "g", kind="leave")
            await _set(iii, stream, "g", "a", {"v": 5})
            assert await _silent(ws)


async def test_join_authorisation_and_join_leave_payloads(engine: EngineProcess) -> None:
    stream = unique("private")
    joins = Recorder(result=lambda data: {"unauthorized": data["group_id"] == "secret"})
    leaves = Recorder()
    with client(engine.url) as iii:
        join_fn, leave_fn = unique("stream::join"), unique("stream::leave")
        iii.register_function(join_fn, joins)
        iii.register_function(leave_fn, leaves)
        iii.register_trigger({"type": "stream:join", "function_id": join_fn, "config": {}})
        iii.register_trigger({"type": "stream:leave", "function_id": leave_fn, "config": {}})
        wait_bindings(iii, "stream:join", join_fn)
        wait_bindings(iii, "stream:leave", leave_fn)
        async with connect(engine.streams_url) as ws:
            await send_join(ws, "sub-1", stream, "secret", "user-1")
            refused = await recv_json(ws)
            assert list(refused) == FRAME_KEYS
            assert refused["event"] == {"type": "unauthorized"}
            assert (refused["streamName"], refused["groupId"], refused["id"]) == (stream, "secret", None)
            await _set(iii, stream, "secret", "user-1", {"x": 1})
            assert await _silent(ws)  # no subscription was made

            await send_join(ws, "sub-2", stream, "room-1", "user-1")
            assert (await recv_json(ws))["event"] == {"type": "sync", "data": None}
            await send_join(ws, "sub-2", stream, "room-1", "user-1", kind="leave")
            await send_join(ws, "sub-3", stream, "room-1")
            assert (await recv_json(ws))["event"]["type"] == "sync"
        # sub-3 ends with the socket
        assert sorted(p["subscription_id"] for p in leaves.wait(2)) == ["sub-2", "sub-3"]
        # golden frame S06 (our SDK strips nothing here: the engine adds no _caller_worker_id)
        assert joins.payloads[0] == {
            "context": None,
            "group_id": "secret",
            "id": "user-1",
            "stream_name": stream,
            "subscription_id": "sub-1",
        }
        assert [p["subscription_id"] for p in joins.payloads] == ["sub-1", "sub-2", "sub-3"]
        assert next(p for p in leaves.payloads if p["subscription_id"] == "sub-3") == {
            "context": None,
            "group_id": "room-1",
            "id": None,
            "stream_name": stream,
            "subscription_id": "sub-3",
        }


async def test_malformed_frames_are_ignored_and_the_socket_keeps_working(engine: EngineProcess) -> None:
    stream = unique("robust")
    with client(engine.url) as iii:
        async with connect(engine.streams_url) as ws:
            for junk in (
                "not json",
                "[]",
                json.dumps({"type": "join"}),
                json.dumps({"type": "dance", "data": {}}),
            ):
                await ws.send(junk)
            await ws.send(
                json.dumps({"type": "join", "data": {"subscriptionId": 1, "streamName": "s", "groupId": "g"}})
            )
            await ws.send(
                b'{"type":"join","data":{"subscriptionId":"ok","streamName":"'
                + stream.encode()
                + b'","groupId":"g"}}'
            )
            assert (await recv_json(ws))["event"] == {"type": "sync", "data": []}
            await _set(iii, stream, "g", "i", 1)
            assert (await recv_json(ws))["event"] == {"type": "create", "data": 1}


async def test_custom_auth_function_context_reaches_join(engine_factory: Any, tmp_path: Path) -> None:
    config = tmp_path / "engine.toml"
    config.write_text('[streams]\nauth_function = "auth::streams"\n', encoding="utf-8")
    proc = engine_factory(config=config)
    auth = Recorder(result=lambda data: {"context": {"user": data["query_params"].get("user", ["?"])[0]}})
    joins = Recorder(result={"unauthorized": False})
    with client(proc.url) as iii:
        iii.register_function("auth::streams", auth)
        join_fn = unique("stream::join")
        iii.register_function(join_fn, joins)
        iii.register_trigger({"type": "stream:join", "function_id": join_fn, "config": {}})
        wait_bindings(iii, "stream:join", join_fn)
        async with connect(proc.streams_url + "/?user=ada", additional_headers={"X-Test": "1"}) as ws:
            await send_join(ws, "s", "chat", "g")
            assert (await recv_json(ws))["event"]["type"] == "sync"
        request = auth.payloads[0]
        assert request["path"] == "/" and request["query_params"] == {"user": ["ada"]}
        assert request["headers"]["x-test"] == "1" and request["addr"].startswith("127.0.0.1:")
        assert joins.payloads[0]["context"] == {"user": "ada"}


async def test_auth_function_gets_header_values_decoded_as_utf8(engine_factory: Any, tmp_path: Path) -> None:
    """websockets decodes header bytes as ISO-8859-1 (UTF-8 ``café`` would arrive as ``cafÃ©``);
    the auth function gets them as UTF-8, bytes that are not UTF-8 as U+FFFD (the http port's
    policy). A raw handshake, since a client library sends only UTF-8."""
    config = tmp_path / "engine.toml"
    config.write_text('[streams]\nauth_function = "auth::streams"\n', encoding="utf-8")
    proc = engine_factory(config=config)
    auth = Recorder(result={"context": None})
    host, port = proc.streams_url.removeprefix("ws://").rsplit(":", 1)
    with client(proc.url) as iii:
        iii.register_function("auth::streams", auth)
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            writer.write(
                b"GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                b"X-Utf8: caf\xc3\xa9 \xe2\x98\x83\r\nX-Latin-1: caf\xe9\r\nX-Ascii: plain\r\n\r\n"
            )
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10 * FACTOR)
        finally:
            writer.close()
        assert head.startswith(b"HTTP/1.1 101 "), head
        headers = auth.wait(1)[0]["headers"]
    assert (headers["x-utf8"], headers["x-latin-1"], headers["x-ascii"]) == (
        "caf\u00e9 \u2603",
        "caf\ufffd",
        "plain",
    )


async def test_a_subscriber_that_stops_reading_is_disconnected(engine_factory: Any, tmp_path: Path) -> None:
    config = tmp_path / "engine.toml"
    config.write_text("[streams]\nmax_buffered_bytes = 1048576\n", encoding="utf-8")
    proc = engine_factory(config=config)
    stream = unique("firehose")
    blob = "x" * (256 * 1024)
    with client(proc.url) as iii:
        async with connect(proc.streams_url, max_queue=1) as slow, connect(proc.streams_url) as fast:
            await send_join(slow, "s", stream, "g")
            await send_join(fast, "f", stream, "g")
            assert (await recv_json(slow))["event"]["type"] == "sync"
            assert (await recv_json(fast))["event"]["type"] == "sync"
            slow.transport.pause_reading()  # stop reading: the engine's socket buffer fills up

            async def produce() -> None:
                for index in range(120):  # 30 MiB of events: more than any socket buffer holds
                    await iii.trigger_async(
                        {
                            "function_id": "stream::send",
                            "payload": {
                                "stream_name": stream,
                                "group_id": "g",
                                "type": "blob",
                                "data": blob,
                                "id": str(index),
                            },
                        }
                    )

            async def consume() -> int:
                count = 0
                while count < 120:
                    frame = await recv_json(fast, 10)
                    assert frame["id"] == str(count)
                    count += 1
                return count

            _, received = await asyncio.gather(produce(), consume())
            assert received == 120  # the fast subscriber is unaffected
            slow.transport.resume_reading()
            with pytest.raises(ConnectionClosed):
                for _ in range(200):
                    await asyncio.wait_for(slow.recv(), 10 * FACTOR)
            assert slow.close_code == 1008
        assert iii.trigger({"function_id": "stream::list_groups", "payload": {"stream_name": stream}}) == []
