"""Helpers of the stream tests: a recording handler, trigger readiness, raw stream sockets."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

from iii_typed import III
from tests.integration.channels.channel_support import client, unique
from tests.support.waiting import FACTOR, wait_for

__all__ = ["Recorder", "client", "recv_json", "send_join", "unique", "wait_bindings"]


class Recorder:
    """A handler that records payloads and returns ``result`` (or ``result(payload)``)."""

    def __init__(self, result: Any = None) -> None:
        self.payloads: list[Any] = []
        self._result = result
        self._cond = threading.Condition()

    def __call__(self, data: Any) -> Any:
        with self._cond:
            self.payloads.append(data)
            self._cond.notify_all()
        return self._result(data) if callable(self._result) else self._result

    def wait(self, count: int, timeout: float = 5.0) -> list[Any]:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.payloads) >= count, timeout * FACTOR):
                raise AssertionError(f"expected {count} calls, got {len(self.payloads)}: {self.payloads}")
            return list(self.payloads)

    def stays(self, count: int, window: float = 0.3) -> bool:
        """No call beyond ``count`` within ``window`` s (a bounded negative check)."""
        with self._cond:
            return not self._cond.wait_for(lambda: len(self.payloads) > count, window)


def wait_bindings(iii: III, trigger_type: str, function_id: str, timeout: float = 10.0) -> None:
    """Wait until a binding of ``function_id`` is live at the engine."""

    def live() -> bool:
        listed = iii.trigger(
            {
                "function_id": "engine::registered-triggers::list",
                "payload": {"trigger_type": trigger_type, "function_id": function_id},
            }
        )
        return bool(listed["registered_triggers"])

    wait_for(live, timeout=timeout, interval=0.02, what=f"{trigger_type} binding of {function_id} not live")


async def send_join(
    ws: Any, subscription: str, stream: str, group: str, item: str | None = None, kind: str = "join"
) -> None:
    """Send a ``join`` (or ``leave``) frame (golden S01)."""
    data: dict[str, Any] = {"subscriptionId": subscription, "streamName": stream, "groupId": group}
    if item is not None:
        data["id"] = item
    await ws.send(json.dumps({"type": kind, "data": data}))


async def recv_json(ws: Any, timeout: float = 5.0) -> Any:
    """The next frame, parsed (bounded wait)."""
    return json.loads(await asyncio.wait_for(ws.recv(), timeout * FACTOR))
