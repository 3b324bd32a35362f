"""README.md's quick start, step by step, as a user would follow it: the worker block serving, the
caller block printing what the README says it prints, the README's codegen commands (with the
test engine's URL) generating a module whose `Client(iii).quickstart.greet(GreetInput(...))`
returns a `Greeting`, and the worker stopping cleanly on Ctrl-C."""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from iii_typed import register_worker
from iii_typed.engine.process import EngineProcess
from tests.support.doc_examples import ROOT, Server, python_examples, run_script, user_env
from tests.support.waiting import FACTOR

README = ROOT / "README.md"
TEXT = README.read_text(encoding="utf-8")
DEFAULT_URL = "ws://127.0.0.1:49134"


def _codegen_commands() -> list[list[str]]:
    lines = [
        ln.strip() for ln in TEXT.splitlines() if ln.strip().startswith("iii-typed codegen generate --url")
    ]
    return [shlex.split(ln.split("#", 1)[0]) for ln in lines]


def test_the_quick_start_runs_as_written(
    engine_factory: Callable[..., EngineProcess], tmp_path: Path
) -> None:
    engine = engine_factory()
    env = user_env(engine)
    blocks = python_examples(README)
    assert [ex.kind for ex in blocks] == ["serve", "run"]
    worker, caller = blocks
    server = Server(worker, env, tmp_path)
    try:
        assert server.ready_line.startswith("worker ready")
        printed = run_script(caller, env, tmp_path).splitlines()
        promised = re.search(r"It prints `(.+?)`, then `(.+?)`\.", TEXT.replace("\n", " "))
        assert promised is not None
        assert printed == [promised[1], promised[2]]

        commands = _codegen_commands()
        assert len(commands) == 2 and "--functions" in commands[0] and "--check" in commands[1]
        executable = str(Path(sys.executable).parent / commands[0][0])
        for command in commands:
            args = [engine.url if word == DEFAULT_URL else word for word in command[1:]]
            done = subprocess.run(
                [executable, *args], cwd=tmp_path, capture_output=True, text=True, timeout=60 * FACTOR
            )
            assert done.returncode == 0, done.stdout + done.stderr
        spec = importlib.util.spec_from_file_location("quickstart_client", tmp_path / "quickstart_client.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        with register_worker(engine.url) as iii:
            client = module.Client(iii)
            greeting = client.quickstart.greet(module.GreetInput(name="Ada"))
            assert type(greeting) is module.Greeting and greeting.message == "Hello, Ada!"
            assert not hasattr(client, "engine")  # --functions kept the quickstart namespace only
    except BaseException:
        server.kill()
        raise
    server.stop()
