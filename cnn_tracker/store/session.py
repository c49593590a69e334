"""A store's connection to its database: transactions, retries of a lost server, kept reports.

A database server that goes away (restart, network) is retried with backoff for
CNN_TRACKER_STORE_RETRY_SECONDS, saying so once; every write the store makes is safe to repeat
(a commit whose answer was lost is not recorded twice: ``fn(query, retried)`` knows). A trial's
epoch reports are kept in memory while the server is away (:meth:`Session.report`) and written,
in order, before the next write that reaches it.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from cnn_tracker import env
from cnn_tracker.errors import UserError
from cnn_tracker.store.backend import ConnectionLost, make_backend
from cnn_tracker.store.location import locate
from cnn_tracker.store.query import Query
from cnn_tracker.store.schema import DB_NAME


class StoreUnavailable(Exception):
    """The database server is away and the caller chose not to wait (a trial's epoch report)."""


class Session:
    """A run store's location, backend and connection (one, shared by the heartbeat thread)."""

    def __init__(self, root: str | os.PathLike[str] | None = None, *,
                 say: Callable[[str], None] | None = None):
        self.location = locate(root)
        self.root = self.location.root  # this machine's per-sweep files (parameter files, logs)
        self.where = self.location.where  # the store as messages name it (password masked)
        self._backend = make_backend(self.location)
        self._lock = threading.RLock()
        self._say = say or (lambda line: print(line, file=sys.stderr, flush=True))
        self._outbox: list[Callable[[Query, bool], Any]] = []  # reports kept while away

    @property
    def path(self) -> Path:
        """The SQLite file (a folder store's ``store.db``)."""
        return self.location.root / DB_NAME

    @property
    def is_postgres(self) -> bool:
        return self.location.is_postgres

    # -- connection, transactions, retries ---------------------------------------------------
    def exists(self) -> bool:
        return self._call(lambda q, retried: self._backend.exists(), write=False, schema=False)

    def open(self) -> "Session":
        """Create or open the database now (so a bad store fails before anything else starts)."""
        self._call(lambda q, retried: None, write=False)
        return self

    def close(self) -> None:
        with self._lock:
            self._backend.drop()

    def _call(self, fn: Callable[[Query, bool], Any], *, write: bool, patient: bool = True,
              schema: bool = True) -> Any:
        """``fn(query, retried)`` in a transaction (``write``) or as plain reads; a lost server is
        retried with backoff (``patient``), else StoreUnavailable."""
        lost_at, delay = None, 0.25
        while True:
            with self._lock:
                try:
                    if patient and write and self._outbox and fn != self._flush:
                        self._attempt(self._flush, True, False, True)
                    result = self._attempt(fn, write, lost_at is not None, schema)
                    if lost_at is not None:
                        self._say(f"run store {self.where}: connected again after "
                                  f"{time.monotonic() - lost_at:.0f} s")
                    return result
                except ConnectionLost as exc:
                    self._backend.drop()
                    lost = exc
            if not patient:
                raise StoreUnavailable(str(lost))
            limit = env.store_retry_seconds()
            if lost_at is None:
                lost_at = time.monotonic()
                self._say(f"run store {self.where}: connection lost ({lost}); retrying for up "
                          f"to {limit:.0f} s")
            waited = time.monotonic() - lost_at
            if waited >= limit:
                raise UserError(
                    f"run store {self.where} unreachable for {waited:.0f} s ({lost}): start the "
                    f"database server or fix the network, then run the command again (set "
                    f"{env.STORE_RETRY_VAR} to wait longer).")
            time.sleep(min(delay, max(0.05, limit - waited)))
            delay = min(delay * 2, 5.0)

    def _attempt(self, fn, write: bool, retried: bool, schema: bool) -> Any:
        backend = self._backend
        conn = backend.connection() if schema else None
        q = Query(backend, conn)
        try:
            if write:
                backend.begin(conn)
            result = fn(q, retried)
            if write:
                q.exec("COMMIT")
            return result
        except BaseException as exc:
            if write:
                try:
                    q.exec("ROLLBACK")
                except Exception:  # noqa: BLE001 - no transaction, or the connection is gone
                    pass
            translated = backend.translate(exc)
            if translated is not None and translated is not exc:
                raise translated from None
            raise

    def _flush(self, q: Query, retried: bool) -> None:
        while self._outbox:
            self._outbox[0](q, retried)
            self._outbox.pop(0)

    @property
    def away(self) -> bool:
        """Reports are waiting for the server (it was unreachable at the last one)."""
        return bool(self._outbox)

    def report(self, fn: Callable[[Query, bool], Any]) -> None:
        """A trial's report (epoch metrics): written now, or kept in order while the server is
        away and written with the next write that reaches it. Never blocks training."""
        first = not self._outbox
        self._outbox.append(fn)
        try:
            self._call(self._flush, write=True, patient=False)
        except StoreUnavailable as exc:
            if first:
                self._say(f"run store {self.where} unreachable ({exc}): training goes on; its "
                          "reports are kept and written when the store is back")

    def clock(self) -> float:
        """The database's clock (unix seconds): what heartbeats and staleness are measured by."""
        return float(self._call(lambda q, r: q.one(f"SELECT {q.NOW} AS now")["now"], write=False))

