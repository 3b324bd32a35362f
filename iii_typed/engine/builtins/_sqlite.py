"""A small SQLite store shared by the built-ins that keep data (state, queue, later streams).

Decisions "Policies": without ``--data-dir`` the data lives in memory (the real engine's default);
with it, in one SQLite file per built-in in that folder (``<data_dir>/<name>.sqlite3``).

The database runs in WAL mode with ``synchronous=NORMAL``: a committed write survives the engine
process being killed (only an operating-system crash can lose the last commits). Calls are made on
the engine's event-loop thread; each statement is short (single-row reads and writes by key), so
the loop is never blocked for long.

JSON values are stored as compact UTF-8 text (:func:`dumps`/:func:`loads`).

Schemas grow backward-compatibly: a column added in a later version is listed in
``open_database(columns=…)`` and added (``NULL`` in existing rows) to a file written by an older
engine, so an existing data folder still opens.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["StoreError", "dumps", "loads", "open_database"]


#: Longest wait for another process that is setting up the same file (s), and the pause between
#: two tries (s): the setup takes milliseconds.
_LOCK_WAIT = 5.0
_LOCK_RETRY = 0.01


class StoreError(OSError):
    """A built-in's SQLite file cannot be used (corrupt, not a database, or another schema).

    An ``OSError``, so the engine reports it like a port that cannot be bound: ``cannot start
    the engine: …`` and exit code 1, without a traceback.
    """


def open_database(
    data_dir: Path | None,
    name: str,
    schema: Sequence[str] = (),
    columns: Mapping[str, Mapping[str, str]] | None = None,
) -> sqlite3.Connection:
    """Open (creating when needed) the store of one built-in and make sure its tables exist.

    Args:
        data_dir: The engine's data folder, or ``None`` for an in-memory database.
        name: The file stem, e.g. ``state`` (→ ``<data_dir>/state.sqlite3``).
        schema: ``CREATE … IF NOT EXISTS`` statements run (and committed) after opening.
        columns: ``{table: {column: declaration}}`` of nullable columns added by later versions:
            each one missing from its table (a file of an older engine) is added with
            ``ALTER TABLE … ADD COLUMN`` (existing rows read ``NULL``).

    Returns:
        A connection in autocommit-off mode (call ``commit()`` after writes), usable from the
        thread that opened it.

    Raises:
        StoreError: the file is not a database, is corrupt, or holds tables of another shape.
        OSError: the folder cannot be created.
    """
    if data_dir is None:
        db = sqlite3.connect(":memory:", isolation_level="DEFERRED")
    else:
        data_dir.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(data_dir / f"{name}.sqlite3", isolation_level="DEFERRED")
    try:
        if data_dir is not None:
            _enable_wal(db)
            db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        # One write transaction for the whole check-and-create: another process opening the same
        # file at the same time (an older file, two engines starting) waits for it instead of
        # adding the same column after us ("duplicate column name": the store looked unusable).
        db.execute("BEGIN IMMEDIATE")
        for statement in schema:
            db.execute(statement)
        for table, wanted in (columns or {}).items():
            present = {row[1] for row in db.execute(f'PRAGMA table_info("{table}")')}
            for column, declaration in wanted.items():
                if column not in present:
                    db.execute(f'ALTER TABLE "{table}" ADD COLUMN "{column}" {declaration}')
        db.commit()
    except sqlite3.Error as exc:
        db.close()
        where = data_dir / f"{name}.sqlite3" if data_dir is not None else f"the in-memory {name} store"
        raise StoreError(
            f"{where} cannot be used ({exc}): move it away, or start with another --data-dir"
        ) from exc
    return db


def _enable_wal(db: sqlite3.Connection) -> None:
    """Switch the file to WAL, waiting (at most :data:`_LOCK_WAIT` s) for another opener.

    Switching needs an exclusive lock, and SQLite answers ``SQLITE_BUSY`` at once (without its
    busy timeout, to avoid a deadlock) when another connection is switching the same file: two
    processes opening one data folder together made the second fail with "database is locked".
    """
    deadline = time.monotonic() + _LOCK_WAIT
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                raise
        time.sleep(_LOCK_RETRY)


def dumps(value: Any) -> str:
    """Compact JSON text of ``value`` (non-ASCII kept as is)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def loads(text: str) -> Any:
    """Parse JSON text written by :func:`dumps`."""
    return json.loads(text)
