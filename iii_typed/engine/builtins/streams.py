"""``iii-stream``: stream storage, the ``stream`` / ``stream:join`` / ``stream:leave`` triggers and
the stream WebSocket API (protocol.md §6.2, golden frames E06, S01-S06; cases.md B09).

Functions (namespace ``default``; inputs parsed strictly, unknown fields ignored; bad input →
``deserialization_error``):

* ``stream::set {stream_name, group_id, item_id, data}`` → ``{"new_value", "old_value"}``
  (``STREAM_SET_ERROR``);
* ``stream::get {stream_name, group_id, item_id}`` → the item (no ``result`` when missing;
  ``STREAM_GET_ERROR``);
* ``stream::delete {…same…}`` → ``{"old_value"}`` (``null`` when there was nothing;
  ``STREAM_DELETE_ERROR``);
* ``stream::list {stream_name, group_id}`` → the group's items in insertion order
  (``STREAM_GET_GROUP_ERROR``);
* ``stream::list_groups {stream_name}`` → the sorted group ids, a bare array
  (``STREAM_LIST_GROUPS_ERROR``);
* ``stream::list_all {}`` → ``{"count", "stream": [{"groups": [sorted], "id": name}]}`` sorted
  by name;
* ``stream::send {stream_name, group_id, id?, type, data}`` → ``null``: a custom event for
  subscribers and triggers, not stored (``STREAM_SEND_ERROR``);
* ``stream::update {stream_name, group_id, item_id, ops}`` → ``{"errors"?, "new_value",
  "old_value"}`` with the update-op engine of :mod:`._update_ops` (``STREAM_UPDATE_ERROR``).

**Custom streams.** When a function ``stream::<op>(<stream_name>)`` is registered in ``default``
(``get``, ``set``, ``delete``, ``list``, ``list_groups``, ``update``; the SDKs' ``create_stream``
registers the first five), the built-in calls it with the parsed input instead of its own
storage. ``set``/``delete`` overrides return ``{"new_value", "old_value"?}`` / ``{"old_value"}``.
Without an ``update`` override, ``stream::update`` reads through ``get`` (override or storage),
applies the operations and writes through ``set`` (override or storage). Events fire for custom
streams as for stored ones. A failing override answers the function's error code
(``STREAM_SET_ERROR`` …) naming the override and its error.

**Events.** ``stream::set`` / ``stream::update`` emit ``create`` (no previous value) or
``update`` with the new value, ``stream::delete`` emits ``delete`` with the deleted value (only
when something was deleted), ``stream::send`` emits ``event``. Each goes to

* the ``stream`` trigger, config ``{stream_name (required), group_id?, item_id?,
  condition_function_id?}`` (exact-match filters; an event without an item id only matches
  bindings without ``item_id``), payload (golden frame E06) ``{"event": {"data", "type"},
  "groupId", "id", "streamName", "timestamp", "type": "stream"}`` (for ``send``: ``"event":
  {"event": {"data", "type": <custom>}, "type": "event"}``) and the binding's metadata sidecar;
* WebSocket subscribers of the group (subscriptions with an ``id`` get only that item's events).

Trace context (§4.5): ``stream`` trigger fires (their condition calls included) and the custom
stream functions called by a ``stream::*`` call carry that call's ``traceparent``/``baggage``, so
their spans join the caller's trace (the engine services take the context of the call being
served). ``stream:join``/``stream:leave`` fires and the ``auth_function`` come from the stream
socket, not from a call: they start new traces.

**Stream WebSocket API** on the stream port (``--stream-port``, 3112; free with ``--port 0``),
advertised as ``streams`` on the ready line. Both URL forms upgrade (decisions "Policies",
cases.md B09): ``/`` (subscribe with messages) and ``/stream/<name>/<group>/`` (also
``/stream/<name>/<group>/<item>/``), which joins that group (or item) at once; other paths → 404.
With ``[streams] auth_function`` set, that function is called at the upgrade with ``{"addr",
"headers", "path", "query_params"}`` (header values decoded as UTF-8, bytes that are not UTF-8 →
U+FFFD) and its result's ``context`` is handed to ``stream:join`` /
``stream:leave``; a failing auth function does not refuse the upgrade (the real engine's
fail-open behaviour), the context is then ``null``.

Client → engine text (or binary) frames: ``{"type": "join", "data": {"subscriptionId",
"streamName", "groupId", "id"?}}`` (golden S01) and ``{"type": "leave", "data": {…}}``; other
frames are ignored (logged). On ``join`` every ``stream:join`` binding is called with
``{"context", "group_id", "id", "stream_name", "subscription_id"}`` (golden S06); if one returns
``{"unauthorized": true}`` the client gets ``…"event": {"type": "unauthorized"}`` (S05) and no
subscription; else a ``sync`` frame (S02: the item or ``null`` for an item subscription, the list
of items for a group) and then every later event (S03, S04), in order. ``leave``, and the socket
closing, fire ``stream:leave`` for each subscription. Frames are written to a subscriber's socket at once; one
that leaves more than ``max_buffered_bytes`` unread is disconnected (close 1008) so it cannot
hold the engine's memory.

Persistence (decisions "Policies"): in memory without a data folder, else the SQLite file
``<data_dir>/streams.sqlite3``. ``engine.toml``::

    [streams]
    auth_function = "auth::streams"   # optional, see above
    max_buffered_bytes = 8388608      # unsent bytes a subscriber may hold before it is dropped
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import sqlite3
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final
from urllib.parse import parse_qs, unquote

from pydantic import BaseModel, Field
from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from ...errors import InvocationError
from ..auth import refuse_unauthorized
from ._settings import check_section, check_trigger_config
from ._sqlite import dumps, loads, open_database
from ._update_ops import MISSING, UpdateOp, apply_update_ops
from .base import (
    JSON_NULL,
    BuiltinError,
    BuiltinFunction,
    BuiltinTriggerType,
    BuiltinWorker,
    CallContext,
    EngineServices,
    TriggerBinding,
    TriggerRegistrationError,
)

__all__ = [
    "BUILTIN",
    "STREAM_JOIN",
    "STREAM_LEAVE",
    "STREAM_TRIGGER",
    "StreamsWorker",
]

log = logging.getLogger("iii_typed.engine.streams")

STREAM_TRIGGER: Final = "stream"
STREAM_JOIN: Final = "stream:join"
STREAM_LEAVE: Final = "stream:leave"

_TRIGGER_FIELDS: Final = {"stream_name": str, "group_id": str, "item_id": str, "condition_function_id": str}
_PATH_FORM: Final = re.compile(r"^/stream/([^/]+)/([^/]+)(?:/([^/]+))?/?$")
_DEFAULT_MAX_BUFFERED: Final = 8 * 1024 * 1024
_CLOSE_TOO_SLOW: Final = 1008


# -- inputs and results -------------------------------------------------------------------------
class StreamItemInput(BaseModel):
    """``stream::get`` / ``stream::delete`` input."""

    stream_name: str
    group_id: str
    item_id: str


class StreamSetInput(StreamItemInput):
    """``stream::set`` input."""

    data: Any = Field(description="Any JSON value.")


class StreamUpdateInput(StreamItemInput):
    """``stream::update`` input."""

    ops: list[UpdateOp] = Field(description="Operations applied in order (protocol.md §6.1).")


class StreamGroupInput(BaseModel):
    """``stream::list`` input."""

    stream_name: str
    group_id: str


class StreamNameInput(BaseModel):
    """``stream::list_groups`` input."""

    stream_name: str


class StreamListAllInput(BaseModel):
    """``stream::list_all`` input (no fields)."""


class StreamSendInput(BaseModel):
    """``stream::send`` input."""

    stream_name: str
    group_id: str
    id: str | None = None
    type: str = Field(description="The custom event's type, e.g. `typing`.")
    data: Any = None


class StreamSetResult(BaseModel):
    """``stream::set`` result."""

    new_value: Any
    old_value: Any


class StreamDeleteResult(BaseModel):
    """``stream::delete`` result."""

    old_value: Any


class StreamUpdateError(BaseModel):
    """One skipped update operation."""

    code: str
    doc_url: str | None = None
    message: str
    op_index: int


class StreamUpdateResult(BaseModel):
    """``stream::update`` result (``errors`` omitted when every op applied)."""

    errors: list[StreamUpdateError] | None = None
    new_value: Any
    old_value: Any


class StreamSummary(BaseModel):
    """One stream of ``stream::list_all``."""

    groups: list[str]
    id: str


class StreamListAllResult(BaseModel):
    """``stream::list_all`` result."""

    count: int
    stream: list[StreamSummary]


class StreamTriggerConfig(BaseModel):
    """Config of a ``stream`` binding."""

    stream_name: str = Field(description="The stream to watch.")
    group_id: str | None = Field(default=None, description="Only this group.")
    item_id: str | None = Field(default=None, description="Only this item.")
    condition_function_id: str | None = Field(default=None, description="Called first; `false` skips.")


class StreamEventDetail(BaseModel):
    """``event`` of a stream trigger payload."""

    type: str = Field(description="`create`, `update`, `delete` or `event`.")
    data: Any = None
    event: dict[str, Any] | None = Field(default=None, description="For `event`: `{type, data}`.")


class StreamTriggerPayload(BaseModel):
    """What a ``stream`` trigger's function receives (camelCase keys, golden frame E06)."""

    event: StreamEventDetail
    groupId: str
    id: str | None
    streamName: str
    timestamp: int
    type: str = "stream"


class StreamJoinLeavePayload(BaseModel):
    """What ``stream:join`` / ``stream:leave`` functions receive (golden frame S06)."""

    context: Any = None
    group_id: str
    id: str | None = None
    stream_name: str
    subscription_id: str


# -- subscribers --------------------------------------------------------------------------------
def _json(value: Any) -> str:
    """Compact JSON with sorted keys (the real engine's nested values)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def _event_json(event: dict[str, Any]) -> str:
    """The ``event`` of a server → client frame in struct order (``type`` first, golden S02-S05),
    with the values inside sorted."""
    kind = _json(event["type"])
    if "event" in event:
        inner = event["event"]
        return (
            f'{{"type":{kind},"event":{{"type":{_json(inner["type"])},"data":{_json(inner.get("data"))}}}}}'
        )
    if "data" in event:
        return f'{{"type":{kind},"data":{_json(event["data"])}}}'
    return f'{{"type":{kind}}}'


def _frame(stream: str, group: str, item_id: str | None, event: dict[str, Any], timestamp: int) -> bytes:
    """A server → client frame: keys in struct order, nested values sorted (§6.2, golden S02-S05)."""
    return (
        f'{{"type":"stream","timestamp":{timestamp},"streamName":{_json(stream)},'
        f'"groupId":{_json(group)},"id":{_json(item_id)},"event":{_event_json(event)}}}'
    ).encode("utf-8", "surrogatepass")


def _text(value: str) -> str:
    """A request header value as Unicode text: its bytes decoded as UTF-8, others → U+FFFD.

    websockets decodes header bytes as ISO-8859-1, so a UTF-8 ``café`` would reach the auth
    function as ``cafÃ©``; re-encoding as ISO-8859-1 gives back the bytes exactly (the http port's
    policy, ``http._text``).
    """
    if value.isascii():
        return value
    return value.encode("iso-8859-1").decode("utf-8", "replace")


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(eq=False)
class _Subscription:
    conn: _Subscriber
    subscription_id: str
    stream: str
    group: str
    item_id: str | None
    ready: bool = False
    held: list[bytes] = field(default_factory=list)

    def payload(self) -> dict[str, Any]:
        return {
            "context": self.conn.context,
            "group_id": self.group,
            "id": self.item_id,
            "stream_name": self.stream,
            "subscription_id": self.subscription_id,
        }


class _Subscriber:
    """One stream WebSocket: its subscriptions; frames are written at once, in order.

    Frames go straight into the socket's write buffer (``websockets``' broadcast path: no task or
    await per frame). A subscriber whose buffer holds more than ``max_buffered`` bytes unsent is
    disconnected (close 1008) instead of growing the engine's memory.
    """

    def __init__(self, ws: ServerConnection, context: Any, max_buffered: int) -> None:
        self.ws = ws
        self.context = context
        self.subscriptions: dict[str, _Subscription] = {}
        self._max_buffered = max_buffered
        self.dropped = False

    def push(self, frame: bytes) -> None:
        if self.dropped:
            return
        ws = self.ws
        transport = ws.transport
        if transport is None or transport.is_closing():
            return
        if transport.get_write_buffer_size() > self._max_buffered:
            self.dropped = True
            log.warning(
                "stream subscriber %s has over %d bytes unread: disconnected",
                ws.remote_address,
                self._max_buffered,
            )
            asyncio.get_running_loop().create_task(
                ws.close(_CLOSE_TOO_SLOW, "subscriber too slow: frames were not read in time")
            )
            return
        broadcast((ws,), frame, text=True)


class StreamsWorker(BuiltinWorker):
    """The ``iii-stream`` built-in (see the module docstring)."""

    name: ClassVar[str] = "iii-stream"
    section: ClassVar[str] = "streams"
    description: ClassVar[str] = (
        "Streams of items in groups, change triggers and live WebSocket subscriptions"
    )
    order: ClassVar[int] = 25

    def __init__(self, services: EngineServices) -> None:
        super().__init__(services)
        table = services.section(self.section)
        check_section(self.section, table, {"auth_function": str, "max_buffered_bytes": int})
        self.auth_function: str | None = table.get("auth_function") or None
        max_buffered = table.get("max_buffered_bytes", _DEFAULT_MAX_BUFFERED)
        if max_buffered <= 0:
            from ..config import ConfigError

            raise ConfigError(f"[streams] max_buffered_bytes must be a positive integer, got {max_buffered}")
        self.max_buffered: int = max_buffered
        self.url: str | None = None
        self._db: sqlite3.Connection | None = None
        self._seq = 0
        self._server: Server | None = None
        self._index: dict[tuple[str, str], set[_Subscription]] = {}
        self._contexts: dict[int, Any] = {}

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        """Open the store, bind the stream port and advertise ``streams``."""
        db = open_database(
            self.services.data_dir,
            "streams",
            (
                "CREATE TABLE IF NOT EXISTS items ("
                " stream TEXT NOT NULL, grp TEXT NOT NULL, item TEXT NOT NULL, value TEXT NOT NULL,"
                " seq INTEGER NOT NULL, PRIMARY KEY (stream, grp, item))",
                "CREATE INDEX IF NOT EXISTS items_group_seq ON items (stream, grp, seq)",
            ),
        )
        self._seq = int(db.execute("SELECT COALESCE(MAX(seq), 0) FROM items").fetchone()[0])
        self._db = db
        config = self.services.config
        try:
            sock = _bind(config.host, config.stream_port)
        except OSError as exc:
            db.close()
            self._db = None
            raise OSError(
                exc.errno, f"stream port {config.host}:{config.stream_port}: {exc.strerror or exc}"
            ) from exc
        self._server = await serve(
            self._serve,
            sock=sock,
            compression=None,
            process_request=self._process_request,
            ping_interval=None,
            max_size=16 * 1024 * 1024,
            logger=logging.getLogger("iii_typed.engine.streams.websockets"),
        )
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        self.url = f"ws://{shown}:{port}"
        self.services.advertise("streams", self.url)
        log.info("stream WebSocket API on %s", self.url)

    async def stop(self) -> None:
        """Close the subscribers and the store."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        """The open store."""
        if self._db is None:
            raise BuiltinError("STREAM_GET_ERROR", "the stream store is not open")
        return self._db

    # -- declarations --------------------------------------------------------------------------
    def functions(self) -> Sequence[BuiltinFunction]:
        """``stream::*`` (protocol.md §6.2)."""
        return (
            BuiltinFunction(
                "stream::set",
                self._set,
                "Store an item; returns the new and the old value",
                input_model=StreamSetInput,
                output_model=StreamSetResult,
            ),
            BuiltinFunction(
                "stream::get", self._get, "An item (no result when missing)", input_model=StreamItemInput
            ),
            BuiltinFunction(
                "stream::delete",
                self._delete,
                "Delete an item; returns the deleted value",
                input_model=StreamItemInput,
                output_model=StreamDeleteResult,
            ),
            BuiltinFunction(
                "stream::list",
                self._list,
                "The items of a group, in insertion order",
                input_model=StreamGroupInput,
            ),
            BuiltinFunction(
                "stream::list_groups",
                self._list_groups,
                "The groups of a stream",
                input_model=StreamNameInput,
            ),
            BuiltinFunction(
                "stream::list_all",
                self._list_all,
                "Every stream with its groups",
                input_model=StreamListAllInput,
                output_model=StreamListAllResult,
            ),
            BuiltinFunction(
                "stream::send",
                self._send,
                "Push a custom event to subscribers and triggers (not stored)",
                input_model=StreamSendInput,
            ),
            BuiltinFunction(
                "stream::update",
                self._update,
                "Apply update operations to an item",
                input_model=StreamUpdateInput,
                output_model=StreamUpdateResult,
            ),
        )

    def trigger_types(self) -> Sequence[BuiltinTriggerType]:
        """``stream``, ``stream:join`` and ``stream:leave``."""
        join_leave = StreamJoinLeavePayload.model_json_schema()
        return (
            BuiltinTriggerType(
                STREAM_TRIGGER,
                "Fires when a stream item is created, updated or deleted, or an event is sent",
                register=self._register,
                trigger_request_format=StreamTriggerConfig.model_json_schema(),
                call_request_format=StreamTriggerPayload.model_json_schema(),
            ),
            BuiltinTriggerType(
                STREAM_JOIN,
                "Called when a WebSocket client joins a stream; return {unauthorized: true} to refuse",
                call_request_format=join_leave,
            ),
            BuiltinTriggerType(
                STREAM_LEAVE,
                "Called when a WebSocket subscription ends (leave or disconnect)",
                call_request_format=join_leave,
            ),
        )

    async def _register(self, binding: TriggerBinding) -> None:
        config = check_trigger_config(STREAM_TRIGGER, binding.config, _TRIGGER_FIELDS)
        if "stream_name" not in config:
            raise TriggerRegistrationError("stream trigger config needs stream_name")

    # -- storage -------------------------------------------------------------------------------
    def _read(self, stream: str, group: str, item: str) -> Any:
        row = self.db.execute(
            "SELECT value FROM items WHERE stream = ? AND grp = ? AND item = ?", (stream, group, item)
        ).fetchone()
        return MISSING if row is None else loads(row[0])

    def _write(self, stream: str, group: str, item: str, value: Any) -> None:
        db = self.db
        try:
            self._seq += 1
            db.execute(
                "INSERT INTO items (stream, grp, item, value, seq) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (stream, grp, item) DO UPDATE SET value = excluded.value",
                (stream, group, item, dumps(value), self._seq),
            )
            db.commit()
        except sqlite3.Error:
            db.rollback()
            raise

    def _remove(self, stream: str, group: str, item: str) -> None:
        db = self.db
        try:
            db.execute("DELETE FROM items WHERE stream = ? AND grp = ? AND item = ?", (stream, group, item))
            db.commit()
        except sqlite3.Error:
            db.rollback()
            raise

    def _items(self, stream: str, group: str) -> list[Any]:
        rows = self.db.execute(
            "SELECT value FROM items WHERE stream = ? AND grp = ? ORDER BY seq", (stream, group)
        ).fetchall()
        return [loads(row[0]) for row in rows]

    def _groups(self, stream: str) -> list[str]:
        rows = self.db.execute(
            "SELECT DISTINCT grp FROM items WHERE stream = ? ORDER BY grp", (stream,)
        ).fetchall()
        return sorted(row[0] for row in rows)

    # -- custom streams ------------------------------------------------------------------------
    def _override(self, op: str, stream: str) -> str | None:
        function_id = f"stream::{op}({stream})"
        return function_id if self.services.function_exists(function_id) else None

    async def _call(self, function_id: str, data: BaseModel, code: str) -> Any:
        try:
            return await self.services.invoke(function_id, data.model_dump(mode="json"))
        except InvocationError as exc:
            raise BuiltinError(code, f"{function_id} failed: {exc.code}: {exc.message}") from None

    async def _get_value(self, stream: str, group: str, item: str, code: str) -> Any:
        """The item (or :data:`MISSING`), through a ``get`` override when there is one."""
        override = self._override("get", stream)
        if override is not None:
            value = await self._call(
                override, StreamItemInput(stream_name=stream, group_id=group, item_id=item), code
            )
            return MISSING if value is None else value
        try:
            return self._read(stream, group, item)
        except sqlite3.Error as exc:
            raise BuiltinError(code, f"cannot read {stream}/{group}/{item}: {exc}") from None

    async def _set_value(self, data: StreamSetInput, code: str) -> tuple[Any, Any]:
        """Store the item through a ``set`` override or the storage; ``(new_value, old_value)``."""
        stream, group, item = data.stream_name, data.group_id, data.item_id
        override = self._override("set", stream)
        if override is not None:
            result = await self._call(override, data, code)
            if not isinstance(result, dict) or "new_value" not in result:
                raise BuiltinError(
                    code, f"{override} must return {{new_value, old_value}}, got {json.dumps(result)[:200]}"
                )
            return result["new_value"], result.get("old_value")
        try:
            old = self._read(stream, group, item)
            self._write(stream, group, item, data.data)
        except sqlite3.Error as exc:
            raise BuiltinError(code, f"cannot store {stream}/{group}/{item}: {exc}") from None
        return data.data, None if old is MISSING else old

    # -- events --------------------------------------------------------------------------------
    def _emit(self, stream: str, group: str, item_id: str | None, event: dict[str, Any]) -> None:
        timestamp = _now_ms()
        payload = {
            "event": event,
            "groupId": group,
            "id": item_id,
            "streamName": stream,
            "timestamp": timestamp,
            "type": "stream",
        }
        self.services.fire_all(
            STREAM_TRIGGER, payload, predicate=lambda binding: _matches(binding, stream, group, item_id)
        )
        subscriptions = self._index.get((stream, group))
        if not subscriptions:
            return
        frame = _frame(stream, group, item_id, event, timestamp)
        for subscription in list(subscriptions):
            if subscription.item_id is not None and subscription.item_id != item_id:
                continue
            if subscription.ready:
                subscription.conn.push(frame)
            else:
                subscription.held.append(frame)

    # -- handlers ------------------------------------------------------------------------------
    async def _set(self, data: StreamSetInput, ctx: CallContext) -> Any:
        new_value, old_value = await self._set_value(data, "STREAM_SET_ERROR")
        kind = "create" if old_value is None else "update"
        self._emit(data.stream_name, data.group_id, data.item_id, {"data": new_value, "type": kind})
        return {"new_value": new_value, "old_value": old_value}

    async def _get(self, data: StreamItemInput, ctx: CallContext) -> Any:
        override = self._override("get", data.stream_name)
        if override is not None:
            return await self._call(override, data, "STREAM_GET_ERROR")
        try:
            value = self._read(data.stream_name, data.group_id, data.item_id)
        except sqlite3.Error as exc:
            raise BuiltinError("STREAM_GET_ERROR", f"cannot read {data.item_id}: {exc}") from None
        if value is MISSING:
            return None
        return JSON_NULL if value is None else value

    async def _delete(self, data: StreamItemInput, ctx: CallContext) -> Any:
        stream, group, item = data.stream_name, data.group_id, data.item_id
        override = self._override("delete", stream)
        if override is not None:
            result = await self._call(override, data, "STREAM_DELETE_ERROR")
            old_value = result.get("old_value") if isinstance(result, dict) else None
        else:
            try:
                old = self._read(stream, group, item)
                if old is not MISSING:
                    self._remove(stream, group, item)
            except sqlite3.Error as exc:
                raise BuiltinError(
                    "STREAM_DELETE_ERROR", f"cannot delete {stream}/{group}/{item}: {exc}"
                ) from None
            old_value = None if old is MISSING else old
        if old_value is not None:
            self._emit(stream, group, item, {"data": old_value, "type": "delete"})
        return {"old_value": old_value}

    async def _list(self, data: StreamGroupInput, ctx: CallContext) -> Any:
        override = self._override("list", data.stream_name)
        if override is not None:
            return await self._call(override, data, "STREAM_GET_GROUP_ERROR")
        try:
            return self._items(data.stream_name, data.group_id)
        except sqlite3.Error as exc:
            raise BuiltinError("STREAM_GET_GROUP_ERROR", f"cannot list {data.group_id}: {exc}") from None

    async def _list_groups(self, data: StreamNameInput, ctx: CallContext) -> Any:
        override = self._override("list_groups", data.stream_name)
        if override is not None:
            return await self._call(override, data, "STREAM_LIST_GROUPS_ERROR")
        try:
            return self._groups(data.stream_name)
        except sqlite3.Error as exc:
            raise BuiltinError("STREAM_LIST_GROUPS_ERROR", f"cannot list groups: {exc}") from None

    async def _list_all(self, data: StreamListAllInput, ctx: CallContext) -> Any:
        try:
            rows = self.db.execute("SELECT DISTINCT stream, grp FROM items ORDER BY stream, grp").fetchall()
        except sqlite3.Error as exc:
            raise BuiltinError("STREAM_LIST_ALL_ERROR", f"cannot list streams: {exc}") from None
        streams: dict[str, list[str]] = {}
        for stream, group in rows:
            streams.setdefault(stream, []).append(group)
        summary = [{"groups": sorted(groups), "id": name} for name, groups in sorted(streams.items())]
        return {"count": len(summary), "stream": summary}

    async def _send(self, data: StreamSendInput, ctx: CallContext) -> Any:
        event = {"event": {"data": data.data, "type": data.type}, "type": "event"}
        self._emit(data.stream_name, data.group_id, data.id, event)
        return JSON_NULL

    async def _update(self, data: StreamUpdateInput, ctx: CallContext) -> Any:
        stream, group, item = data.stream_name, data.group_id, data.item_id
        override = self._override("update", stream)
        code = "STREAM_UPDATE_ERROR"
        if override is not None:
            result = await self._call(override, data, code)
            if not isinstance(result, dict) or "new_value" not in result:
                raise BuiltinError(code, f"{override} must return {{new_value, old_value, errors?}}")
            new_value, old_value = result["new_value"], result.get("old_value")
        else:
            old = await self._get_value(stream, group, item, code)
            new_value, errors = apply_update_ops(old, data.ops)
            stored = StreamSetInput(stream_name=stream, group_id=group, item_id=item, data=new_value)
            await self._set_value(stored, code)
            old_value = None if old is MISSING else old
            result = {}
            if errors:
                result["errors"] = [error.to_json() for error in errors]
            result["new_value"] = new_value
            result["old_value"] = old_value
        self._emit(
            stream, group, item, {"data": new_value, "type": "create" if old_value is None else "update"}
        )
        return result

    # -- the WebSocket API ---------------------------------------------------------------------
    async def _process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        denied = refuse_unauthorized(self.services.config, ws, request)  # engine token (auth.py)
        if denied is not None:
            return denied
        path, _, query = request.path.partition("?")
        if path != "/" and _PATH_FORM.match(path) is None:
            return ws.respond(404, "Not Found\n")
        if self.auth_function is not None:
            address = ws.remote_address
            data = {
                "addr": f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address),
                "headers": {name.lower(): _text(value) for name, value in request.headers.raw_items()},
                "path": path,
                "query_params": parse_qs(query),
            }
            try:
                result = await self.services.invoke(self.auth_function, data, timeout=10.0)
            except InvocationError as exc:
                log.warning(
                    "stream auth function %s failed (%s: %s): no context",
                    self.auth_function,
                    exc.code,
                    exc.message,
                )
                result = None
            self._contexts[id(ws)] = result.get("context") if isinstance(result, dict) else None
        return None

    async def _serve(self, ws: ServerConnection) -> None:
        subscriber = _Subscriber(ws, self._contexts.pop(id(ws), None), self.max_buffered)
        try:
            path = ws.request.path.partition("?")[0] if ws.request is not None else "/"
            match = _PATH_FORM.match(path)
            if match is not None:  # cases.md B09: the path form joins at once
                stream, group, item = (unquote(part) if part else None for part in match.groups())
                assert stream is not None and group is not None
                await self._join(subscriber, f"path:{uuid.uuid4()}", stream, group, item)
            async for message in ws:
                await self._on_message(subscriber, message)
        except ConnectionClosed:
            pass
        finally:
            for subscription in list(subscriber.subscriptions.values()):
                self._leave(subscriber, subscription.subscription_id)

    async def _on_message(self, subscriber: _Subscriber, message: str | bytes) -> None:
        try:
            frame = json.loads(message)
            kind = frame["type"]
            data = frame["data"]
            subscription_id = data["subscriptionId"]
            stream = data["streamName"]
            group = data["groupId"]
            item = data.get("id")
            if not all(isinstance(v, str) for v in (kind, subscription_id, stream, group)) or not (
                item is None or isinstance(item, str)
            ):
                raise TypeError("subscriptionId, streamName and groupId must be strings, id a string or null")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            log.info("ignoring a malformed stream frame (%s): %.200r", exc, message)
            return
        if kind == "join":
            await self._join(subscriber, subscription_id, stream, group, item)
        elif kind == "leave":
            self._leave(subscriber, subscription_id)
        else:
            log.info("ignoring a stream frame of unknown type %r", kind)

    async def _authorized(self, subscription: _Subscription) -> bool:
        bindings = self.services.bindings(STREAM_JOIN)
        if not bindings:
            return True
        payload = subscription.payload()
        results = await asyncio.gather(
            *(self.services.fire_result(binding, payload) for binding in bindings), return_exceptions=True
        )
        for binding, result in zip(bindings, results, strict=True):
            if isinstance(result, BaseException):
                log.warning(
                    "stream:join handler %s failed: %s (the join goes on)", binding.function_id, result
                )
            elif isinstance(result, dict) and result.get("unauthorized") is True:
                return False
        return True

    async def _join(
        self, subscriber: _Subscriber, subscription_id: str, stream: str, group: str, item: str | None
    ) -> None:
        if subscription_id in subscriber.subscriptions:
            self._leave(subscriber, subscription_id)
        subscription = _Subscription(subscriber, subscription_id, stream, group, item)
        if not await self._authorized(subscription):
            subscriber.push(_frame(stream, group, None, {"type": "unauthorized"}, _now_ms()))
            return
        subscriber.subscriptions[subscription_id] = subscription
        self._index.setdefault((stream, group), set()).add(subscription)  # events are held until the sync
        try:
            if item is None:
                snapshot: Any = await self._list(
                    StreamGroupInput(stream_name=stream, group_id=group), _NO_CALL
                )
            else:
                value = await self._get_value(stream, group, item, "STREAM_GET_ERROR")
                snapshot = None if value is MISSING else value
        except BuiltinError as exc:
            log.warning("stream sync for %s/%s failed: %s", stream, group, exc)
            snapshot = [] if item is None else None
        subscriber.push(_frame(stream, group, item, {"data": snapshot, "type": "sync"}, _now_ms()))
        subscription.ready = True
        for frame in subscription.held:
            subscriber.push(frame)
        subscription.held.clear()

    def _leave(self, subscriber: _Subscriber, subscription_id: str) -> None:
        subscription = subscriber.subscriptions.pop(subscription_id, None)
        if subscription is None:
            return
        key = (subscription.stream, subscription.group)
        members = self._index.get(key)
        if members is not None:
            members.discard(subscription)
            if not members:
                del self._index[key]
        self.services.fire_all(STREAM_LEAVE, subscription.payload())

    def subscriber_count(self) -> int:
        """Open subscriptions (for tests and the dashboard)."""
        return sum(len(members) for members in self._index.values())


class _NoCall:
    """A stand-in :class:`CallContext` for internal calls of the handlers."""


_NO_CALL: Any = _NoCall()


def _matches(binding: TriggerBinding, stream: str, group: str, item_id: str | None) -> bool:
    config = binding.config if isinstance(binding.config, dict) else {}
    if config.get("stream_name") != stream:
        return False
    want_group = config.get("group_id")
    want_item = config.get("item_id")
    return (want_group is None or want_group == group) and (want_item is None or want_item == item_id)


def _bind(host: str, port: int) -> socket.socket:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, address = infos[0]
    return socket.create_server(address, family=family, backlog=1024)


BUILTIN = StreamsWorker
