"""The one interface where the store's two databases meet, and its SQLite side.

:class:`Backend` owns a connection and knows its dialect: the SQL for the database's clock, the
few spellings that differ, how a schema is created and checked, and what a driver error means
(damage, a lost connection to retry, a user's mistake). :class:`cnn_tracker.store.db.Store`
writes one SQL text for both, with ``?`` placeholders. SQLite is the zero-setup default: one
machine only (its locking is not safe on network file systems); PostgreSQL
(:mod:`cnn_tracker.store.postgres`) serves many.
"""

from __future__ import annotations

import sqlite3
from abc import ABC, abstractmethod
from typing import Any

from cnn_tracker import env
from cnn_tracker.errors import UserError
from cnn_tracker.store.location import Location
from cnn_tracker.store.schema import DB_NAME, SCHEMA_VERSION, statements


class ConnectionLost(Exception):
    """The database server went away (restart, network): the store reconnects and retries."""


class Backend(ABC):
    kind: str
    NOW: str  # SQL: the database's clock, unix seconds (heartbeats never use an agent's clock)
    GREATEST: str  # SQL: the larger of two values
    FOR_UPDATE: str  # SQL suffix: lock the selected rows until the transaction ends

    def __init__(self, location: Location):
        self.location = location
        self._conn: Any = None
        self._ready = False
        self.connected_once = False  # a failure before that is the user's setup, not an outage

    # -- connection ---------------------------------------------------------------------------
    def opened(self) -> Any:
        """The open connection, as it is (no schema check): opened on first use."""
        if self._conn is None:
            self._conn = self._open()
            self.connected_once = True
        return self._conn

    def connection(self) -> Any:
        """The open connection, its schema created or checked on first use."""
        self.opened()
        if not self._ready:
            self._ensure_schema(self._conn)
            self._ready = True
        return self._conn

    def drop(self) -> None:
        """Forget the connection (closed if possible): the next call opens a new one."""
        conn, self._conn, self._ready = self._conn, None, False
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - it is already broken
                pass

    def execute(self, conn: Any, sql: str, args: tuple = ()) -> Any:
        return conn.execute(sql, args)

    def begin(self, conn: Any) -> None:
        conn.execute("BEGIN")

    @abstractmethod
    def exists(self) -> bool:
        """Whether a store is here already (a read of a missing store finds nothing)."""

    @abstractmethod
    def _open(self) -> Any:
        """A new connection (rows as mappings), or UserError naming what to fix."""

    @abstractmethod
    def _ensure_schema(self, conn: Any) -> None:
        """Create the tables in an empty database; refuse a newer or a foreign one."""

    @abstractmethod
    def translate(self, exc: BaseException) -> BaseException | None:
        """What a driver error means: ConnectionLost (retry), a UserError, or None (a bug)."""

    def damaged(self, exc: BaseException) -> UserError:
        return UserError(
            f"run store {self.location.where} cannot be read ({self.location.scrub(str(exc))}): "
            f"it is damaged; point --store / {env.STORE_VAR} at another store."
        )


def newer_schema(where: str, version: int) -> UserError:
    return UserError(
        f"run store {where} was written by a newer cnn-tracker (schema {version}, this one "
        f"knows {SCHEMA_VERSION}): upgrade cnn-tracker or use another --store."
    )


def foreign(where: str, tables: list[str]) -> UserError:
    shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
    return UserError(
        f"{where} is not a cnn-tracker run store (it holds other tables: {shown}) and is left "
        f"untouched: point --store / {env.STORE_VAR} at an empty folder or an empty database."
    )


class SqliteBackend(Backend):
    """``store.db`` in the store folder, in WAL mode; writes serialised by ``BEGIN IMMEDIATE``."""

    kind = "sqlite"
    NOW = "((julianday('now') - 2440587.5) * 86400.0)"
    GREATEST = "MAX"
    FOR_UPDATE = ""

    @property
    def path(self):
        return self.location.root / DB_NAME

    def exists(self) -> bool:
        if self.path.exists() and not self.path.is_file():
            raise UserError(f"run store {self.path} is not a file (a folder?): move it away, or "
                            f"point --store / {env.STORE_VAR} at another folder.")
        return self.path.is_file()

    def begin(self, conn: Any) -> None:
        conn.execute("BEGIN IMMEDIATE")  # the write lock up front: no upgrade deadlocks

    def _open(self) -> sqlite3.Connection:
        try:
            self.exists()  # a folder named store.db
            self.location.root.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=60, isolation_level=None,
                                   check_same_thread=False)
        except OSError as exc:
            raise UserError(
                f"run store folder {self.location.root} cannot be created ({exc.strerror}): point "
                f"--store / {env.STORE_VAR} at a writable folder."
            ) from None
        except sqlite3.DatabaseError as exc:
            raise self.damaged(exc) from None
        conn.row_factory = sqlite3.Row
        return conn

    def _ensure_schema(self, conn: sqlite3.Connection) -> None:
        try:
            conn.execute("PRAGMA busy_timeout = 60000")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version and conn.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise sqlite3.DatabaseError("database disk image is malformed")
            if version > SCHEMA_VERSION:
                raise newer_schema(str(self.path), version)
            if version == 0:
                tables = [r[0] for r in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
                if tables:
                    raise foreign(str(self.path), tables)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            if version < SCHEMA_VERSION:
                conn.execute("BEGIN IMMEDIATE")
                if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                    for statement in statements(self.kind):
                        conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            raise self.damaged(exc) from None

    def translate(self, exc: BaseException) -> BaseException | None:
        if isinstance(exc, sqlite3.OperationalError):
            if "disk is full" in str(exc) or "disk I/O" in str(exc):
                return UserError(f"cannot write the run store {self.path} ({exc}): free disk "
                                 "space, then run the command again.")
            return None
        if isinstance(exc, sqlite3.DatabaseError):
            return self.damaged(exc)
        return None

    def damaged(self, exc: BaseException) -> UserError:
        return UserError(
            f"run store {self.path} cannot be opened ({exc}): it is damaged or not a cnn-tracker "
            f"store, and is left untouched. Recover what is readable with `cnn-tracker store "
            f"recover --store {self.location.root}` (the damaged file is kept beside it), or point "
            f"--store / {env.STORE_VAR} at another folder."
        )


def make_backend(location: Location) -> Backend:
    if location.is_postgres:
        from cnn_tracker.store.postgres import PostgresBackend

        return PostgresBackend(location)
    return SqliteBackend(location)
