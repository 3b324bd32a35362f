"""Every runnable example of docs/sdk.md runs against a real dev engine.

Blocks fenced as ```python run are executed (each in a fresh namespace, with ``III_URL`` pointing
at the test engine); plain ```python blocks are illustrations that need things a test cannot
provide (a queue provider, an external URL, a process that waits for a signal).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from iii_typed.engine.process import EngineProcess

DOC = Path(__file__).resolve().parents[3] / "docs" / "sdk.md"
TEXT = DOC.read_text(encoding="utf-8")
RUNNABLE = re.findall(r"^```python run\n(.*?)^```", TEXT, re.S | re.M)
ALL_PYTHON = re.findall(r"^```python\b", TEXT, re.M)


def test_the_guide_has_runnable_examples_for_each_topic() -> None:
    assert len(RUNNABLE) >= 10
    assert len(ALL_PYTHON) - len(RUNNABLE) <= 3  # only a few illustrations are not executed


@pytest.mark.parametrize("index", range(len(RUNNABLE)))
def test_doc_example_runs(index: int, engine: EngineProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("III_URL", engine.url)
    code = compile(RUNNABLE[index], f"{DOC.name}[example {index + 1}]", "exec")
    exec(code, {"__name__": f"docs_example_{index + 1}"})
