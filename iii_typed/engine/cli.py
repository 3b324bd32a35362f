"""``iii-typed engine`` / ``python -m iii_typed.engine``: run the dev engine (decisions "Engine
command line").

Once every listener is bound the engine prints exactly one line to stdout, e.g.
``{"engine": "ws://127.0.0.1:49134", "http": "http://127.0.0.1:3111", "streams": "ws://127.0.0.1:3112"}``
(a key only for the components that run), then logs to stderr until SIGINT or SIGTERM, closes
every worker socket with a close frame and exits 0. Exit codes: 0 clean stop, 1 start-up failure
(e.g. a port in use), 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence

from .config import (
    DEFAULT_HOST,
    DEFAULT_HTTP_PORT,
    DEFAULT_PORT,
    DEFAULT_STREAM_PORT,
    ConfigError,
    EngineConfig,
)
from .server import Engine

__all__ = ["build_parser", "main"]

log = logging.getLogger("iii_typed.engine")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``iii-typed engine``."""
    parser = argparse.ArgumentParser(
        prog="iii-typed engine",
        description="Run the iii-typed dev engine (speaks the iii worker protocol).",
    )
    parser.add_argument("--host", default=None, help=f"interface to bind (default {DEFAULT_HOST})")
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help=f"worker WebSocket port (default {DEFAULT_PORT}); 0 picks a free port and makes every "
        "port not given explicitly free too",
    )
    parser.add_argument(
        "--http-port", type=int, default=None, help=f"HTTP trigger port (default {DEFAULT_HTTP_PORT})"
    )
    parser.add_argument(
        "--stream-port", type=int, default=None, help=f"stream WebSocket port (default {DEFAULT_STREAM_PORT})"
    )
    parser.add_argument("--data-dir", default=None, help="folder for SQLite persistence (default: in memory)")
    parser.add_argument(
        "--config", default=None, help="engine.toml with ports, data folder and built-in settings"
    )
    parser.add_argument(
        "--log-level", default=None, help="DEBUG, INFO (default), WARNING or ERROR; also env III_LOG"
    )
    parser.add_argument(
        "--token",
        default=None,
        help="require 'Authorization: Bearer TOKEN' on every WebSocket upgrade (401 otherwise); "
        "prefer env III_ENGINE_TOKEN, which other users cannot see in the process list",
    )
    return parser


def _configure_logging(level_name: str) -> None:
    level = logging.getLevelName(level_name.upper())
    if not isinstance(level, int):
        raise ConfigError(f"unknown log level {level_name!r} (use DEBUG, INFO, WARNING or ERROR)")
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if level > logging.DEBUG:
        logging.getLogger("iii_typed.engine.websockets").setLevel(max(level, logging.WARNING))


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    if os.environ.get("III_LOOP", "").lower() == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


async def _serve(config: EngineConfig) -> int:
    engine = Engine(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await engine.start()
    except ConfigError as exc:
        print(f"iii-typed engine: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        log.error("cannot start the engine: %s", exc)
        return 1
    sys.stdout.write(json.dumps(engine.addresses) + "\n")
    sys.stdout.flush()
    await stop.wait()
    log.info("shutting down")
    await engine.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the engine until SIGINT/SIGTERM.

    Args:
        argv: Arguments after ``engine`` (default ``sys.argv[1:]``).

    Returns:
        The exit code (0 after a clean stop).
    """
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        config = EngineConfig.build(
            file=args.config,
            host=args.host,
            port=args.port,
            http_port=args.http_port,
            stream_port=args.stream_port,
            data_dir=args.data_dir,
            log_level=args.log_level,
            auth_token=args.token,
        )
        _configure_logging(config.log_level)
    except ConfigError as exc:
        print(f"iii-typed engine: {exc}", file=sys.stderr)
        return 2
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(_serve(config))
