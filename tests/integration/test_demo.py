"""``iii-typed demo`` (what ``make demo`` runs) end to end, as a user sees it: it succeeds, prints
no ResourceWarning (``PYTHONWARNINGS=default``, as the Makefile exports), says that the ``ord_9999``
lookup fails on purpose, and shows how the receipt jobs reach their queue consumer."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.waiting import FACTOR

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_demo_runs_cleanly_and_explains_itself(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OTEL_ENABLED"}  # telemetry on, as for users
    env.update(DEMO_TUI="0", PYTHONWARNINGS="default")
    done = subprocess.run(
        [str(Path(sys.executable).parent / "iii-typed"), "demo", "--data-dir", str(tmp_path / "data")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240 * FACTOR,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "demo finished: every step succeeded" in done.stdout
    assert "ResourceWarning" not in output, output[-4000:]
    assert "unclosed" not in output, output[-4000:]

    lines = done.stdout.splitlines()
    failing = [ln for ln in lines if "ord_9999" in ln and "invocation_failed" in ln]
    assert len(failing) == 1 and "fails on purpose" in failing[0], failing
    error_pct = [ln.split()[-1] for ln in lines if ln.split()[:2] == ["error", "%"]]
    assert len(error_pct) == 1 and error_pct[0] != "0.0%", "the overview counts the failed lookup"

    catalog = lines[lines.index(next(ln for ln in lines if "[5/6]" in ln)) :]
    consumer = [ln for ln in catalog if "-> orders::send_receipt" in ln]
    assert len(consumer) == 1, catalog
    assert consumer[0].split()[:2] == ["queue", "receipts"] and "enqueued by orders::create" in consumer[0]
    assert "queues          2 topics, 2 dead-letter topics" in done.stdout  # the receipts queue and default

    # One orders::create trace holds the handlers the engine ran because of it: the state trigger's
    # and the queued receipt job's (engine-originated invocations continue the caller's trace).
    start = next(i for i, ln in enumerate(lines) if "of one orders::create call" in ln)
    end = next(i for i, ln in enumerate(lines) if "[5/6]" in ln)
    tree = [ln.split()[:2] for ln in lines[start + 1 : end]]
    assert ["execute", "orders::on_change"] in tree and ["execute", "orders::send_receipt"] in tree, tree
