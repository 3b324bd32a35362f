"""Run the embedded dev engine as a child process (for tests, the demo and user test suites).

The engine prints exactly one JSON line on stdout once every listener is bound, e.g.
``{"engine": "ws://127.0.0.1:41234", "http": "http://127.0.0.1:41235", "streams": "ws://…"}``
(decisions "Engine command line"). :class:`EngineProcess` starts ``python -m iii_typed.engine``,
waits for that line and exposes the addresses.

Example::

    with EngineProcess() as engine:
        iii = register_worker(engine.url)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

__all__ = ["EngineProcess", "EngineStartError"]


class EngineStartError(RuntimeError):
    """The engine process exited or stayed silent before printing its ready line."""


class EngineProcess:
    """A dev engine in a child process.

    Args:
        host: Interface to bind (default ``127.0.0.1``).
        port: Worker port; ``0`` (default) picks a free port and makes every other port free too.
        http_port, stream_port: Explicit ports for the HTTP and stream listeners (``None`` = the
            engine's rule: free when ``port`` is 0, else 3111 / 3112).
        data_dir: Folder for SQLite persistence (``None`` = in memory).
        config: Path of an ``engine.toml``.
        extra_args: More command-line arguments.
        env: Extra environment variables for the child.
        log_path: File that receives the engine's stderr (default: kept in memory, last 200 lines).
        start_timeout: Seconds to wait for the ready line.

    Attributes:
        addresses: The parsed ready line (``{"engine": …, "http": …, "streams": …}``).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        http_port: int | None = None,
        stream_port: int | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        config: str | os.PathLike[str] | None = None,
        extra_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        log_path: str | os.PathLike[str] | None = None,
        start_timeout: float = 30.0,
    ) -> None:
        self.host = host
        self.port = port
        self.http_port = http_port
        self.stream_port = stream_port
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.config = Path(config) if config is not None else None
        self.extra_args = list(extra_args)
        self.env = dict(env or {})
        self.log_path = Path(log_path) if log_path is not None else None
        self.start_timeout = start_timeout
        self.addresses: dict[str, str] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr_lines: list[str] = []
        self._stderr_thread: threading.Thread | None = None
        self._log_file: IO[str] | None = None

    # -- addresses -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """Worker WebSocket URL, e.g. ``ws://127.0.0.1:41234``."""
        return self.addresses["engine"]

    @property
    def http_url(self) -> str:
        """Base URL of the HTTP trigger listener."""
        return self.addresses["http"]

    @property
    def streams_url(self) -> str:
        """URL of the stream WebSocket listener."""
        return self.addresses["streams"]

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        return self._proc.pid if self._proc is not None else None

    def command(self) -> list[str]:
        """The command line used to start the engine."""
        cmd = [sys.executable, "-m", "iii_typed.engine", "--host", self.host, "--port", str(self.port)]
        if self.http_port is not None:
            cmd += ["--http-port", str(self.http_port)]
        if self.stream_port is not None:
            cmd += ["--stream-port", str(self.stream_port)]
        if self.data_dir is not None:
            cmd += ["--data-dir", str(self.data_dir)]
        if self.config is not None:
            cmd += ["--config", str(self.config)]
        return cmd + self.extra_args

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> EngineProcess:
        """Start the engine and wait for its ready line.

        Raises:
            EngineStartError: the process exited, or printed nothing within ``start_timeout``.
        """
        if self._proc is not None and self._proc.poll() is None:
            raise RuntimeError("engine already running")
        env = {**os.environ, **self.env}
        if self.log_path is not None:
            self._log_file = open(self.log_path, "a", encoding="utf-8")  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        self._stderr_lines = []
        self._stderr_thread = threading.Thread(target=self._pump_stderr, name="engine-stderr", daemon=True)
        self._stderr_thread.start()
        line = self._read_ready_line()
        try:
            parsed: Any = json.loads(line)
        except ValueError as exc:
            self.kill()
            raise EngineStartError(f"engine printed a non-JSON ready line: {line!r}") from exc
        if not isinstance(parsed, dict) or "engine" not in parsed:
            self.kill()
            raise EngineStartError(f"unexpected ready line: {line!r}")
        self.addresses = {str(k): str(v) for k, v in parsed.items()}
        if self.port == 0:
            # Keep the same ports across restart() so clients can reconnect to the same address.
            self.port = int(self.url.rsplit(":", 1)[1])
            if "http" in self.addresses and self.http_port is None:
                self.http_port = int(self.http_url.rsplit(":", 1)[1])
            if "streams" in self.addresses and self.stream_port is None:
                self.stream_port = int(self.streams_url.rsplit(":", 1)[1])
        return self

    def _read_ready_line(self) -> str:
        assert self._proc is not None and self._proc.stdout is not None
        stdout = self._proc.stdout
        result: list[bytes] = []
        reader = threading.Thread(
            target=lambda: result.append(stdout.readline()),
            daemon=True,
        )
        reader.start()
        reader.join(self.start_timeout)
        if not result or not result[0]:
            code = self._proc.poll()
            self.kill()
            why = f"exited with code {code}" if code is not None else f"silent for {self.start_timeout} s"
            raise EngineStartError(f"engine {why}; stderr:\n{self.stderr_tail()}")
        return result[0].decode("utf-8", "replace").strip()

    def _pump_stderr(self) -> None:
        proc = self._proc
        if proc is None or proc.stderr is None:
            return
        for raw in proc.stderr:
            text = raw.decode("utf-8", "replace")
            self._stderr_lines.append(text)
            if len(self._stderr_lines) > 200:
                del self._stderr_lines[:100]
            if self._log_file is not None:
                self._log_file.write(text)
                self._log_file.flush()

    def stderr_tail(self, lines: int = 60) -> str:
        """The last ``lines`` lines the engine wrote to stderr (its log)."""
        return "".join(self._stderr_lines[-lines:])

    def is_running(self) -> bool:
        """Whether the child process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout: float = 10.0) -> int | None:
        """Stop with SIGTERM (clean shutdown), escalating to SIGKILL after ``timeout`` seconds.

        Returns:
            The exit code, or ``None`` if the engine was not running.
        """
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self._finish()
        return proc.returncode

    def kill(self) -> None:
        """Kill the engine at once (SIGKILL): a crash, with no clean shutdown."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        self._finish()

    def restart(self, *, kill: bool = False) -> EngineProcess:
        """Stop (or kill) and start again on the same ports and data folder."""
        if kill:
            self.kill()
        else:
            self.stop()
        deadline = time.monotonic() + 10
        while True:
            try:
                return self.start()
            except EngineStartError:
                # The old socket may linger briefly in the kernel; retry within a bound.
                if time.monotonic() > deadline:
                    raise

    def _finish(self) -> None:
        proc = self._proc
        if self._stderr_thread is not None:
            self._stderr_thread.join(2)
        if proc is not None:
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> EngineProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
