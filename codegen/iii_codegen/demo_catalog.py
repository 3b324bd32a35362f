"""``python -m iii_codegen.demo_catalog``: snapshot the catalog of the example worker (``make catalog``).

Starts a dev engine on free ports, runs ``examples/orders_worker.py`` against it, waits (bounded)
until the expected functions are registered, saves the catalog snapshot and stops both. The test
suite uses :func:`demo_snapshot` to check the committed ``examples/catalog.json`` against a live
engine.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from iii_typed.demo import WORKER_FUNCTIONS

from .catalog import Catalog, fetch_catalog
from .config import OutputSpec, only

__all__ = ["EXAMPLE_FUNCTIONS", "EXAMPLE_GLOBS", "demo_snapshot", "main"]

#: The functions of ``examples/orders_worker.py`` (one list, shared with ``iii-typed demo``): the
#: snapshot is taken only once every one of them is registered, so it never catches a half-registered
#: worker.
EXAMPLE_FUNCTIONS = WORKER_FUNCTIONS
EXAMPLE_GLOBS = ("orders::*",)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def demo_snapshot(root: Path, expect: Sequence[str] = EXAMPLE_FUNCTIONS, timeout: float = 30.0) -> Catalog:
    """The example worker's part of the catalog of a fresh engine serving ``examples/orders_worker.py``.

    Only the ``orders::*`` functions are kept: the engine's own built-in functions and trigger
    types are not part of the example (and change as the engine grows).

    Raises:
        RuntimeError: the worker exited, or the functions did not appear within ``timeout`` s.
    """
    from iii_typed.engine.process import EngineProcess

    env = {**os.environ, "OTEL_ENABLED": "false", "PYTHONUNBUFFERED": "1"}
    with EngineProcess(env={"OTEL_ENABLED": "false"}) as engine:
        env["III_URL"] = engine.url
        worker = subprocess.Popen(
            [sys.executable, str(root / "examples" / "orders_worker.py")],
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + timeout
            while True:
                catalog = fetch_catalog(engine.url)
                if set(expect) <= {f.function_id for f in catalog.functions}:
                    return only(catalog, OutputSpec(functions=EXAMPLE_GLOBS))
                if worker.poll() is not None:
                    err = worker.stderr.read().decode("utf-8", "replace") if worker.stderr else ""
                    raise RuntimeError(
                        f"the example worker exited with code {worker.returncode}:\n{err[-2000:]}"
                    )
                if time.monotonic() > deadline:
                    raise RuntimeError(f"functions {', '.join(expect)} not registered within {timeout:.0f} s")
                time.sleep(0.1)
        finally:
            _stop(worker)
            if worker.stderr is not None:
                worker.stderr.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Write the example catalog snapshot; returns the exit code."""
    from .catalog import dump_snapshot
    from .cli import repo_root

    parser = argparse.ArgumentParser(
        prog="python -m iii_codegen.demo_catalog", description=__doc__.splitlines()[0]
    )
    parser.add_argument("-o", "--output", default="examples/catalog.json", help="snapshot file to write")
    args = parser.parse_args(argv)
    root = repo_root()
    try:
        text = dump_snapshot(demo_snapshot(root))
    except Exception as exc:
        print(f"make catalog: {exc}", file=sys.stderr)
        return 2
    path = Path(args.output)
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        print(f"unchanged {path}")
    else:
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
