"""Engine restart while telemetry flows: the ``/otel`` socket reconnects on its own, and while the
engine is away the bounded queue drops (and counts) instead of growing (protocol.md §8.1)."""

from __future__ import annotations

import time
from typing import Any

from iii_typed.engine.process import EngineProcess, EngineStartError
from tests.integration.telemetry.telemetry_support import fast_otel, unique
from tests.support.waiting import wait_for

QUEUE_FRAMES = 1000
QUEUE_BYTES = 16 * 1024 * 1024
RSS_SLACK = 24 * 1024 * 1024


def _start_again(engine: EngineProcess) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            engine.start()
            return
        except EngineStartError:
            if time.monotonic() > deadline:
                raise


def test_restart_reconnects_and_the_queue_bound_holds(fresh_engine, apps, query):
    tag = unique("rst")
    app = apps({"url": fresh_engine.url, "otel": fast_otel(), "worker_name": tag, "service": tag})
    client = query(fresh_engine)

    def stored() -> int:
        listed = client.trigger({"function_id": "engine::logs::list", "payload": {"limit": 1}})
        return int(listed["total"])

    app.command("stream on")
    wait_for(lambda: stored() > 0, timeout=10, what="streamed logs reach the engine")
    fresh_engine.kill()

    def telemetry() -> dict[str, Any]:
        return dict(app.stats()["telemetry"])

    first = wait_for(
        lambda: (t := telemetry())["frames_dropped"] > 0 and not t["connected"] and t,
        timeout=10,
        what="the worker drops telemetry while the engine is away",
    )
    rss_at_first_drop = app.stats()["rss"]
    dropped_then = first["frames_dropped"] + first["logs_dropped"]
    later = wait_for(
        lambda: (t := telemetry())["frames_dropped"] + t["logs_dropped"] > dropped_then + 50_000 and t,
        timeout=20,
        what="many more records dropped",
    )
    rss_later = app.stats()["rss"]
    assert later["queued_frames"] <= QUEUE_FRAMES and later["queued_bytes"] <= QUEUE_BYTES
    assert later["buffered_logs"] <= 8192
    assert rss_later - rss_at_first_drop < RSS_SLACK, (rss_at_first_drop, rss_later)

    _start_again(fresh_engine)
    connects_before = later["connects"]
    wait_for(
        lambda: (t := telemetry())["connected"] and t["connects"] > connects_before,
        timeout=10,
        what="the /otel socket reconnects",
    )
    client = query(fresh_engine)
    wait_for(lambda: stored() > 0, timeout=10, what="telemetry flows into the restarted engine")
    app.command("stream off")
    stats = client.trigger({"function_id": "engine::observability::stats", "payload": {}})
    assert stats["connections"] == 1
