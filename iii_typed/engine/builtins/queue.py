"""``iii-queue``: durable queues with retries, FIFO groups and a dead-letter queue (protocol.md §4.1, §6.3).

**Enabled by default in this dev engine** (the real engine's in-process ``iii-queue`` is opt-in and
its default provider is the standalone ``queue`` worker), so ``TriggerAction.Enqueue`` works out
of the box. Disable it with ``[queue] enabled = false`` to get the real engine's "no queue
provider" ``enqueue_error``.

Two ways in:

* **Named queues** (``TriggerAction.Enqueue(queue=...)``): the engine calls the provider
  ``engine::queue::enqueue`` with ``{"baggage", "data", "function_id", "messageReceiptId", "queue",
  "traceparent", "namespace"?}`` (§13 X06); the message (id = ``messageReceiptId``) is stored and
  later invokes ``function_id`` with ``data`` (no metadata, no ``_caller_worker_id``). A queue must
  be configured (``default`` always is); an unknown queue or, for a FIFO queue, a payload without a
  non-null ``message_group_field`` is refused (the caller gets ``enqueue_error``).
* **Topics**: ``iii::durable::publish {topic, data}`` → no result (``topic_not_set`` when empty).
  Every distinct function subscribed with a ``durable:subscriber`` binding (config ``{topic,
  condition_function_id?, queue_config?}``) gets its own copy (own message id) of ``data``
  verbatim. ``queue_config`` uses the real engine's camelCase keys: ``type`` (``standard`` |
  ``fifo``), ``maxRetries``, ``concurrency``, ``backoffDelayMs``, ``backoffType`` (``exponential``
  | ``fixed``); ``visibilityTimeout``, ``delaySeconds`` and ``maxPriority`` are accepted and ignored.
  Unknown keys, wrong types and a missing or empty topic are refused (``trigger_registration_failed``;
  the real engine silently ignores them).

Delivery (per named queue, and per topic x subscribed function, a *lane*):

* **At-least-once** (decisions "Policies"). Each delivery first records ``attempt`` in SQLite, then
  invokes the function; success (or a condition answering exactly ``false``) deletes the message.
  After an engine crash an unacknowledged message is delivered again with the same id and
  ``attempt + 1``; without failures each message reaches each subscriber exactly once.
* **Retries**: ``max_retries`` is the most delivery attempts (the real engine's builtin-adapter
  meaning); after failed attempt *n* the next waits ``backoff_ms x 2^(n-1)`` (``fixed``:
  ``backoff_ms``). A failure is an error result, a condition error, or ``invocation_stopped``.
  When the attempts are used up the message moves to the dead-letter queue (DLQ) with the last
  error. Retry classification (non-retryable errors) is out of scope (decisions).
* **Concurrency**: at most ``concurrency`` deliveries of a lane at once. **FIFO**: messages of one
  message group are delivered one at a time in enqueue order, a failing message blocking its group
  until it succeeds or reaches the DLQ; different groups proceed in parallel (up to
  ``concurrency``). A FIFO subscriber lane is one group (strictly serial).
* A message whose target function is not registered (e.g. its worker has not reconnected yet after
  an engine restart), or whose topic lane has no live subscription, waits — re-checked every
  ``poll_interval_ms`` — without using an attempt (a deviation: the real engine counts a failed
  attempt). Deliveries are otherwise event-driven (no polling delay).
* **Trace context** (§4.5): a message keeps the ``traceparent``/``baggage`` it was enqueued with
  (the payload's, else those of the ``engine::queue::enqueue`` call itself) or those of the
  ``iii::durable::publish`` call, stored with it; every delivery attempt and condition call
  carries them — retries, redriven dead letters and deliveries after an engine restart included
  — so the handler's ``execute`` span joins the enqueuer's trace. A message without one (or
  stored by an older engine, whose store gains the columns on start) starts a new trace.
* **Metadata**: like the real engine, deliveries carry no metadata sidecar (§4.4). With
  ``[queue] delivery_metadata = true`` (opt-in, ours) each delivery carries
  ``{"attempt", "max_attempts", "message_id", "queue" | "topic"}`` so a handler can see them.

Dead-letter queue and introspection (queue names resolve to a configured named queue first, then
to a topic): ``iii::queue::redrive {queue}`` (alias ``topic``) → ``{"queue", "redriven"}``;
``iii::queue::redrive_message`` / ``iii::queue::discard_message {queue, message_id}`` →
``{"message_id", "queue", "redriven": 0|1}`` (errors ``queue_not_set``, ``message_id_not_set``);
``engine::queue::list_topics {}`` → ``[{"broker_type", "name", "subscriber_count"}]``
(``builtin`` topics with live subscriptions, ``function_queue`` named queues with their
concurrency); ``engine::queue::topic_stats {topic}`` (alias ``queue``) → ``{"config": null,
"consumer_count", "depth", "dlq_depth"}`` (``depth``: messages not yet acknowledged and not in the
DLQ; ``topic_required`` when empty); ``engine::queue::dlq_topics {}`` → ``[{"broker_type",
"message_count", "topic"}]``; ``engine::queue::dlq_messages {topic, offset=0, limit=50}`` →
``[{"error", "failed_at", "id", "payload", "retries", "size_bytes"}]`` newest first. Redriven
messages start again at attempt 1.

Persistence: in memory without a data folder, else ``<data_dir>/queue.sqlite3`` (an engine restart
loses nothing). ``engine.toml``::

    [queue]
    delivery_metadata = false        # opt-in metadata sidecar on deliveries

    [queue.queue_configs.default]    # always present; these are the defaults
    max_retries = 3                  # most delivery attempts before the DLQ
    concurrency = 10
    type = "standard"                # or "fifo" (needs message_group_field)
    backoff_ms = 1000                # retry n waits backoff_ms * 2^(n-1)
    poll_interval_ms = 100           # re-check interval while a target function is missing

    [queue.queue_configs.payments]
    type = "fifo"
    message_group_field = "account"
"""

from __future__ import annotations

import asyncio
import bisect
import heapq
import logging
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Final
from uuid import uuid4

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from ...errors import InvocationError
from ..config import ConfigError
from ._settings import check_section, check_trigger_config, type_name
from ._sqlite import dumps, loads, open_database
from .base import (
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
    "DEFAULT_QUEUE",
    "DurableSubscriberConfig",
    "EnqueueInput",
    "QueueSettings",
    "QueueWorker",
]

log = logging.getLogger("iii_typed.engine.queue")

DEFAULT_QUEUE: Final = "default"
SUBSCRIBER_TRIGGER: Final = "durable:subscriber"
_SETTING_TYPES: Final = {
    "max_retries": int,
    "concurrency": int,
    "type": str,
    "message_group_field": str,
    "backoff_ms": int,
    "poll_interval_ms": int,
}
_SUBSCRIBER_FIELDS: Final = {"topic": str, "condition_function_id": str, "queue_config": dict}
_SUBSCRIBER_QUEUE_FIELDS: Final = {
    "type": str,
    "maxRetries": int,
    "concurrency": int,
    "backoffDelayMs": int,
    "backoffType": str,
    "visibilityTimeout": int,
    "delaySeconds": int,
    "maxPriority": int,
}


@dataclass(frozen=True, slots=True)
class QueueSettings:
    """Delivery settings of a named queue or a subscriber lane.

    Attributes:
        max_retries: Most delivery attempts before the DLQ (at least one attempt is made).
        concurrency: Most deliveries at once.
        fifo: Deliver each message group in order, one at a time.
        message_group_field: Payload field naming the group (named FIFO queues).
        backoff_ms: Base retry delay in milliseconds.
        exponential: ``backoff_ms x 2^(attempt-1)`` when true, else a fixed ``backoff_ms``.
        poll_interval_ms: Re-check interval while a target function is missing.
    """

    max_retries: int = 3
    concurrency: int = 10
    fifo: bool = False
    message_group_field: str | None = None
    backoff_ms: int = 1000
    exponential: bool = True
    poll_interval_ms: int = 100

    def to_json(self) -> dict[str, Any]:
        """The settings as ``engine.toml`` keys (sorted)."""
        out: dict[str, Any] = {
            "backoff_ms": self.backoff_ms,
            "concurrency": self.concurrency,
            "max_retries": self.max_retries,
        }
        if self.message_group_field is not None:
            out["message_group_field"] = self.message_group_field
        out["poll_interval_ms"] = self.poll_interval_ms
        out["type"] = "fifo" if self.fifo else "standard"
        return out


def _queue_settings(name: str, table: Any) -> QueueSettings:
    where = f"[queue.queue_configs.{name}]"
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    for key, value in table.items():
        expected = _SETTING_TYPES.get(key)
        if expected is None:
            raise ConfigError(
                f"{where} has an unknown key {key!r} (known: {', '.join(sorted(_SETTING_TYPES))})"
            )
        if isinstance(value, bool) or not isinstance(value, expected):
            kind = "an integer" if expected is int else "a string"
            raise ConfigError(f"{where} {key} must be {kind}, got {type_name(value)}")
    settings = QueueSettings(
        max_retries=table.get("max_retries", 3),
        concurrency=table.get("concurrency", 10),
        fifo=table.get("type", "standard") == "fifo",
        message_group_field=table.get("message_group_field"),
        backoff_ms=table.get("backoff_ms", 1000),
        poll_interval_ms=table.get("poll_interval_ms", 100),
    )
    if table.get("type", "standard") not in ("standard", "fifo"):
        raise ConfigError(f'{where} type must be "standard" or "fifo", got {table["type"]!r}')
    if settings.fifo and not settings.message_group_field:
        raise ConfigError(f"{where} is a fifo queue: set message_group_field")
    for key, value, low in (
        ("max_retries", settings.max_retries, 0),
        ("concurrency", settings.concurrency, 1),
        ("backoff_ms", settings.backoff_ms, 0),
        ("poll_interval_ms", settings.poll_interval_ms, 1),
    ):
        if value < low:
            raise ConfigError(f"{where} {key} must be >= {low}, got {value}")
    return settings


def _subscriber_settings(raw: dict[str, Any]) -> QueueSettings:
    for key, value in raw.items():
        expected = _SUBSCRIBER_QUEUE_FIELDS.get(key)
        if expected is None:
            known = ", ".join(sorted(_SUBSCRIBER_QUEUE_FIELDS))
            raise TriggerRegistrationError(
                f"durable:subscriber queue_config has an unknown field {key!r} (known fields: {known})"
            )
        if isinstance(value, bool) or not isinstance(value, expected):
            kind = "an integer" if expected is int else "a string"
            raise TriggerRegistrationError(
                f"durable:subscriber queue_config field {key!r} must be {kind}, got {type_name(value)}"
            )
    mode = raw.get("type", "standard")
    if mode not in ("standard", "fifo", "concurrent"):
        raise TriggerRegistrationError(
            f"durable:subscriber queue_config type must be standard or fifo, got {mode!r}"
        )
    backoff_type = raw.get("backoffType", "exponential")
    if backoff_type not in ("exponential", "fixed"):
        raise TriggerRegistrationError(
            f"durable:subscriber queue_config backoffType must be exponential or fixed, got {backoff_type!r}"
        )
    settings = QueueSettings(
        max_retries=raw.get("maxRetries", 3),
        concurrency=raw.get("concurrency", 10),
        fifo=mode == "fifo",
        backoff_ms=raw.get("backoffDelayMs", 1000),
        exponential=backoff_type == "exponential",
    )
    for key, value, low in (
        ("maxRetries", settings.max_retries, 0),
        ("concurrency", settings.concurrency, 1),
        ("backoffDelayMs", settings.backoff_ms, 0),
    ):
        if value < low:
            raise TriggerRegistrationError(
                f"durable:subscriber queue_config {key} must be >= {low}, got {value}"
            )
    return settings


# -- function inputs ---------------------------------------------------------------------------
class EnqueueInput(BaseModel):
    """``engine::queue::enqueue`` input (§13 X06)."""

    model_config = ConfigDict(populate_by_name=True)

    queue: str = Field(description="Named queue.")
    function_id: str = Field(description="Function each delivery invokes.")
    data: Any = Field(default=None, description="Payload of the function.")
    message_receipt_id: str | None = Field(
        default=None, validation_alias=AliasChoices("messageReceiptId", "message_receipt_id")
    )
    namespace: str | None = Field(default=None, description="Namespace of the function (default `default`).")
    traceparent: str | None = None
    baggage: str | None = None


class EnqueueResult(BaseModel):
    """``engine::queue::enqueue`` result."""

    messageReceiptId: str


class PublishInput(BaseModel):
    """``iii::durable::publish`` input."""

    topic: str = Field(description="Topic; every subscribed function gets a copy.")
    data: Any = Field(description="Delivered verbatim.")


class RedriveInput(BaseModel):
    """``iii::queue::redrive`` input."""

    queue: str = Field(validation_alias=AliasChoices("queue", "topic"), description="Named queue or topic.")


class RedriveMessageInput(BaseModel):
    """``iii::queue::redrive_message`` / ``iii::queue::discard_message`` input."""

    queue: str = Field(validation_alias=AliasChoices("queue", "topic"), description="Named queue or topic.")
    message_id: str = Field(description="Id of a dead-letter message (engine::queue::dlq_messages).")


class TopicStatsInput(BaseModel):
    """``engine::queue::topic_stats`` input."""

    topic: str = Field(validation_alias=AliasChoices("topic", "queue"), description="Topic or named queue.")


class DlqMessagesInput(BaseModel):
    """``engine::queue::dlq_messages`` input."""

    topic: str = Field(validation_alias=AliasChoices("topic", "queue"), description="Topic or named queue.")
    offset: int = Field(default=0, ge=0, description="Messages to skip.")
    limit: int = Field(default=50, ge=0, description="Most messages to return.")


class _NoInput(BaseModel):
    """No fields."""


class DurableSubscriberConfig(BaseModel):
    """Config of a ``durable:subscriber`` binding."""

    topic: str = Field(description="Topic to consume.")
    condition_function_id: str | None = Field(
        default=None, description="Called per message; `false` skips it."
    )
    queue_config: dict[str, Any] | None = Field(
        default=None,
        description="Keys type, maxRetries, concurrency, backoffDelayMs, backoffType (camelCase).",
    )


# -- in-memory model ---------------------------------------------------------------------------
@dataclass(eq=False, slots=True)
class _Message:
    id: str
    kind: str  # "queue" | "topic"
    name: str
    function_id: str
    namespace: str
    data: Any
    group: str | None
    attempts: int
    max_attempts: int
    backoff_ms: int
    exponential: bool
    available_at: float
    seq: int
    traceparent: str | None = None  # the publishing call's trace context (§4.5), kept for
    baggage: str | None = None  # every delivery attempt, redrive and restart

    def retry_delay(self) -> float:
        factor = 2 ** max(self.attempts - 1, 0) if self.exponential else 1
        return self.backoff_ms * factor / 1000.0


@dataclass(eq=False)
class _Lane:
    """The messages of one named queue, or of one topic x subscribed function."""

    kind: str
    name: str
    function_id: str | None  # topic lanes
    namespace: str
    settings: QueueSettings
    ready: list[tuple[float, int, _Message]] = field(default_factory=list)  # standard: heap
    groups: dict[str, list[_Message]] = field(default_factory=dict)  # fifo: by seq
    busy_groups: set[str] = field(default_factory=set)
    inflight: int = 0
    subscribers: dict[str, TriggerBinding] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    @property
    def label(self) -> str:
        return self.name if self.kind == "queue" else f"{self.name} → {self.function_id}"

    def add(self, message: _Message) -> None:
        if self.settings.fifo:
            group = self.groups.setdefault(message.group or "", [])
            if not group or group[-1].seq < message.seq:
                group.append(message)
            else:
                index = bisect.bisect_left(group, message.seq, key=lambda m: m.seq)
                if index == 0 and (message.group or "") in self.busy_groups:
                    index = 1  # never in front of the message being delivered
                group.insert(index, message)
        else:
            heapq.heappush(self.ready, (message.available_at, message.seq, message))
        self.wake.set()

    def pending(self) -> int:
        if self.settings.fifo:
            return sum(len(group) for group in self.groups.values())
        return len(self.ready) + self.inflight


class QueueWorker(BuiltinWorker):
    """The ``iii-queue`` built-in (see the module docstring)."""

    name: ClassVar[str] = "iii-queue"
    section: ClassVar[str] = "queue"
    description: ClassVar[str] = "Durable queues: enqueue, durable topics, retries, FIFO, dead letters"
    order: ClassVar[int] = 60

    def __init__(self, services: EngineServices) -> None:
        super().__init__(services)
        table = services.section(self.section)
        check_section(self.section, table, {"queue_configs": dict, "delivery_metadata": bool})
        configs: dict[str, QueueSettings] = {DEFAULT_QUEUE: QueueSettings()}
        for name, queue_table in dict(table.get("queue_configs", {})).items():
            configs[name] = _queue_settings(name, queue_table)
        self.queues = configs
        self.delivery_metadata: bool = table.get("delivery_metadata", False)
        self._lanes: dict[tuple[str, str, str, str], _Lane] = {}
        self._db: sqlite3.Connection | None = None
        self._seq = 0
        self._stopping = False

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        """Open the store and load every undelivered message."""
        db = open_database(
            self.services.data_dir,
            "queue",
            (
                "CREATE TABLE IF NOT EXISTS messages ("
                " id TEXT PRIMARY KEY, kind TEXT NOT NULL, name TEXT NOT NULL, function_id TEXT NOT NULL,"
                " namespace TEXT NOT NULL, data TEXT NOT NULL, grp TEXT, attempts INTEGER NOT NULL,"
                " max_attempts INTEGER NOT NULL, backoff_ms INTEGER NOT NULL, exponential INTEGER NOT NULL,"
                " available_at REAL NOT NULL, seq INTEGER NOT NULL, state TEXT NOT NULL, error TEXT,"
                " failed_at INTEGER, created_at INTEGER NOT NULL)",
                "CREATE INDEX IF NOT EXISTS messages_lane ON messages (kind, name, state)",
            ),
            # added later: a data folder of an older engine gets them (NULL: no trace context)
            columns={"messages": {"traceparent": "TEXT", "baggage": "TEXT"}},
        )
        self._db = db
        self._seq = int(db.execute("SELECT COALESCE(MAX(seq), 0) FROM messages").fetchone()[0])
        loaded = 0
        for row in db.execute(
            "SELECT id, kind, name, function_id, namespace, data, grp, attempts, max_attempts, backoff_ms,"
            " exponential, available_at, seq, traceparent, baggage FROM messages WHERE state = 'ready'"
            " ORDER BY seq"
        ):
            message = _Message(
                id=row[0],
                kind=row[1],
                name=row[2],
                function_id=row[3],
                namespace=row[4],
                data=loads(row[5]),
                group=row[6],
                attempts=row[7],
                max_attempts=row[8],
                backoff_ms=row[9],
                exponential=bool(row[10]),
                available_at=row[11],
                seq=row[12],
                traceparent=row[13],
                baggage=row[14],
            )
            self._lane_for(message).add(message)
            loaded += 1
        if loaded:
            log.info("queue: %d undelivered message(s) restored", loaded)

    async def stop(self) -> None:
        """Stop delivering; undelivered messages stay stored (delivered after a restart)."""
        self._stopping = True
        tasks = [lane.task for lane in self._lanes.values() if lane.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._db is not None:
            self._db.close()
            self._db = None

    # -- declarations --------------------------------------------------------------------------
    def functions(self) -> Sequence[BuiltinFunction]:
        """The enqueue provider, durable publish, DLQ management and introspection."""
        return (
            BuiltinFunction(
                "engine::queue::enqueue",
                self._enqueue,
                "Store a message of a named queue (the provider of TriggerAction.Enqueue)",
                input_model=EnqueueInput,
                output_model=EnqueueResult,
            ),
            BuiltinFunction(
                "iii::durable::publish",
                self._publish,
                "Publish a durable message to every function subscribed to a topic",
                input_model=PublishInput,
            ),
            BuiltinFunction(
                "iii::queue::redrive",
                self._redrive,
                "Move every dead-letter message of a queue or topic back to delivery",
                input_model=RedriveInput,
            ),
            BuiltinFunction(
                "iii::queue::redrive_message",
                self._redrive_message,
                "Move one dead-letter message back to delivery",
                input_model=RedriveMessageInput,
            ),
            BuiltinFunction(
                "iii::queue::discard_message",
                self._discard_message,
                "Delete one dead-letter message",
                input_model=RedriveMessageInput,
            ),
            BuiltinFunction(
                "engine::queue::list_topics",
                self._list_topics,
                "List topics and named queues",
                input_model=_NoInput,
            ),
            BuiltinFunction(
                "engine::queue::topic_stats",
                self._topic_stats,
                "Depth, consumers and dead letters of a topic or named queue",
                input_model=TopicStatsInput,
            ),
            BuiltinFunction(
                "engine::queue::dlq_topics",
                self._dlq_topics,
                "Dead-letter counts per topic and named queue",
                input_model=_NoInput,
            ),
            BuiltinFunction(
                "engine::queue::dlq_messages",
                self._dlq_messages,
                "Browse the dead-letter messages of a topic or named queue",
                input_model=DlqMessagesInput,
            ),
        )

    def trigger_types(self) -> Sequence[BuiltinTriggerType]:
        """``durable:subscriber``."""
        return (
            BuiltinTriggerType(
                SUBSCRIBER_TRIGGER,
                "Consumes a durable topic with retries and a dead-letter queue",
                register=self._subscribe,
                unregister=self._unsubscribe,
                trigger_request_format=DurableSubscriberConfig.model_json_schema(),
            ),
        )

    # -- lanes ---------------------------------------------------------------------------------
    @property
    def db(self) -> sqlite3.Connection:
        """The open store."""
        if self._db is None:
            raise BuiltinError("queue_unavailable", "the queue store is closed (the engine is stopping)")
        return self._db

    def _lane(self, kind: str, name: str, function_id: str, namespace: str, *, fifo: bool = False) -> _Lane:
        key = (kind, name, function_id if kind == "topic" else "", namespace if kind == "topic" else "")
        lane = self._lanes.get(key)
        if lane is None:
            if kind == "queue":
                settings = self.queues.get(name)
                if settings is None:
                    log.warning(
                        "queue %r is not configured any more; its stored messages use the defaults", name
                    )
                    settings = QueueSettings()
            else:
                settings = QueueSettings(fifo=fifo)
            lane = _Lane(kind, name, function_id if kind == "topic" else None, namespace, settings)
            self._lanes[key] = lane
            if not self._stopping:
                lane.task = self.services.spawn(self._run_lane(lane), name=f"queue-lane:{lane.label}")
        return lane

    def _lane_for(self, message: _Message) -> _Lane:
        # A topic lane restored before its subscriber re-registers keeps the FIFO mode its
        # messages were queued with (they carry a group).
        return self._lane(
            message.kind, message.name, message.function_id, message.namespace, fifo=message.group is not None
        )

    def _topic_lanes(self, topic: str) -> list[_Lane]:
        return [lane for lane in self._lanes.values() if lane.kind == "topic" and lane.name == topic]

    def _resolve(self, name: str) -> tuple[str, list[_Lane]]:
        """``("queue", [lane])`` for a configured named queue, else ``("topic", lanes)``."""
        if name in self.queues:
            return "queue", [self._lane("queue", name, "", "")]
        return "topic", self._topic_lanes(name)

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _store(self, messages: Iterable[_Message]) -> list[_Message]:
        """Insert messages (ignoring ids already stored) and commit; returns the new ones."""
        db = self.db
        now_ms = int(time.time() * 1000)
        stored: list[_Message] = []
        try:
            for m in messages:
                cursor = db.execute(
                    "INSERT OR IGNORE INTO messages (id, kind, name, function_id, namespace, data, grp,"
                    " attempts, max_attempts, backoff_ms, exponential, available_at, seq, state, created_at,"
                    " traceparent, baggage) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'ready', ?, ?, ?)",
                    (
                        m.id,
                        m.kind,
                        m.name,
                        m.function_id,
                        m.namespace,
                        dumps(m.data),
                        m.group,
                        m.attempts,
                        m.max_attempts,
                        m.backoff_ms,
                        int(m.exponential),
                        m.available_at,
                        m.seq,
                        now_ms,
                        m.traceparent,
                        m.baggage,
                    ),
                )
                if cursor.rowcount:
                    stored.append(m)
            db.commit()
        except sqlite3.Error as exc:
            db.rollback()
            raise BuiltinError("enqueue_error", f"cannot store the message: {exc}") from None
        return stored

    # -- delivery ------------------------------------------------------------------------------
    async def _run_lane(self, lane: _Lane) -> None:
        """Dispatch loop of one lane: start deliveries as slots, due times and subscribers allow."""
        while True:
            lane.wake.clear()
            next_at = self._dispatch(lane)
            if next_at is None:
                await lane.wake.wait()
                continue
            try:
                await asyncio.wait_for(lane.wake.wait(), max(next_at - time.time(), 0.0))
            except TimeoutError:
                pass

    def _dispatch(self, lane: _Lane) -> float | None:
        """Start what can start now; return when to look again (``None``: wait for an event)."""
        if self._stopping or getattr(self.services, "stopping", False):
            return None  # the engine is shutting down: start nothing (no attempt is spent)
        if lane.kind == "topic" and not lane.subscribers:
            return None  # no live subscription: messages wait
        settings = lane.settings
        now = time.time()
        poll = settings.poll_interval_ms / 1000.0
        if settings.fifo:
            next_at: float | None = None
            for group_id, group in lane.groups.items():
                if lane.inflight >= settings.concurrency:
                    return None
                if not group or group_id in lane.busy_groups:
                    continue
                head = group[0]
                if head.available_at > now:
                    next_at = head.available_at if next_at is None else min(next_at, head.available_at)
                    continue
                if not self.services.function_exists(head.function_id, head.namespace):
                    head.available_at = now + poll
                    next_at = head.available_at if next_at is None else min(next_at, head.available_at)
                    continue
                lane.busy_groups.add(group_id)
                self._start(lane, head)
            return next_at
        while lane.ready and lane.inflight < settings.concurrency:
            available_at, _, message = lane.ready[0]
            if available_at > now:
                return available_at
            heapq.heappop(lane.ready)
            if not self.services.function_exists(message.function_id, message.namespace):
                message.available_at = now + poll
                heapq.heappush(lane.ready, (message.available_at, message.seq, message))
                continue
            self._start(lane, message)
        return None

    def _start(self, lane: _Lane, message: _Message) -> None:
        lane.inflight += 1
        message.attempts += 1
        try:
            self.db.execute("UPDATE messages SET attempts = ? WHERE id = ?", (message.attempts, message.id))
            self.db.commit()
        except (sqlite3.Error, BuiltinError) as exc:
            log.error("queue: cannot record the attempt of message %s: %s", message.id, exc)
        self.services.spawn(self._deliver(lane, message), name=f"queue-deliver:{lane.label}")

    async def _deliver(self, lane: _Lane, message: _Message) -> None:
        error: str | None = None
        try:
            condition = None
            if lane.kind == "topic":
                for binding in lane.subscribers.values():
                    condition = binding.condition_function_id
                    break
            skip = False
            # every attempt continues the trace of the call that enqueued or published (§4.5)
            traceparent, baggage = message.traceparent, message.baggage
            if condition is not None:
                try:
                    skip = (
                        await self.services.invoke(
                            condition,
                            message.data,
                            namespace=message.namespace,
                            traceparent=traceparent,
                            baggage=baggage,
                        )
                    ) is False
                except InvocationError as exc:
                    error = f"condition {condition} failed: {exc.code}: {exc.message}"
            if error is None and not skip:
                metadata = None
                if self.delivery_metadata:
                    metadata = {
                        "attempt": message.attempts,
                        "max_attempts": max(message.max_attempts, 1),
                        "message_id": message.id,
                        ("queue" if message.kind == "queue" else "topic"): message.name,
                    }
                try:
                    await self.services.invoke(
                        message.function_id,
                        message.data,
                        namespace=message.namespace,
                        metadata=metadata,
                        traceparent=traceparent,
                        baggage=baggage,
                    )
                except InvocationError as exc:
                    error = f"{exc.code}: {exc.message}"
        finally:
            lane.inflight -= 1
            if lane.settings.fifo:
                lane.busy_groups.discard(message.group or "")
            lane.wake.set()
        if self._stopping or getattr(self.services, "stopping", False):
            return  # interrupted by shutdown: redelivered after the restart with attempt + 1
        if error is None:
            self._ack(lane, message)
        else:
            self._nack(lane, message, error)

    def _remove_from_group(self, lane: _Lane, message: _Message) -> None:
        group = lane.groups.get(message.group or "")
        if group is not None:
            if group and group[0] is message:
                group.pop(0)
            elif message in group:
                group.remove(message)
            if not group:
                del lane.groups[message.group or ""]

    def _ack(self, lane: _Lane, message: _Message) -> None:
        if lane.settings.fifo:
            self._remove_from_group(lane, message)
        try:
            self.db.execute("DELETE FROM messages WHERE id = ?", (message.id,))
            self.db.commit()
        except (sqlite3.Error, BuiltinError) as exc:
            log.error("queue: cannot acknowledge message %s: %s", message.id, exc)
        lane.wake.set()

    def _nack(self, lane: _Lane, message: _Message, error: str) -> None:
        now = time.time()
        db = self.db
        if message.attempts >= max(message.max_attempts, 1):
            if lane.settings.fifo:
                self._remove_from_group(lane, message)
            log.warning(
                "queue %s: message %s failed %d time(s); moved to the dead-letter queue (%s)",
                lane.label,
                message.id,
                message.attempts,
                error,
            )
            try:
                db.execute(
                    "UPDATE messages SET state = 'dlq', error = ?, failed_at = ? WHERE id = ?",
                    (error, int(now * 1000), message.id),
                )
                db.commit()
            except sqlite3.Error as exc:
                log.error("queue: cannot move message %s to the dead-letter queue: %s", message.id, exc)
        else:
            message.available_at = now + message.retry_delay()
            log.info(
                "queue %s: message %s attempt %d failed (%s); retry in %.3f s",
                lane.label,
                message.id,
                message.attempts,
                error,
                message.available_at - now,
            )
            try:
                db.execute(
                    "UPDATE messages SET available_at = ? WHERE id = ?", (message.available_at, message.id)
                )
                db.commit()
            except sqlite3.Error as exc:
                log.error("queue: cannot reschedule message %s: %s", message.id, exc)
            if not lane.settings.fifo:
                heapq.heappush(lane.ready, (message.available_at, message.seq, message))
        lane.wake.set()

    # -- trigger type --------------------------------------------------------------------------
    async def _subscribe(self, binding: TriggerBinding) -> None:
        config = check_trigger_config(SUBSCRIBER_TRIGGER, binding.config, _SUBSCRIBER_FIELDS)
        topic = config.get("topic")
        if not topic:
            raise TriggerRegistrationError("durable:subscriber trigger config needs a non-empty 'topic'")
        settings = _subscriber_settings(config.get("queue_config") or {})
        lane = self._lane("topic", topic, binding.function_id, binding.namespace)
        if lane.settings.fifo != settings.fifo and lane.pending():
            # Regrouping stored messages is not supported: keep the mode they were queued with.
            settings = replace(settings, fifo=lane.settings.fifo)
        lane.settings = settings
        lane.subscribers[binding.id] = binding
        lane.wake.set()

    async def _unsubscribe(self, binding: TriggerBinding) -> None:
        config = binding.config if isinstance(binding.config, dict) else {}
        topic = config.get("topic")
        if not isinstance(topic, str):
            return
        key = ("topic", topic, binding.function_id, binding.namespace)
        lane = self._lanes.get(key)
        if lane is not None:
            lane.subscribers.pop(binding.id, None)

    # -- functions -----------------------------------------------------------------------------
    async def _enqueue(self, data: EnqueueInput, ctx: CallContext) -> Any:
        settings = self.queues.get(data.queue)
        if settings is None:
            known = ", ".join(sorted(self.queues))
            raise BuiltinError(
                "enqueue_error",
                f"Queue '{data.queue}' is not configured (configured queues: {known}; "
                "add [queue.queue_configs.<name>] to engine.toml)",
            )
        group: str | None = None
        if settings.fifo:
            field_name = settings.message_group_field or ""
            payload = data.data
            if not isinstance(payload, dict) or payload.get(field_name) is None:
                raise BuiltinError(
                    "enqueue_error",
                    f"FIFO queue '{data.queue}' needs a non-null '{field_name}' field in the data "
                    "(its message_group_field)",
                )
            group = dumps(payload[field_name])
        receipt = data.message_receipt_id or str(uuid4())
        traceparent, baggage = data.traceparent or None, data.baggage or None
        if traceparent is None and baggage is None:  # called directly: the call's own context
            traceparent, baggage = ctx.traceparent, ctx.baggage
        message = _Message(
            id=receipt,
            kind="queue",
            name=data.queue,
            function_id=data.function_id,
            namespace=data.namespace or "default",
            data=data.data,
            group=group,
            attempts=0,
            max_attempts=settings.max_retries,
            backoff_ms=settings.backoff_ms,
            exponential=settings.exponential,
            available_at=time.time(),
            seq=self._next_seq(),
            traceparent=traceparent,
            baggage=baggage,
        )
        for stored in self._store([message]):
            self._lane_for(stored).add(stored)
        return {"messageReceiptId": receipt}

    async def _publish(self, data: PublishInput, ctx: CallContext) -> Any:
        if data.topic == "":
            raise BuiltinError("topic_not_set", "iii::durable::publish needs a non-empty topic")
        now = time.time()
        targets: dict[tuple[str, str], _Lane] = {}
        for lane in self._topic_lanes(data.topic):
            if lane.subscribers and lane.function_id is not None:
                targets.setdefault((lane.namespace, lane.function_id), lane)
        if not targets:
            log.info("iii::durable::publish to %r: no subscriber, the message is dropped", data.topic)
            return None
        messages = [
            _Message(
                id=str(uuid4()),
                kind="topic",
                name=data.topic,
                function_id=function_id,
                namespace=namespace,
                data=data.data,
                group="" if lane.settings.fifo else None,
                attempts=0,
                max_attempts=lane.settings.max_retries,
                backoff_ms=lane.settings.backoff_ms,
                exponential=lane.settings.exponential,
                available_at=now,
                seq=self._next_seq(),
                traceparent=ctx.traceparent,
                baggage=ctx.baggage,
            )
            for (namespace, function_id), lane in targets.items()
        ]
        for stored in self._store(messages):
            self._lane_for(stored).add(stored)
        return None

    def _dlq_where(self, name: str) -> tuple[str, tuple[Any, ...]]:
        kind = "queue" if name in self.queues else "topic"
        return "kind = ? AND name = ? AND state = 'dlq'", (kind, name)

    def _revive(self, rows: list[Any], name: str) -> int:
        """Put dead-letter rows back into delivery (attempt count reset)."""
        now = time.time()
        db = self.db
        revived = 0
        try:
            for row in rows:
                message = _Message(
                    id=row[0],
                    kind=row[1],
                    name=row[2],
                    function_id=row[3],
                    namespace=row[4],
                    data=loads(row[5]),
                    group=row[6],
                    attempts=0,
                    max_attempts=row[7],
                    backoff_ms=row[8],
                    exponential=bool(row[9]),
                    available_at=now,
                    seq=row[10],
                    traceparent=row[11],
                    baggage=row[12],
                )
                db.execute(
                    "UPDATE messages SET state = 'ready', attempts = 0, available_at = ?, error = NULL,"
                    " failed_at = NULL WHERE id = ?",
                    (now, message.id),
                )
                self._lane_for(message).add(message)
                revived += 1
            db.commit()
        except sqlite3.Error as exc:
            db.rollback()
            raise BuiltinError(
                "redrive_failed", f"cannot redrive the dead letters of '{name}': {exc}"
            ) from None
        return revived

    _ROW = (
        "id, kind, name, function_id, namespace, data, grp, max_attempts, backoff_ms, exponential, seq,"
        " traceparent, baggage"
    )

    async def _redrive(self, data: RedriveInput, ctx: CallContext) -> Any:
        if data.queue == "":
            raise BuiltinError("queue_not_set", "a queue (or topic) name is required")
        where, params = self._dlq_where(data.queue)
        rows = self.db.execute(
            f"SELECT {self._ROW} FROM messages WHERE {where} ORDER BY seq", params
        ).fetchall()
        return {"queue": data.queue, "redriven": self._revive(rows, data.queue)}

    def _check_single(self, data: RedriveMessageInput) -> None:
        if data.queue == "":
            raise BuiltinError("queue_not_set", "a queue (or topic) name is required")
        if data.message_id == "":
            raise BuiltinError("message_id_not_set", "a message_id is required")

    async def _redrive_message(self, data: RedriveMessageInput, ctx: CallContext) -> Any:
        self._check_single(data)
        where, params = self._dlq_where(data.queue)
        rows = self.db.execute(
            f"SELECT {self._ROW} FROM messages WHERE {where} AND id = ?", (*params, data.message_id)
        ).fetchall()
        return {
            "message_id": data.message_id,
            "queue": data.queue,
            "redriven": self._revive(rows, data.queue),
        }

    async def _discard_message(self, data: RedriveMessageInput, ctx: CallContext) -> Any:
        self._check_single(data)
        where, params = self._dlq_where(data.queue)
        db = self.db
        try:
            cursor = db.execute(f"DELETE FROM messages WHERE {where} AND id = ?", (*params, data.message_id))
            db.commit()
        except sqlite3.Error as exc:
            db.rollback()
            raise BuiltinError("discard_message_failed", f"cannot discard {data.message_id}: {exc}") from None
        return {"message_id": data.message_id, "queue": data.queue, "redriven": 1 if cursor.rowcount else 0}

    def _live_topics(self) -> dict[str, int]:
        topics: dict[str, int] = {}
        for lane in self._lanes.values():
            if lane.kind == "topic" and lane.subscribers:
                topics[lane.name] = topics.get(lane.name, 0) + len(lane.subscribers)
        return topics

    def _dlq_counts(self) -> dict[tuple[str, str], int]:
        rows = self.db.execute(
            "SELECT kind, name, COUNT(*) FROM messages WHERE state = 'dlq' GROUP BY kind, name"
        )
        return {(row[0], row[1]): int(row[2]) for row in rows}

    async def _list_topics(self, data: _NoInput, ctx: CallContext) -> Any:
        rows = [
            {"broker_type": "builtin", "name": topic, "subscriber_count": count}
            for topic, count in self._live_topics().items()
            if topic not in self.queues
        ]
        rows += [
            {"broker_type": "function_queue", "name": name, "subscriber_count": settings.concurrency}
            for name, settings in self.queues.items()
        ]
        return sorted(rows, key=lambda row: (row["name"], row["broker_type"]))

    async def _topic_stats(self, data: TopicStatsInput, ctx: CallContext) -> Any:
        if data.topic == "":
            raise BuiltinError("topic_required", "topic is required")
        kind, lanes = self._resolve(data.topic)
        if kind == "queue":
            consumers = self.queues[data.topic].concurrency
        else:
            consumers = sum(len(lane.subscribers) for lane in lanes)
        dlq = self._dlq_counts().get((kind, data.topic), 0)
        return {
            "config": None,
            "consumer_count": consumers,
            "depth": sum(lane.pending() for lane in lanes),
            "dlq_depth": dlq,
        }

    async def _dlq_topics(self, data: _NoInput, ctx: CallContext) -> Any:
        counts = self._dlq_counts()
        topics = set(self._live_topics()) | {name for (kind, name) in counts if kind == "topic"}
        rows = [
            {"broker_type": "builtin", "message_count": counts.get(("topic", topic), 0), "topic": topic}
            for topic in topics
            if topic not in self.queues
        ]
        rows += [
            {"broker_type": "function_queue", "message_count": counts.get(("queue", name), 0), "topic": name}
            for name in self.queues
        ]
        return sorted(rows, key=lambda row: (row["topic"], row["broker_type"]))

    async def _dlq_messages(self, data: DlqMessagesInput, ctx: CallContext) -> Any:
        if data.topic == "":
            raise BuiltinError("topic_required", "topic is required")
        where, params = self._dlq_where(data.topic)
        rows = self.db.execute(
            f"SELECT id, data, error, failed_at, attempts FROM messages WHERE {where}"
            " ORDER BY failed_at DESC, seq DESC LIMIT ? OFFSET ?",
            (*params, data.limit, data.offset),
        ).fetchall()
        return [
            {
                "error": row[2] or "",
                "failed_at": int(row[3] or 0),
                "id": row[0],
                "payload": loads(row[1]),
                "retries": int(row[4]),
                "size_bytes": len(row[1].encode("utf-8")),
            }
            for row in rows
        ]


BUILTIN = QueueWorker
