"""Every runnable example (```python run) of docs/channels.md and docs/streams.md runs against a
real dev engine; plain ```python blocks are illustrations (an HTTP route, a WebSocket client)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from iii_typed.engine.process import EngineProcess

DOCS = Path(__file__).resolve().parents[3] / "docs"
EXAMPLES = [
    (name, index, code)
    for name in ("channels.md", "streams.md")
    for index, code in enumerate(
        re.findall(r"^```python run\n(.*?)^```", (DOCS / name).read_text(encoding="utf-8"), re.S | re.M)
    )
]


def test_each_guide_has_runnable_examples() -> None:
    assert {name for name, _, _ in EXAMPLES} == {"channels.md", "streams.md"}
    assert len(EXAMPLES) >= 4


@pytest.mark.parametrize(("name", "index", "code"), EXAMPLES, ids=[f"{n}-{i + 1}" for n, i, _ in EXAMPLES])
def test_doc_example_runs(
    name: str, index: int, code: str, engine: EngineProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("III_URL", engine.url)
    exec(compile(code, f"{name}[example {index + 1}]", "exec"), {"__name__": f"docs_{name}_{index + 1}"})
