"""A user's session: every executable example of README.md and docs/*.md, in reading order, each
as a script in a process of its own, all against **one** engine that keeps what the earlier ones
did (no example may rely on a fresh engine). Telemetry is on, as by default; no example may leave
a ResourceWarning. ``serve`` blocks run in the background for the ``run`` block after them and
must stop cleanly on SIGINT (tests/support/doc_examples.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from iii_typed.engine.process import EngineProcess
from tests.support.doc_examples import USER_DOCS, Server, python_examples, run_script, user_env


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_every_doc_example_in_one_session(
    engine_factory: Callable[..., EngineProcess], tmp_path: Path
) -> None:
    engine = engine_factory()
    env = user_env(engine)
    ran: list[str] = []
    for doc in USER_DOCS:
        server: Server | None = None
        try:
            for example in python_examples(doc):
                if example.kind == "serve":
                    server = Server(example, env, tmp_path)
                elif example.kind == "run":
                    run_script(example, env, tmp_path)
                    ran.append(example.label)
                    if server is not None:
                        server.stop()
                        server = None
        finally:
            if server is not None:
                server.kill()
    assert len(ran) >= 20, ran
