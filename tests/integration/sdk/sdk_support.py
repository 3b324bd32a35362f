"""Helpers of the SDK integration tests (golden frames, fast options, SDK thread listing)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from iii_typed import InitOptions, ReconnectionConfig

__all__ = ["fast_options", "load_golden", "sdk_threads"]

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "frames.txt"


def load_golden() -> dict[str, Any]:
    """The JSON frames of ``tests/golden/frames.txt`` by label (``G05``, ``E18``…)."""
    frames: dict[str, Any] = {}
    for line in GOLDEN.read_text(encoding="utf-8").splitlines():
        parts = line.split(" | ", 2)
        if len(parts) == 3 and parts[2].startswith("{"):
            frames[parts[0].split(" ", 1)[0]] = json.loads(parts[2])
    return frames


def fast_options(**kwargs: Any) -> InitOptions:
    """Options with test-sized intervals (decisions "Tests": reconnect <= 100 ms, keepalive <= 500 ms)."""
    kwargs.setdefault("reconnection_config", ReconnectionConfig(initial_delay_ms=50, max_delay_ms=200))
    kwargs.setdefault("keepalive_interval_ms", 500)
    kwargs.setdefault("keepalive_timeout_ms", 500)
    return InitOptions(**kwargs)


def sdk_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(("iii-loop", "iii-handler"))]
