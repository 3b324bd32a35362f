"""``iii-state``: key/value state grouped in scopes, and the ``state`` trigger (protocol.md §6.1).

Functions (namespace ``default``; inputs parsed strictly, unknown fields ignored; bad input →
``deserialization_error``):

* ``state::set {scope, key, value}`` (``data`` is accepted for ``value``) →
  ``{"new_value", "old_value"}`` (``old_value`` ``null`` for a new key);
* ``state::get {scope, key}`` → the value (no ``result`` when the key does not exist);
* ``state::delete {scope, key}`` → the deleted value (no ``result`` when it did not exist);
* ``state::update {scope, key, ops}`` → ``{"new_value", "old_value", "errors"?}`` — the update-op
  engine of :mod:`._update_ops` (``errors`` only when an op was skipped);
* ``state::list {scope}`` → the scope's values in insertion order;
* ``state::list_groups {}`` → ``{"groups": [sorted scopes]}``.

Storage failures answer ``SET_ERROR``, ``GET_ERROR``, ``DELETE_ERROR``, ``UPDATE_ERROR``,
``LIST_ERROR`` or ``LIST_GROUPS_ERROR``. With ``max_value_bytes`` set, a value whose compact JSON
is longer is refused with ``VALUE_TOO_LARGE`` (``state::set``, and also the result of
``state::update`` — an addition of ours) and nothing is stored.

Trigger type ``state``: config ``{scope?, key?, condition_function_id?}`` (exact-match filters,
absent = any; unknown fields or wrong types are refused with ``trigger_registration_failed``).
It fires after ``state::set`` / ``state::update`` (``state:created`` or ``state:updated``) and
``state::delete`` (``state:deleted``, even when the key did not exist) with the payload
``{"event_type", "key", "new_value", "old_value", "scope", "type": "state"}`` and the binding's
metadata as sidecar (§4.4). Each fire, its condition call included, carries the ``traceparent``/
``baggage`` of the ``state::*`` call that caused it, so the handler's span joins the caller's
trace (§4.5; the engine services take the context of the call being served).
``triggers_enabled = false`` turns the fan-out off.

Persistence (decisions "Policies"): in memory without a data folder, else the SQLite file
``<data_dir>/state.sqlite3``. ``engine.toml``::

    [state]
    triggers_enabled = true     # fire `state` triggers
    max_value_bytes = 1048576   # optional size limit of one value (compact JSON bytes)
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from typing import Any, ClassVar, Final

from pydantic import AliasChoices, BaseModel, Field

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
)

__all__ = [
    "BUILTIN",
    "StateDeleteInput",
    "StateGetInput",
    "StateListGroupsResult",
    "StateListInput",
    "StateSetInput",
    "StateSetResult",
    "StateTriggerConfig",
    "StateTriggerPayload",
    "StateUpdateInput",
    "StateUpdateResult",
    "StateWorker",
]

log = logging.getLogger("iii_typed.engine.state")

STATE_TRIGGER: Final = "state"
_TRIGGER_FIELDS: Final = {"scope": str, "key": str, "condition_function_id": str}


class StateGetInput(BaseModel):
    """``state::get`` / ``state::delete`` input."""

    scope: str = Field(description="The scope (group) of the key.")
    key: str = Field(description="The key within the scope.")


class StateDeleteInput(StateGetInput):
    """``state::delete`` input."""


class StateSetInput(BaseModel):
    """``state::set`` input; ``data`` is accepted as an alias of ``value``."""

    scope: str = Field(description="The scope (group) of the key.")
    key: str = Field(description="The key within the scope.")
    value: Any = Field(validation_alias=AliasChoices("value", "data"), description="Any JSON value.")


class StateUpdateInput(BaseModel):
    """``state::update`` input."""

    scope: str = Field(description="The scope (group) of the key.")
    key: str = Field(description="The key within the scope.")
    ops: list[UpdateOp] = Field(description="Operations applied in order (protocol.md §6.1).")


class StateListInput(BaseModel):
    """``state::list`` input."""

    scope: str = Field(description="The scope whose values to list.")


class StateListGroupsInput(BaseModel):
    """``state::list_groups`` input (no fields)."""


class StateSetResult(BaseModel):
    """``state::set`` result."""

    new_value: Any
    old_value: Any


class StateUpdateError(BaseModel):
    """One skipped update operation."""

    code: str
    doc_url: str | None = None
    message: str
    op_index: int


class StateUpdateResult(BaseModel):
    """``state::update`` result (``errors`` omitted when every op applied)."""

    errors: list[StateUpdateError] | None = None
    new_value: Any
    old_value: Any


class StateListGroupsResult(BaseModel):
    """``state::list_groups`` result."""

    groups: list[str]


class StateTriggerConfig(BaseModel):
    """Config of a ``state`` binding."""

    scope: str | None = Field(default=None, description="Only keys of this scope.")
    key: str | None = Field(default=None, description="Only this key.")
    condition_function_id: str | None = Field(default=None, description="Called first; `false` skips.")


class StateTriggerPayload(BaseModel):
    """What a ``state`` trigger's function receives."""

    event_type: str = Field(description="`state:created`, `state:updated` or `state:deleted`.")
    key: str
    new_value: Any
    old_value: Any
    scope: str
    type: str = "state"


class StateWorker(BuiltinWorker):
    """The ``iii-state`` built-in (see the module docstring)."""

    name: ClassVar[str] = "iii-state"
    section: ClassVar[str] = "state"
    description: ClassVar[str] = "Key/value state in scopes, with change triggers"
    order: ClassVar[int] = 20

    def __init__(self, services: EngineServices) -> None:
        super().__init__(services)
        table = services.section(self.section)
        check_section(self.section, table, {"triggers_enabled": bool, "max_value_bytes": int})
        self.triggers_enabled: bool = table.get("triggers_enabled", True)
        limit = table.get("max_value_bytes")
        if limit is not None and limit <= 0:
            from ..config import ConfigError

            raise ConfigError(f"[state] max_value_bytes must be a positive integer, got {limit}")
        self.max_value_bytes: int | None = limit
        self._db: sqlite3.Connection | None = None
        self._seq = 0

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        """Open the store (``<data_dir>/state.sqlite3`` or memory)."""
        db = open_database(
            self.services.data_dir,
            "state",
            (
                "CREATE TABLE IF NOT EXISTS state ("
                " scope TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, seq INTEGER NOT NULL,"
                " PRIMARY KEY (scope, key))",
                "CREATE INDEX IF NOT EXISTS state_scope_seq ON state (scope, seq)",
            ),
        )
        row = db.execute("SELECT COALESCE(MAX(seq), 0) FROM state").fetchone()
        self._seq = int(row[0])
        self._db = db

    async def stop(self) -> None:
        """Close the store."""
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        """The open store."""
        if self._db is None:
            raise BuiltinError("GET_ERROR", "the state store is not open")
        return self._db

    # -- declarations --------------------------------------------------------------------------
    def functions(self) -> Sequence[BuiltinFunction]:
        """``state::*`` (protocol.md §6.1)."""
        return (
            BuiltinFunction(
                "state::set",
                self._set,
                "Set a value; returns the new and the old value",
                input_model=StateSetInput,
                output_model=StateSetResult,
            ),
            BuiltinFunction(
                "state::get", self._get, "Get a value (no result when missing)", input_model=StateGetInput
            ),
            BuiltinFunction(
                "state::delete",
                self._delete,
                "Delete a value; returns the deleted value",
                input_model=StateDeleteInput,
            ),
            BuiltinFunction(
                "state::update",
                self._update,
                "Apply update operations to a value",
                input_model=StateUpdateInput,
                output_model=StateUpdateResult,
            ),
            BuiltinFunction(
                "state::list",
                self._list,
                "The values of a scope, in insertion order",
                input_model=StateListInput,
            ),
            BuiltinFunction(
                "state::list_groups",
                self._list_groups,
                "The scopes that hold values",
                input_model=StateListGroupsInput,
                output_model=StateListGroupsResult,
            ),
        )

    def trigger_types(self) -> Sequence[BuiltinTriggerType]:
        """The ``state`` trigger type."""
        return (
            BuiltinTriggerType(
                STATE_TRIGGER,
                "Fires when a state value is created, updated or deleted",
                register=self._register,
                trigger_request_format=StateTriggerConfig.model_json_schema(),
                call_request_format=StateTriggerPayload.model_json_schema(),
            ),
        )

    async def _register(self, binding: TriggerBinding) -> None:
        check_trigger_config(STATE_TRIGGER, binding.config, _TRIGGER_FIELDS)

    # -- storage -------------------------------------------------------------------------------
    def _read(self, scope: str, key: str) -> Any:
        row = self.db.execute("SELECT value FROM state WHERE scope = ? AND key = ?", (scope, key)).fetchone()
        return MISSING if row is None else loads(row[0])

    def _write(self, scope: str, key: str, value: Any, code: str) -> None:
        text = dumps(value)
        if self.max_value_bytes is not None:
            size = len(text.encode("utf-8"))
            if size > self.max_value_bytes:
                raise BuiltinError(
                    "VALUE_TOO_LARGE",
                    f"the value of {scope}/{key} is {size} bytes of JSON; "
                    f"max_value_bytes is {self.max_value_bytes}",
                )
        db = self.db
        try:
            self._seq += 1
            db.execute(
                "INSERT INTO state (scope, key, value, seq) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (scope, key) DO UPDATE SET value = excluded.value",
                (scope, key, text, self._seq),
            )
            db.commit()
        except sqlite3.Error as exc:
            db.rollback()
            raise BuiltinError(code, f"cannot store {scope}/{key}: {exc}") from None

    def _fire(self, event_type: str, scope: str, key: str, new_value: Any, old_value: Any) -> None:
        if not self.triggers_enabled:
            return
        payload = {
            "event_type": event_type,
            "key": key,
            "new_value": new_value,
            "old_value": old_value,
            "scope": scope,
            "type": "state",
        }
        self.services.fire_all(STATE_TRIGGER, payload, predicate=lambda b: _matches(b, scope, key))

    # -- handlers ------------------------------------------------------------------------------
    async def _set(self, data: StateSetInput, ctx: CallContext) -> Any:
        try:
            old = self._read(data.scope, data.key)
        except sqlite3.Error as exc:
            raise BuiltinError("SET_ERROR", f"cannot read {data.scope}/{data.key}: {exc}") from None
        self._write(data.scope, data.key, data.value, "SET_ERROR")
        old_value = None if old is MISSING else old
        self._fire(
            "state:created" if old is MISSING else "state:updated",
            data.scope,
            data.key,
            data.value,
            old_value,
        )
        return {"new_value": data.value, "old_value": old_value}

    async def _get(self, data: StateGetInput, ctx: CallContext) -> Any:
        try:
            value = self._read(data.scope, data.key)
        except sqlite3.Error as exc:
            raise BuiltinError("GET_ERROR", f"cannot read {data.scope}/{data.key}: {exc}") from None
        if value is MISSING:
            return None
        return JSON_NULL if value is None else value

    async def _delete(self, data: StateDeleteInput, ctx: CallContext) -> Any:
        db = self.db
        try:
            old = self._read(data.scope, data.key)
        except sqlite3.Error as exc:
            raise BuiltinError("GET_ERROR", f"cannot read {data.scope}/{data.key}: {exc}") from None
        if old is not MISSING:
            try:
                db.execute("DELETE FROM state WHERE scope = ? AND key = ?", (data.scope, data.key))
                db.commit()
            except sqlite3.Error as exc:
                db.rollback()
                raise BuiltinError("DELETE_ERROR", f"cannot delete {data.scope}/{data.key}: {exc}") from None
        old_value = None if old is MISSING else old
        # Like the real engine, `state:deleted` fires even when nothing was stored (§6.1).
        self._fire("state:deleted", data.scope, data.key, None, old_value)
        if old is MISSING:
            return None
        return JSON_NULL if old is None else old

    async def _update(self, data: StateUpdateInput, ctx: CallContext) -> Any:
        try:
            old = self._read(data.scope, data.key)
        except sqlite3.Error as exc:
            raise BuiltinError("UPDATE_ERROR", f"cannot read {data.scope}/{data.key}: {exc}") from None
        new_value, errors = apply_update_ops(old, data.ops)
        self._write(data.scope, data.key, new_value, "UPDATE_ERROR")
        old_value = None if old is MISSING else old
        self._fire(
            "state:created" if old is MISSING else "state:updated", data.scope, data.key, new_value, old_value
        )
        result: dict[str, Any] = {}
        if errors:
            result["errors"] = [error.to_json() for error in errors]
        result["new_value"] = new_value
        result["old_value"] = old_value
        return result

    async def _list(self, data: StateListInput, ctx: CallContext) -> Any:
        try:
            rows = self.db.execute(
                "SELECT value FROM state WHERE scope = ? ORDER BY seq", (data.scope,)
            ).fetchall()
        except sqlite3.Error as exc:
            raise BuiltinError("LIST_ERROR", f"cannot list scope {data.scope}: {exc}") from None
        return [loads(row[0]) for row in rows]

    async def _list_groups(self, data: StateListGroupsInput, ctx: CallContext) -> Any:
        try:
            rows = self.db.execute("SELECT DISTINCT scope FROM state ORDER BY scope").fetchall()
        except sqlite3.Error as exc:
            raise BuiltinError("LIST_GROUPS_ERROR", f"cannot list scopes: {exc}") from None
        return {"groups": sorted(row[0] for row in rows)}


def _matches(binding: TriggerBinding, scope: str, key: str) -> bool:
    config = binding.config if isinstance(binding.config, dict) else {}
    want_scope = config.get("scope")
    want_key = config.get("key")
    return (want_scope is None or want_scope == scope) and (want_key is None or want_key == key)


BUILTIN = StateWorker
