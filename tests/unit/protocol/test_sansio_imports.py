"""The protocol core stays sans-I/O: no event loop, thread, socket or websocket imports."""

from __future__ import annotations

import ast
from pathlib import Path

import iii_typed.protocol

FORBIDDEN = {"asyncio", "threading", "socket", "websockets", "aiohttp", "selectors", "ssl", "uvloop"}


def test_protocol_package_imports_no_io_modules() -> None:
    root = Path(iii_typed.protocol.__file__).parent
    offenders = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert offenders == []
