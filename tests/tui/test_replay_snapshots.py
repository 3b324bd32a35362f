"""Deterministic snapshots of every screen from a replayed session file (fixed size, no
animations, the replay's clock). The session was recorded from a real run (``python -m
tests.tui.sessions``), so the screens show what the engine really sends.
``IIITUI_UPDATE_SNAPSHOTS=1`` rewrites the golden files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from iii_tui.app import IIIApp
from iii_tui.session import ReplaySource, read_session
from iii_tui.snapshot import rendered_text
from iii_tui.views import SCREENS
from iii_tui.widgets import RingView

from .conftest import wait_until
from .sessions import SESSION

GOLDEN = Path(__file__).parent / "snapshots"
UPDATE = os.environ.get("IIITUI_UPDATE_SNAPSHOTS") == "1"


def test_session_is_a_real_recording() -> None:
    """The session holds the engine's real shapes (not hand-written ones)."""
    header, events = read_session(SESSION)
    assert header["url"].startswith("ws://127.0.0.1:")
    by_kind: dict[str, list[Any]] = {}
    for event in events:
        by_kind.setdefault(event.kind, []).append(event.data)
    needed = {"functions", "workers", "worker_info", "triggers", "spans", "trace_tree", "logs", "channels"}
    assert needed | {"streams", "stream_items", "state_items", "queues", "dlq", "dlq_messages"} <= set(
        by_kind
    )
    spans = [s for d in by_kind["spans"] for s in d["spans"]]
    # worker handler spans "execute <fn>" (the process's service name, shared by its workers) and
    # the engine's "call <fn>" spans of built-ins called from a handler; the function id as an
    # attribute on both
    for s in spans:
        function = dict(s["attributes"])["iii.function.id"]
        assert (s["name"], s["service_name"]) in (
            (f"execute {function}", "iii-python-sdk"),
            (f"call {function}", "iii"),
        )
    assert {s["service_name"] for s in spans} == {"iii-python-sdk", "iii"}
    assert any(s["parent_span_id"] is None for s in spans) and any(s["parent_span_id"] for s in spans)
    first = max(by_kind["spans"], key=lambda d: len(d["spans"]))["spans"]  # the first read: newest first
    starts = [s["start_time_unix_nano"] for s in first]
    assert len(starts) > 1 and starts == sorted(starts, reverse=True)
    # logs: the first read (engine::logs::list) answers newest first; the log trigger pushes one
    polled = max(by_kind["logs"], key=lambda d: len(d["logs"]))["logs"]
    stamps = [r["timestamp_unix_nano"] for r in polled]
    assert len(stamps) > 1 and stamps == sorted(stamps, reverse=True)
    assert any(len(d["logs"]) == 1 for d in by_kind["logs"])  # pushed records
    metrics = [d["worker"].get("latest_metrics") for d in by_kind["worker_info"]]
    assert any(m and {"cpu_percent", "memory_rss", "event_loop_lag_ms"} <= set(m) for m in metrics)
    rows = [row for d in by_kind["channels"] for row in d["channels"]]
    assert rows and all({"reader", "writer", "owner_worker_id", "bytes", "messages"} <= set(r) for r in rows)
    assert "state" not in rows[0] and set(rows[0]["reader"]) == {"state", "via", "remote_address"}
    assert by_kind["trace_tree"][0]["roots"][0]["children"]


def _settled(app: IIIApp) -> bool:
    """The screen is laid out and every following list shows its end."""
    for ring in app.screen.query(RingView):
        if ring.size.height == 0 or (ring.follow and ring.scroll_y != ring.max_scroll_y):
            return False
    return app.screen.size.height > 0


_SHOTS: dict[tuple[int, int], dict[str, str]] = {}


async def _replayed(size: tuple[int, int]) -> dict[str, str]:
    source = ReplaySource(SESSION, speed=0)
    app = IIIApp(source, clock=source.clock, replay=True, flush_interval=0.05)
    app.animation_level = "none"
    shots: dict[str, str] = {}
    async with app.run_test(size=size) as pilot:
        await wait_until(
            lambda: source.done.is_set() and not app._pending and app.store.logs, what="replayed"
        )
        app.current_trace = next(iter(app.store.trace_trees))  # the trace whose tree was fetched
        for index, name in enumerate(SCREENS):
            await pilot.press(str((index + 1) % 10))
            await wait_until(lambda n=name: app.current_mode == n, what=name)
            await pilot.pause()
            await wait_until(lambda: _settled(app), what=f"{name} laid out")
            shots[name] = rendered_text(app)
    _SHOTS.setdefault(size, shots)
    return shots


async def _shots(size: tuple[int, int]) -> dict[str, str]:
    return _SHOTS[size] if size in _SHOTS else await _replayed(size)


@pytest.mark.parametrize("size", [(120, 40), (80, 24)], ids=["120x40", "80x24"])
async def test_every_screen_matches_its_snapshot(size: tuple[int, int]) -> None:
    shots = await _shots(size)
    if size == (120, 40):
        again = await _replayed(size)
        assert shots == again, "two replays of the same session rendered differently"
    mismatched = []
    for name, text in shots.items():
        path = GOLDEN / f"{name}-{size[0]}x{size[1]}.txt"
        if UPDATE or not path.exists():
            path.write_text(text + "\n", encoding="utf-8")
            continue
        if path.read_text(encoding="utf-8") != text + "\n":
            mismatched.append(name)
    assert not mismatched, f"screens differ from {GOLDEN}: {mismatched} (IIITUI_UPDATE_SNAPSHOTS=1 to accept)"
    lines = shots["overview"].splitlines()
    assert len(lines) == size[1] and all(len(line) <= size[0] for line in lines)


async def test_snapshot_content_from_replay() -> None:
    shots = await _shots((120, 40))
    assert "REPLAY" in shots["overview"] and "READ-ONLY" in shots["overview"]
    assert "worker connected: mailer" in shots["overview"] and "registered: mail::send" in shots["overview"]
    assert "orders::create" in shots["functions"] and "billing (4)" in shots["functions"]
    assert "engine::workers::list" not in shots["functions"]  # internal functions are hidden
    assert "pending" in shots["triggers"] and "webhook" in shots["triggers"]
    invocations = shots["invocations"]
    assert "card declined" in invocations and "orders-worker" in invocations
    assert "iii-python-sdk" not in invocations  # the worker, not the shared service name
    trace = shots["trace"]
    assert "*billing::checkout" in trace and "*  billing::charge" in trace and "2 span(s)" in trace
    assert "chat" in shots["streams"] and "room-1, room-2" in shots["streams"]
    assert "orders-receipts" in shots["streams"]
    queues = shots["queues"]
    assert "emails    builtin" in queues and "smtp down for a@example" in queues  # non-empty DLQ first
    channels = shots["channels"]
    assert "open     connected  connected" in channels and "waiting  waiting    connected" in channels
    assert "mailer" in channels
    workers = shots["workers"]
    assert "billing-worker" in workers and "MiB" in workers
    logs = shots["logs"]
    assert "\x1b" not in logs and "\\x1b[31mred" in logs  # escape codes shown, not executed
    assert logs.index("checkout cart-24") < logs.index("refund cart-17")  # oldest first
