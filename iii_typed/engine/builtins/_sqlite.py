"""A small SQLite store shared by the built-ins that keep data (state, queue, later streams).

Decisions "Policies": without ``--data-dir`` the data lives in memory (the real engine's default);
with it, in one SQLite file per built-in in that folder (``<data_dir>/<name>.sqlite3``).

The database runs in WAL mode with ``synchronous=NORMAL``: a committed write survives the engine
process being killed (only an operating-system crash can lose the last commits). Calls are made on
the engine's event-loop thread; each statement is short (single-row reads and writes by key), so
the loop is never blocked for long.

JSON values are stored as compact UTF-8 text (:func:`dumps`/:func:`loads`).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

__all__ = ["dumps", "loads", "open_database"]


def open_database(data_dir: Path | None, name: str) -> sqlite3.Connection:
    """Open (creating when needed) the store of one built-in.

    Args:
        data_dir: The engine's data folder, or ``None`` for an in-memory database.
        name: The file stem, e.g. ``state`` (→ ``<data_dir>/state.sqlite3``).

    Returns:
        A connection in autocommit-off mode (call ``commit()`` after writes), usable from the
        thread that opened it.

    Raises:
        sqlite3.Error: the file cannot be opened or is not a database.
        OSError: the folder cannot be created.
    """
    if data_dir is None:
        db = sqlite3.connect(":memory:", isolation_level="DEFERRED")
    else:
        data_dir.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(data_dir / f"{name}.sqlite3", isolation_level="DEFERRED")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA foreign_keys=ON")
    return db


def dumps(value: Any) -> str:
    """Compact JSON text of ``value`` (non-ASCII kept as is)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def loads(text: str) -> Any:
    """Parse JSON text written by :func:`dumps`."""
    return json.loads(text)
