"""Every runnable example of docs/sdk.md runs against a real dev engine.

Blocks fenced as ```python run are executed as a user's script would run (compiled on their own:
this module's ``from __future__ import annotations`` does not leak into them), each in a fresh
namespace, with ``III_URL`` pointing at the test engine; a block that calls a ```python serve block
(a worker that serves until Ctrl-C) runs while that block runs in a process of its own.
tests/support/doc_examples.py describes the fences.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from iii_typed.engine.process import EngineProcess
from tests.support.doc_examples import (
    ROOT,
    Example,
    engine_vars,
    examples,
    python_examples,
    run_in_process,
    server_for,
    serving,
    user_env,
)

DOC = ROOT / "docs" / "sdk.md"
RUNNABLE = examples(DOC)


def test_the_guide_has_runnable_examples_for_each_topic() -> None:
    assert len(RUNNABLE) >= 10
    others = [ex for ex in python_examples(DOC) if ex.kind not in ("run", "serve")]
    assert not others, [ex.label for ex in others]  # every example of the guide is executed


@pytest.mark.parametrize("example", RUNNABLE, ids=[ex.id for ex in RUNNABLE])
def test_doc_example_runs(
    example: Example, engine: EngineProcess, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name, value in engine_vars(engine).items():
        monkeypatch.setenv(name, value)
    with serving(server_for(example), user_env(engine), tmp_path):
        run_in_process(example)
