"""What to generate: output specs, selection of catalog entries, and the configuration files.

A spec selects functions and trigger types by globs (codegen.md §1.2): a function is selected
when its id matches ``functions`` or its worker name matches ``workers``; a trigger type when its
id or worker name matches ``triggers``. Globs are shell-style over the whole string (``*`` also
matches ``::``); only ``*`` alone means everything. A glob that matches nothing is a warning, not
an error (the worker may be offline); ``*`` matching nothing is not reported.

Several outputs are configured in ``pyproject.toml`` under ``[tool.iii-typed.codegen]`` or in a
``codegen.toml`` whose top level is the same map, from output path (relative to the file's
folder) to spec::

    [tool.iii-typed.codegen."clients/orders.py"]
    functions = ["orders::*"]
    workers = []
    triggers = []
    clients = ["sync", "async"]   # default: both
    trigger_helpers = true        # default: true
"""

from __future__ import annotations

import fnmatch
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .catalog import Catalog, FunctionEntry, TriggerTypeEntry

__all__ = [
    "CLIENT_KINDS",
    "ConfigError",
    "OutputSpec",
    "Selection",
    "cli_spec",
    "find_config",
    "load_config",
    "only",
    "select",
    "spec_from_mapping",
]

CLIENT_KINDS = ("sync", "async")
_SPEC_KEYS = frozenset({"functions", "workers", "triggers", "clients", "trigger_helpers"})


class ConfigError(Exception):
    """A configuration file or a spec is invalid (the message names the file and key)."""


@dataclass(frozen=True)
class OutputSpec:
    """What one generated module contains.

    Attributes:
        functions: Globs over function ids.
        workers: Globs over worker names (selects those workers' functions).
        triggers: Globs over trigger-type ids or their worker names.
        clients: ``"sync"`` and/or ``"async"``: which of ``Client``/``AsyncClient`` to emit.
        trigger_helpers: Emit typed registration helpers for selected trigger types.
    """

    functions: tuple[str, ...] = ()
    workers: tuple[str, ...] = ()
    triggers: tuple[str, ...] = ()
    clients: tuple[str, ...] = CLIENT_KINDS
    trigger_helpers: bool = True

    def describe(self) -> str:
        """One line naming the selection, for the generated banner."""
        parts = []
        for label, globs in (
            ("functions", self.functions),
            ("workers", self.workers),
            ("triggers", self.triggers),
        ):
            if globs:
                parts.append(f"{label} {' '.join(globs)}")
        return "; ".join(parts) or "nothing"


@dataclass
class Selection:
    """The catalog entries a spec selects, sorted by id, plus warnings for unmatched globs."""

    functions: list[FunctionEntry] = field(default_factory=list)
    trigger_types: list[TriggerTypeEntry] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _worker(name: str | None, entry_id: str) -> str:
    return name if name else entry_id.split("::", 1)[0]


def select(catalog: Catalog, spec: OutputSpec) -> Selection:
    """Apply a spec's globs to a catalog.

    Functions with the same id in several namespaces are generated once (the ``default``
    namespace wins, else the first by name) with a warning; the client's ``namespace`` argument
    picks where calls go.
    """
    out = Selection()
    used: set[tuple[str, str]] = set()
    picked: dict[str, FunctionEntry] = {}
    for fn in catalog.functions:
        hit = False
        for glob in spec.functions:
            if fnmatch.fnmatchcase(fn.function_id, glob):
                used.add(("functions", glob))
                hit = True
        for glob in spec.workers:
            if fnmatch.fnmatchcase(_worker(fn.worker_name, fn.function_id), glob):
                used.add(("workers", glob))
                hit = True
        if not hit:
            continue
        other = picked.get(fn.function_id)
        if other is None:
            picked[fn.function_id] = fn
        else:
            keep = other if other.namespace == "default" else fn if fn.namespace == "default" else other
            out.warnings.append(
                f"function {fn.function_id} is in namespaces {other.namespace!r} and {fn.namespace!r};"
                f" generating the one in {keep.namespace!r}"
            )
            picked[fn.function_id] = keep
    out.functions = [picked[k] for k in sorted(picked)]
    seen_triggers: set[str] = set()
    for tt in catalog.trigger_types:
        hit = False
        for glob in spec.triggers:
            if fnmatch.fnmatchcase(tt.id, glob) or fnmatch.fnmatchcase(_worker(tt.worker_name, tt.id), glob):
                used.add(("triggers", glob))
                hit = True
        if hit and tt.id not in seen_triggers:
            seen_triggers.add(tt.id)
            out.trigger_types.append(tt)
    out.trigger_types.sort(key=lambda t: t.id)
    for label, globs in (
        ("functions", spec.functions),
        ("workers", spec.workers),
        ("triggers", spec.triggers),
    ):
        for glob in globs:
            if (label, glob) not in used and glob != "*":
                out.warnings.append(f"{label} glob {glob!r} matches nothing in the catalog")
    return out


def only(catalog: Catalog, spec: OutputSpec) -> Catalog:
    """The part of ``catalog`` that ``spec`` selects (every namespace of a selected id is kept)."""
    selection = select(catalog, spec)
    functions = {f.function_id for f in selection.functions}
    triggers = {t.id for t in selection.trigger_types}
    return Catalog(
        functions=[f for f in catalog.functions if f.function_id in functions],
        trigger_types=[t for t in catalog.trigger_types if t.id in triggers],
    )


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}: expected a list of non-empty strings")
    return tuple(value)


def spec_from_mapping(data: Any, where: str) -> OutputSpec:
    """Validate one output's table into an :class:`OutputSpec`.

    Raises:
        ConfigError: unknown key, wrong type, or an empty selection (naming ``where``).
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a table of options")
    unknown = sorted(set(data) - _SPEC_KEYS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(_SPEC_KEYS))})"
        )
    functions = _strings(data.get("functions", []), f"{where}.functions")
    workers = _strings(data.get("workers", []), f"{where}.workers")
    triggers = _strings(data.get("triggers", []), f"{where}.triggers")
    clients = _strings(data.get("clients", list(CLIENT_KINDS)), f"{where}.clients")
    bad = sorted(set(clients) - set(CLIENT_KINDS))
    if bad or not clients:
        raise ConfigError(f"{where}.clients: expected a non-empty subset of {list(CLIENT_KINDS)}")
    helpers = data.get("trigger_helpers", True)
    if not isinstance(helpers, bool):
        raise ConfigError(f"{where}.trigger_helpers: expected true or false")
    if not (functions or workers or triggers):
        raise ConfigError(f"{where}: empty selection (give functions, workers or triggers globs)")
    ordered = tuple(k for k in CLIENT_KINDS if k in clients)
    return OutputSpec(functions, workers, triggers, ordered, helpers)


def find_config(start: Path) -> Path | None:
    """``codegen.toml`` in ``start``, else ``pyproject.toml`` there if it has the codegen table."""
    candidate = start / "codegen.toml"
    if candidate.is_file():
        return candidate
    pyproject = start / "pyproject.toml"
    if pyproject.is_file():
        try:
            data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError):
            return None
        if isinstance(data.get("tool", {}).get("iii-typed", {}).get("codegen"), dict):
            return pyproject
    return None


def load_config(path: Path) -> dict[Path, OutputSpec]:
    """Read the output map of a ``codegen.toml`` or ``pyproject.toml``.

    Returns:
        ``{output path (resolved against the file's folder): spec}`` in declaration order.

    Raises:
        ConfigError: unreadable file, missing table, or an invalid spec.
    """
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    table: Any = data
    prefix = ""
    if path.name == "pyproject.toml":
        table = data.get("tool", {}).get("iii-typed", {}).get("codegen")
        prefix = "tool.iii-typed.codegen."
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: no [tool.iii-typed.codegen] table")
    if not table:
        raise ConfigError(f"{path}: no outputs configured")
    out: dict[Path, OutputSpec] = {}
    for output, spec in table.items():
        out[path.parent / output] = spec_from_mapping(spec, f"{path}: {prefix}{output!r}")
    return out


def cli_spec(functions: Sequence[str], workers: Sequence[str], triggers: Sequence[str]) -> OutputSpec:
    """The spec of a single ``-o`` output: everything when no glob is given."""
    if not (functions or workers or triggers):
        return OutputSpec(functions=("*",), triggers=("*",))
    return OutputSpec(tuple(functions), tuple(workers), tuple(triggers))
