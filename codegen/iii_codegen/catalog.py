"""The function catalog: read it from a live engine, save it as a snapshot, load it back.

A snapshot is a versioned JSON file (``format: "iii-typed.catalog"``, ``version: 1``) whose JSON
Schema is ``schema/catalog/catalog.v1.schema.json`` (rendered from :class:`Catalog` by
:func:`catalog_json_schema`; a test keeps them equal). It holds what code generation needs and
nothing that changes from run to run:

* every function of ``engine::functions::list`` with its ``engine::functions::info`` detail
  (protocol.md §7: id, namespace, worker name, description, metadata, request and response
  schemas); registered-trigger bindings are left out (their ids are per run);
* every trigger type of ``engine::triggers::list`` with its ``engine::triggers::info`` detail
  (configuration, request and response schemas); ``instance_count`` is left out;
* worker names that are the SDK's ``hostname:pid`` fallback are dropped (``null``).

:func:`dump_snapshot` sorts entries by id and namespace and every object's keys, so the same
catalog always gives the same bytes, whatever order the engine listed it in.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "INFO_BATCH",
    "SNAPSHOT_FORMAT",
    "SNAPSHOT_VERSION",
    "Catalog",
    "CatalogError",
    "FunctionEntry",
    "TriggerTypeEntry",
    "catalog_json_schema",
    "catalog_schema_path",
    "dump_snapshot",
    "fetch_catalog",
    "json_problem",
    "load_snapshot",
    "normalize",
    "parse_snapshot",
    "read_catalog",
]

SNAPSHOT_FORMAT = "iii-typed.catalog"
SNAPSHOT_VERSION = 1
#: Most function ids one ``engine::functions::info`` call accepts (protocol.md §7).
INFO_BATCH = 32

#: Deepest JSON nesting a catalog may have (a schema nested deeper is refused long before: see
#: ``schemas.MAX_SCHEMA_DEPTH``); deeper input would exhaust Python's recursion limit.
MAX_JSON_DEPTH = 512

# The SDK names an unnamed worker "hostname:pid" (a second one "hostname:pid:2"): run-specific.
_FALLBACK_WORKER_NAME = re.compile(r"^[^\s:]+:\d+(?::\d+)?$")


class CatalogError(Exception):
    """The catalog could not be read: bad snapshot file, unreachable engine, or a bad reply."""


class FunctionEntry(BaseModel):
    """One function of the catalog (``FunctionDetail`` of protocol.md §7, minus run data)."""

    model_config = ConfigDict(extra="ignore")

    function_id: str = Field(min_length=1, description="The function id, e.g. `orders::create`.")
    namespace: str = Field(default="default", description="Namespace the function lives in.")
    worker_name: str | None = Field(
        default=None, description="Name of the worker that registered it (null when run-specific)."
    )
    description: str | None = Field(default=None, description="The registered description.")
    metadata: Any = Field(default=None, description="The registered metadata (any JSON).")
    request_schema: Any = Field(
        default=None, description="The registered request format (JSON Schema), or null."
    )
    response_schema: Any = Field(
        default=None, description="The registered response format (JSON Schema), or null."
    )


class TriggerTypeEntry(BaseModel):
    """One trigger type of the catalog (``TriggerTypeDetail`` of protocol.md §7, minus run data)."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1, description="The trigger type id, e.g. `http`.")
    namespace: str = Field(default="default", description="Namespace of the provider.")
    worker_name: str | None = Field(default=None, description="Name of the providing worker.")
    description: str | None = Field(default=None, description="The registered description.")
    configuration_schema: Any = Field(
        default=None, description="Schema of a binding's `config` (JSON Schema), or null."
    )
    request_schema: Any = Field(default=None, description="Schema of the payload handlers receive, or null.")
    response_schema: Any = Field(default=None, description="Schema of what handlers return, or null.")


class Catalog(BaseModel):
    """A saved function catalog (the snapshot file format, version 1)."""

    model_config = ConfigDict(
        extra="forbid",
        title="iii-typed catalog snapshot",
        json_schema_extra={"required": ["format", "version", "functions", "trigger_types"]},
    )

    format: Literal["iii-typed.catalog"] = Field(
        default="iii-typed.catalog", description="Always `iii-typed.catalog`."
    )
    version: Literal[1] = Field(default=1, description="Format version.")
    functions: list[FunctionEntry] = Field(default_factory=list, description="Functions, sorted by id.")
    trigger_types: list[TriggerTypeEntry] = Field(
        default_factory=list, description="Trigger types, sorted by id."
    )


def _path(base: str, key: str | int) -> str:
    return f"{base}[{key}]" if isinstance(key, int) else f"{base}.{key}" if base else key


def json_problem(value: Any, where: str = "") -> str | None:
    """Why ``value`` (parsed JSON) cannot be a catalog, or ``None``.

    JSON text can hold what is not JSON data: ``NaN``/``Infinity`` (Python's parser accepts them;
    a ``NaN`` bound would reject every value), strings with a lone UTF-16 surrogate escape
    (``"\\ud800"``: not Unicode text, so nothing can be written from it), and nesting deeper than
    :data:`MAX_JSON_DEPTH` (which would exhaust the recursion limit). Iterative: any depth is safe.

    Returns:
        One line naming the first problem by its path (``functions[0].request_schema.maximum``).
    """
    stack: list[tuple[Any, str, int]] = [(value, where, 0)]
    while stack:
        node, at, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return f"{_show(at)}: nested more than {MAX_JSON_DEPTH} levels deep"
        if isinstance(node, float) and not math.isfinite(node):
            return f"{_show(at)}: {node!r} is not a JSON number"
        if isinstance(node, str):
            if _SURROGATE.search(node):
                return f"{_show(at)}: a string with a lone UTF-16 surrogate (not Unicode text)"
        elif isinstance(node, dict):
            for key, sub in node.items():
                if isinstance(key, str) and _SURROGATE.search(key):
                    return f"{_show(at)}: a key with a lone UTF-16 surrogate (not Unicode text)"
                stack.append((sub, _path(at, str(key)), depth + 1))
        elif isinstance(node, list):
            stack.extend((sub, _path(at, i), depth + 1) for i, sub in enumerate(node))
    return None


_SURROGATE = re.compile("[\ud800-\udfff]")


def _show(at: str) -> str:
    if not at:
        return "the document"
    return at if len(at) <= 80 else at[:77] + "..."


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _sorted_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted_json(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted_json(v) for v in value]
    return value


def _clean_worker_name(name: str | None) -> str | None:
    if name is None or _FALLBACK_WORKER_NAME.match(name):
        return None
    return name


def normalize(catalog: Catalog) -> Catalog:
    """Return ``catalog`` with run-specific values dropped, entries sorted and keys sorted.

    Duplicate entries (same id and namespace) keep the first one.
    """
    functions: dict[tuple[str, str], FunctionEntry] = {}
    for fn in catalog.functions:
        key = (fn.function_id, fn.namespace)
        if key not in functions:
            functions[key] = fn.model_copy(
                update={
                    "worker_name": _clean_worker_name(fn.worker_name),
                    "metadata": _sorted_json(fn.metadata),
                    "request_schema": _sorted_json(fn.request_schema),
                    "response_schema": _sorted_json(fn.response_schema),
                }
            )
    triggers: dict[tuple[str, str], TriggerTypeEntry] = {}
    for tt in catalog.trigger_types:
        key = (tt.id, tt.namespace)
        if key not in triggers:
            triggers[key] = tt.model_copy(
                update={
                    "worker_name": _clean_worker_name(tt.worker_name),
                    "configuration_schema": _sorted_json(tt.configuration_schema),
                    "request_schema": _sorted_json(tt.request_schema),
                    "response_schema": _sorted_json(tt.response_schema),
                }
            )
    return Catalog(
        functions=[functions[k] for k in sorted(functions)],
        trigger_types=[triggers[k] for k in sorted(triggers)],
    )


def dump_snapshot(catalog: Catalog) -> str:
    """Serialise a catalog as snapshot text: normalized, sorted keys, 2-space indent, final newline."""
    data = normalize(catalog).model_dump(mode="json")
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def parse_snapshot(text: str, source: str = "<snapshot>") -> Catalog:
    """Parse snapshot text into a normalized :class:`Catalog`.

    Raises:
        CatalogError: not JSON, not a version-1 snapshot, or a field is invalid (named in the
            message).
    """
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        raise CatalogError(f"{source}: not JSON ({exc})") from None
    except RecursionError:
        deep = f"nested more than {MAX_JSON_DEPTH} levels deep"
        raise CatalogError(f"{source}: not a snapshot ({deep})") from None
    if not isinstance(data, dict) or data.get("format") != SNAPSHOT_FORMAT:
        raise CatalogError(
            f"{source}: not an iii-typed catalog snapshot (missing format {SNAPSHOT_FORMAT!r})"
        )
    if data.get("version") != SNAPSHOT_VERSION:
        raise CatalogError(
            f"{source}: snapshot version {data.get('version')!r} is not supported"
            f" (expected {SNAPSHOT_VERSION})"
        )
    problem = json_problem(data)
    if problem is not None:
        raise CatalogError(f"{source}: not a snapshot ({problem})")
    try:
        return normalize(Catalog.model_validate(data))
    except ValidationError as exc:
        detail = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors(include_url=False)
        )
        raise CatalogError(f"{source}: invalid snapshot: {detail}") from None


def load_snapshot(path: str | Path) -> Catalog:
    """Read a snapshot file (see :func:`parse_snapshot`).

    Raises:
        CatalogError: the file cannot be read or is not a valid snapshot.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogError(f"cannot read snapshot {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        reason = f"not UTF-8 text: {exc.reason} at byte {exc.start}"
        raise CatalogError(f"{path}: not a snapshot ({reason})") from None
    return parse_snapshot(text, str(path))


def catalog_schema_path(root: Path) -> Path:
    """Where the snapshot's JSON Schema lives in a checkout."""
    return root / "schema" / "catalog" / "catalog.v1.schema.json"


def catalog_json_schema() -> str:
    """The JSON Schema of the snapshot format, as committed in ``schema/catalog/``."""
    schema = Catalog.model_json_schema()
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


# -- live catalog ------------------------------------------------------------------------------


def _batches(items: Sequence[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def _call(iii: Any, function_id: str, payload: dict[str, Any], timeout_ms: int) -> dict[str, Any]:
    result = iii.trigger({"function_id": function_id, "payload": payload, "timeout_ms": timeout_ms})
    if not isinstance(result, dict):
        raise CatalogError(f"{function_id} returned {type(result).__name__}, expected an object")
    return result


def read_catalog(iii: Any, timeout_ms: int = 10_000) -> Catalog:
    """Read the catalog through a connected SDK client (anything with ``trigger(request)``).

    Calls ``engine::functions::list``, then ``engine::functions::info`` with ``function_ids`` in
    batches of at most :data:`INFO_BATCH` per namespace, then ``engine::triggers::list`` and
    ``engine::triggers::info`` per trigger type (protocol.md §7). A function that disappears
    between the list and the info call is skipped.

    Raises:
        CatalogError: a reply has an unexpected shape.
        InvocationError: an engine function failed.
    """
    listed = _call(iii, "engine::functions::list", {}, timeout_ms).get("functions")
    if not isinstance(listed, list):
        raise CatalogError("engine::functions::list: reply has no `functions` list")
    by_namespace: dict[str, list[str]] = {}
    for row in listed:
        if isinstance(row, dict) and isinstance(row.get("function_id"), str):
            ns = row.get("namespace") if isinstance(row.get("namespace"), str) else "default"
            by_namespace.setdefault(str(ns), []).append(row["function_id"])
    functions: list[FunctionEntry] = []
    for ns in sorted(by_namespace):
        ids = sorted(set(by_namespace[ns]))
        for batch in _batches(ids, INFO_BATCH):
            reply = _call(
                iii, "engine::functions::info", {"function_ids": batch, "namespace": ns}, timeout_ms
            )
            details = reply.get("functions")
            if not isinstance(details, list):
                raise CatalogError("engine::functions::info: reply has no `functions` list")
            for detail in details:
                if not isinstance(detail, dict) or "error" in detail:
                    continue
                problem = json_problem(detail, f"function {detail.get('function_id')}")
                if problem is not None:
                    raise CatalogError(f"engine::functions::info: bad function detail: {problem}")
                try:
                    functions.append(FunctionEntry.model_validate({"namespace": ns, **detail}))
                except ValidationError as exc:
                    raise CatalogError(f"engine::functions::info: bad function detail: {exc}") from None
    triggers_reply = _call(iii, "engine::triggers::list", {}, timeout_ms).get("triggers")
    if not isinstance(triggers_reply, list):
        raise CatalogError("engine::triggers::list: reply has no `triggers` list")
    trigger_types: list[TriggerTypeEntry] = []
    for row in triggers_reply:
        if not isinstance(row, dict) or not isinstance(row.get("id"), str):
            continue
        payload: dict[str, Any] = {"id": row["id"]}
        if isinstance(row.get("namespace"), str):
            payload["namespace"] = row["namespace"]
        detail = _call(iii, "engine::triggers::info", payload, timeout_ms)
        problem = json_problem(detail, f"trigger type {row['id']}")
        if problem is not None:
            raise CatalogError(f"engine::triggers::info: bad trigger type detail: {problem}")
        try:
            trigger_types.append(TriggerTypeEntry.model_validate(detail))
        except ValidationError as exc:
            raise CatalogError(f"engine::triggers::info: bad trigger type detail: {exc}") from None
    return normalize(Catalog(functions=functions, trigger_types=trigger_types))


def fetch_catalog(url: str, *, timeout_ms: int = 10_000) -> Catalog:
    """Connect to the engine at ``url`` as a transient worker, read the catalog, disconnect.

    Raises:
        CatalogError: the address is malformed, the engine cannot be reached, or a reply is
            malformed.
    """
    import os

    from iii_typed import InitOptions, OtelConfig, ReconnectionConfig, register_worker
    from iii_typed.client import resolve_engine_url
    from iii_typed.errors import IIIError

    try:
        url = resolve_engine_url(url)
    except ValueError as exc:  # a malformed address is a usage error, not a crash
        raise CatalogError(str(exc)) from None

    options = InitOptions(
        # One name per process: two concurrent runs must not contend for one worker lease.
        worker_name=f"iii-typed-codegen-{os.getpid()}",
        reconnection_config=ReconnectionConfig(initial_delay_ms=100, max_delay_ms=500, max_retries=3),
        otel=OtelConfig(enabled=False),
    )
    try:
        with register_worker(url, options) as iii:
            return read_catalog(iii, timeout_ms)
    except IIIError as exc:
        raise CatalogError(f"cannot read the catalog from {url}: {exc}") from exc
    except OSError as exc:
        raise CatalogError(f"cannot connect to {url}: {exc}") from exc
