"""Headless rendering: ``--snapshot DIR`` and the text of what a screen shows (tests, CI)."""

from __future__ import annotations

import io
import os
from pathlib import Path

from rich.console import Console
from textual.app import App
from textual.pilot import Pilot

from .clock import ManualClock
from .session import SessionWriter
from .source import EngineSource
from .store import Event, Store
from .views import SCREENS, default_trace, screen_text

__all__ = [
    "DEFAULT_SIZE",
    "SnapshotError",
    "exit_code",
    "rendered_text",
    "snapshot_engine",
    "write_snapshots",
]

DEFAULT_SIZE = (120, 40)


class SnapshotError(RuntimeError):
    """A screen could not be drawn: the app stopped with an error (Textual printed it)."""


def rendered_text(app: App[object]) -> str:
    """The current screen exactly as drawn, as plain text (one line per terminal row)."""
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), record=True, color_system=None)
    render = app.screen._compositor.render_update(full=True, screen_stack=app._background_screens)
    console.print(render)
    return "\n".join(line.rstrip() for line in console.export_text(styles=False).splitlines())


def exit_code(store: Store) -> int:
    """0 when the engine answered (healthy or degraded), 1 when it was unreachable."""
    return 0 if store.connected_once else 1


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _write_texts(store: Store, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    return [_write(out / f"{name}.txt", screen_text(store, name)) for name in SCREENS]


async def write_snapshots(
    store: Store, out_dir: str | os.PathLike[str], size: tuple[int, int] = DEFAULT_SIZE
) -> list[Path]:
    """Write ``<screen>.txt`` (ids in full) and ``<screen>.svg`` for every screen.

    Returns:
        The files written.

    Raises:
        SnapshotError: a screen could not be drawn.
    """
    from .app import IIIApp, NullSource

    out = Path(out_dir)
    written = _write_texts(store, out)
    app = IIIApp(NullSource(), store=store, clock=ManualClock(store.now), readonly=True)
    app.current_trace = default_trace(store)

    async def pilot(p: Pilot[object]) -> None:
        for name in SCREENS:
            await app.switch_mode(name)
            await p.pause()
            if app.return_code is not None:  # a screen failed: the app is closing with code 1
                return
            written.append(_write(out / f"{name}.svg", app.export_screenshot(title=f"iii-tui {name}")))
        app.exit(0)

    app.animation_level = "none"
    await app.run_async(headless=True, size=size, auto_pilot=pilot)
    if app.return_code:
        raise SnapshotError(f"drawing the screens failed; {len(written) - len(SCREENS)} .svg file(s) written")
    return written


async def snapshot_engine(
    url: str,
    out_dir: str | os.PathLike[str],
    size: tuple[int, int] = DEFAULT_SIZE,
    connect_timeout: float = 5.0,
    record: str | os.PathLike[str] | None = None,
    store: Store | None = None,
) -> int:
    """Read every view of a live engine once, write the snapshots, return the exit code.

    Args:
        url: Engine URL.
        out_dir: Folder for ``<screen>.svg`` and ``<screen>.txt``.
        size: Terminal size of the SVGs.
        connect_timeout: Seconds to wait for the connection.
        record: Also write the events read to this session file.
        store: The store to fill (a new one by default); its ``failure`` says why a refused
            connection failed.
    """
    store = store if store is not None else Store()
    source = EngineSource(url, readonly=True)
    writer = SessionWriter(record, url, source.clock.now()) if record is not None else None

    def sink(event: Event) -> None:
        store.apply(event)
        if writer is not None:
            writer.write(event)

    try:
        await source.collect(sink, connect_timeout)
    finally:
        if writer is not None:
            writer.close()
    await write_snapshots(store, out_dir, size)
    return exit_code(store)
