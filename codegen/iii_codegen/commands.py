"""``iii-typed codegen snapshot``, ``generate`` and ``catalog-schema`` (decisions "Code generation").

``snapshot [--url URL] [--functions GLOB]... [--workers GLOB]... [--triggers GLOB]... -o FILE``
    Save the live catalog as a snapshot (:mod:`iii_codegen.catalog`); globs keep only a part.
``generate (--url URL | --snapshot FILE) [--functions GLOB]... [--workers GLOB]...
[--triggers GLOB]... -o FILE.py [--check]``
    One output; without ``-o`` the outputs of ``--config FILE`` (default: ``codegen.toml``, else
    ``[tool.iii-typed.codegen]`` of ``pyproject.toml``, in the current folder). ``-o`` ignores any
    config file. With ``--check`` nothing is written: each output is reported ``up to date`` or
    ``would change`` with the functions and trigger types that appeared, disappeared or changed.
``catalog-schema [--check]``
    Write (or check) ``schema/catalog/catalog.v1.schema.json`` from the snapshot model.

Exit codes: 0 written or unchanged, 1 ``--check`` found a difference, 2 usage, configuration,
catalog, output-file or connection errors. Warnings go to stderr; an unchanged file is not rewritten.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from pathlib import Path

from .catalog import Catalog, CatalogError, catalog_json_schema, catalog_schema_path, dump_snapshot
from .config import ConfigError, OutputSpec, cli_spec, find_config, load_config, only, select
from .stubgen import CodegenError, read_digests, render

__all__ = ["DEFAULT_URL", "add_subcommands", "check_report", "resolve_url"]

DEFAULT_URL = "ws://127.0.0.1:49134"


def resolve_url(url: str | None) -> str:
    """``--url``, else ``$III_URL``, else the default engine address (protocol.md §1.1)."""
    return url or os.environ.get("III_URL") or DEFAULT_URL


def _err(message: str) -> None:
    print(f"iii-typed codegen: {message}", file=sys.stderr)


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _existing_text(path: Path) -> str | None:
    """The text of an output file already there, or ``None`` (absent, a folder, unreadable or not
    UTF-8 text: it is then simply replaced, or reported by :func:`_write_output`)."""
    try:
        return path.read_text(encoding="utf-8") if path.is_file() else None
    except (OSError, UnicodeDecodeError):
        return None


def _write_output(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` (creating folders); on failure print why and return ``False``."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        reason = "it is a folder" if path.is_dir() else (exc.strerror or str(exc))
        _err(f"cannot write {path}: {reason}")
        return False
    print(f"wrote {path}")
    return True


def _load_catalog(args: argparse.Namespace) -> Catalog:
    from .catalog import fetch_catalog, load_snapshot

    if args.snapshot is not None:
        return load_snapshot(args.snapshot)
    return fetch_catalog(resolve_url(args.url))


def check_report(path: str, old: str | None, new: str, new_digests: dict[str, str]) -> list[str]:
    """Lines describing how ``old`` (the file on disk, or ``None``) differs from ``new``.

    Returns:
        ``[]`` when equal; else ``would change <path>`` (or ``would create``) followed by the
        entries that appeared, disappeared or changed, or a short diff when the catalog entries
        are the same (a hand edit, or a generator upgrade).
    """
    if old == new:
        return []
    if old is None:
        return [f"would create {path}"]
    lines = [f"would change {path}"]
    old_digests = read_digests(old)
    appeared = sorted(set(new_digests) - set(old_digests))
    gone = sorted(set(old_digests) - set(new_digests))
    changed = sorted(k for k in set(old_digests) & set(new_digests) if old_digests[k] != new_digests[k])
    for label, items in (("appeared", appeared), ("disappeared", gone), ("changed", changed)):
        if items:
            lines.append(f"  {label}: {', '.join(items)}")
    if not (appeared or gone or changed):
        lines.append(
            "  the catalog entries are the same; the file differs (edited by hand, or another generator):"
        )
        diff = difflib.unified_diff(
            old.splitlines(), new.splitlines(), f"{path} (on disk)", f"{path} (generated)", n=1, lineterm=""
        )
        lines.extend(f"    {line}" for line in list(diff)[:30])
    return lines


def _outputs(args: argparse.Namespace) -> dict[Path, OutputSpec]:
    if args.output is not None:
        return {Path(args.output): cli_spec(args.functions, args.workers, args.triggers)}
    if args.functions or args.workers or args.triggers:
        raise ConfigError("--functions/--workers/--triggers need -o (a config file lists its own globs)")
    config = Path(args.config) if args.config else find_config(Path())
    if config is None:
        raise ConfigError(
            "give -o FILE.py, or a config: codegen.toml or [tool.iii-typed.codegen] in pyproject.toml"
        )
    return load_config(config)


def _cmd_generate(args: argparse.Namespace) -> int:
    try:
        outputs = _outputs(args)
        catalog = _load_catalog(args)
        results: list[tuple[Path, str, dict[str, str]]] = []
        for path, spec in outputs.items():
            rendered = render(catalog, spec)
            for warning in rendered.warnings:
                _warn(f"{path}: {warning}")
            results.append((path, rendered.source, rendered.digests))
    except (ConfigError, CatalogError, CodegenError) as exc:
        _err(str(exc))
        return 2
    drift = False
    for path, source, digests in results:
        old = _existing_text(path)
        if args.check:
            report = check_report(str(path), old, source, digests)
            if report:
                drift = True
                print("\n".join(report))
            else:
                print(f"up to date {path}")
        elif old == source:
            print(f"unchanged {path}")
        elif not _write_output(path, source):
            return 2
    if drift:
        print(
            "generated stubs differ from the catalog:"
            " run the same command without --check and commit the result"
        )
        return 1
    return 0


def _cmd_snapshot(args: argparse.Namespace) -> int:
    from .catalog import fetch_catalog

    url = resolve_url(args.url)
    try:
        catalog = fetch_catalog(url)
    except CatalogError as exc:
        _err(str(exc))
        return 2
    if args.functions or args.workers or args.triggers:
        spec = OutputSpec(tuple(args.functions), tuple(args.workers), tuple(args.triggers))
        for warning in select(catalog, spec).warnings:
            _warn(warning)
        catalog = only(catalog, spec)
    text = dump_snapshot(catalog)
    path = Path(args.output)
    old = _existing_text(path)
    if args.check:
        if old == text:
            print(f"up to date {path}")
            return 0
        print(f"would change {path}")
        return 1
    if old == text:
        print(f"unchanged {path}")
    elif not _write_output(path, text):
        return 2
    return 0


def _cmd_catalog_schema(args: argparse.Namespace) -> int:
    from .cli import repo_root

    path = catalog_schema_path(repo_root())
    text = catalog_json_schema()
    old = path.read_text(encoding="utf-8") if path.is_file() else None
    if old == text:
        print(f"{'up to date' if args.check else 'unchanged'} {path}")
        return 0
    if args.check:
        print(f"would change {path}: run `make codegen` and commit the result")
        return 1
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}")
    return 0


def add_subcommands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``snapshot``, ``generate`` and ``catalog-schema`` to the codegen command line."""
    gen = sub.add_parser(
        "generate",
        help="generate typed client stubs from a live engine or a catalog snapshot",
        description="Generate typed client stubs (pydantic models, Client, AsyncClient) from the catalog.",
    )
    source = gen.add_mutually_exclusive_group(required=True)
    source.add_argument("--url", help="read the catalog from the engine at URL (ws://host:port)")
    source.add_argument("--snapshot", metavar="FILE", help="read the catalog from a snapshot file")
    gen.add_argument("-o", "--output", metavar="FILE.py", help="one output file (ignores any config file)")
    gen.add_argument(
        "--functions", metavar="GLOB", action="append", default=[], help="function id glob (repeatable)"
    )
    gen.add_argument(
        "--workers", metavar="GLOB", action="append", default=[], help="worker name glob (repeatable)"
    )
    gen.add_argument(
        "--triggers",
        metavar="GLOB",
        action="append",
        default=[],
        help="trigger type id or worker glob (repeatable)",
    )
    gen.add_argument(
        "--config", metavar="FILE", help="codegen.toml or pyproject.toml listing several outputs"
    )
    gen.add_argument("--check", action="store_true", help="write nothing; exit 1 if an output would change")
    gen.set_defaults(func=_cmd_generate)

    snap = sub.add_parser(
        "snapshot",
        help="save the live catalog as a snapshot file",
        description="Save the live catalog (functions and trigger types with their schemas) as JSON.",
    )
    snap.add_argument("--url", help=f"engine URL (default: $III_URL, else {DEFAULT_URL})")
    snap.add_argument("-o", "--output", metavar="FILE", required=True, help="snapshot file to write")
    snap.add_argument(
        "--functions", metavar="GLOB", action="append", default=[], help="keep only these functions"
    )
    snap.add_argument(
        "--workers", metavar="GLOB", action="append", default=[], help="keep only these workers"
    )
    snap.add_argument(
        "--triggers", metavar="GLOB", action="append", default=[], help="keep only these trigger types"
    )
    snap.add_argument("--check", action="store_true", help="write nothing; exit 1 if the file would change")
    snap.set_defaults(func=_cmd_snapshot)

    schema = sub.add_parser("catalog-schema", help="write the snapshot JSON Schema to schema/catalog/")
    schema.add_argument("--check", action="store_true", help="exit 1 if the committed schema is out of date")
    schema.set_defaults(func=_cmd_catalog_schema)
