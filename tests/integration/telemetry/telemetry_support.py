"""Helpers of the telemetry tests: worker processes (``telemetry_app.py``) and engine queries."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

from tests.support.waiting import FACTOR

__all__ = ["APP", "App", "fast_otel", "unique"]

APP = Path(__file__).with_name("telemetry_app.py")
ROOT = Path(__file__).resolve().parents[3]


def unique(prefix: str) -> str:
    """A short unique id part shared with other tests on the session engine."""
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def fast_otel(**overrides: Any) -> dict[str, Any]:
    """OtelConfig fields with test-sized intervals (decisions "Tests": metrics <= 500 ms)."""
    config: dict[str, Any] = {
        "enabled": True,
        "spans_flush_interval_ms": 50,
        "logs_flush_interval_ms": 50,
        "metrics_export_interval_ms": 300,
        "fetch_instrumentation_enabled": False,
    }
    config.update(overrides)
    return config


class App:
    """One ``telemetry_app.py`` process; :meth:`command` sends a line and returns its answer.

    Args:
        config: The app's JSON config.
        env: Extra environment variables (``OTEL_ENABLED`` is removed unless given here).
    """

    def __init__(self, config: dict[str, Any], env: dict[str, str] | None = None) -> None:
        environment = {k: v for k, v in os.environ.items() if k != "OTEL_ENABLED"}
        environment.update(env or {})
        environment["PYTHONUNBUFFERED"] = "1"
        self.proc = subprocess.Popen(
            [sys.executable, str(APP), json.dumps(config)],
            cwd=ROOT,
            env=environment,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()
        self.ready = self.next("ready", timeout=30)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self._lines.put(json.loads(line))
            except ValueError:
                self.stderr.append(line)
        self._lines.put(None)

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)

    def next(self, event: str, timeout: float = 10) -> dict[str, Any]:
        """The next line of ``event`` (raises with the app's stderr when it does not come)."""
        try:
            while True:
                line = self._lines.get(timeout=timeout * FACTOR)
                if line is None:
                    raise AssertionError(f"app exited before {event!r}:\n{''.join(self.stderr[-40:])}")
                if line.get("event") == event:
                    return line
        except queue.Empty:
            raise AssertionError(
                f"no {event!r} from the app within {timeout} s:\n{''.join(self.stderr[-40:])}"
            ) from None

    def command(self, text: str, timeout: float = 10) -> dict[str, Any]:
        """Send one command line and wait for its answer."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()
        return self.next(text.split()[0] if text != "stop" else "stopped", timeout)

    def stats(self) -> dict[str, Any]:
        """The app's ``stats`` answer."""
        return self.command("stats")

    def stop(self) -> dict[str, Any]:
        """Shut the client down and end the process; returns the ``stopped`` answer."""
        answer = self.command("stop", timeout=15)
        self.proc.wait(10)
        return answer

    def kill(self) -> None:
        """End the process if it still runs."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
