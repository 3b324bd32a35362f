"""The trigger-type registry and its bindings (protocol.md §2.3-§2.7, §3.6, §11; cases.md B06/B07).

Trigger types are provided either by a WebSocket worker (``registertriggertype``) or by a built-in
worker, keyed by ``(namespace, type_id)``. Bindings (``registertrigger`` or
``engine::register_trigger``) are keyed by trigger id and are either

* **active** — delivered to a provider: a ``registertrigger`` frame was sent to the WebSocket
  provider, or the built-in's ``register`` callback accepted it; or
* **pending** (parked) — no provider resolves yet, the provider went away, or it answered with an
  error. A parked binding is replayed, with the same trigger id, as soon as a provider for its
  type (re)appears.

Provider resolution: an explicit ``trigger_namespace`` is strict; otherwise the registering
connection's namespace is tried first, then ``default``. When a provider disconnects its live
bindings fall back to another provider or are parked. When the registering worker disconnects
its bindings are removed and unregistered at their providers; durable bindings (no owner) stay.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from uuid import uuid4

from ..protocol import codec
from ..protocol.frames import (
    DEFAULT_NAMESPACE,
    ErrorBody,
    RegisterTrigger,
    RegisterTriggerType,
    TriggerRegistrationResult,
    UnregisterTrigger,
    UnregisterTriggerType,
)
from .builtins.base import BuiltinError, BuiltinTriggerType, TriggerBinding, TriggerRegistrationError

if TYPE_CHECKING:
    from .connection import WorkerConnection
    from .router import Router

__all__ = [
    "INVALID_NAMESPACE_MESSAGE",
    "PROVIDER_ACK_TIMEOUT",
    "TriggerRegistry",
    "TriggerTypeEntry",
    "invalid_namespace_message",
]

log = logging.getLogger("iii_typed.engine.triggers")

#: Seconds ``engine::register_trigger`` waits for a WebSocket provider's acknowledgement (§7).
PROVIDER_ACK_TIMEOUT = 10.0


def invalid_namespace_message(field_name: str = "namespace") -> str:
    """The real engine's message for a blank namespace field (protocol.md §4.7)."""
    return (
        f"`{field_name}` is empty: it was named and left blank. Give it a name, or omit it to use `default`."
    )


INVALID_NAMESPACE_MESSAGE = invalid_namespace_message()


@dataclass(eq=False, slots=True)
class TriggerTypeEntry:
    """A registered trigger type.

    Attributes:
        id: Type id.
        namespace: Provider namespace.
        description: Description.
        trigger_request_format: Schema of a binding's ``config``.
        call_request_format: Schema of the payload handlers get.
        provider: The WebSocket provider, or ``None`` for a built-in type.
        builtin: The built-in type, or ``None``.
        builtin_worker: Name of the built-in worker providing it.
        bound: Active bindings on this provider, by trigger id.
        registered_at_ms: Registration time, Unix milliseconds.
    """

    id: str
    namespace: str
    description: str
    trigger_request_format: Any = None
    call_request_format: Any = None
    provider: WorkerConnection | None = None
    builtin: BuiltinTriggerType | None = None
    builtin_worker: str | None = None
    bound: dict[str, TriggerBinding] = field(default_factory=dict)
    registered_at_ms: int = field(default_factory=lambda: int(time.time() * 1000))

    @property
    def key(self) -> tuple[str, str]:
        """``(namespace, id)``."""
        return (self.namespace, self.id)

    @property
    def worker_name(self) -> str:
        """Name of the providing worker (the built-in's name, else the connection's)."""
        if self.builtin_worker is not None:
            return self.builtin_worker
        if self.provider is not None and self.provider.name:
            return self.provider.name
        return self.id.split("::", 1)[0]

    @property
    def internal(self) -> bool:
        """``engine::*`` types are hidden from listings unless asked (§7)."""
        return self.id.startswith("engine::")


def _error_dict(error: ErrorBody) -> dict[str, Any]:
    return {"code": error.code, "message": error.message}


class TriggerRegistry:
    """Trigger types, bindings, parking and replay.

    Args:
        router: The engine core (connections, sending, task spawning).
    """

    def __init__(self, router: Router) -> None:
        self._router = router
        self.types: dict[tuple[str, str], TriggerTypeEntry] = {}
        self.bindings: dict[str, TriggerBinding] = {}
        self.active: dict[str, TriggerTypeEntry] = {}
        self._acks: dict[str, asyncio.Future[dict[str, Any] | None]] = {}

    # -- lookups ---------------------------------------------------------------------------
    def resolve(self, binding: TriggerBinding) -> TriggerTypeEntry | None:
        """The provider a binding should use now, or ``None`` (it stays parked)."""
        if binding.trigger_namespace is not None:
            return self.types.get((binding.trigger_namespace, binding.trigger_type))
        entry = self.types.get((binding.owner_namespace, binding.trigger_type))
        if entry is None and binding.owner_namespace != DEFAULT_NAMESPACE:
            entry = self.types.get((DEFAULT_NAMESPACE, binding.trigger_type))
        return entry

    def builtin_bindings(self, trigger_type: str) -> list[TriggerBinding]:
        """Active bindings of the built-in type ``trigger_type`` (namespace ``default``)."""
        entry = self.types.get((DEFAULT_NAMESPACE, trigger_type))
        if entry is None:
            return []
        return list(entry.bound.values())

    def provider_of(self, binding_id: str) -> TriggerTypeEntry | None:
        """The provider an active binding is delivered to."""
        return self.active.get(binding_id)

    # -- trigger types ---------------------------------------------------------------------
    def add_builtin_type(self, builtin: BuiltinTriggerType, worker_name: str) -> None:
        """Register a built-in trigger type in namespace ``default``."""
        self.types[(DEFAULT_NAMESPACE, builtin.id)] = TriggerTypeEntry(
            id=builtin.id,
            namespace=DEFAULT_NAMESPACE,
            description=builtin.description,
            trigger_request_format=builtin.trigger_request_format,
            call_request_format=builtin.call_request_format,
            builtin=builtin,
            builtin_worker=worker_name,
        )

    async def register_type(self, conn: WorkerConnection, frame: RegisterTriggerType) -> None:
        """``registertriggertype`` (§2.3): become the provider and replay bindings."""
        namespace = frame.namespace if frame.namespace is not None else (conn.namespace or DEFAULT_NAMESPACE)
        if not namespace.strip():
            log.warning("registertriggertype %r from worker %s ignored: blank namespace", frame.id, conn.id)
            return
        key = (namespace, frame.id)
        old = self.types.get(key)
        if old is not None and old.builtin is not None:
            log.warning(
                "registertriggertype %r from worker %s ignored: the type is provided by the built-in "
                "worker %s",
                frame.id,
                conn.id,
                old.builtin_worker,
            )
            return
        entry = TriggerTypeEntry(
            id=frame.id,
            namespace=namespace,
            description=frame.description,
            trigger_request_format=frame.trigger_request_format,
            call_request_format=frame.call_request_format,
            provider=conn,
        )
        self.types[key] = entry
        conn.trigger_types.add(key)
        if old is not None and old.provider is not None and old.provider is not conn:
            old.provider.trigger_types.discard(key)
        replay: dict[str, TriggerBinding] = {}
        if old is not None:
            for binding in old.bound.values():
                self.active.pop(binding.id, None)
                binding.status = "pending"
                replay[binding.id] = binding
            old.bound.clear()
        for binding in self.bindings.values():
            if binding.status == "pending" and binding.trigger_type == frame.id:
                replay.setdefault(binding.id, binding)
        for binding in list(replay.values()):
            if self.bindings.get(binding.id) is binding and binding.status == "pending":
                target = self.resolve(binding)
                if target is entry:
                    await self._activate_and_report(binding, entry)

    async def unregister_type(self, conn: WorkerConnection, frame: UnregisterTriggerType) -> None:
        """``unregistertriggertype`` (§2.4): stop providing; bindings fall back or are parked."""
        namespace = frame.namespace if frame.namespace is not None else (conn.namespace or DEFAULT_NAMESPACE)
        entry = self.types.get((namespace, frame.id))
        if entry is not None and entry.provider is conn:
            await self._remove_type(entry)

    async def provider_gone(self, conn: WorkerConnection) -> None:
        """Cleanup (§3.6): remove the types ``conn`` provided; fall back or park their bindings."""
        for key in list(conn.trigger_types):
            entry = self.types.get(key)
            if entry is not None and entry.provider is conn:
                await self._remove_type(entry)
        conn.trigger_types.clear()

    async def _remove_type(self, entry: TriggerTypeEntry) -> None:
        if self.types.get(entry.key) is entry:
            del self.types[entry.key]
        if entry.provider is not None:
            entry.provider.trigger_types.discard(entry.key)
        orphans = list(entry.bound.values())
        entry.bound.clear()
        for binding in orphans:
            self.active.pop(binding.id, None)
            binding.status = "pending"
            ack = self._acks.get(binding.id)
            if ack is not None and not ack.done():
                ack.set_result(None)  # parked, not refused: engine::register_trigger still succeeds
        for binding in orphans:
            if self.bindings.get(binding.id) is not binding:
                continue
            fallback = self.resolve(binding)
            if fallback is not None:
                await self._activate_and_report(binding, fallback)
            else:
                log.info(
                    "trigger %s (%s → %s) parked: its provider is gone",
                    binding.id,
                    binding.trigger_type,
                    binding.function_id,
                )

    # -- bindings --------------------------------------------------------------------------
    async def register_from_worker(self, conn: WorkerConnection, frame: RegisterTrigger) -> None:
        """``registertrigger`` from a worker (§2.5): store, then activate or park."""
        for field_name, value in (
            ("namespace", frame.namespace),
            ("trigger_namespace", frame.trigger_namespace),
        ):
            if value is not None and not value.strip():
                await self._report(
                    conn,
                    frame.id,
                    frame.trigger_type,
                    frame.function_id,
                    ErrorBody(code="INVALID_NAMESPACE", message=invalid_namespace_message(field_name)),
                )
                return
        existing = self.bindings.get(frame.id)
        if existing is not None:
            if existing.owner_worker_id not in (None, conn.id):
                log.warning(
                    "trigger id %s re-registered by worker %s; it belonged to worker %s",
                    frame.id,
                    conn.id,
                    existing.owner_worker_id,
                )
            await self._discard(existing)
        binding = TriggerBinding(
            id=frame.id,
            trigger_type=frame.trigger_type,
            function_id=frame.function_id,
            config=frame.config,
            metadata=frame.metadata,
            namespace=frame.namespace or DEFAULT_NAMESPACE,
            trigger_namespace=frame.trigger_namespace,
            owner_worker_id=conn.id,
            owner_namespace=conn.namespace or DEFAULT_NAMESPACE,
            created_at_ms=int(time.time() * 1000),
        )
        self.bindings[binding.id] = binding
        conn.trigger_ids.add(binding.id)
        entry = self.resolve(binding)
        if entry is None:
            log.info(
                "trigger %s parked: no provider for trigger type %r yet (it activates when one registers)",
                binding.id,
                binding.trigger_type,
            )
            return
        error = await self._activate(binding, entry)
        if error is not None and entry.builtin is not None:
            # In-process providers reject synchronously: the binding is not kept (§2.5).
            await self._discard(binding)
            body = ErrorBody(code=error["code"], message=error["message"])
            await self._report(conn, binding.id, binding.trigger_type, binding.function_id, body)

    async def register_durable(
        self,
        trigger_type: str,
        function_id: str,
        config: Any,
        metadata: Any,
        trigger_namespace: str | None,
    ) -> str:
        """``engine::register_trigger`` (§7): a binding owned by no connection.

        Returns:
            The new trigger id (the binding may be parked).

        Raises:
            BuiltinError: ``INVALID_NAMESPACE`` or ``trigger_registration_failed`` (a provider
                refused it; WebSocket providers are given up to 10 s to answer).
        """
        if trigger_namespace is not None and not trigger_namespace.strip():
            raise BuiltinError("INVALID_NAMESPACE", invalid_namespace_message("trigger_namespace"))
        binding = TriggerBinding(
            id=str(uuid4()),
            trigger_type=trigger_type,
            function_id=function_id,
            config=config,
            metadata=metadata,
            trigger_namespace=trigger_namespace,
            created_at_ms=int(time.time() * 1000),
        )
        self.bindings[binding.id] = binding
        entry = self.resolve(binding)
        if entry is None:
            return binding.id
        ack: asyncio.Future[dict[str, Any] | None] | None = None
        if entry.provider is not None:
            ack = asyncio.get_running_loop().create_future()
            self._acks[binding.id] = ack
        try:
            error = await self._activate(binding, entry)
            if error is None and ack is not None and self.active.get(binding.id) is entry:
                try:
                    error = await asyncio.wait_for(asyncio.shield(ack), PROVIDER_ACK_TIMEOUT)
                except TimeoutError:
                    error = None
        finally:
            self._acks.pop(binding.id, None)
        if error is not None:
            await self._discard(binding)
            raise BuiltinError("trigger_registration_failed", str(error.get("message", "")))
        return binding.id

    async def unregister_from_worker(self, conn: WorkerConnection, frame: UnregisterTrigger) -> None:
        """``unregistertrigger`` from a worker (§2.6): remove its own (or a durable) binding."""
        binding = self.bindings.get(frame.id)
        if binding is None:
            return
        if binding.owner_worker_id not in (None, conn.id):
            log.warning(
                "unregistertrigger %s from worker %s ignored: the binding belongs to worker %s",
                frame.id,
                conn.id,
                binding.owner_worker_id,
            )
            return
        try:
            await self._discard(binding)
        except Exception:
            log.exception("unregistering trigger %s at its provider failed", binding.id)

    async def unregister(self, trigger_id: str, trigger_type: str | None = None) -> bool:
        """``engine::unregister_trigger`` (§7): remove a live or pending binding by id.

        Returns:
            Whether a binding was removed.

        Raises:
            BuiltinError: ``unregister_failed`` when a built-in provider failed to unregister it.
        """
        binding = self.bindings.get(trigger_id)
        if binding is None or (trigger_type is not None and binding.trigger_type != trigger_type):
            return False
        try:
            await self._discard(binding)
        except Exception as exc:
            raise BuiltinError("unregister_failed", str(exc) or type(exc).__name__) from None
        return True

    async def owner_gone(self, conn: WorkerConnection) -> None:
        """Cleanup (§3.6): remove the bindings ``conn`` registered and unregister them."""
        for trigger_id in list(conn.trigger_ids):
            binding = self.bindings.get(trigger_id)
            if binding is not None and binding.owner_worker_id == conn.id:
                try:
                    await self._discard(binding)
                except Exception:
                    log.exception("unregistering trigger %s at its provider failed", trigger_id)
        conn.trigger_ids.clear()

    def on_provider_result(self, conn: WorkerConnection, frame: TriggerRegistrationResult) -> None:
        """``triggerregistrationresult`` from a provider (§2.7).

        Ignored unless ``conn`` is the binding's provider. An error parks the binding and is
        forwarded, with the stored ``trigger_type``/``function_id``, to the registering worker.
        """
        binding = self.bindings.get(frame.id)
        entry = self.active.get(frame.id)
        if binding is None or entry is None or entry.provider is not conn:
            log.debug(
                "triggerregistrationresult for %s from worker %s ignored (not its provider)",
                frame.id,
                conn.id,
            )
            return
        ack = self._acks.get(binding.id)
        if frame.error is None:
            binding.error = None
            if ack is not None and not ack.done():
                ack.set_result(None)
            return
        error = _error_dict(frame.error)
        self.active.pop(binding.id, None)
        entry.bound.pop(binding.id, None)
        binding.status = "pending"
        binding.error = error
        log.warning(
            "provider %s rejected trigger %s (%s): %s; the binding is parked",
            conn.id,
            binding.id,
            binding.trigger_type,
            frame.error.message,
        )
        if ack is not None and not ack.done():
            ack.set_result(error)
        owner = self._router.workers.get(binding.owner_worker_id) if binding.owner_worker_id else None
        if owner is not None:
            self._router.spawn(
                self._report(owner, binding.id, binding.trigger_type, binding.function_id, frame.error),
                name="forward-triggerregistrationresult",
            )

    # -- internals -------------------------------------------------------------------------
    async def _activate_and_report(self, binding: TriggerBinding, entry: TriggerTypeEntry) -> None:
        error = await self._activate(binding, entry)
        if error is not None:
            owner = self._router.workers.get(binding.owner_worker_id) if binding.owner_worker_id else None
            if owner is not None:
                await self._report(
                    owner,
                    binding.id,
                    binding.trigger_type,
                    binding.function_id,
                    ErrorBody(code=error["code"], message=error["message"]),
                )

    async def _activate(self, binding: TriggerBinding, entry: TriggerTypeEntry) -> dict[str, Any] | None:
        """Deliver a binding to ``entry``; returns an error dict when refused (binding parked)."""
        self.active[binding.id] = entry
        entry.bound[binding.id] = binding
        binding.status = "active"
        binding.error = None
        if entry.builtin is not None:
            try:
                await entry.builtin.register(binding)
            except Exception as exc:
                if not isinstance(exc, TriggerRegistrationError):
                    log.exception("built-in trigger type %s failed to register %s", entry.id, binding.id)
                return self._park(
                    binding, entry, "trigger_registration_failed", str(exc) or type(exc).__name__
                )
            if self.bindings.get(binding.id) is not binding:
                # Removed while the provider was registering it: undo.
                self.active.pop(binding.id, None)
                entry.bound.pop(binding.id, None)
                try:
                    await entry.builtin.unregister(binding)
                except Exception:
                    log.exception("built-in trigger type %s failed to unregister %s", entry.id, binding.id)
            return None
        provider = entry.provider
        assert provider is not None
        frame = RegisterTrigger(
            type="registertrigger",
            id=binding.id,
            trigger_type=binding.trigger_type,
            function_id=binding.function_id,
            config=binding.config,
        )
        if binding.metadata is not None:
            frame.metadata = binding.metadata
        if binding.namespace != DEFAULT_NAMESPACE:
            frame.namespace = binding.namespace
        if entry.namespace != DEFAULT_NAMESPACE:
            frame.trigger_namespace = entry.namespace
        # When the provider is going away its cleanup re-homes or parks the binding.
        if not await provider.send(codec.encode(frame)) and self.active.get(binding.id) is entry:
            self.active.pop(binding.id, None)
            entry.bound.pop(binding.id, None)
            binding.status = "pending"
        return None

    def _park(
        self, binding: TriggerBinding, entry: TriggerTypeEntry, code: str, message: str
    ) -> dict[str, Any]:
        self.active.pop(binding.id, None)
        entry.bound.pop(binding.id, None)
        binding.status = "pending"
        error = {"code": code, "message": message}
        binding.error = error
        return error

    async def _discard(self, binding: TriggerBinding) -> None:
        """Forget a binding and unregister it at its provider (raises a built-in's error)."""
        if self.bindings.get(binding.id) is binding:
            del self.bindings[binding.id]
        if binding.owner_worker_id is not None:
            owner = self._router.workers.get(binding.owner_worker_id)
            if owner is not None:
                owner.trigger_ids.discard(binding.id)
        entry = self.active.pop(binding.id, None)
        if entry is None:
            return
        entry.bound.pop(binding.id, None)
        if entry.builtin is not None:
            await entry.builtin.unregister(binding)
        elif entry.provider is not None and entry.provider.live:
            frame = UnregisterTrigger(
                type="unregistertrigger", id=binding.id, trigger_type=binding.trigger_type
            )
            await entry.provider.send(codec.encode(frame))

    async def _report(
        self,
        conn: WorkerConnection,
        trigger_id: str,
        trigger_type: str,
        function_id: str,
        error: ErrorBody,
    ) -> None:
        frame = TriggerRegistrationResult(
            type="triggerregistrationresult",
            id=trigger_id,
            trigger_type=trigger_type,
            function_id=function_id,
            error=error,
        )
        await conn.send(codec.encode(frame))
