"""The ``iii-typed`` command line: ``engine``, ``codegen``, ``demo``.

Each subcommand lives in its own module and is imported only when used, so ``iii-typed engine``
never loads the code generators and the runtime SDK never imports ``iii_codegen`` or ``iii_tui``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["main"]

#: subcommand -> (module, one-line help). Each module has ``main(argv: list[str]) -> int``.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "engine": ("iii_typed.engine.cli", "run the embedded dev engine"),
    "codegen": ("iii_codegen.cli", "generate protocol models and typed client stubs"),
    "demo": ("iii_typed.demo", "run the end-to-end demo (engine, worker, typed caller)"),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``iii-typed`` console script; returns the process exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="iii-typed", description="Typed Python SDK for the iii engine.")
    parser.add_argument(
        "command",
        choices=sorted(SUBCOMMANDS),
        help="; ".join(f"{name}: {text}" for name, (_, text) in sorted(SUBCOMMANDS.items())),
    )
    if not args or args[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if args else 2
    if args[0] not in SUBCOMMANDS:
        parser.parse_args(args[:1])  # prints the usage error and exits 2
    module_name, _ = SUBCOMMANDS[args[0]]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:  # e.g. the codegen extra is not installed
        print(f"iii-typed {args[0]}: unavailable ({exc}); install iii-typed[codegen,tui]", file=sys.stderr)
        return 2
    result: int = module.main(args[1:])
    return result


if __name__ == "__main__":
    sys.exit(main())
