"""The function registry: who serves ``(namespace, function_id)`` (protocol.md §2.1, §3.4, §3.5).

Worker functions are keyed by ``(namespace, function_id)`` with one live owner each. Built-in
functions live in namespace ``default`` in a layer of their own: a worker that registers the same
id in ``default`` shadows the built-in while it is connected (the real engine lets the last writer
win), and the built-in is visible again once that worker is gone.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..protocol.frames import DEFAULT_NAMESPACE

if TYPE_CHECKING:
    from .builtins.base import BuiltinFunction
    from .connection import WorkerConnection

__all__ = ["FunctionEntry", "FunctionRegistry"]


@dataclass(eq=False, slots=True)
class FunctionEntry:
    """One registered function.

    Attributes:
        id: Function id.
        namespace: Namespace it lives in.
        description: Description, if registered with one.
        request_format: Registered request schema (opaque), if any.
        response_format: Registered response schema (opaque), if any.
        metadata: Registered metadata, if any.
        owner: The owning connection; ``None`` for built-ins.
        builtin: The built-in function, for built-ins.
        builtin_worker: Name of the built-in worker serving it, for built-ins.
        invocation: The HTTP invocation reference of an HTTP-invoked function (protocol.md §6.7).
        registered_at_ms: Registration time, Unix milliseconds.
    """

    id: str
    namespace: str
    description: str | None = None
    request_format: Any = None
    response_format: Any = None
    metadata: Any = None
    owner: WorkerConnection | None = None
    builtin: BuiltinFunction | None = None
    builtin_worker: str | None = None
    invocation: dict[str, Any] | None = None
    registered_at_ms: int = field(default_factory=lambda: int(time.time() * 1000))

    @property
    def worker_name(self) -> str:
        """Owner's name; the first ``::`` segment of the id when no owner is known (§7)."""
        owner = self.owner
        if owner is not None:
            name = owner.name
            if name:
                return name
        return self.id.split("::", 1)[0]

    @property
    def internal(self) -> bool:
        """Hidden from listings unless asked: ``engine::*`` (except ``engine::queue::*``) or
        ``metadata.internal == true`` (protocol.md §7)."""
        if self.id.startswith("engine::") and not self.id.startswith("engine::queue::"):
            return True
        metadata = self.metadata
        return isinstance(metadata, dict) and metadata.get("internal") is True


class FunctionRegistry:
    """Function lookup for routing and listings.

    Attributes:
        version: Incremented on every change of the set of ``(namespace, id)`` keys.
    """

    def __init__(self) -> None:
        self._workers: dict[tuple[str, str], FunctionEntry] = {}
        self._builtins: dict[str, FunctionEntry] = {}
        self._namespaces: dict[str, set[str]] = {}
        self.version = 0

    def lookup(self, namespace: str, function_id: str) -> FunctionEntry | None:
        """The function serving ``(namespace, function_id)``, or ``None``."""
        entry = self._workers.get((namespace, function_id))
        if entry is None and namespace == DEFAULT_NAMESPACE:
            entry = self._builtins.get(function_id)
        return entry

    def builtin(self, function_id: str) -> FunctionEntry | None:
        """The built-in function with this id (namespace ``default``), shadowed or not."""
        return self._builtins.get(function_id)

    def worker_entry(self, namespace: str, function_id: str) -> FunctionEntry | None:
        """The worker-registered function at that key (built-ins excluded)."""
        return self._workers.get((namespace, function_id))

    def namespaces_of(self, function_id: str) -> list[str]:
        """Sorted namespaces where ``function_id`` is registered (for the not-found hint, §4.7)."""
        found = set(self._namespaces.get(function_id, ()))
        if function_id in self._builtins:
            found.add(DEFAULT_NAMESPACE)
        return sorted(found)

    def add_builtin(self, entry: FunctionEntry) -> None:
        """Register a built-in function (namespace ``default``)."""
        self._builtins[entry.id] = entry
        self.version += 1

    def put(self, entry: FunctionEntry) -> None:
        """Register or overwrite a worker function (ownership is checked by the caller)."""
        key = (entry.namespace, entry.id)
        if key not in self._workers:
            self.version += 1
        self._workers[key] = entry
        self._namespaces.setdefault(entry.id, set()).add(entry.namespace)

    def remove(self, key: tuple[str, str], owner: WorkerConnection) -> bool:
        """Remove a worker function if ``owner`` still owns it (compare-and-swap).

        Returns:
            Whether it was removed.
        """
        entry = self._workers.get(key)
        if entry is None or entry.owner is not owner:
            return False
        del self._workers[key]
        namespaces = self._namespaces.get(entry.id)
        if namespaces is not None:
            namespaces.discard(entry.namespace)
            if not namespaces:
                del self._namespaces[entry.id]
        self.version += 1
        return True

    def __iter__(self) -> Iterator[FunctionEntry]:
        """Every visible function: worker functions, then built-ins not shadowed by one."""
        yield from self._workers.values()
        for function_id, entry in self._builtins.items():
            if (DEFAULT_NAMESPACE, function_id) not in self._workers:
                yield entry

    def keys(self) -> frozenset[tuple[str, str]]:
        """The set of visible ``(namespace, id)`` keys."""
        return frozenset((entry.namespace, entry.id) for entry in self)

    def __len__(self) -> int:
        return sum(1 for _ in self)
