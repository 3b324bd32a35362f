"""Fixtures of the SDK unit tests (no sockets)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "frames.txt"


def load_golden() -> dict[str, Any]:
    """The JSON frames of ``tests/golden/frames.txt`` by label (``G05``, ``E18``…)."""
    frames: dict[str, Any] = {}
    for line in GOLDEN.read_text(encoding="utf-8").splitlines():
        parts = line.split(" | ", 2)
        if len(parts) == 3 and parts[2].startswith("{"):
            frames[parts[0].split(" ", 1)[0]] = json.loads(parts[2])
    return frames


@pytest.fixture(scope="session")
def golden() -> dict[str, Any]:
    return load_golden()
