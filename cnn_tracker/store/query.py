"""One transaction's SQL, in the dialect of its backend; ``NOW`` = the database's clock.

SQL is written once with ``?`` placeholders and ``{q.NOW}`` / ``{q.GREATEST}`` /
``{q.FOR_UPDATE}`` where the dialects differ; a field whose value is :data:`NOW` is set to the
database's clock (heartbeats, start and end times), never to the writing machine's.
"""

from __future__ import annotations

from typing import Any


class _Now:
    def __repr__(self) -> str:
        return "NOW"


NOW: Any = _Now()  # a column value: "the database's clock at this write"


class Query:
    def __init__(self, backend, conn):
        self._backend, self._conn = backend, conn
        self.NOW, self.GREATEST, self.FOR_UPDATE = backend.NOW, backend.GREATEST, backend.FOR_UPDATE

    def exec(self, sql: str, *args: Any):
        return self._backend.execute(self._conn, sql, tuple(args))

    def rows(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        return [dict(r) for r in self.exec(sql, *args).fetchall()]

    def one(self, sql: str, *args: Any) -> dict[str, Any] | None:
        row = self.exec(sql, *args).fetchone()
        return dict(row) if row is not None else None


def assignments(q: Query, row: dict[str, Any]) -> tuple[list[str], list[Any]]:
    """SQL value expressions for ``row`` (``?``, or the clock for NOW) and their arguments."""
    exprs, args = [], []
    for value in row.values():
        if value is NOW:
            exprs.append(q.NOW)
        else:
            exprs.append("?")
            args.append(value)
    return exprs, args
