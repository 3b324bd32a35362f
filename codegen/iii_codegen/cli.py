"""Command line of the code generators (``iii-typed codegen …`` and ``python -m iii_codegen``).

Subcommands:
    protocol [--check] [--root DIR]
        Regenerate the pydantic protocol models from ``schema/`` into
        ``iii_typed/protocol/_generated/``. With ``--check``, regenerate into a temporary folder,
        compare with the committed files and exit 1 (listing them) when any differs.
    generate, snapshot, catalog-schema
        Typed client stubs from the function catalog; see :mod:`iii_codegen.commands`.

Exit codes: 0 written or unchanged, 1 ``--check`` found a difference, 2 usage errors.
"""

from __future__ import annotations

import argparse
import difflib
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from . import protocol_models

__all__ = ["main", "register_subcommand"]

_EXTRA: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = []


def register_subcommand(
    add: Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None],
) -> None:
    """Let another module of ``iii_codegen`` add a subcommand (it sets ``func`` on its parser)."""
    _EXTRA.append(add)


def repo_root() -> Path:
    """The source checkout that holds ``schema/`` and ``iii_typed/``."""
    return protocol_models.schema_root().parent


def _write_or_check(rendered: dict[str, str], root: Path, check: bool, command: str) -> int:
    if not check:
        for rel, source in rendered.items():
            target = root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists() or target.read_text(encoding="utf-8") != source:
                target.write_text(source, encoding="utf-8")
                print(f"wrote {rel}")
            else:
                print(f"unchanged {rel}")
        return 0
    changed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="iii-codegen-check-") as tmp:
        for rel, source in rendered.items():
            fresh = Path(tmp) / rel
            fresh.parent.mkdir(parents=True, exist_ok=True)
            fresh.write_text(source, encoding="utf-8")
            committed = root / rel
            old = committed.read_text(encoding="utf-8") if committed.exists() else ""
            new = fresh.read_text(encoding="utf-8")
            if old != new:
                changed.append(rel)
                diff = difflib.unified_diff(
                    old.splitlines(keepends=True),
                    new.splitlines(keepends=True),
                    f"{rel} (committed)",
                    f"{rel} (regenerated)",
                    n=1,
                )
                sys.stdout.writelines(list(diff)[:40])
    if changed:
        for rel in changed:
            print(f"out of date: {rel}")
        print(f"generated code differs from its sources: run `{command}` and commit the result")
        return 1
    print(f"{len(rendered)} generated file(s) up to date")
    return 0


def _cmd_protocol(args: argparse.Namespace) -> int:
    root = repo_root()
    rendered = protocol_models.render_all(root / "schema")
    return _write_or_check(rendered, root, args.check, "make codegen")


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser (also used by ``iii-typed codegen``)."""
    parser = argparse.ArgumentParser(prog="iii-typed codegen", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    proto = sub.add_parser("protocol", help="regenerate the protocol models from schema/")
    proto.add_argument(
        "--check", action="store_true", help="fail (exit 1) if regeneration would change files"
    )
    proto.set_defaults(func=_cmd_protocol)
    from . import commands  # typed client stubs: generate, snapshot, catalog-schema

    commands.add_subcommands(sub)
    for add in _EXTRA:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the code generator command line; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors
        return int(exc.code or 0)
    func: Callable[[argparse.Namespace], int] = args.func
    return func(args)
