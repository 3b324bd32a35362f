"""Deterministic snapshots of every screen from a replayed session file (fixed size, no
animations, the replay's clock). ``IIITUI_UPDATE_SNAPSHOTS=1`` rewrites the golden files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from iii_tui.app import IIIApp
from iii_tui.session import ReplaySource, read_session
from iii_tui.snapshot import rendered_text
from iii_tui.views import SCREENS
from iii_tui.widgets import RingView

from .conftest import wait_until
from .sessions import SESSION, build_events

GOLDEN = Path(__file__).parent / "snapshots"
UPDATE = os.environ.get("IIITUI_UPDATE_SNAPSHOTS") == "1"


def test_session_file_is_reproducible() -> None:
    _, events = read_session(SESSION)
    assert events == build_events()


def _settled(app: IIIApp) -> bool:
    """The screen is laid out and every following list shows its end."""
    for ring in app.screen.query(RingView):
        if ring.size.height == 0 or (ring.follow and ring.scroll_y != ring.max_scroll_y):
            return False
    return app.screen.size.height > 0


async def _replayed(size: tuple[int, int]) -> dict[str, str]:
    source = ReplaySource(SESSION, speed=0)
    app = IIIApp(source, clock=source.clock, replay=True, flush_interval=0.05)
    app.animation_level = "none"
    shots: dict[str, str] = {}
    async with app.run_test(size=size) as pilot:
        await wait_until(
            lambda: source.done.is_set() and not app._pending and app.store.logs, what="replayed"
        )
        app.current_trace = f"{38:032x}"  # the trace with children
        for index, name in enumerate(SCREENS):
            await pilot.press(str((index + 1) % 10))
            await wait_until(lambda n=name: app.current_mode == n, what=name)
            await pilot.pause()
            await wait_until(lambda: _settled(app), what=f"{name} laid out")
            shots[name] = rendered_text(app)
    return shots


@pytest.mark.parametrize("size", [(120, 40), (80, 24)], ids=["120x40", "80x24"])
async def test_every_screen_matches_its_snapshot(size: tuple[int, int]) -> None:
    shots = await _replayed(size)
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
    shots = await _replayed((120, 40))
    assert "REPLAY" in shots["overview"] and "READ-ONLY" in shots["overview"]
    assert "orders::create" in shots["functions"] and "billing (1)" in shots["functions"]
    assert "engine::workers::list" not in shots["functions"]  # internal functions are hidden
    assert "pending" in shots["triggers"]
    assert "running" in shots["invocations"] and "card decl" in shots["invocations"]
    assert "smtp down" in shots["trace"] or "orders::notify" in shots["trace"]
    assert "chat" in shots["streams"] and "carts" in shots["streams"]
    assert "emails" in shots["queues"] and "m-1" in shots["queues"]
    assert "0c8e7f6a" in shots["channels"]
    logs = shots["logs"]
    assert "\x1b" not in logs and "\\x1b[31mred" in logs  # escape codes shown, not executed
