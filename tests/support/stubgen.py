"""Helpers for tests of the typed client stubs: import generated modules, find functions, run mypy."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from iii_codegen.naming import attribute_name

REPO = Path(__file__).resolve().parents[2]


def import_path(path: Path, name: str) -> ModuleType:
    """Import a generated module from a file under a unique module name."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # pydantic resolves forward references through sys.modules
    spec.loader.exec_module(module)
    return module


def descriptor(module: ModuleType, function_id: str) -> Any:
    """The ``Function`` descriptor that a generated module has for ``function_id``."""
    node: Any = module.Client(object())
    *parents, leaf = function_id.split("::")
    for segment in parents:
        node = getattr(node, attribute_name(segment))
    return getattr(type(node), attribute_name(leaf))


def run_mypy(
    paths: list[Path], *extra: str, cache_dir: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``mypy --strict`` with the project's configuration on ``paths`` (one process)."""
    cmd = [sys.executable, "-m", "mypy", "--config-file", str(REPO / "pyproject.toml"), "--strict"]
    if cache_dir is not None:
        cmd += ["--cache-dir", str(cache_dir)]
    cmd += [*extra, *(str(p) for p in paths)]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=50)
