"""Every runnable example of docs/telemetry.md runs against a real engine, each as a script in a
process of its own with telemetry on (OpenTelemetry's providers are process-global)."""

from __future__ import annotations

from pathlib import Path

import pytest

from iii_typed.engine.process import EngineProcess
from tests.support.doc_examples import ROOT, Example, examples, run_script, user_env

RUNNABLE = examples(ROOT / "docs" / "telemetry.md")


def test_the_guide_has_runnable_examples() -> None:
    assert len(RUNNABLE) >= 3


@pytest.mark.parametrize("example", RUNNABLE, ids=[ex.id for ex in RUNNABLE])
def test_doc_example_runs(example: Example, engine: EngineProcess, tmp_path: Path) -> None:
    run_script(example, user_env(engine), tmp_path)
