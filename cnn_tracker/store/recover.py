"""Salvaging a damaged run store: every readable row into a fresh ``store.db``."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from typing import Any

from cnn_tracker.errors import UserError
from cnn_tracker.store.db import Store
from cnn_tracker.store.schema import DB_NAME, TABLES


def _intact(row: dict[str, Any]) -> bool:
    """A salvaged row whose JSON columns parse and whose key columns are set."""
    try:
        for key in ("config", "params", "summary", "metrics"):
            if key in row and row[key] is not None:
                json.loads(row[key])
    except (json.JSONDecodeError, TypeError, UnicodeDecodeError):
        return False
    return all(row.get(k) is not None for k in ("id", "run_id") if k in row)


def recover(root: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Salvage a damaged store: copy every readable row into a fresh ``store.db``.

    The damaged file is renamed ``store.db.damaged-<unix time>`` (never deleted). Rows are read
    one table at a time, forwards and then backwards by rowid, so one bad page loses only the
    rows on it. Returns {"damaged": path, "tables": {table: rows kept}}.
    """
    store = Store(root)
    if store.is_postgres:
        raise UserError(f"`store recover` salvages a damaged SQLite store; {store.where} is a "
                        "PostgreSQL database: restore it from the server's backups (pg_dump).")
    if not store.exists():
        raise UserError(f"there is no run store at {store.path}: nothing to recover.")
    damaged = store.path.with_name(f"{DB_NAME}.damaged-{int(time.time())}")
    os.replace(store.path, damaged)
    for suffix in ("-wal", "-shm"):  # they belong to the damaged file now
        side = store.path.with_name(DB_NAME + suffix)
        if side.exists():
            os.replace(side, damaged.with_name(damaged.name + suffix))
    src = sqlite3.connect(f"file:{damaged}?mode=ro", uri=True)
    src.execute("PRAGMA writable_schema = ON")  # lets SQLite read a truncated file's first pages
    fresh = Store(root).open()
    try:
        tables = {table: _salvage(src, table) for table in TABLES}
        kept = fresh._call(lambda q, retried: {table: _restore(q, table, columns, rows)
                                               for table, (columns, rows) in tables.items()},
                           write=True)
    finally:
        src.close()
        fresh.close()
    return {"damaged": str(damaged), "store": str(store.path), "tables": kept}


def _salvage(src: sqlite3.Connection, table: str) -> tuple[list[str], list[tuple]]:
    """The readable rows of ``table``, forwards then backwards by rowid (past a bad page)."""
    rows: dict[int, tuple] = {}
    for order in ("ASC", "DESC"):
        try:
            for row in src.execute(f"SELECT rowid, * FROM {table} ORDER BY rowid {order}"):
                rows[row[0]] = row[1:]
        except sqlite3.DatabaseError:
            continue  # a bad page (or a table older stores do not have)
    try:
        columns = [d[0] for d in src.execute(f"SELECT * FROM {table} LIMIT 0").description]
    except sqlite3.DatabaseError:
        return [], []
    return columns, [rows[rowid] for rowid in sorted(rows)]


def _restore(q, table: str, columns: list[str], rows: list[tuple]) -> int:
    n = 0
    for values in rows:
        if not _intact(dict(zip(columns, values))):
            continue  # a row torn by the damage
        q.exec(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({','.join('?' * len(values))}) "
               "ON CONFLICT DO NOTHING", *values)
        n += 1
    return n
