"""Render a typed client module from a catalog selection (``iii-typed codegen generate``).

Pipeline: *select → prepare → name → generate → merge → emit* (docs/codegen.md):

1. **select** the functions and trigger types of an :class:`~iii_codegen.config.OutputSpec`;
2. **prepare** every request/response (config/payload/return) schema into entries
   (:mod:`iii_codegen.schemas`);
3. **name** every entry across the whole module (:mod:`iii_codegen.naming`): identical types share
   a class, different types that want one name are qualified by their owner's id;
4. **generate** pydantic models with datamodel-code-generator's Python API in-process, a few units
   (functions or trigger types) per call; a unit's classes depend only on its own schemas and the
   names, so the grouping does not show in the result (a unit whose field names shadow imports
   gets a call of its own); large catalogs use worker processes. When a call fails, each side of
   its units is tried alone; a side the generator cannot convert is typed ``Any`` with a warning
   (as if it had no schema), and naming and generation start over without it;
5. **merge** the calls' modules: imports are combined, shared classes kept once, a class name the
   generator derived (``CreateOrderInputAddress``) that another type already uses is renamed
   (``CreateOrderInputAddress2``), and the classes are ordered by name with definitions before
   their uses (recursive models are rebuilt at the end), so a new type only inserts lines;
6. **emit** the namespaces, ``Client`` and ``AsyncClient`` (runtime in :mod:`iii_typed.stubs`).

Everything is sorted and free of timestamps and absolute paths, so the same catalog, in any order,
gives the same bytes.
"""

from __future__ import annotations

import ast
import hashlib
import heapq
import io
import json
import os
import re
import subprocess
import sys
import tokenize
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import _dcg
from .catalog import Catalog, FunctionEntry, TriggerTypeEntry
from .config import OutputSpec, select
from .naming import (
    RESERVED_MODULE_NAMES,
    attribute_name,
    pascal_case,
    qualifier,
    snake_case,
    split_words,
    unique_attribute_names,
)
from .schemas import (
    CALLER_RECEIVES,
    CALLER_SENDS,
    CHANNEL_MARKER,
    HANDLER_RECEIVES,
    LOCAL_REF,
    NULL,
    OPEN,
    ChannelTypes,
    PreparedSide,
    canonical_json,
    channel_kind,
    prepare_side,
    unusable,
)

__all__ = [
    "CHUNK_UNITS",
    "GENERATOR_VERSION",
    "PARALLEL_MIN_UNITS",
    "CodegenError",
    "Rendered",
    "class_name",
    "read_digests",
    "render",
]

#: Version of the emitted shape; recorded in the banner, bumped when generated code changes.
GENERATOR_VERSION = 2
#: Units (functions and trigger types) per datamodel-code-generator call.
CHUNK_UNITS = 8
#: Catalogs of at least this many units generate in worker processes (one per free core, at most 4).
PARALLEL_MIN_UNITS = 256
_LINE = _dcg.LINE_LENGTH
_FUNCTION_SIDES = (("request", "Input", CALLER_SENDS), ("response", "Result", CALLER_RECEIVES))
# A trigger helper's caller sends the config; its handler receives the payload (with live channel
# sides) and sends the return value.
_TRIGGER_SIDES = (
    ("config", "Config", CALLER_SENDS),
    ("payload", "Payload", HANDLER_RECEIVES),
    ("return", "Return", CALLER_SENDS),
)
#: Channel refs of built-in trigger types' payloads that an engine may publish as a bare object.
_BUILTIN_PAYLOAD_CHANNELS: dict[str, dict[str, str]] = {
    "http": {"request_body": "reader", "response": "writer"},
}
_DIGEST_HEADER = "# iii-typed catalog digest (what `generate --check` compares):"
_DIGEST_LINE = re.compile(r"^#   (function|trigger) (.+) ([0-9a-f]{12})$")


class CodegenError(Exception):
    """A module could not be generated (the message names the function or trigger type)."""


@dataclass
class Rendered:
    """A generated module.

    Attributes:
        source: The module text.
        warnings: Messages for the user (unmatched globs, dropped schema parts, renames).
        digests: ``{"function orders::create": "<12 hex>", ...}`` for ``--check`` reports.
    """

    source: str
    warnings: list[str]
    digests: dict[str, str]


@dataclass
class _Side:
    label: str
    suffix: str
    prepared: PreparedSide
    type_expr: str = "Any"


@dataclass
class _Unit:
    kind: str  # "function" | "trigger"
    id: str
    description: str | None
    sides: list[_Side]
    digest: str
    names: dict[tuple[str, str], str] = field(default_factory=dict)  # (side, key) -> class name

    @property
    def label(self) -> str:
        return f"{self.kind} {self.id}"

    def side(self, label: str) -> _Side:
        return next(s for s in self.sides if s.label == label)


def class_name(raw: str) -> str:
    """A PascalCase class name from a title or key (``""`` when nothing usable remains)."""
    name = "".join(w[:1].upper() + w[1:] for w in split_words(raw))
    if name[:1].isdigit():
        name = "Model" + name
    return name


def _digest(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()[:12]


def _sides(specs: Sequence[tuple[str, str, ChannelTypes]], schemas: Sequence[Any]) -> list[_Side]:
    return [
        _Side(label, suffix, prepare_side(schema, channels))
        for (label, suffix, channels), schema in zip(specs, schemas, strict=True)
    ]


def _with_builtin_channels(trigger_type: str, payload: Any) -> Any:
    """``payload`` with the channel refs of a built-in trigger type marked, where the engine
    published them as a bare object (``{"type": "object"}``)."""
    known = _BUILTIN_PAYLOAD_CHANNELS.get(trigger_type)
    props = payload.get("properties") if isinstance(payload, dict) else None
    if not known or not isinstance(props, dict):
        return payload
    marked = dict(props)
    for name, kind in known.items():
        prop = props.get(name)
        if not isinstance(prop, dict) or prop.get("type") not in ("object", None):
            continue
        if channel_kind(prop) is None and not set(prop) - {"type", "title", "description"}:
            marked[name] = {**prop, "type": "object", CHANNEL_MARKER: kind}
    return {**payload, "properties": marked}


def _function_unit(fn: FunctionEntry) -> _Unit:
    sides = _sides(_FUNCTION_SIDES, (fn.request_schema, fn.response_schema))
    digest = _digest([fn.description, fn.request_schema, fn.response_schema])
    return _Unit("function", fn.function_id, fn.description, sides, digest)


def _trigger_unit(tt: TriggerTypeEntry) -> _Unit:
    schemas = (tt.configuration_schema, tt.request_schema, tt.response_schema)
    payload = _with_builtin_channels(tt.id, tt.request_schema)
    sides = _sides(_TRIGGER_SIDES, (tt.configuration_schema, payload, tt.response_schema))
    return _Unit("trigger", tt.id, tt.description, sides, _digest([tt.description, *schemas]))


# -- naming --------------------------------------------------------------------------------


@dataclass
class _Candidate:
    unit: int
    side: str
    key: str
    preferred: str
    identity: str
    owner: str
    derived: bool  # named <Leaf><Suffix>: the leaf is already in the name

    def qualified(self, owner: str) -> str:
        parents = owner.split("::")[:-1]
        if self.derived and parents:
            return qualifier("::".join(parents)) + self.preferred
        return qualifier(owner) + self.preferred


def _leaf(entry_id: str) -> str:
    return class_name(entry_id.split("::")[-1]) or "Unnamed"


def _assign_names(units: list[_Unit]) -> None:
    candidates: list[_Candidate] = []
    for index, unit in enumerate(units):
        unit.names.clear()
        for side in unit.sides:
            prep = side.prepared
            if prep.kind != "schema":
                continue
            preferred: dict[str, str] = {}
            derived: set[str] = set()
            for key, entry in prep.entries.items():
                raw = entry.preferred
                if key == "#":
                    title = entry.schema.get("title")
                    raw = title if isinstance(title, str) and class_name(title) else None
                name = class_name(raw) if raw else ""
                if not name:
                    name = f"{_leaf(unit.id)}{side.suffix}"
                    derived.add(key)
                preferred[key] = name
            for key in prep.entries:
                identity = prep.deep_hash(key, preferred)
                candidates.append(
                    _Candidate(index, side.label, key, preferred[key], identity, unit.id, key in derived)
                )
    # Group by preferred name; one identity keeps the name, several are all qualified by owner.
    by_name: dict[str, list[_Candidate]] = {}
    for cand in candidates:
        by_name.setdefault(cand.preferred, []).append(cand)
    proposed: dict[str, str] = {}  # identity -> name
    qualified: set[str] = set()
    for name, group in sorted(by_name.items()):
        identities = sorted({c.identity for c in group})
        if len(identities) == 1 and name not in RESERVED_MODULE_NAMES:
            proposed[identities[0]] = name
            continue
        for identity in identities:
            first = min((c for c in group if c.identity == identity), key=lambda c: c.owner)
            proposed[identity] = first.qualified(first.owner)
            qualified.add(identity)
    # Still clashing (or reserved): suffix 2, 3… in a stable order, unqualified names first.
    final: dict[str, str] = {}
    used: set[str] = set(RESERVED_MODULE_NAMES)
    first_owner: dict[str, str] = {}
    for cand in candidates:
        if cand.identity not in first_owner or cand.owner < first_owner[cand.identity]:
            first_owner[cand.identity] = cand.owner
    for identity in sorted(proposed, key=lambda i: (i in qualified, first_owner[i], proposed[i], i)):
        base = proposed[identity]
        name = base
        n = 2
        while name in used:
            name = f"{base}{n}"
            n += 1
        used.add(name)
        final[identity] = name
    for cand in candidates:
        units[cand.unit].names[(cand.side, cand.key)] = final[cand.identity]
    for unit in units:
        for side in unit.sides:
            prep = side.prepared
            if prep.kind == OPEN:
                side.type_expr = "Any"
            elif prep.kind == NULL:
                side.type_expr = "None"
            else:
                expr = unit.names[(side.label, prep.root_key)]
                side.type_expr = f"{expr} | None" if prep.nullable else expr


def _resolve_refs(node: Any, names: dict[str, str]) -> Any:
    if isinstance(node, dict):
        if LOCAL_REF in node:
            rest = {k: _resolve_refs(v, names) for k, v in node.items() if k != LOCAL_REF}
            return {"$ref": f"#/$defs/{names[node[LOCAL_REF]]}", **rest}
        return {k: _resolve_refs(v, names) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve_refs(v, names) for v in node]
    return node


def _unit_defs(unit: _Unit, only: _Side | None = None) -> dict[str, Any]:
    """The ``$defs`` of ``unit``'s schema sides (of side ``only`` when given), by class name."""
    defs: dict[str, Any] = {}
    for side in unit.sides:
        prep = side.prepared
        if prep.kind != "schema" or (only is not None and side is not only):
            continue
        local = {key: unit.names[(side.label, key)] for key in prep.entries}
        for key, entry in prep.entries.items():
            defs[local[key]] = _resolve_refs(entry.schema, local)
    return defs


@dataclass
class _Chunk:
    units: list[_Unit]
    defs: dict[str, Any]

    @property
    def document(self) -> str:
        return canonical_json({"$defs": dict(sorted(self.defs.items()))})

    @property
    def label(self) -> str:
        return ", ".join(u.label for u in self.units)


# Field names that make datamodel-code-generator alias an import for the whole module it writes
# (`from datetime import date as date_aliased` when a field is called `date`).
_SHADOWING_FIELDS = frozenset(
    n.lower()
    for n in (
        *RESERVED_MODULE_NAMES,
        "date",
        "datetime",
        "time",
        "timedelta",
        "uuid",
        "decimal",
        "Dict",
        "List",
    )
)


def _shadows_imports(unit: _Unit) -> bool:
    def walk(node: Any) -> bool:
        if isinstance(node, dict):
            props = node.get("properties")
            if isinstance(props, dict) and any(
                k.lower() in _SHADOWING_FIELDS or snake_case(k) in _SHADOWING_FIELDS for k in props
            ):
                return True
            return any(walk(v) for v in node.values())
        if isinstance(node, list):
            return any(walk(v) for v in node)
        return False

    return any(walk(entry.schema) for side in unit.sides for entry in side.prepared.entries.values())


def _chunks(units: list[_Unit], size: int) -> list[_Chunk]:
    # Several units per generator call: each call has a fixed cost of a few ms. The result does
    # not depend on the grouping (names are unique per type, blocks are ordered by name), except
    # that a unit whose field names shadow imports changes the imports of its whole call: such a
    # unit gets a call of its own.
    out: list[_Chunk] = []
    group: list[_Unit] = []

    def flush() -> None:
        if group:
            defs: dict[str, Any] = {}
            for unit in group:
                defs.update(_unit_defs(unit))
            out.append(_Chunk(list(group), defs))
            group.clear()

    for unit in units:
        if _shadows_imports(unit):
            flush()
            group.append(unit)
            flush()
            continue
        group.append(unit)
        if len(group) >= size:
            flush()
    flush()
    return out


# -- generation ----------------------------------------------------------------------------


def _run_generator(documents: list[str], jobs: int | None, units: int) -> list[_dcg.Result]:
    if jobs is None:
        jobs = _default_jobs(units)
    workers = max(1, min(jobs, len(documents)))
    if workers < 2:
        return _dcg.generate_many(documents)
    # Worker *processes* started explicitly (not multiprocessing: its spawn and forkserver modes
    # re-import the caller's __main__, and fork is unsafe in a process that has threads).
    shares = [documents[i::workers] for i in range(workers)]
    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(_run_worker, shares))
    ordered: list[_dcg.Result] = [_dcg.Result("", [])] * len(documents)
    for offset, share in enumerate(results):
        for i, item in enumerate(share):
            ordered[offset + i * workers] = item
    return ordered


def _default_jobs(units: int) -> int:
    # A worker process costs ~0.7 s to start (imports), and only helps on idle cores: use them
    # for large catalogs, one per core that the 1-minute load average leaves free (at most 4).
    if units < PARALLEL_MIN_UNITS:
        return 1
    cores = os.cpu_count() or 1
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return max(1, min(4, cores, round(cores - load)))


def _run_worker(documents: list[str]) -> list[_dcg.Result]:
    package_root = str(Path(__file__).resolve().parents[1])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "iii_codegen._dcg"],
        input=json.dumps(documents).encode(),
        capture_output=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        tail = proc.stderr.decode("utf-8", "replace")[-1000:]
        raise CodegenError(f"a generator worker process failed (exit {proc.returncode}): {tail}")
    out: list[_dcg.Result] = []
    for item in json.loads(proc.stdout):
        if "error" in item:
            out.append(_dcg.Result("", [], str(item["error"])))
        else:
            out.append(_dcg.Result(str(item["source"]), [str(w) for w in item["warnings"]]))
    return out


def _generate(
    units: list[_Unit], jobs: int | None, chunk_units: int
) -> tuple[list[_Chunk], list[_dcg.Result]]:
    """Name the units' types and generate their models, typing ``Any`` every side that the
    generator cannot convert.

    A failed call is retried one side at a time (the same way in-process and in worker
    processes); each side that fails alone is replaced by an unusable (``Any``) side whose warning
    carries the generator's reason, and everything is named and generated again, so the module is
    the one that the catalog would give without those schemas. Which sides fail does not depend on
    the grouping into calls or on ``jobs``.

    Returns:
        The chunks and one successful result per chunk.

    Raises:
        CodegenError: a call failed but none of its sides fails alone (the message names the units).
    """
    while True:
        _assign_names(units)
        chunks = _chunks([u for u in units if any(s.prepared.kind == "schema" for s in u.sides)], chunk_units)
        results = _run_generator([c.document for c in chunks], jobs, sum(len(c.units) for c in chunks))
        failed = [(chunk, result) for chunk, result in zip(chunks, results, strict=True) if result.error]
        if not failed:
            return chunks, results
        probes = [
            (unit, side)
            for chunk, _ in failed
            for unit in chunk.units
            for side in unit.sides
            if side.prepared.kind == "schema"
        ]
        documents = [canonical_json({"$defs": dict(sorted(_unit_defs(u, s).items()))}) for u, s in probes]
        verdicts = _run_generator(documents, jobs, len(probes))
        culprits = [(side, v.error) for (_, side), v in zip(probes, verdicts, strict=True) if v.error]
        if not culprits:
            chunk, result = failed[0]
            raise CodegenError(f"{chunk.label}: datamodel-code-generator failed: {result.error}")
        for side, error in culprits:
            side.prepared = unusable(f"datamodel-code-generator cannot generate it ({error})")


# -- merging -------------------------------------------------------------------------------


@dataclass
class _Block:
    name: str
    text: str
    node: ast.stmt


@dataclass
class _Parsed:
    froms: set[tuple[str, str, str | None]]
    plains: set[tuple[str, str | None]]
    blocks: list[_Block]


def _parse_module(source: str, label: str) -> _Parsed:
    tree = ast.parse(source)
    lines = source.splitlines()
    out = _Parsed(set(), set(), [])
    for node in tree.body:
        start = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
        text = "\n".join(lines[start - 1 : node.end_lineno])
        if isinstance(node, ast.ImportFrom):
            if node.module != "__future__":
                for alias in node.names:
                    out.froms.add((node.module or "", alias.name, alias.asname))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                out.plains.add((alias.name, alias.asname))
        elif isinstance(node, ast.ClassDef):
            out.blocks.append(_Block(node.name, text, node))
        elif (
            isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
        ):
            out.blocks.append(_Block(node.targets[0].id, text, node))
        elif (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            if out.blocks:  # an attribute docstring belongs to the statement before it
                out.blocks[-1].text += "\n" + text
        elif (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Attribute)
            and node.value.func.attr == "model_rebuild"
        ):
            continue  # recomputed for the merged order (see _order)
        else:
            raise CodegenError(f"{label}: unexpected statement in generated models: {text[:80]!r}")
    return out


def _rename(text: str, renames: dict[str, str]) -> str:
    if not renames:
        return text
    pattern = re.compile(
        r"\b(" + "|".join(re.escape(k) for k in sorted(renames, key=len, reverse=True)) + r")\b"
    )
    tokens = []
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type == tokenize.NAME and tok.string in renames:
            tok = tok._replace(string=renames[tok.string])
        elif tok.type == tokenize.STRING:
            tok = tok._replace(string=pattern.sub(lambda m: renames[m.group(1)], tok.string))
        tokens.append(tok)
    return tokenize.untokenize(tokens)


@dataclass
class _Merged:
    froms: set[tuple[str, str, str | None]] = field(default_factory=set)
    plains: set[tuple[str, str | None]] = field(default_factory=set)
    blocks: dict[str, _Block] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _merge(chunks: list[_Chunk], outputs: list[_dcg.Result]) -> _Merged:
    merged = _Merged()
    canonical: dict[str, str] = {}  # block text with import aliases undone, for comparisons
    all_assigned = {name for chunk in chunks for name in chunk.defs}
    for chunk, (source, messages, _) in zip(chunks, outputs, strict=True):
        merged.warnings.extend(f"{chunk.label}: {message}" for message in messages)
        parsed = _parse_module(source, chunk.label)
        names = {b.name for b in parsed.blocks}
        missing = sorted(set(chunk.defs) - names)
        if missing:
            raise CodegenError(f"{chunk.label}: the generator did not produce {', '.join(missing)}")
        # `from datetime import date as date_aliased` (a field is called `date`) must not make
        # the same class look different in two chunks.
        unalias = {asname: name for _, name, asname in parsed.froms if asname is not None}
        renames: dict[str, str] = {}
        taken = all_assigned | set(merged.blocks) | RESERVED_MODULE_NAMES | names
        for block in parsed.blocks:
            if block.name in chunk.defs:
                continue
            clash = block.name in all_assigned or block.name in RESERVED_MODULE_NAMES
            if not clash and block.name in merged.blocks:
                clash = canonical[block.name] != _rename(block.text, unalias)
            if clash:
                n = 2
                while f"{block.name}{n}" in taken:
                    n += 1
                renames[block.name] = f"{block.name}{n}"
                taken.add(renames[block.name])
        if renames:
            merged.warnings.append(
                f"{chunk.label}: renamed "
                + ", ".join(f"{old} -> {new}" for old, new in sorted(renames.items()))
                + " (the name is taken by another type)"
            )
        for block in parsed.blocks:
            name = renames.get(block.name, block.name)
            text = _rename(block.text, renames)
            plain = _rename(text, unalias)
            if name in merged.blocks:
                if canonical[name] != plain:
                    raise CodegenError(f"{chunk.label}: two different definitions of {name}")
                continue
            node = block.node if text == block.text else ast.parse(text).body[0]
            merged.blocks[name] = _Block(name, text, node)
            canonical[name] = plain
        merged.froms |= parsed.froms
        merged.plains |= parsed.plains
    return merged


def _references(block: _Block, used: set[str]) -> tuple[set[str], set[str]]:
    """Names of other blocks that ``block`` uses (``used``, from :func:`_loaded_names`), split
    into ``(all, eager)``.

    *Eager* uses are evaluated when the statement runs (base classes, the value of a
    ``TypeAliasType``); the rest are annotations, resolved later. Forward references written as
    strings (``"list[Json]"``) count as lazy uses; docstrings do not count.
    """
    node = block.node
    used = used - {block.name}
    eager_roots: list[ast.AST] = []
    if isinstance(node, ast.ClassDef):
        eager_roots = [*node.bases, *node.keywords]
    elif isinstance(node, ast.Assign):
        eager_roots = [node.value]
    eager = {n.id for root in eager_roots for n in ast.walk(root) if isinstance(n, ast.Name) and n.id in used}
    return used, eager


def _order(blocks: dict[str, _Block]) -> tuple[list[str], list[str], set[str]]:
    """A stable order for the model blocks, and the classes to rebuild after all of them.

    Definitions come before their uses wherever possible, otherwise by name (the smallest
    available name first), so a new type only inserts its blocks. Cycles (recursive models) are
    broken at the smallest name whose eager uses are already defined; a class that refers to a
    later one is rebuilt at the end (``Model.model_rebuild()``).

    Raises:
        CodegenError: base classes or aliases form a cycle (not a valid module).
    """
    known = set(blocks)
    uses: dict[str, set[str]] = {}
    eager: dict[str, set[str]] = {}
    read: set[str] = set()
    for name, block in blocks.items():
        loaded = _loaded_names(block.node)
        read |= loaded
        uses[name], eager[name] = _references(block, loaded & known)
    users: dict[str, set[str]] = {name: set() for name in blocks}
    for name, deps in uses.items():
        for dep in deps:
            users[dep].add(name)
    waiting = {name: len(deps) for name, deps in uses.items()}
    ready = [name for name, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    done: set[str] = set()
    order: list[str] = []
    while len(order) < len(blocks):
        if ready:
            name = heapq.heappop(ready)
        else:
            candidates = sorted(n for n in blocks if n not in done and eager[n] <= done)
            if not candidates:
                stuck = sorted(n for n in blocks if n not in done)
                raise CodegenError(
                    f"types that cannot be ordered (cyclic base classes?): {', '.join(stuck[:5])}"
                )
            name = candidates[0]
        if name in done:
            continue
        done.add(name)
        order.append(name)
        for user in users[name]:
            waiting[user] -= 1
            if waiting[user] == 0 and user not in done:
                heapq.heappush(ready, user)
    position = {name: i for i, name in enumerate(order)}
    rebuild = [
        name
        for name in order
        if isinstance(blocks[name].node, ast.ClassDef)
        and any(position[dep] > position[name] for dep in uses[name])
    ]
    return order, rebuild, read


# -- emitting ------------------------------------------------------------------------------


def _order_key(name: str) -> tuple[int, str]:
    if len(name) > 1 and name.isupper():
        return (0, name)
    return (1, name) if name[:1].isupper() else (2, name)


def _from_line(module: str, names: list[str]) -> str:
    line = f"from {module} import {', '.join(names)}"
    if len(line) <= _LINE:
        return line
    body = "".join(f"    {n},\n" for n in names)
    return f"from {module} import (\n{body})"


def _render_imports(froms: set[tuple[str, str, str | None]], plains: set[tuple[str, str | None]]) -> str:
    stdlib = set(sys.stdlib_module_names)
    sections: list[list[str]] = [[], [], []]

    def section(module: str) -> int:
        top = module.split(".")[0]
        return 0 if top in stdlib else 2 if top == "iii_typed" else 1

    for name, asname in sorted(plains):
        sections[section(name)].append(f"import {name}" + (f" as {asname}" if asname else ""))
    modules = sorted({m for m, _, _ in froms})
    for idx in range(3):
        from_lines: list[tuple[str, str]] = []
        for module in (m for m in modules if section(m) == idx):
            plain = sorted({n for m, n, a in froms if m == module and a is None}, key=_order_key)
            aliased = sorted((n, a) for m, n, a in froms if m == module and a is not None)
            if plain:
                from_lines.append((module, _from_line(module, plain)))
            for n, a in aliased:
                from_lines.append((module, f"from {module} import {n} as {a}"))
        sections[idx].extend(line for _, line in sorted(from_lines, key=lambda t: t[0]))
    return "\n\n".join("\n".join(s) for s in sections if s)


#: Characters that must not appear raw in generated source: C0/C1 controls (NUL cannot be compiled,
#: CR and LF end a comment) and the Unicode line and paragraph separators.
_UNSAFE_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def _comment_text(text: str) -> str:
    """``text`` made safe for a ``#`` comment: control characters written as ``\\xNN`` escapes
    (an id or glob with a newline would otherwise end the comment and break the module)."""
    return _UNSAFE_CHARS.sub(_escape_char, text)


def _escape_doc(text: str) -> str:
    """``text`` made safe inside a triple-quoted docstring: backslashes and ``\"\"\"`` escaped, and
    control characters (from ids, titles or descriptions) written as escapes of the same value."""
    text = text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    text = _UNSAFE_CHARS.sub(lambda m: m.group() if m.group() == "\t" else _escape_char(m), text)
    return text + " " if text.endswith('"') else text


def _docstring(lines: Sequence[str], indent: str) -> str:
    clean = [_escape_doc(line.rstrip()) for line in lines]
    while clean and not clean[-1]:
        clean.pop()
    if not clean:
        return ""
    if len(clean) == 1 and len(indent) + len(clean[0]) + 6 <= _LINE:
        return f'{indent}"""{clean[0]}"""'
    body = "\n".join(f"{indent}{line}" if line else "" for line in clean[1:])
    return f'{indent}"""{clean[0]}\n{body}\n{indent}"""'


def _assign_call(indent: str, target: str, callee: str, args: Sequence[str]) -> str:
    head = f"{indent}{target} = {callee}("
    one = head + ", ".join(args) + ")"
    if len(one) <= _LINE:
        return one
    inner = f"{indent}    " + ", ".join(args)
    if len(inner) <= _LINE:
        return f"{head}\n{inner}\n{indent})"
    body = "".join(f"{indent}    {a},\n" for a in args)
    return f"{head}\n{body}{indent})"


def _descriptor(indent: str, attr: str, cls: str, type_args: Sequence[str], call_args: Sequence[str]) -> str:
    """``attr: _stubs.Cls[T...] = _stubs.Cls(args...)``, laid out as ruff format would keep it."""
    annotated = f"{attr}: _stubs.{cls}[{', '.join(type_args)}]"
    if len(f"{indent}{annotated} = _stubs.{cls}(") <= _LINE:
        return _assign_call(indent, annotated, f"_stubs.{cls}", call_args)
    # Long type names: the subscripted call, exploded (the trailing commas keep ruff's layout).
    inner = indent + "    "
    types = "".join(f"{inner}{t},\n" for t in type_args)
    args = "".join(f"{inner}{a},\n" for a in call_args)
    return f"{indent}{attr} = _stubs.{cls}[\n{types}{indent}](\n{args}{indent})"


def _description_lines(text: str | None) -> list[str]:
    if not text or not text.strip():
        return []
    return [line.rstrip() for line in text.strip().splitlines()]


@dataclass
class _Leaf:
    attr: str
    code: str


@dataclass
class _Node:
    path: tuple[str, ...]
    children: dict[str, _Node] = field(default_factory=dict)
    functions: dict[str, _Unit] = field(default_factory=dict)
    triggers: dict[str, _Unit] = field(default_factory=dict)
    class_name: str = ""


def _tree(functions: Iterable[_Unit], triggers: Iterable[_Unit]) -> _Node:
    root = _Node(())

    def node_for(segments: Sequence[str]) -> _Node:
        node = root
        for seg in segments:
            node = node.children.setdefault(seg, _Node((*node.path, seg)))
        return node

    for unit in functions:
        *parents, leaf = unit.id.split("::")
        node_for(parents).functions[leaf] = unit
    for unit in triggers:
        *parents, leaf = unit.id.split("::")
        node_for(parents).triggers[leaf] = unit
    return root


def _walk(node: _Node) -> Iterable[_Node]:
    for key in sorted(node.children):
        yield from _walk(node.children[key])
    yield node


def _function_code(unit: _Unit, attr: str, indent: str) -> str:
    req, res = unit.side("request").type_expr, unit.side("response").type_expr
    code = _descriptor(indent, attr, "Function", [req, res], [json.dumps(unit.id), req, res])
    doc = _description_lines(unit.description)
    summary = _wrap_words("", f"``{unit.id}``: ``{req}`` → ``{res}``.".split(" "), _LINE - len(indent) - 6)
    lines = [*doc, "", *summary] if doc else summary
    return code + "\n" + _docstring(lines, indent)


def _trigger_code(unit: _Unit, attr: str, indent: str) -> str:
    cfg, pay, ret = (unit.side(s).type_expr for s in ("config", "payload", "return"))
    code = _descriptor(indent, attr, "TriggerHelper", [cfg, pay, ret], [json.dumps(unit.id), cfg, pay, ret])
    doc = _description_lines(unit.description)
    summary = _wrap_words(
        "",
        f"Register a handler for trigger type ``{unit.id}``: config ``{cfg}``, payload ``{pay}``,"
        f" return ``{ret}``.".split(" "),
        _LINE - len(indent) - 4,
    )
    lines = [*doc, "", *summary] if doc else summary
    return code + "\n" + _docstring(lines, indent)


def _namespace_classes(root: _Node, warnings: list[str]) -> list[str]:
    taken_classes: set[str] = set()
    for node in _walk(root):
        base = (
            "_"
            + ("".join(pascal_case(s) or "Unnamed" for s in node.path).lstrip("_") or "Root")
            + "Namespace"
        )
        name, n = base, 2
        while name in taken_classes:
            name, n = f"{base}{n}", n + 1
        taken_classes.add(name)
        node.class_name = name
    out: list[str] = []
    for node in _walk(root):
        indent = "    "
        ns_attrs = unique_attribute_names(list(node.children))
        used = set(ns_attrs.values())
        leaves: list[_Leaf] = []
        for raw, unit in sorted(node.functions.items()):
            attr = attribute_name(raw)
            if attr in used and raw in node.children:
                warnings.append(f"function {unit.id}: `{attr}` is also a namespace; the method is `{attr}_`")
                attr += "_"
            base, n = attr, 2
            while attr in used:
                attr, n = f"{base}_{n}", n + 1
            if attr != base and not base.endswith("_"):
                warnings.append(f"function {unit.id}: method `{base}` is taken; named `{attr}`")
            used.add(attr)
            leaves.append(_Leaf(attr, _function_code(unit, attr, indent)))
        for raw, unit in sorted(node.triggers.items()):
            base = "on_" + attribute_name(raw).lstrip("_")
            attr, n = base, 2
            while attr in used:
                attr, n = f"{base}_{n}", n + 1
            if attr != base:
                warnings.append(f"trigger type {unit.id}: helper `{base}` is taken; named `{attr}`")
            used.add(attr)
            leaves.append(_Leaf(attr, _trigger_code(unit, attr, indent)))
        where = "::".join(node.path)
        doc = f"Functions under ``{where}::``." if node.path else "Top-level functions and namespaces."
        parts = [f"class {node.class_name}(_stubs.Namespace[_stubs.Mode]):", _docstring([doc], indent)]
        for leaf in sorted(leaves, key=lambda lf: lf.attr):
            parts.append("")
            parts.append(leaf.code)
        if node.children:
            parts.append("")
            parts.append(f"{indent}def __init__(self, runtime: _stubs.Runtime[_stubs.Mode]) -> None:")
            parts.append(f"{indent}    super().__init__(runtime)")
            for raw in sorted(node.children, key=lambda r: ns_attrs[r]):
                parts.append(f"{indent}    self.{ns_attrs[raw]} = {node.children[raw].class_name}(runtime)")
        out.append("\n".join(parts))
    return out


def _client_classes(root: _Node, spec: OutputSpec) -> list[str]:
    out: list[str] = []
    for kind, cls, mode, factory, what in (
        ("sync", "Client", "Sync", "sync_runtime", "Blocking typed client: each call waits for the result."),
        (
            "async",
            "AsyncClient",
            "Async",
            "async_runtime",
            "Asynchronous typed client: each call is awaited.",
        ),
    ):
        if kind not in spec.clients:
            continue
        doc = _docstring(
            [
                what,
                "",
                "Args:",
                "    iii: A connected SDK client (``iii_typed.register_worker(...)``).",
                "    namespace: Namespace the functions are called in (default: the SDK's rule,",
                "        the caller's namespace).",
            ],
            "    ",
        )
        out.append(
            f"class {cls}({root.class_name}[_stubs.{mode}]):\n{doc}\n\n"
            f"    def __init__(self, iii: _stubs.StubTarget, *, namespace: str | None = None) -> None:\n"
            f"        super().__init__(_stubs.{factory}(iii, namespace=namespace))"
        )
    return out


def _wrap_words(prefix: str, words: Sequence[str], width: int = 100) -> list[str]:
    lines: list[str] = []
    current = prefix
    for word in words:
        candidate = f"{current} {word}" if current else word
        if len(candidate) > width and current:
            lines.append(current)
            current = word
        else:
            current = candidate
    if current:
        lines.append(current)
    return lines


def render(
    catalog: Catalog,
    spec: OutputSpec,
    *,
    command: str = "iii-typed codegen generate",
    jobs: int | None = None,
    chunk_units: int = CHUNK_UNITS,
) -> Rendered:
    """Generate the module for one output.

    A schema that is not usable JSON Schema, or that datamodel-code-generator cannot convert, does
    not fail the module: that side is typed ``Any`` (as if it had no schema) and one warning names
    the function or trigger type, the side and the reason.

    Args:
        catalog: The catalog (live or from a snapshot; both give the same result).
        spec: What to include.
        command: The command named in the banner (no URL, no timestamp).
        jobs: Worker processes for the generator; ``None`` uses one per idle core (at most 4,
            from the load average) when there are at least :data:`PARALLEL_MIN_UNITS` units,
            else none. The output never depends on it.
        chunk_units: Units per generator call (fewer calls is faster). The output does not depend
            on it, except that two anonymous nested types deriving one name inside one call are
            numbered by the generator instead of renamed by the merge.

    Returns:
        The module text with warnings and per-entry digests.

    Raises:
        CodegenError: datamodel-code-generator failed on a group of schemas none of which fails
            alone, or produced something the merge cannot place (the message names the function or
            trigger type); a generator worker process crashed.
    """
    selection = select(catalog, spec)
    warnings = list(selection.warnings)
    functions = [_function_unit(fn) for fn in selection.functions]
    triggers = [_trigger_unit(tt) for tt in selection.trigger_types]
    if not spec.trigger_helpers:
        triggers = []
    triggers = [t for t in triggers if any(s.prepared.kind != OPEN or s.prepared.unusable for s in t.sides)]
    units = functions + triggers
    chunks, outputs = _generate(units, jobs, chunk_units)
    for unit in units:
        for side in unit.sides:
            warnings.extend(f"{unit.label} ({side.label}): {w}" for w in side.prepared.warnings)
    merged = _merge(chunks, outputs)
    warnings.extend(merged.warnings)
    order, rebuild, read = _order(merged.blocks)

    root = _tree(functions, triggers)
    namespaces = _namespace_classes(root, warnings)
    clients = _client_classes(root, spec)
    body = [merged.blocks[name].text for name in order]
    if rebuild:
        body.append("\n".join(f"{name}.model_rebuild()" for name in rebuild))
    body.extend(namespaces)
    body.extend(clients)
    used = read | _used_names("\n\n\n".join([*namespaces, *clients]))
    froms = {(m, n, a) for m, n, a in merged.froms if (a or n) in used}
    froms.add(("iii_typed", "stubs", "_stubs"))
    if "Any" in used:
        froms.add(("typing", "Any", None))
    plains = {(n, a) for n, a in merged.plains if (a or n).split(".")[0] in used}
    exported = sorted([*merged.blocks, *(c.split("(")[0].split()[1] for c in clients)])

    ids = [u.id for u in functions]
    banner = [
        f"# Code generated by `{command}`. DO NOT EDIT.",
        f"# Selection: {_comment_text(spec.describe())}.",
        f"# Generators: iii-typed codegen {GENERATOR_VERSION}, datamodel-code-generator {_dcg_version()}.",
    ]
    summary = _wrap_words(
        f"Typed client for {len(ids)} iii function{'s' if len(ids) != 1 else ''}" + (":" if ids else "."),
        [f"``{i}``," for i in ids[:-1]] + ([f"``{ids[-1]}``."] if ids else []),
    )
    if triggers:
        summary += ["", f"Trigger helpers: {', '.join(f'``{t.id}``' for t in triggers)}."]
    summary += [
        "",
        "Build ``Client(iii)`` or ``AsyncClient(iii)`` from a connected ``iii_typed`` client; see",
        "docs/codegen.md. Requests and results are validated against the registered schemas.",
    ]
    parts = [
        "\n".join(banner),
        _docstring(summary, ""),
        "",
        "from __future__ import annotations",
        "",
        _render_imports(froms, plains),
        "",
        "__all__ = [\n" + "".join(f"    {json.dumps(n)},\n" for n in exported) + "]",
    ]
    digests = {_comment_text(u.label): u.digest for u in units}
    digest_block = "\n".join([_DIGEST_HEADER, *(f"#   {label} {d}" for label, d in sorted(digests.items()))])
    source = "\n".join(parts) + "\n\n\n" + "\n\n\n".join(body) + "\n\n\n" + digest_block + "\n"
    return Rendered(source=source, warnings=warnings, digests=digests)


def _loaded_names(tree: ast.AST) -> set[str]:
    """Names read in ``tree``, including inside string forward references (``"list[Json]"``).

    Strings that are docstrings or direct call arguments (``Field(alias="Any")``,
    ``TypeAliasType("Json", …)``) are not references.
    """
    used: set[str] = set()
    stack: list[tuple[ast.AST, bool]] = [(tree, False)]
    while stack:
        node, plain_string = stack.pop()
        if isinstance(node, ast.Name):
            if isinstance(node.ctx, ast.Load):
                used.add(node.id)
            continue
        if isinstance(node, ast.Constant):
            if isinstance(node.value, str) and not plain_string and node.value.isprintable():
                try:
                    expr = ast.parse(node.value, mode="eval")
                except SyntaxError:
                    continue
                used |= {n.id for n in ast.walk(expr) if isinstance(n, ast.Name)}
            continue
        if isinstance(node, ast.Expr):
            stack.append((node.value, True))
        elif isinstance(node, ast.Call):
            stack.append((node.func, False))
            stack.extend((arg, True) for arg in node.args)
            stack.extend((kw.value, True) for kw in node.keywords)
        else:
            stack.extend((child, False) for child in ast.iter_child_nodes(node))
    return used


def _used_names(code: str) -> set[str]:
    """Names the module body uses: which imports it needs."""
    return _loaded_names(ast.parse(code))


def _dcg_version() -> str:
    from datamodel_code_generator import get_version

    return str(get_version())


def read_digests(source: str) -> dict[str, str]:
    """The digest block of a generated module (empty when it has none)."""
    out: dict[str, str] = {}
    in_block = False
    for line in source.splitlines():
        if line == _DIGEST_HEADER:
            in_block = True
            continue
        if in_block:
            match = _DIGEST_LINE.match(line)
            if not match:
                break
            out[f"{match.group(1)} {match.group(2)}"] = match.group(3)
    return out
