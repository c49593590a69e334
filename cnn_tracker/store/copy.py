"""``store copy``: every sweep, run, epoch and checkpoint of one store into another.

Between any two stores (a folder and a PostgreSQL database, either way). Idempotent: a row
already in the destination (same sweep or run id, same run and epoch, same run and checkpoint
name) is kept as it is, so a copy can be repeated or resumed. Runs keep their order; the
destination numbers them after its own. One transaction on the destination: all or nothing.
"""

from __future__ import annotations

from typing import Any

from cnn_tracker.errors import UserError
from cnn_tracker.store.db import Store
from cnn_tracker.store.schema import TABLES, columns

_ORDER = {"sweeps": "created_at, id", "runs": "seq", "history": "run_id, epoch",
          "checkpoints": "run_id, name"}


def copy_store(src: Store, dst: Store) -> dict[str, dict[str, int]]:
    """{table: {"copied": n, "kept": m}}: rows inserted into ``dst``, rows it already had."""
    if src.location.value == dst.location.value:
        raise UserError(f"store copy needs two different stores; both are {src.where}.")
    if not src.exists():
        raise UserError(f"there is no run store at {src.where}: nothing to copy (check SRC).")
    src.open()
    rows = src._call(lambda q, retried: {t: q.rows(f"SELECT {', '.join(_columns(t))} FROM {t} "
                                                  f"ORDER BY {_ORDER[t]}") for t in TABLES},
                     write=False)
    dst.open()
    return dst._call(lambda q, retried: {t: _insert_all(q, t, rows[t]) for t in TABLES},
                     write=True)


def _columns(table: str) -> list[str]:
    return [c for c in columns(table) if c != "seq"]  # the destination numbers its runs


def _insert_all(q, table: str, rows: list[dict[str, Any]]) -> dict[str, int]:
    names = _columns(table)
    sql = (f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))}) "
           "ON CONFLICT DO NOTHING")
    copied = 0
    for row in rows:
        values = [bytes(row[n]) if n == "data" else row[n] for n in names]
        copied += q.exec(sql, *values).rowcount
    return {"copied": copied, "kept": len(rows) - copied}
