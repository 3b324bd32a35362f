"""Many threads, one socket: every frame is written whole by the SDK's single writer (issue 8 item 1;
sdk.md §2.1; perf.md §2.4)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from iii_typed import III
from iii_typed.engine.process import EngineProcess

THREADS = 16
CALLS = 2000


def test_16_threads_x_2000_sync_calls_are_all_answered_and_no_frame_is_malformed(
    engine_factory: Callable[..., EngineProcess], connect: Callable[..., III]
) -> None:
    engine = engine_factory()
    server = connect(engine.url)

    async def add(data: dict[str, Any]) -> dict[str, Any]:
        return {"t": data["t"], "i": data["i"], "sum": data["a"] + data["b"], "pad": data["pad"]}

    server.register_function("load::add", add)
    caller = connect(engine.url)
    caller.trigger({"function_id": "load::add", "payload": {"t": -1, "i": 0, "a": 1, "b": 2, "pad": ""}})
    failures: list[str] = []
    answered = [0] * THREADS
    start = threading.Barrier(THREADS)

    def run(t: int) -> None:
        start.wait(10)
        for i in range(CALLS):
            # Frames of different sizes (some over a socket buffer) so interleaving would show.
            pad = "é" * ((t * 7919 + i * 104729) % 3000)
            payload = {"t": t, "i": i, "a": i, "b": t * 1000, "pad": pad}
            try:
                result = caller.trigger({"function_id": "load::add", "payload": payload, "timeout_ms": 30000})
            except Exception as exc:  # collected: an assertion inside a thread would be lost
                failures.append(f"thread {t} call {i}: {exc!r}")
                return
            if result != {"t": t, "i": i, "sum": i + t * 1000, "pad": pad}:
                failures.append(f"thread {t} call {i}: wrong answer {result!r:.200}")
                return
            answered[t] += 1

    threads = [threading.Thread(target=run, args=(t,), name=f"load-{t}") for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not failures, failures[:5]
    assert answered == [CALLS] * THREADS
    # No frame the engine received was malformed: the engine logs one WARNING per dropped frame.
    caller.trigger({"function_id": "engine::health::check", "payload": {}})
    assert engine.log_path is not None
    log = engine.log_path.read_text(encoding="utf-8")
    assert "dropped a frame" not in log and "dropped a " not in log
    assert caller.get_connection_state() == "connected" and server.get_connection_state() == "connected"
