"""Custom streams: ``create_stream(name, IStream)`` registers ``stream::<op>(<name>)`` overrides
that the built-in routes calls to (protocol.md §6.2 "Overrides"); updates go through get and set,
and events still reach triggers and WebSocket subscribers. With our SDK and the official client.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from websockets.asyncio.client import connect

from iii_typed import III, InvocationError, IStream
from iii_typed.engine.process import EngineProcess
from iii_typed.streams import (
    StreamDeleteInput,
    StreamDeleteResult,
    StreamGetInput,
    StreamListGroupsInput,
    StreamListInput,
    StreamSetInput,
    StreamSetResult,
)
from tests.integration.streams.stream_support import client, recv_json, send_join, unique
from tests.support.official import shutdown_official
from tests.support.waiting import wait_for


class MemoryStream(IStream[Any]):
    """Items in a dict; records every call it receives. Mixes async and sync methods."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], Any] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def _record(self, name: str, model: Any) -> None:
        with self._lock:
            self.calls.append((name, model.model_dump()))

    async def get(self, input: StreamGetInput) -> Any:
        self._record("get", input)
        return self.items.get((input.group_id, input.item_id))

    async def set(self, input: StreamSetInput) -> StreamSetResult[Any]:
        self._record("set", input)
        old = self.items.get((input.group_id, input.item_id))
        if input.data == "explode":
            raise ValueError("refusing to store that")
        self.items[(input.group_id, input.item_id)] = input.data
        return StreamSetResult(old_value=old, new_value=input.data)

    def delete(self, input: StreamDeleteInput) -> StreamDeleteResult:  # a sync method: runs on a thread
        self._record("delete", input)
        return StreamDeleteResult(old_value=self.items.pop((input.group_id, input.item_id), None))

    def list(self, input: StreamListInput) -> list[Any]:
        self._record("list", input)
        return [value for (group, _), value in sorted(self.items.items()) if group == input.group_id]

    async def list_groups(self, input: StreamListGroupsInput) -> list[str]:
        self._record("list_groups", input)
        return sorted({group for group, _ in self.items})


def call(iii: III, function_id: str, payload: Any) -> Any:
    return iii.trigger({"function_id": function_id, "payload": payload})


def _wait_functions(iii: III, name: str) -> None:
    wanted = {f"stream::{op}({name})" for op in ("get", "set", "delete", "list", "list_groups")}

    def registered() -> bool:
        listed = call(iii, "engine::functions::list", {})
        return wanted <= {row["function_id"] for row in listed["functions"]}

    wait_for(registered, timeout=10, what=f"the overrides of {name}")


async def test_routed_calls_reach_our_custom_stream(engine: EngineProcess) -> None:
    name = unique("custom")
    store = MemoryStream()
    with client(engine.url) as owner, client(engine.url) as caller:
        owner.create_stream(name, store)
        _wait_functions(caller, name)
        key = {"stream_name": name, "group_id": "g", "item_id": "i1"}
        async with connect(engine.streams_url) as ws:
            await send_join(ws, "sub", name, "g")
            assert (await recv_json(ws))["event"] == {"type": "sync", "data": []}  # through `list`

            assert call(caller, "stream::set", {**key, "data": {"n": 1}}) == {
                "new_value": {"n": 1},
                "old_value": None,
            }
            assert (await recv_json(ws))["event"] == {"type": "create", "data": {"n": 1}}
            assert call(caller, "stream::get", key) == {"n": 1}
            assert call(caller, "stream::get", {**key, "item_id": "missing"}) is None
            updated = call(
                caller, "stream::update", {**key, "ops": [{"type": "increment", "path": "n", "by": 2}]}
            )
            assert updated == {"new_value": {"n": 3}, "old_value": {"n": 1}}
            assert (await recv_json(ws))["event"] == {"type": "update", "data": {"n": 3}}
            call(caller, "stream::set", {**key, "item_id": "i2", "data": "two"})
            assert (await recv_json(ws))["id"] == "i2"
            assert call(caller, "stream::list", {"stream_name": name, "group_id": "g"}) == [{"n": 3}, "two"]
            assert call(caller, "stream::list_groups", {"stream_name": name}) == ["g"]
            assert call(caller, "stream::delete", key) == {"old_value": {"n": 3}}
            assert (await recv_json(ws))["event"] == {"type": "delete", "data": {"n": 3}}

            with pytest.raises(InvocationError) as caught:
                call(caller, "stream::set", {**key, "data": "explode"})
            assert caught.value.code == "STREAM_SET_ERROR"
            assert f"stream::set({name}) failed" in caught.value.message
            assert "refusing to store that" in caught.value.message

        assert [name for name, _ in store.calls] == [
            "list",
            "set",
            "get",
            "get",
            "get",  # update: read through get ...
            "set",  # ... and write through set
            "set",
            "list",
            "list_groups",
            "delete",
            "set",
        ]
        assert store.calls[1] == ("set", {**key, "data": {"n": 1}})
        # Nothing went to the built-in storage.
        assert name not in [row["id"] for row in call(caller, "stream::list_all", {})["stream"]]


def test_create_stream_refuses_bad_arguments(engine: EngineProcess) -> None:
    with client(engine.url) as iii:
        with pytest.raises(TypeError, match="IStream"):
            iii.create_stream("x", object())
        for bad in ("", "has space", "paren(s)"):
            with pytest.raises(ValueError, match="stream_name"):
                iii.create_stream(bad, MemoryStream())
        with pytest.raises(TypeError):
            IStream()


def test_official_client_custom_stream_is_routed(engine: EngineProcess) -> None:
    official = pytest.importorskip("iii")
    from iii.helpers import create_stream as official_create_stream
    from iii.stream import IStream as OfficialIStream

    items: dict[str, Any] = {}

    with pytest.warns(FutureWarning):

        class OfficialStore(OfficialIStream):
            async def get(self, input: Any) -> Any:
                return items.get(input.item_id)

            async def set(self, input: Any) -> Any:
                from iii_helpers.stream import StreamSetResult as OfficialSetResult

                old = items.get(input.item_id)
                items[input.item_id] = input.data
                return OfficialSetResult(old_value=old, new_value=input.data)

            async def delete(self, input: Any) -> Any:
                from iii_helpers.stream import StreamDeleteResult as OfficialDeleteResult

                return OfficialDeleteResult(old_value=items.pop(input.item_id, None))

            async def list(self, input: Any) -> Any:
                return list(items.values())

            async def list_groups(self, input: Any) -> Any:
                return ["only"]

            async def update(self, input: Any) -> Any:
                raise AssertionError("never called")

    name = unique("official")
    worker = official.register_worker(engine.url, official.InitOptions(worker_name=unique("official-stream")))
    try:
        with pytest.warns(FutureWarning):
            official_create_stream(worker, name, OfficialStore())
        with client(engine.url) as iii:
            _wait_functions(iii, name)
            key = {"stream_name": name, "group_id": "only", "item_id": "k"}
            assert call(iii, "stream::set", {**key, "data": [1]}) == {"new_value": [1], "old_value": None}
            assert call(iii, "stream::update", {**key, "ops": [{"type": "append", "value": 2}]}) == {
                "new_value": [1, 2],
                "old_value": [1],
            }
            assert call(iii, "stream::get", key) == [1, 2]
            assert call(iii, "stream::list_groups", {"stream_name": name}) == ["only"]
            assert call(iii, "stream::delete", key) == {"old_value": [1, 2]}
    finally:
        shutdown_official(worker)
