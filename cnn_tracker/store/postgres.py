"""The store's PostgreSQL side (psycopg 3): one database shared by agents on many machines.

Concurrency is the server's: short transactions, row locks (``SELECT ... FOR UPDATE`` on the
sweep a trial is claimed from) and conditional UPDATEs; the clock is the server's
(``clock_timestamp()``), so hosts whose clocks disagree still agree on heartbeats. The schema is
created once, under an advisory lock, in an empty database only.
"""

from __future__ import annotations

from typing import Any

from cnn_tracker import env
from cnn_tracker.errors import UserError
from cnn_tracker.store.backend import Backend, ConnectionLost, foreign, newer_schema
from cnn_tracker.store.schema import META_TABLE, SCHEMA_VERSION, TABLES, statements

CONNECT_TIMEOUT = 10  # seconds for one connection attempt
_SCHEMA_LOCK = 7_206_101  # pg_advisory_xact_lock key: one creator of the tables at a time


def _driver():
    try:
        import psycopg
    except ImportError:
        raise UserError("a PostgreSQL run store needs the psycopg driver: "
                        "pip install 'cnn-tracker[postgres]' (or pip install 'psycopg[binary]').") from None
    return psycopg


class PostgresBackend(Backend):
    kind = "postgresql"
    NOW = "EXTRACT(EPOCH FROM clock_timestamp())::float8"
    GREATEST = "GREATEST"
    FOR_UPDATE = " FOR UPDATE"

    def __init__(self, location):
        super().__init__(location)
        self._exists = False

    @property
    def _server(self) -> str:
        loc = self.location
        return f"{loc.host}:{loc.port}"

    def execute(self, conn: Any, sql: str, args: tuple = ()) -> Any:
        return conn.execute(sql.replace("?", "%s"), args)

    def exists(self) -> bool:
        if not self._exists:
            row = self.opened().execute(f"SELECT to_regclass('{META_TABLE}') AS t").fetchone()
            self._exists = row["t"] is not None
        return self._exists

    def _open(self) -> Any:
        psycopg = _driver()
        from psycopg.rows import dict_row

        try:
            return psycopg.connect(self.location.value, autocommit=True, row_factory=dict_row,
                                   connect_timeout=CONNECT_TIMEOUT, application_name="cnn-tracker")
        except psycopg.Error as exc:
            if self.connected_once:
                raise ConnectionLost(self._reason(exc)) from None
            raise self._refused(exc) from None

    def _reason(self, exc: BaseException) -> str:
        """The driver's message on one line, the password masked."""
        text = " ".join(line.strip() for line in self.location.scrub(str(exc)).splitlines())
        return text.strip() or type(exc).__name__

    def _refused(self, exc: BaseException) -> UserError:
        """The first connection failed: the URL, the password or the server is wrong."""
        loc, reason = self.location, self._reason(exc)
        low = reason.lower()
        if "password" in low or "authentication" in low:
            fix = (f"check the user '{loc.user}' and the password in the store URL (or PGPASSWORD "
                   "/ ~/.pgpass)")
        elif f'database "{loc.database}" does not exist' in reason:
            fix = f"create it first: createdb -h {loc.host} -p {loc.port} -U {loc.user or 'USER'} {loc.database}"
        else:
            fix = ("check the host and port, that the server runs and accepts TCP connections from "
                   "this machine (listen_addresses, pg_hba.conf) and that no firewall is in the way")
        return UserError(f"cannot connect to the PostgreSQL run store at {self._server} "
                         f"(database '{loc.database}'): {reason}. Fix: {fix}; nothing was written.")

    def _ensure_schema(self, conn: Any) -> None:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            if conn.execute(f"SELECT to_regclass('{META_TABLE}') AS t").fetchone()["t"] is None:
                tables = [r["table_name"] for r in conn.execute(
                    "SELECT table_name FROM information_schema.tables "
                    "WHERE table_schema = current_schema()")]
                if tables:
                    raise foreign(self.location.where, tables)
                version = 0
                conn.execute(f"CREATE TABLE {META_TABLE} (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            else:
                row = conn.execute(f"SELECT value FROM {META_TABLE} WHERE key = 'schema_version'").fetchone()
                version = int(row["value"]) if row else 0
                missing = [t for t in TABLES if conn.execute(
                    "SELECT to_regclass(%s) AS t", (t,)).fetchone()["t"] is None]
                if version >= SCHEMA_VERSION and missing:
                    raise self.damaged(RuntimeError(f"tables missing: {', '.join(missing)}"))
            if version > SCHEMA_VERSION:
                raise newer_schema(self.location.where, version)
            if version < SCHEMA_VERSION:
                for statement in statements(self.kind):
                    conn.execute(statement)
                conn.execute(f"INSERT INTO {META_TABLE} (key, value) VALUES ('schema_version', %s) "
                             "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                             (str(SCHEMA_VERSION),))
        self._exists = True

    def translate(self, exc: BaseException) -> BaseException | None:
        psycopg = _driver()
        if isinstance(exc, ConnectionLost):
            return exc
        if isinstance(exc, psycopg.OperationalError) or (
                isinstance(exc, psycopg.Error) and getattr(self._conn, "broken", False)):
            return ConnectionLost(self._reason(exc))
        if isinstance(exc, psycopg.errors.InsufficientPrivilege):
            return UserError(f"the PostgreSQL user '{self.location.user}' may not use the run store "
                             f"{self.location.where} ({self.location.scrub(str(exc)).strip()}): grant "
                             "it the rights on the database, or use another user.")
        if isinstance(exc, psycopg.errors.DiskFull):
            return UserError(f"the PostgreSQL server of {self.location.where} is out of disk: free "
                             "space on the server, then run the command again.")
        return None

    def damaged(self, exc: BaseException) -> UserError:
        return UserError(
            f"run store {self.location.where} is not a usable cnn-tracker store "
            f"({self.location.scrub(str(exc))}): point --store / {env.STORE_VAR} at another "
            "database, or restore it from a backup."
        )
