"""Streams: custom stream implementations (:class:`IStream`, ``create_stream``) and the stream models.

The engine's stream built-in (protocol.md §6.2) keeps items in ``stream → group → item`` and
serves ``stream::get|set|delete|list|list_groups|update``. ``iii.create_stream(name, stream)``
makes this worker the storage of the stream ``name``: it registers the functions
``stream::get(<name>)``, ``stream::set(<name>)``, ``stream::delete(<name>)``,
``stream::list(<name>)`` and ``stream::list_groups(<name>)``, which the engine then calls instead
of its own storage, with the same input. Updates stay with the engine: ``stream::update`` on a
custom stream reads through ``get``, applies the operations and writes through ``set``. Change
events (the ``stream`` trigger and WebSocket subscribers) fire for custom streams too. ::

    class Rooms(IStream[dict]):
        def __init__(self) -> None:
            self.items: dict[tuple[str, str], dict] = {}

        async def get(self, input: StreamGetInput) -> dict | None:
            return self.items.get((input.group_id, input.item_id))

        async def set(self, input: StreamSetInput) -> StreamSetResult[dict]:
            old = self.items.get((input.group_id, input.item_id))
            self.items[(input.group_id, input.item_id)] = input.data
            return StreamSetResult(old_value=old, new_value=input.data)

        ...  # delete, list, list_groups

    iii.create_stream("rooms", Rooms())

Methods may be ``async def`` (run on the SDK's event loop) or plain ``def`` (each call on a thread
of its own). They receive the typed input models below and may return models or plain JSON.

The models mirror the wire shapes of §6.2: inputs (``StreamSetInput`` …), results
(``StreamSetResult`` …), update operations (``UpdateSet`` … ``UpdateRemove``), the ``stream``
trigger payload (:class:`StreamChangeEvent`) and the ``stream:join`` / ``stream:leave`` payload
(:class:`StreamJoinLeaveEvent`, answered with :class:`StreamJoinResult`).
"""

from __future__ import annotations

import abc
import inspect
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from .client import III

__all__ = [
    "STREAM_METHODS",
    "IStream",
    "StreamChangeEvent",
    "StreamChangeEventDetail",
    "StreamCustomEvent",
    "StreamDeleteInput",
    "StreamDeleteResult",
    "StreamGetInput",
    "StreamJoinLeaveEvent",
    "StreamJoinResult",
    "StreamListGroupsInput",
    "StreamListInput",
    "StreamSendInput",
    "StreamSetInput",
    "StreamSetResult",
    "StreamTriggerConfig",
    "StreamUpdateInput",
    "StreamUpdateResult",
    "UpdateAppend",
    "UpdateDecrement",
    "UpdateIncrement",
    "UpdateMerge",
    "UpdateOp",
    "UpdateOpError",
    "UpdateRemove",
    "UpdateSet",
    "register_stream",
]

TData = TypeVar("TData")

#: The ``IStream`` methods ``create_stream`` registers (``update`` stays with the engine).
STREAM_METHODS = ("get", "set", "delete", "list", "list_groups")

_NAME = re.compile(r"^[^()\s]+$")


class _Input(BaseModel):
    model_config = ConfigDict(extra="ignore")


class StreamGetInput(_Input):
    """Input of ``stream::get`` (and of :meth:`IStream.get`)."""

    stream_name: str
    group_id: str
    item_id: str


class StreamSetInput(_Input):
    """Input of ``stream::set``: store ``data`` as item ``item_id`` of the group."""

    stream_name: str
    group_id: str
    item_id: str
    data: Any = None


class StreamDeleteInput(_Input):
    """Input of ``stream::delete``."""

    stream_name: str
    group_id: str
    item_id: str


class StreamListInput(_Input):
    """Input of ``stream::list``: every item of a group."""

    stream_name: str
    group_id: str


class StreamListGroupsInput(_Input):
    """Input of ``stream::list_groups``: the groups of a stream."""

    stream_name: str


class UpdateSet(BaseModel):
    """``{"type": "set", "path": "f", "value": v}`` (``path: ""`` replaces the whole item)."""

    type: Literal["set"] = "set"
    path: str = ""
    value: Any = None


class UpdateMerge(BaseModel):
    """``{"type": "merge", "path"?: "f" | ["a", "b"], "value": {...}}``: shallow merge of an object."""

    type: Literal["merge"] = "merge"
    path: str | list[str] | None = None
    value: dict[str, Any]


class UpdateIncrement(BaseModel):
    """``{"type": "increment", "path": "f", "by": int}``."""

    type: Literal["increment"] = "increment"
    path: str = ""
    by: int


class UpdateDecrement(BaseModel):
    """``{"type": "decrement", "path": "f", "by": int}``."""

    type: Literal["decrement"] = "decrement"
    path: str = ""
    by: int


class UpdateAppend(BaseModel):
    """``{"type": "append", "path"?: "f" | ["a", "b"], "value": v}``: push onto an array (or
    concatenate strings)."""

    type: Literal["append"] = "append"
    path: str | list[str] | None = None
    value: Any = None


class UpdateRemove(BaseModel):
    """``{"type": "remove", "path": "f"}``."""

    type: Literal["remove"] = "remove"
    path: str = ""


#: One update operation, discriminated by ``type`` (protocol.md §6.1).
UpdateOp = Annotated[
    UpdateSet | UpdateMerge | UpdateIncrement | UpdateDecrement | UpdateAppend | UpdateRemove,
    Field(discriminator="type"),
]


class StreamUpdateInput(_Input):
    """Input of ``stream::update``: operations applied in order to one item."""

    stream_name: str
    group_id: str
    item_id: str
    ops: list[UpdateOp]


class StreamSendInput(_Input):
    """Input of ``stream::send``: a custom event pushed to subscribers, not stored."""

    stream_name: str
    group_id: str
    id: str | None = None
    type: str
    data: Any = None


class UpdateOpError(BaseModel):
    """One skipped update operation (``op_index``, ``code`` such as ``increment.not_number``)."""

    op_index: int
    code: str
    message: str
    doc_url: str | None = None


class StreamSetResult(BaseModel, Generic[TData]):
    """Result of ``stream::set``: the previous value (``None`` for a new item) and the new one."""

    old_value: TData | None = None
    new_value: TData


class StreamUpdateResult(BaseModel, Generic[TData]):
    """Result of ``stream::update`` (``errors`` lists the skipped operations, omitted when none)."""

    old_value: TData | None = None
    new_value: TData
    errors: list[UpdateOpError] = Field(default_factory=list)


class StreamDeleteResult(BaseModel):
    """Result of ``stream::delete``: the deleted value (``None`` when there was none)."""

    old_value: Any = None


class StreamTriggerConfig(BaseModel):
    """Config of a ``stream`` trigger: ``stream_name`` and optional exact-match filters."""

    stream_name: str
    group_id: str | None = None
    item_id: str | None = None
    condition_function_id: str | None = None


class StreamCustomEvent(BaseModel):
    """The inner event of ``stream::send``: ``{"type": <custom>, "data": ...}``."""

    type: str
    data: Any = None


class StreamChangeEventDetail(BaseModel):
    """``event`` of a :class:`StreamChangeEvent`: ``create``/``update``/``delete`` carry ``data``,
    ``event`` carries the custom event of ``stream::send``."""

    type: Literal["create", "update", "delete", "event"]
    data: Any = None
    event: StreamCustomEvent | None = None


class StreamChangeEvent(BaseModel):
    """Payload of the ``stream`` trigger (protocol.md §6.2, golden frame E06; camelCase on the wire).

    Populated by either name (``stream_name`` or ``streamName``).
    """

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    type: Literal["stream"] = "stream"
    timestamp: int
    stream_name: str = Field(alias="streamName")
    group_id: str = Field(alias="groupId")
    id: str | None = None
    event: StreamChangeEventDetail


class StreamJoinLeaveEvent(_Input):
    """Payload of the ``stream:join`` / ``stream:leave`` triggers (golden frame S06)."""

    subscription_id: str
    stream_name: str
    group_id: str
    id: str | None = None
    context: Any = None


class StreamJoinResult(BaseModel):
    """What a ``stream:join`` handler returns to refuse a subscription: ``{"unauthorized": true}``."""

    unauthorized: bool = False


class IStream(abc.ABC, Generic[TData]):
    """A custom stream storage, registered with ``iii.create_stream(name, stream)``.

    Implement ``get``, ``set``, ``delete``, ``list`` and ``list_groups`` (``async def`` or plain
    ``def``). ``update`` is not registered: the engine applies update operations through ``get``
    and ``set``.
    """

    @abc.abstractmethod
    def get(self, input: StreamGetInput) -> Any:
        """The item, or ``None`` when it does not exist."""

    @abc.abstractmethod
    def set(self, input: StreamSetInput) -> Any:
        """Store the item; return a :class:`StreamSetResult` (old and new value)."""

    @abc.abstractmethod
    def delete(self, input: StreamDeleteInput) -> Any:
        """Delete the item; return a :class:`StreamDeleteResult` (the deleted value)."""

    @abc.abstractmethod
    def list(self, input: StreamListInput) -> Any:
        """Every item of the group (a list)."""

    @abc.abstractmethod
    def list_groups(self, input: StreamListGroupsInput) -> Any:
        """The group ids of the stream (a list of strings)."""

    def update(self, input: StreamUpdateInput) -> Any:
        """Not called: the engine performs updates through :meth:`get` and :meth:`set`."""
        raise NotImplementedError("stream updates are applied by the engine through get and set")


_INPUTS: dict[str, type[_Input]] = {
    "get": StreamGetInput,
    "set": StreamSetInput,
    "delete": StreamDeleteInput,
    "list": StreamListInput,
    "list_groups": StreamListGroupsInput,
}


def _to_json(value: Any) -> Any:
    if isinstance(value, StreamUpdateResult):
        data = value.model_dump(mode="json")
        if not data.get("errors"):
            data.pop("errors", None)
        return data
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    return value


def _handler(method: Callable[[Any], Any], model: type[_Input]) -> Callable[[Any], Any]:
    if inspect.iscoroutinefunction(method):

        async def run_async(data: Any) -> Any:
            return _to_json(await method(model.model_validate(data)))

        return run_async

    def run(data: Any) -> Any:
        result = method(model.model_validate(data))
        if inspect.isawaitable(result):
            raise TypeError(f"{method!r} returned an awaitable: declare it with `async def`")
        return _to_json(result)

    return run


def register_stream(client: III, stream_name: str, stream: IStream[Any]) -> None:
    """Register ``stream`` as the storage of ``stream_name`` (``stream::<method>(<name>)``).

    Args:
        client: The worker that serves the stream.
        stream_name: The stream's name (no spaces or parentheses).
        stream: The implementation.

    Raises:
        TypeError: ``stream`` is not an :class:`IStream` or ``stream_name`` not a string.
        ValueError: ``stream_name`` is blank or contains spaces or parentheses, or the stream's
            functions are already registered on this worker.
    """
    if not isinstance(stream_name, str):
        raise TypeError(f"stream_name must be a str, not {type(stream_name).__name__}")
    if not _NAME.match(stream_name):
        raise ValueError(f"stream_name must be non-blank without spaces or parentheses, got {stream_name!r}")
    if not isinstance(stream, IStream):
        raise TypeError(f"stream must implement iii_typed.IStream, not {type(stream).__name__}")
    for name in STREAM_METHODS:
        client.register_function(
            f"stream::{name}({stream_name})",
            _handler(getattr(stream, name), _INPUTS[name]),
            description=f"{type(stream).__name__}.{name} of the custom stream {stream_name!r}",
        )
