"""``iii-engine-functions``: the ``engine::*`` discovery and lifecycle functions (protocol.md §7).

Functions: ``engine::functions::list|info``, ``engine::workers::list|info|register``,
``engine::health::check``, ``engine::triggers::list|info``,
``engine::registered-triggers::list|info``, ``engine::register_trigger``,
``engine::unregister_trigger``. Trigger types: ``engine::functions-available`` (the function set
is compared every ``functions_available_interval_ms``, default 5000, table
``[engine-functions]`` or env ``III_FUNCTIONS_POLL_MS``) and ``engine::workers-available``.

Results are built with their keys in sorted order, like the real engine's ``serde_json`` maps.
Extension (documented in ``docs/engine.md``): ``engine::registered-triggers::list`` accepts
``include_pending: true`` to also list parked bindings; every row then has ``status``
(``active``/``pending``), ``worker_id``, ``namespace`` and, after a provider rejection, ``error``.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from ...protocol._generated.engine import (
    FunctionDetail,
    FunctionsAvailableEvent,
    FunctionsInfoInput,
    FunctionsListInput,
    FunctionsListResult,
    HealthCheckInput,
    HealthCheckResult,
    RegisteredTriggerDetail,
    RegisteredTriggersInfoInput,
    RegisteredTriggersListInput,
    RegisteredTriggersListResult,
    RegisterTriggerInput,
    RegisterTriggerResult,
    TriggersInfoInput,
    TriggersListInput,
    TriggersListResult,
    TriggerTypeDetail,
    UnregisterTriggerInput,
    UnregisterTriggerResult,
    WorkersAvailableEvent,
    WorkersInfoInput,
    WorkersInfoResult,
    WorkersListInput,
    WorkersListResult,
    WorkersRegisterInput,
    WorkersRegisterResult,
)
from ...protocol.frames import DEFAULT_NAMESPACE
from ..triggers import INVALID_NAMESPACE_MESSAGE
from .base import (
    BuiltinError,
    BuiltinFunction,
    BuiltinTriggerType,
    BuiltinWorker,
    CallContext,
    EngineServices,
)

if TYPE_CHECKING:
    from ..connection import WorkerConnection
    from ..functions import FunctionEntry
    from ..router import Router
    from ..triggers import TriggerTypeEntry
    from .base import TriggerBinding

__all__ = ["BUILTIN", "MAX_INFO_IDS", "EngineFunctions", "config_summary"]

#: Most ids one ``engine::functions::info`` call may describe.
MAX_INFO_IDS = 32
_SUMMARY_CHARS = 80
_DISABLED = {"details": None, "status": "disabled"}


def config_summary(config: Any) -> str:
    """Compact JSON text of a binding's config, cut to 80 characters plus ``…`` (§7)."""
    text = json.dumps(config, separators=(",", ":"), sort_keys=True, ensure_ascii=False, default=str)
    return text if len(text) <= _SUMMARY_CHARS else text[:_SUMMARY_CHARS] + "…"


def _function_summary(entry: FunctionEntry) -> dict[str, Any]:
    row: dict[str, Any] = {}
    if entry.description is not None:
        row["description"] = entry.description
    row["function_id"] = entry.id
    if entry.metadata is not None:
        row["metadata"] = entry.metadata
    row["namespace"] = entry.namespace
    row["worker_name"] = entry.worker_name
    return row


def _type_summary(entry: TriggerTypeEntry) -> dict[str, Any]:
    return {
        "description": entry.description,
        "id": entry.id,
        "namespace": entry.namespace,
        "worker_name": entry.worker_name,
    }


def _type_detail(entry: TriggerTypeEntry) -> dict[str, Any]:
    row: dict[str, Any] = {}
    if entry.trigger_request_format is not None:
        row["configuration_schema"] = entry.trigger_request_format
    row["description"] = entry.description
    row["id"] = entry.id
    row["instance_count"] = len(entry.bound)
    row["namespace"] = entry.namespace
    if entry.call_request_format is not None:
        row["request_schema"] = entry.call_request_format
    row["worker_name"] = entry.worker_name
    return row


def _match_rank(query: str, *texts: str | None) -> int | None:
    """0 = exact id, 1 = id prefix, 2 = in id, 3 = in another text; ``None`` = no match."""
    first = (texts[0] or "").lower()
    if first == query:
        return 0
    if first.startswith(query):
        return 1
    if query in first:
        return 2
    if any(text is not None and query in text.lower() for text in texts[1:]):
        return 3
    return None


class EngineFunctions(BuiltinWorker):
    """The mandatory built-in worker serving ``engine::*`` (protocol.md §7)."""

    name: ClassVar[str] = "iii-engine-functions"
    section: ClassVar[str] = "engine-functions"
    description: ClassVar[str] = "Engine discovery and lifecycle functions (engine::*)"
    mandatory: ClassVar[bool] = True
    order: ClassVar[int] = 0

    def __init__(self, services: EngineServices) -> None:
        super().__init__(services)
        from ..router import Router

        if not isinstance(services, Router):  # pragma: no cover - wiring error
            raise TypeError("EngineFunctions needs the engine router")
        self.router: Router = services
        self._poll_task: asyncio.Task[Any] | None = None

    # -- interface -------------------------------------------------------------------------
    def functions(self) -> Sequence[BuiltinFunction]:
        """The ``engine::*`` functions."""
        return (
            BuiltinFunction(
                "engine::functions::list",
                self.functions_list,
                "List registered functions (engine::* and internal ones only with include_internal)",
                FunctionsListInput,
                FunctionsListResult,
            ),
            BuiltinFunction(
                "engine::functions::info",
                self.functions_info,
                "Describe one function (function_id) or up to 32 (function_ids)",
                FunctionsInfoInput,
                FunctionDetail,
            ),
            BuiltinFunction(
                "engine::workers::list",
                self.workers_list,
                "List connected workers and the engine's built-in workers",
                WorkersListInput,
                WorkersListResult,
            ),
            BuiltinFunction(
                "engine::workers::info",
                self.workers_info,
                "Describe a worker: its functions, bindings and trigger types",
                WorkersInfoInput,
                WorkersInfoResult,
            ),
            BuiltinFunction(
                "engine::workers::register",
                self.workers_register,
                "Report a worker's metadata and fix its connection's namespace",
                WorkersRegisterInput,
                WorkersRegisterResult,
                inline=True,
            ),
            BuiltinFunction(
                "engine::health::check",
                self.health_check,
                "Engine health and the status of its telemetry components",
                HealthCheckInput,
                HealthCheckResult,
            ),
            BuiltinFunction(
                "engine::triggers::list",
                self.triggers_list,
                "List trigger types (engine::* only with include_internal)",
                TriggersListInput,
                TriggersListResult,
            ),
            BuiltinFunction(
                "engine::triggers::info",
                self.triggers_info,
                "Describe a trigger type",
                TriggersInfoInput,
                TriggerTypeDetail,
            ),
            BuiltinFunction(
                "engine::registered-triggers::list",
                self.registered_triggers_list,
                "List live trigger bindings (include_pending: also parked ones, with status)",
                RegisteredTriggersListInput,
                RegisteredTriggersListResult,
            ),
            BuiltinFunction(
                "engine::registered-triggers::info",
                self.registered_triggers_info,
                "Describe a live trigger binding",
                RegisteredTriggersInfoInput,
                RegisteredTriggerDetail,
            ),
            BuiltinFunction(
                "engine::register_trigger",
                self.register_trigger,
                "Bind a function to a trigger type, independently of the calling connection",
                RegisterTriggerInput,
                RegisterTriggerResult,
            ),
            BuiltinFunction(
                "engine::unregister_trigger",
                self.unregister_trigger,
                "Remove a trigger binding (live or pending) by id",
                UnregisterTriggerInput,
                UnregisterTriggerResult,
            ),
        )

    def trigger_types(self) -> Sequence[BuiltinTriggerType]:
        """``engine::functions-available`` and ``engine::workers-available`` (config ignored)."""
        return (
            BuiltinTriggerType(
                "engine::functions-available",
                "Fires with every function when the set of registered functions changes",
                call_request_format=FunctionsAvailableEvent.model_json_schema(),
            ),
            BuiltinTriggerType(
                "engine::workers-available",
                "Fires when a worker connects, disconnects or reports its metadata",
                call_request_format=WorkersAvailableEvent.model_json_schema(),
            ),
        )

    async def start(self) -> None:
        """Start the ``engine::functions-available`` poll."""
        self._poll_task = self.router.spawn(self._poll_functions(), name="functions-available")

    async def stop(self) -> None:
        """Stop the poll."""
        if self._poll_task is not None:
            self._poll_task.cancel()
            self._poll_task = None

    def _poll_interval(self) -> float:
        value: Any = os.environ.get("III_FUNCTIONS_POLL_MS") or self.services.section(self.section).get(
            "functions_available_interval_ms", 5000
        )
        try:
            millis = int(value)
        except (TypeError, ValueError):
            millis = 5000
        return max(millis, 10) / 1000.0

    async def _poll_functions(self) -> None:
        registry = self.router.functions
        interval = self._poll_interval()
        seen_version = registry.version
        seen_keys = registry.keys()
        while True:
            await asyncio.sleep(interval)
            if registry.version == seen_version:
                continue
            seen_version = registry.version
            keys = registry.keys()
            if keys == seen_keys:
                continue
            seen_keys = keys
            if self.router.bindings("engine::functions-available"):
                payload = {
                    "event": "functions_changed",
                    "functions": [_function_summary(entry) for entry in self._sorted_functions(registry)],
                }
                self.router.fire_all("engine::functions-available", payload)

    @staticmethod
    def _sorted_functions(entries: Iterable[FunctionEntry]) -> list[FunctionEntry]:
        return sorted(entries, key=lambda e: (e.id, e.namespace))

    # -- functions -------------------------------------------------------------------------
    async def functions_list(self, data: FunctionsListInput, ctx: CallContext) -> dict[str, Any]:
        """``engine::functions::list``."""
        query = data.search.lower() if data.search else None
        workers = set(data.workers) if data.workers is not None else None
        ranked: list[tuple[int, str, str, FunctionEntry]] = []
        for entry in self.router.functions:
            if entry.internal and not data.include_internal:
                continue
            if data.prefix and not entry.id.startswith(data.prefix):
                continue
            if data.worker is not None and entry.worker_name != data.worker:
                continue
            if workers is not None and entry.worker_name not in workers:
                continue
            rank = 0
            if query is not None:
                found = _match_rank(query, entry.id, entry.description)
                if found is None:
                    continue
                rank = found
            ranked.append((rank, entry.id, entry.namespace, entry))
        ranked.sort(key=lambda row: row[:3])
        return {"functions": [_function_summary(row[3]) for row in ranked]}

    def _function_detail(self, entry: FunctionEntry) -> dict[str, Any]:
        row = _function_summary(entry)
        triggers = [
            {"config": b.config, "id": b.id, "trigger_type": b.trigger_type}
            for b in sorted(self.router.triggers.bindings.values(), key=lambda b: (b.trigger_type, b.id))
            if b.status == "active" and b.function_id == entry.id and b.namespace == entry.namespace
        ]
        detail: dict[str, Any] = {}
        for key in ("description", "function_id", "metadata", "namespace"):
            if key in row:
                detail[key] = row[key]
        detail["registered_triggers"] = triggers
        if entry.request_format is not None:
            detail["request_schema"] = entry.request_format
        if entry.response_format is not None:
            detail["response_schema"] = entry.response_format
        detail["worker_name"] = row["worker_name"]
        return detail

    def _resolve_function(self, function_id: str, namespace: str | None) -> FunctionEntry:
        if namespace is not None:
            entry = self.router.functions.lookup(namespace, function_id)
            if entry is None:
                raise BuiltinError("NOT_FOUND", f"Function '{function_id}' is not registered.")
            return entry
        candidates = [entry for entry in self.router.functions if entry.id == function_id]
        if not candidates:
            raise BuiltinError("NOT_FOUND", f"Function '{function_id}' is not registered.")
        if len(candidates) > 1:
            namespaces = ", ".join(sorted(entry.namespace for entry in candidates))
            raise BuiltinError(
                "NOT_FOUND",
                f"Function '{function_id}' is registered in several namespaces ({namespaces}); "
                "pass `namespace` to choose one.",
            )
        return candidates[0]

    async def functions_info(self, data: FunctionsInfoInput, ctx: CallContext) -> dict[str, Any]:
        """``engine::functions::info``: one ``FunctionDetail`` or a batch."""
        if (data.function_id is None) == (data.function_ids is None):
            raise BuiltinError("INVALID_ARGUMENTS", "pass exactly one of `function_id` or `function_ids`")
        if data.function_id is not None:
            return self._function_detail(self._resolve_function(data.function_id, data.namespace))
        ids = list(dict.fromkeys(data.function_ids or ()))
        if len(ids) > MAX_INFO_IDS:
            raise BuiltinError(
                "INVALID_ARGUMENTS", f"at most {MAX_INFO_IDS} function ids per call, got {len(ids)}"
            )
        rows: list[dict[str, Any]] = []
        for function_id in ids:
            try:
                rows.append(self._function_detail(self._resolve_function(function_id, data.namespace)))
            except BuiltinError:
                rows.append({"error": "not_found", "function_id": function_id})
        return {"functions": rows}

    # -- workers ---------------------------------------------------------------------------
    def _ws_summary(self, conn: WorkerConnection) -> dict[str, Any]:
        info = conn.info
        return {
            "active_invocations": len(conn.executing),
            "connected_at_ms": conn.connected_at_ms,
            "description": info.get("description"),
            "function_count": len(conn.functions),
            "id": conn.id,
            "ip_address": conn.ip_address,
            "isolation": info.get("isolation"),
            "name": info.get("name"),
            "namespace": conn.namespace or DEFAULT_NAMESPACE,
            "os": info.get("os"),
            "runtime": info.get("runtime"),
            "status": "connected",
            "version": info.get("version"),
        }

    def _builtin_summary(self, worker: BuiltinWorker) -> dict[str, Any]:
        return {
            "active_invocations": 0,
            "connected_at_ms": self.router.started_at_ms,
            "description": worker.description or None,
            "function_count": sum(
                1
                for entry in self.router.functions
                if entry.owner is None and entry.builtin_worker == worker.name
            ),
            "id": worker.name,
            "ip_address": None,
            "isolation": "in-process",
            "name": worker.name,
            "namespace": DEFAULT_NAMESPACE,
            "os": None,
            "runtime": "engine",
            "status": "available",
            "version": self.router.version,
        }

    def _listed_connections(self) -> list[WorkerConnection]:
        return [
            conn
            for conn in self.router.workers.values()
            if not conn.closing and conn.info.get("pid") is not None
        ]

    async def workers_list(self, data: WorkersListInput, ctx: CallContext) -> dict[str, Any]:
        """``engine::workers::list`` (WebSocket workers without a reported pid are omitted)."""
        rows = [self._ws_summary(conn) for conn in self._listed_connections()]
        rows += [self._builtin_summary(worker) for worker in self.router.builtin_workers]
        query = data.search.lower() if data.search else None
        selected = []
        for row in rows:
            if data.runtime is not None and row["runtime"] != data.runtime:
                continue
            if data.status is not None and row["status"] != data.status:
                continue
            if query is not None and not any(
                isinstance(row[key], str) and query in row[key].lower()
                for key in ("name", "id", "description")
            ):
                continue
            selected.append(row)
        selected.sort(key=lambda row: (row["name"] or "", row["id"]))
        return {"workers": selected}

    async def workers_info(self, data: WorkersInfoInput, ctx: CallContext) -> dict[str, Any]:
        """``engine::workers::info``: a worker with its functions, bindings and trigger types."""
        conns = [
            conn
            for conn in self.router.workers.values()
            if not conn.closing
            and conn.name == data.name
            and (data.namespace is None or (conn.namespace or DEFAULT_NAMESPACE) == data.namespace)
        ]
        builtins = [
            worker
            for worker in self.router.builtin_workers
            if worker.name == data.name and data.namespace in (None, DEFAULT_NAMESPACE)
        ]
        found = len(conns) + len(builtins)
        if found == 0:
            raise BuiltinError("NOT_FOUND", f"Worker '{data.name}' is not connected.")
        if found > 1:
            namespaces = ", ".join(sorted({conn.namespace or DEFAULT_NAMESPACE for conn in conns}))
            raise BuiltinError(
                "NOT_FOUND",
                f"Worker '{data.name}' is connected in several namespaces ({namespaces}); "
                "pass `namespace` to choose one.",
            )
        router = self.router
        if builtins:
            worker = builtins[0]
            detail = self._builtin_summary(worker)
            detail["internal"] = True
            functions = [
                entry
                for entry in router.functions
                if entry.builtin_worker == worker.name and entry.owner is None
            ]
            types = [entry for entry in router.triggers.types.values() if entry.builtin_worker == worker.name]
            bindings: list[TriggerBinding] = []
        else:
            conn = conns[0]
            detail = self._ws_summary(conn)
            detail["internal"] = False
            pid = conn.info.get("pid")
            if pid is not None:
                detail["pid"] = pid
            latest = router.worker_metrics(conn.id)
            if latest is not None:
                detail["latest_metrics"] = latest
            functions = [entry for entry in router.functions if entry.owner is conn]
            types = [entry for entry in router.triggers.types.values() if entry.provider is conn]
            bindings = [b for b in router.triggers.bindings.values() if b.owner_worker_id == conn.id]
        return {
            "functions": [_function_summary(entry) for entry in self._sorted_functions(functions)],
            "registered_triggers": [
                self._binding_row(b, extended=False)
                for b in sorted(bindings, key=lambda b: (b.trigger_type, b.id))
            ],
            "trigger_types": [
                _type_summary(entry) for entry in sorted(types, key=lambda e: (e.id, e.namespace))
            ],
            "worker": dict(sorted(detail.items())),
        }

    async def workers_register(self, data: WorkersRegisterInput, ctx: CallContext) -> dict[str, Any]:
        """``engine::workers::register`` (§3.3)."""
        conn = self.router.workers.get(ctx.caller_worker_id) if ctx.caller_worker_id else None
        if conn is None:
            raise BuiltinError("NOT_FOUND", "engine::workers::register must be called by a connected worker")
        if data.namespace is not None and not data.namespace.strip():
            raise BuiltinError("INVALID_NAMESPACE", INVALID_NAMESPACE_MESSAGE)
        return {"success": await self.router.register_worker(conn, data)}

    # -- health ----------------------------------------------------------------------------
    async def health_check(self, data: HealthCheckInput, ctx: CallContext) -> dict[str, Any]:
        """``engine::health::check``: ``logs``/``metrics``/``otel``/``spans`` plus added probes."""
        components: dict[str, Any] = {name: dict(_DISABLED) for name in ("logs", "metrics", "otel", "spans")}
        for name, probe in self.router.health_probes.items():
            try:
                component = probe()
                components[name] = {"details": component.details, "status": component.status}
            except Exception as exc:
                components[name] = {"details": {"error": str(exc)}, "status": "unhealthy"}
        degraded = any(c["status"] in ("degraded", "unhealthy") for c in components.values())
        return {
            "components": dict(sorted(components.items())),
            "status": "degraded" if degraded else "healthy",
            "timestamp": int(time.time() * 1000),
            "version": self.router.version,
        }

    # -- trigger types ---------------------------------------------------------------------
    async def triggers_list(self, data: TriggersListInput, ctx: CallContext) -> dict[str, Any]:
        """``engine::triggers::list``."""
        query = data.search.lower() if data.search else None
        rows = []
        for entry in sorted(self.router.triggers.types.values(), key=lambda e: (e.id, e.namespace)):
            if entry.internal and not data.include_internal:
                continue
            if data.prefix and not entry.id.startswith(data.prefix):
                continue
            if data.worker is not None and entry.worker_name != data.worker:
                continue
            if query is not None and _match_rank(query, entry.id, entry.description) is None:
                continue
            rows.append(_type_summary(entry))
        return {"triggers": rows}

    async def triggers_info(self, data: TriggersInfoInput, ctx: CallContext) -> dict[str, Any]:
        """``engine::triggers::info``."""
        namespace = data.namespace or DEFAULT_NAMESPACE
        entry = self.router.triggers.types.get((namespace, data.id))
        if entry is None:
            raise BuiltinError(
                "NOT_FOUND", f"Trigger type '{data.id}' is not registered in namespace '{namespace}'."
            )
        return _type_detail(entry)

    # -- bindings --------------------------------------------------------------------------
    def _binding_worker_name(self, binding: TriggerBinding) -> str:
        if binding.owner_worker_id is not None:
            owner = self.router.workers.get(binding.owner_worker_id)
            if owner is not None and owner.name:
                return owner.name
        target = self.router.functions.lookup(binding.namespace, binding.function_id)
        if target is not None:
            return target.worker_name
        return binding.function_id.split("::", 1)[0]

    def _binding_row(self, binding: TriggerBinding, *, extended: bool) -> dict[str, Any]:
        row: dict[str, Any] = {
            "config": binding.config,
            "config_summary": config_summary(binding.config),
        }
        if extended and binding.error is not None:
            row["error"] = binding.error
        row["function_id"] = binding.function_id
        row["id"] = binding.id
        if extended:
            row["namespace"] = binding.namespace
            row["status"] = binding.status
        row["trigger_type"] = binding.trigger_type
        if extended:
            row["worker_id"] = binding.owner_worker_id
        row["worker_name"] = self._binding_worker_name(binding)
        return row

    async def registered_triggers_list(
        self, data: RegisteredTriggersListInput, ctx: CallContext
    ) -> dict[str, Any]:
        """``engine::registered-triggers::list`` (+ ``include_pending`` extension)."""
        query = data.search.lower() if data.search else None
        extended = bool(data.include_pending)
        rows = []
        for binding in sorted(self.router.triggers.bindings.values(), key=lambda b: (b.trigger_type, b.id)):
            if binding.status != "active" and not extended:
                continue
            if binding.trigger_type.startswith("engine::") and not data.include_internal:
                continue
            if data.trigger_type is not None and binding.trigger_type != data.trigger_type:
                continue
            if data.function_id is not None and binding.function_id != data.function_id:
                continue
            row = self._binding_row(binding, extended=extended)
            if data.worker is not None and row["worker_name"] != data.worker:
                continue
            if query is not None and not any(
                query in str(row[key]).lower()
                for key in ("id", "trigger_type", "function_id", "config_summary")
            ):
                continue
            rows.append(row)
        return {"registered_triggers": rows}

    async def registered_triggers_info(
        self, data: RegisteredTriggersInfoInput, ctx: CallContext
    ) -> dict[str, Any]:
        """``engine::registered-triggers::info`` (live bindings only)."""
        triggers = self.router.triggers
        binding = triggers.bindings.get(data.id)
        if binding is None or binding.status != "active":
            raise BuiltinError("NOT_FOUND", f"Trigger '{data.id}' is not registered.")
        function = self.router.functions.lookup(binding.namespace, binding.function_id)
        provider = triggers.provider_of(binding.id)
        row: dict[str, Any] = {
            "config": binding.config,
            "function": self._function_detail(function) if function is not None else None,
            "function_id": binding.function_id,
            "id": binding.id,
        }
        if binding.metadata is not None:
            row["metadata"] = binding.metadata
        row["trigger"] = _type_detail(provider) if provider is not None else None
        row["trigger_type"] = binding.trigger_type
        row["worker_name"] = self._binding_worker_name(binding)
        return row

    async def register_trigger(self, data: RegisterTriggerInput, ctx: CallContext) -> dict[str, Any]:
        """``engine::register_trigger``: a durable binding (target resolved in ``default``)."""
        trigger_id = await self.router.triggers.register_durable(
            data.trigger_type, data.function_id, data.config, data.metadata, data.trigger_namespace
        )
        return {"id": trigger_id}

    async def unregister_trigger(self, data: UnregisterTriggerInput, ctx: CallContext) -> dict[str, Any]:
        """``engine::unregister_trigger`` (idempotent)."""
        return {"removed": await self.router.triggers.unregister(data.id, data.trigger_type)}


BUILTIN = EngineFunctions
