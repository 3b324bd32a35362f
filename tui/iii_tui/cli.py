"""``iii-tui``: the live terminal dashboard (decisions.md "Dashboard command line").

``iii-tui [--url URL] [--readonly] [--snapshot DIR] [--record FILE] [--replay FILE]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

__all__ = ["main", "parse_args"]

DEFAULT_URL = "ws://127.0.0.1:49134"


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(x) for x in text.lower().split("x", 1))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from exc
    if width < 40 or height < 10:
        raise argparse.ArgumentTypeError("the smallest size is 40x10")
    return width, height


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        prog="iii-tui",
        description="Live terminal dashboard for an iii engine (keys: 1-9,0 screens, / filter, ? help).",
    )
    parser.add_argument("--url", default=None, help=f"engine URL (default $III_URL, then {DEFAULT_URL})")
    parser.add_argument("--readonly", action="store_true", help="disable every action that writes")
    parser.add_argument(
        "--snapshot",
        metavar="DIR",
        help="write <screen>.svg and <screen>.txt for every screen, then exit (1: engine unreachable)",
    )
    parser.add_argument(
        "--record", metavar="FILE", help="record the session (every event) to FILE (.gz compresses)"
    )
    parser.add_argument("--replay", metavar="FILE", help="play a recorded session instead of connecting")
    parser.add_argument("--speed", type=float, default=1.0, help="replay speed (0 = at once; default 1)")
    parser.add_argument(
        "--size", type=_size, default=(120, 40), help="snapshot size WIDTHxHEIGHT (default 120x40)"
    )
    parser.add_argument("--screen", default="overview", help="first screen (default overview)")
    parser.add_argument(
        "--connect-timeout",
        type=float,
        default=5.0,
        help="--snapshot: seconds to wait for the engine (default 5)",
    )
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.replay and args.record:
        parser.error("--record and --replay cannot be combined")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the dashboard (or take snapshots); returns the exit code."""
    args = parse_args(argv)
    url = args.url or os.environ.get("III_URL") or DEFAULT_URL
    from .views import SCREENS

    if args.screen not in SCREENS:
        print(f"iii-tui: unknown screen {args.screen!r} (choose from {', '.join(SCREENS)})", file=sys.stderr)
        return 2
    if not args.replay:
        from iii_typed.client import resolve_engine_url

        try:
            url = resolve_engine_url(url)
        except ValueError as exc:  # e.g. --url garbage: a usage error, not a traceback
            print(f"iii-tui: {exc}", file=sys.stderr)
            return 2
    if args.snapshot:
        from .snapshot import SnapshotError

        try:
            return asyncio.run(_snapshot(args, url))
        except SnapshotError as exc:
            print(f"iii-tui: {exc} (a bug: the error is printed above)", file=sys.stderr)
            return 3
    return _interactive(args, url)


async def _snapshot(args: argparse.Namespace, url: str) -> int:
    from .snapshot import exit_code, snapshot_engine, write_snapshots
    from .store import Store

    if args.replay:
        from .session import ReplaySource

        source = ReplaySource(args.replay, speed=0)
        store = Store()
        await source.run(store.apply)
        await write_snapshots(store, args.snapshot, args.size)
        return exit_code(store)
    store = Store()
    code = await snapshot_engine(url, args.snapshot, args.size, args.connect_timeout, args.record, store)
    if code == 1 and store.failure:
        print(f"iii-tui: the engine at {url} {store.failure}", file=sys.stderr)
    elif code == 1:
        print(
            f"iii-tui: the engine at {url} is unreachable (no answer within {args.connect_timeout:g} s); "
            f"the snapshots in {args.snapshot} show it so",
            file=sys.stderr,
        )
    return code


def _interactive(args: argparse.Namespace, url: str) -> int:
    from .app import DataSource, IIIApp
    from .clock import Clock, SystemClock
    from .session import ReplaySource, SessionWriter
    from .source import EngineSource

    source: DataSource
    clock: Clock
    recorder = None
    if args.replay:
        replay = ReplaySource(args.replay, speed=args.speed)
        source, clock = replay, replay.clock
    else:
        clock = SystemClock()
        source = EngineSource(url, readonly=args.readonly, clock=clock)
        if args.record:
            recorder = SessionWriter(args.record, url, clock.now())
    app = IIIApp(
        source,
        clock=clock,
        readonly=args.readonly,
        replay=bool(args.replay),
        recorder=recorder,
        initial=args.screen,
    )
    result = app.run()
    return int(result or 0)
