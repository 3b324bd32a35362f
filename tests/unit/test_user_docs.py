"""The user docs (README.md, docs/*.md) stand alone and every Python example in them is accounted for.

* Each fenced Python block is marked ``run`` / ``serve`` (executed by the tests, see
  tests/support/doc_examples.py) or ``no-run`` (and then at least compiles): an unmarked block
  fails here, so an example cannot be added without being executed or explicitly marked.
* They cite no file a reader of this repository does not have (the project's private
  specifications), and every repository path they cite exists.
"""

from __future__ import annotations

import glob
import re
from pathlib import Path

import pytest

from tests.support.doc_examples import KINDS, ROOT, USER_DOCS, Example, python_examples

ALL_EXAMPLES = [ex for doc in USER_DOCS for ex in python_examples(doc)]
GOLDEN = ROOT / "tests" / "golden" / "frames.txt"
GOLDEN_IDS = {line.split(" ", 1)[0] for line in GOLDEN.read_text(encoding="utf-8").splitlines() if line}

#: Names of the project's private specification files and their section / case numbering.
PRIVATE = re.compile(
    r"\.\./shared|\b(?:protocol|cases|perf|style|decisions)\.md\b|decisions \"|§|\bB\d{2}\b|\bissue \d+"
)
GOLDEN_ID = re.compile(r"\b[GECSTHX]\d{2}\b")
REPO_PATH = re.compile(r"`((?:docs|tests|iii_typed|codegen|tui|bench|examples|schema)/[^`\s:]*)")


def _doc_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_the_docs_have_examples_of_every_kind() -> None:
    kinds = {ex.kind for ex in ALL_EXAMPLES}
    assert {"run", "serve"} <= kinds
    assert any(ex.kind == "run" for ex in python_examples(ROOT / "README.md"))


@pytest.mark.parametrize("example", ALL_EXAMPLES, ids=[ex.id for ex in ALL_EXAMPLES])
def test_every_python_block_is_run_or_marked(example: Example) -> None:
    assert example.kind in KINDS, (
        f"{example.label} (line {example.line}) is fenced as ```python {example.kind}`: mark it "
        "```python run (executed by the tests), ```python serve (a worker the next run block "
        "calls) or ```python no-run (an illustration)"
    )
    compile(example.code, example.label, "exec", dont_inherit=True)  # every block is valid Python


@pytest.mark.parametrize("doc", USER_DOCS, ids=_doc_id)
def test_a_serve_block_is_followed_by_a_run_block(doc: Path) -> None:
    kinds = [ex.kind for ex in python_examples(doc) if ex.kind in ("run", "serve")]
    for i, kind in enumerate(kinds):
        if kind == "serve":
            assert kinds[i + 1 : i + 2] == ["run"], f"{_doc_id(doc)}: a serve block with nothing calling it"


@pytest.mark.parametrize("doc", USER_DOCS, ids=_doc_id)
def test_no_reference_to_files_the_reader_does_not_have(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    found = [(text.count("\n", 0, m.start()) + 1, m.group()) for m in PRIVATE.finditer(text)]
    assert not found, f"{_doc_id(doc)} cites the project's private specifications: {found}"


@pytest.mark.parametrize("doc", USER_DOCS, ids=_doc_id)
def test_golden_frame_ids_point_at_the_golden_file(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    ids = set(GOLDEN_ID.findall(text))
    if ids:
        assert "tests/golden/frames.txt" in text, f"{_doc_id(doc)} names golden frames {sorted(ids)}"
        assert ids <= GOLDEN_IDS, f"{_doc_id(doc)}: no such golden frames {sorted(ids - GOLDEN_IDS)}"


@pytest.mark.parametrize("doc", USER_DOCS, ids=_doc_id)
def test_cited_repository_paths_exist(doc: Path) -> None:
    cited = set(REPO_PATH.findall(doc.read_text(encoding="utf-8")))
    missing = sorted(p for p in cited if not glob.glob(str(ROOT / p.rstrip(".,;"))))
    assert not missing, f"{_doc_id(doc)} cites paths that do not exist: {missing}"
