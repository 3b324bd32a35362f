"""`make codegen-check` fails when a generated protocol module is edited by hand, and passes when clean."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
RUN_CLI = "import sys; from iii_codegen.cli import main; sys.exit(main(sys.argv[1:]))"


def run_check(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-W", "ignore", "-c", RUN_CLI, "protocol", "--check"],
        cwd=root, capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{root / 'codegen'}:{root}"},
    )  # fmt: skip


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A copy of the sources the check reads and writes (schema/, the generator, the package)."""
    for name in ("schema", "codegen", "iii_typed"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def test_clean_tree_passes(checkout: Path) -> None:
    result = run_check(checkout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "up to date" in result.stdout


def test_hand_edit_fails_and_names_the_file(checkout: Path) -> None:
    target = checkout / "iii_typed/protocol/_generated/frames.py"
    target.write_text(target.read_text(encoding="utf-8").replace("    code: str", "    code: int", 1))
    result = run_check(checkout)
    assert result.returncode == 1
    assert "out of date: iii_typed/protocol/_generated/frames.py" in result.stdout
    assert "make codegen" in result.stdout


def test_schema_change_without_regeneration_fails(checkout: Path) -> None:
    schema = checkout / "schema/protocol/pong.schema.json"
    schema.write_text(schema.read_text(encoding="utf-8").replace("Answer to `ping`", "Reply to `ping`"))
    result = run_check(checkout)
    assert result.returncode == 1
