"""Every runnable example (```python run) of docs/channels.md and docs/streams.md runs against a
real dev engine, compiled as a user's script (no ``from __future__`` flag inherited from this
module); ```python no-run blocks are illustrations (an HTTP route, a WebSocket client)."""

from __future__ import annotations

import pytest

from iii_typed.engine.process import EngineProcess
from tests.support.doc_examples import ROOT, Example, engine_vars, examples, run_in_process

EXAMPLES = examples(ROOT / "docs" / "channels.md", ROOT / "docs" / "streams.md")


def test_each_guide_has_runnable_examples() -> None:
    assert {ex.path.name for ex in EXAMPLES} == {"channels.md", "streams.md"}
    assert len(EXAMPLES) >= 4


@pytest.mark.parametrize("example", EXAMPLES, ids=[ex.id for ex in EXAMPLES])
def test_doc_example_runs(example: Example, engine: EngineProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in engine_vars(engine).items():
        monkeypatch.setenv(name, value)
    run_in_process(example)
