"""Raw WebSocket workers for engine tests (no SDK involved), and golden-frame helpers.

:class:`RawWorker` speaks the wire protocol with plain ``websockets`` and JSON: it records every
frame the engine sends, lets a test wait for a matching frame with a bounded timeout
(:meth:`RawWorker.expect`), and can answer invocations of functions it serves.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

FACTOR = float(os.environ.get("IIITYPED_TEST_TIMEOUT_FACTOR", "1"))
GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "frames.txt"
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

#: A handler returning this sends no invocationresult.
NO_REPLY = object()


class HandlerError(Exception):
    """Raise from a served handler to answer with ``error: {code, message}``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def unique(prefix: str = "t") -> str:
    """A short unique name for ids shared with other tests on the session engine."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class RawWorker:
    """A worker connection driven frame by frame."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self.history: list[dict[str, Any]] = []
        self.handlers: dict[str, Callable[[dict[str, Any]], Any]] = {}
        self.calls: dict[str, list[dict[str, Any]]] = {}
        self.worker_id = ""
        self.reattach_token = ""
        self.closed = asyncio.Event()
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reader = asyncio.create_task(self._read())

    @property
    def close_code(self) -> int | None:
        return self.ws.close_code

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                frame = json.loads(message)
                self.history.append(frame)
                if frame.get("type") == "invokefunction" and frame.get("function_id") in self.handlers:
                    self.calls.setdefault(frame["function_id"], []).append(frame)
                    task = asyncio.create_task(self._serve(frame))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                else:
                    self.frames.append(frame)
                self._changed.set()
        except ConnectionClosed:
            pass
        finally:
            self.closed.set()
            self._changed.set()

    async def _serve(self, frame: dict[str, Any]) -> None:
        handler = self.handlers[frame["function_id"]]
        reply: dict[str, Any] = {
            "type": "invocationresult",
            "invocation_id": frame["invocation_id"],
            "function_id": frame["function_id"],
        }
        try:
            value = handler(frame)
            if inspect.isawaitable(value):
                value = await value
        except HandlerError as exc:
            reply["error"] = {"code": exc.code, "message": exc.message}
        else:
            if value is NO_REPLY:
                return
            reply["result"] = value
        try:
            await self.send(reply)
        except ConnectionClosed:
            pass

    def serve(self, function_id: str, handler: Callable[[dict[str, Any]], Any]) -> None:
        """Answer invocations of ``function_id`` with ``handler(frame)`` (may be async)."""
        self.handlers[function_id] = handler

    async def send(self, frame: dict[str, Any] | str | bytes, *, text: bool | None = None) -> None:
        if isinstance(frame, dict):
            await self.ws.send(json.dumps(frame))
        else:
            await self.ws.send(frame, text=text)

    def find(
        self, predicate: Callable[[dict[str, Any]], bool] | None = None, *, type: str | None = None
    ) -> list[dict[str, Any]]:
        """Frames received so far (consumed or not) that match."""
        return [
            f
            for f in self.history
            if (type is None or f.get("type") == type) and (predicate is None or predicate(f))
        ]

    async def expect(
        self,
        predicate: Callable[[dict[str, Any]], bool] | None = None,
        *,
        type: str | None = None,
        timeout: float = 5.0,
    ) -> dict[str, Any]:
        """Wait for the next unconsumed frame that matches, consume and return it."""
        deadline = time.monotonic() + timeout * FACTOR
        while True:
            for index, frame in enumerate(self.frames):
                if (type is None or frame.get("type") == type) and (predicate is None or predicate(frame)):
                    return self.frames.pop(index)
            if self.closed.is_set():
                raise AssertionError(
                    f"connection closed ({self.close_code}) while waiting for {type or predicate}; "
                    f"unconsumed: {self.frames}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"no {type or 'matching'} frame within {timeout * FACTOR:.1f} s; got {self.frames}"
                )
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                pass

    async def sync(self) -> None:
        """Round-trip a ``ping``: every frame the engine sent before the ``pong`` has arrived."""
        await self.send({"type": "ping"})
        await self.expect(type="pong")

    async def call(
        self,
        function_id: str,
        data: Any = None,
        *,
        namespace: str | None = None,
        timeout: float = 5.0,
        **extra: Any,
    ) -> dict[str, Any]:
        """Synchronous invocation; returns the ``invocationresult`` frame."""
        invocation_id = str(uuid.uuid4())
        frame: dict[str, Any] = {
            "type": "invokefunction",
            "invocation_id": invocation_id,
            "function_id": function_id,
            "data": data,
            **extra,
        }
        if namespace is not None:
            frame["namespace"] = namespace
        await self.send(frame)
        return await self.expect(
            lambda f: f.get("invocation_id") == invocation_id, type="invocationresult", timeout=timeout
        )

    async def result(self, function_id: str, data: Any = None, **kwargs: Any) -> Any:
        """Call and return ``result``, failing on an error."""
        reply = await self.call(function_id, data, **kwargs)
        assert "error" not in reply, reply
        return reply.get("result")

    async def register(
        self, name: str | None = None, namespace: str | None = None, **info: Any
    ) -> dict[str, Any]:
        """Call ``engine::workers::register`` synchronously (so its effects are done on return)."""
        data: dict[str, Any] = {
            "runtime": "python",
            "version": "raw",
            "name": name,
            "os": "test",
            "pid": os.getpid(),
            "isolation": None,
            "namespace": namespace,
            "telemetry": {"language": "C", "project_name": "tests", "framework": "raw"},
        }
        data.update(info)
        return await self.call("engine::workers::register", data, namespace="default")

    async def close(self) -> None:
        await self.ws.close()
        for task in list(self._tasks):
            task.cancel()
        try:
            await asyncio.wait_for(self._reader, 5)
        except (TimeoutError, asyncio.CancelledError):
            pass


async def open_worker(
    url: str,
    *,
    name: str | None = None,
    namespace: str | None = None,
    register: bool = True,
    **info: Any,
) -> RawWorker:
    """Connect, read ``workerregistered`` and (by default) register with a unique name."""
    ws = await connect(url, compression=None, max_size=None, open_timeout=10)
    worker = RawWorker(ws)
    hello = await worker.expect(type="workerregistered")
    worker.worker_id = hello["worker_id"]
    worker.reattach_token = hello["reattach_token"]
    if register:
        reply = await worker.register(name or unique("raw"), namespace, **info)
        assert reply.get("result") == {"success": True}, reply
    return worker


# -- golden frames --------------------------------------------------------------------------
def golden(label: str) -> dict[str, Any]:
    """The frame of ``tests/golden/frames.txt`` with this label (e.g. ``E08``)."""
    for line in GOLDEN.read_text(encoding="utf-8").splitlines():
        if line.startswith(label + " "):
            parsed: dict[str, Any] = json.loads(line.split(" | ", 2)[2])
            return parsed
    raise KeyError(label)


def assert_golden(actual: dict[str, Any], label: str, *, loose: frozenset[str] = frozenset()) -> None:
    """``actual`` is structurally equal to golden ``label``.

    Same top-level key order, same key sets at every level, same value types; UUID values are
    compared by shape; other scalars must be equal unless their dotted path is in ``loose``.
    """
    expected = golden(label)
    assert list(actual) == list(expected), f"{label}: keys {list(actual)} != {list(expected)}"
    _same_shape(actual, expected, "", loose, label)


def _same_shape(actual: Any, expected: Any, path: str, loose: frozenset[str], label: str) -> None:
    where = f"{label} at {path or '<root>'}"
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: {actual!r} is not an object"
        assert set(actual) == set(expected), f"{where}: keys {sorted(actual)} != {sorted(expected)}"
        for key, value in expected.items():
            _same_shape(actual[key], value, f"{path}.{key}" if path else key, loose, label)
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), f"{where}: {actual!r}"
        for index, (a, e) in enumerate(zip(actual, expected, strict=True)):
            _same_shape(a, e, f"{path}[{index}]", loose, label)
    elif isinstance(expected, str) and UUID_RE.match(expected):
        assert isinstance(actual, str) and UUID_RE.match(actual), f"{where}: {actual!r} is not a UUID"
    elif path in loose:
        assert type(actual) is type(expected), f"{where}: {actual!r} vs {expected!r}"
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"
