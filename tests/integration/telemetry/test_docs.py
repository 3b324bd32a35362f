"""Every runnable example of docs/telemetry.md runs against a real engine, each in a process of its
own with telemetry on (OpenTelemetry's providers are process-global)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from iii_typed.engine.process import EngineProcess
from tests.support.waiting import FACTOR

DOC = Path(__file__).resolve().parents[3] / "docs" / "telemetry.md"
RUNNABLE = re.findall(r"^```python run\n(.*?)^```", DOC.read_text(encoding="utf-8"), re.S | re.M)


def test_the_guide_has_runnable_examples() -> None:
    assert len(RUNNABLE) >= 3


@pytest.mark.parametrize("index", range(len(RUNNABLE)))
def test_doc_example_runs(index: int, engine: EngineProcess) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OTEL_ENABLED"}
    env.update(III_URL=engine.url, OTEL_SPANS_FLUSH_INTERVAL_MS="50", OTEL_LOGS_FLUSH_INTERVAL_MS="50")
    done = subprocess.run(
        [sys.executable, "-c", RUNNABLE[index]],
        env=env,
        capture_output=True,
        text=True,
        timeout=60 * FACTOR,
        check=False,
    )
    assert done.returncode == 0, f"example {index + 1} failed:\n{done.stderr[-3000:]}"
