"""The Python examples of the user docs (``README.md``, ``docs/*.md``) and how tests run them.

Every fenced Python block of those files says what it is in its info string:

* ```` ```python run ```` — executed by the test suite exactly as a user's script would run:
  compiled on its own (no ``from __future__`` flag inherited from the test module), or in a
  process of its own;
* ```` ```python serve ```` — a process that serves until interrupted (a worker ending in
  ``run_forever()``): started in the background, it must print one line on stdout once it is
  ready; the following ``run`` block of the same document runs against it, then it gets SIGINT and
  must exit with code 0;
* ```` ```python no-run ```` — shown, never executed (it needs what a test cannot provide, such as a
  third-party URL); it must still compile.

A plain ```` ```python ```` block is refused by ``tests/unit/test_doc_examples.py``, so an example
cannot be added without being executed or explicitly marked.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iii_typed.engine.process import EngineProcess
from tests.support.waiting import FACTOR

ROOT = Path(__file__).resolve().parents[2]
#: The documents a user reads, in reading order.
USER_DOCS: tuple[Path, ...] = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
KINDS = frozenset({"run", "serve", "no-run"})

_FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<body>.*?)^```[ \t]*$", re.S | re.M)
_PYTHON_LANGS = frozenset({"python", "py", "python3", "py3", "pycon"})


@dataclass(frozen=True)
class Example:
    """One fenced Python block of a document."""

    path: Path
    number: int  # 1-based among the Python blocks of its document
    line: int  # line of the opening fence
    kind: str  # "run", "serve", "no-run", or the unknown/missing word as written
    code: str

    @property
    def label(self) -> str:
        """``docs/sdk.md[example 3]`` — the file name tracebacks show."""
        return f"{self.path.relative_to(ROOT)}[example {self.number}]"

    @property
    def id(self) -> str:
        """A pytest id: ``sdk.md-3``."""
        return f"{self.path.name}-{self.number}"


def python_examples(path: Path) -> list[Example]:
    """Every fenced Python block of ``path``, in order."""
    text = path.read_text(encoding="utf-8")
    found: list[Example] = []
    for match in _FENCE.finditer(text):
        words = match["info"].split()
        if not words or words[0].lower() not in _PYTHON_LANGS:
            continue
        kind = " ".join(words[1:])
        line = text.count("\n", 0, match.start()) + 1
        found.append(Example(path, len(found) + 1, line, kind, match["body"]))
    return found


def examples(*paths: Path, kinds: frozenset[str] = frozenset({"run"})) -> list[Example]:
    """The examples of ``paths`` (default: every user doc) whose kind is in ``kinds``."""
    return [ex for path in paths or USER_DOCS for ex in python_examples(path) if ex.kind in kinds]


def server_for(example: Example) -> Example | None:
    """The ``serve`` block a ``run`` block calls: the executable block right before it, if it is one."""
    blocks = [ex for ex in python_examples(example.path) if ex.kind in ("run", "serve")]
    index = blocks.index(example)
    return blocks[index - 1] if index and blocks[index - 1].kind == "serve" else None


def run_in_process(example: Example) -> dict[str, Any]:
    """Execute a ``run`` example in this process as a script would run; return its namespace.

    ``dont_inherit=True``: the ``from __future__ import annotations`` of the calling test module
    must not apply to the example (it would hide annotations that fail when evaluated).
    """
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(example.code, example.label, "exec", dont_inherit=True), namespace)
    return namespace


def _script(example: Example, folder: Path) -> Path:
    path = folder / f"{example.path.stem}_example_{example.number}.py"
    path.write_text(example.code, encoding="utf-8")
    return path


def run_script(example: Example, env: dict[str, str], folder: Path, timeout: float = 60) -> str:
    """Run a ``run`` example as ``python <file>.py``; return its stdout.

    Raises:
        AssertionError: it exited with another code than 0, or wrote a ResourceWarning.
    """
    done = subprocess.run(
        [sys.executable, str(_script(example, folder))],
        env=env,
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=timeout * FACTOR,
        check=False,
    )
    assert done.returncode == 0, f"{example.label} failed (exit {done.returncode}):\n{done.stderr[-4000:]}"
    assert "ResourceWarning" not in done.stderr, f"{example.label} leaked a resource:\n{done.stderr[-4000:]}"
    return done.stdout


class Server:
    """A ``serve`` example running in the background (see the module docstring)."""

    def __init__(self, example: Example, env: dict[str, str], folder: Path, timeout: float = 30) -> None:
        self.example = example
        self.proc = subprocess.Popen(
            [sys.executable, str(_script(example, folder))],
            env=env,
            cwd=folder,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        # readline() returns at the first line or at EOF; the timeout bounds a silent server.
        try:
            self.ready_line = _readline(self.proc, timeout * FACTOR)
        except BaseException:
            self.kill()
            raise
        if not self.ready_line:
            self.kill()
            raise AssertionError(f"{example.label} ended before it was ready:\n{self._stderr()}")

    def stop(self, timeout: float = 10) -> str:
        """SIGINT, as Ctrl-C would; the example must exit with 0. Returns its stderr."""
        self.proc.send_signal(signal.SIGINT)
        try:
            _, err = self.proc.communicate(timeout=timeout * FACTOR)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.example.label} did not stop on SIGINT") from None
        assert self.proc.returncode == 0, f"{self.example.label} exited with {self.proc.returncode}:\n{err}"
        assert "ResourceWarning" not in err, f"{self.example.label} leaked a resource:\n{err[-4000:]}"
        return err

    def kill(self) -> None:
        """End it at once (teardown after a failure)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=10)

    def _stderr(self) -> str:
        self.proc.wait(10)
        assert self.proc.stderr is not None
        return self.proc.stderr.read()[-4000:]


def _readline(proc: subprocess.Popen[str], timeout: float) -> str:
    """The first line of ``proc``'s stdout, waiting at most ``timeout`` seconds for it."""
    assert proc.stdout is not None
    stdout = proc.stdout
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if reader.is_alive():
        raise AssertionError(f"no ready line within {timeout:.0f} s")
    return line[0]


@contextmanager
def serving(example: Example | None, env: dict[str, str], folder: Path) -> Iterator[None]:
    """Run the ``serve`` block ``example`` (if any) around the body; it must stop cleanly after it."""
    if example is None:
        yield
        return
    server = Server(example, env, folder)
    try:
        yield
    except BaseException:
        server.kill()
        raise
    server.stop()


def engine_vars(engine: EngineProcess) -> dict[str, str]:
    """Where the examples find the engine: ``III_URL`` (the SDK's variable), and the HTTP and
    stream ports the examples read from ``III_HTTP_URL`` / ``III_STREAMS_URL`` (as the demo does)."""
    return {"III_URL": engine.url, "III_HTTP_URL": engine.http_url, "III_STREAMS_URL": engine.streams_url}


def user_env(engine: EngineProcess) -> dict[str, str]:
    """The environment of a user's shell pointed at ``engine``: telemetry on (the default), short
    flush intervals so the telemetry examples do not wait, warnings shown."""
    env = {k: v for k, v in os.environ.items() if k != "OTEL_ENABLED"}
    env.update(engine_vars(engine))
    env.update(OTEL_SPANS_FLUSH_INTERVAL_MS="50", OTEL_LOGS_FLUSH_INTERVAL_MS="50", PYTHONWARNINGS="default")
    return env
