"""The local run store: one SQLite database of sweeps, runs and per-epoch metrics.

Every ``train`` run is recorded here, and the offline sweep engine keeps all its state here;
agents, trials and ``sweep status`` share a store, serialised by WAL and short ``BEGIN IMMEDIATE``
writes. This is the connection, the transactions and plain reads and writes; it never decides a
state: its writers of one (``insert_run``, ``insert_trial``, ``transition``, ``set_sweep_state``,
``move_sweep``) are called by :mod:`cnn_tracker.runs.lifecycle` alone. No wandb or torch here.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from cnn_tracker import env
from cnn_tracker.errors import UserError
from cnn_tracker.store.records import Run, Sweep, new_id
from cnn_tracker.store.schema import _SCHEMA, DB_NAME, SCHEMA_VERSION

ACTIVE_STATES = ("pending", "running")
# "stopped" = ended early by the sweep's early_terminate (hyperband); the rest follow W&B.
# "preempted" = stopped by SIGTERM/SIGINT after saving a resume checkpoint: an agent of its
# sweep requeues it (continues it with `train --resume`) before starting new trials.
TERMINAL_STATES = ("finished", "stopped", "crashed", "failed", "killed", "preempted")
STALE_SECONDS = 120.0  # a running run silent for this long is marked crashed (agent --stale-after)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, default=str, allow_nan=True)


def _decoded(method):
    """Rows whose JSON does not parse are damage too (a torn page): same error as SQLite's."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError) as exc:
            raise self._damaged(exc) from None

    return wrapper


def _row_to_sweep(row: sqlite3.Row) -> Sweep:
    d = dict(row)
    d["config"] = json.loads(d["config"])
    return Sweep(**d)


def _row_to_run(row: sqlite3.Row) -> Run:
    d = dict(row)
    for key in ("params", "config", "summary"):
        d[key] = json.loads(d[key] or "{}")
    d["should_stop"] = bool(d["should_stop"])
    d.pop("search_info", None)
    return Run(**d)


_JSON_COLUMNS = ("params", "config", "summary", "search_info")
_RUN_COLUMNS = ("id", "sweep_id", "project", "name", "state", "params", "config", "summary",
                "search_info", "agent", "host", "pid", "exitcode", "should_stop", "epochs",
                "checkpoint", "output_dir", "wandb_dir", "log_path", "message", "created_at",
                "started_at", "ended_at", "heartbeat_at")


def _insert(conn: sqlite3.Connection, fields: dict[str, Any]) -> None:
    """INSERT one run row inside the caller's transaction (creation time and host added)."""
    row = _encode({"created_at": time.time(), "host": socket.gethostname(), **fields})
    conn.execute(f"INSERT INTO runs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                 tuple(row.values()))


def _encode(fields: dict[str, Any]) -> dict[str, Any]:
    unknown = set(fields) - set(_RUN_COLUMNS)
    assert not unknown, f"not run columns: {unknown}"
    return {k: _dumps(v) if k in _JSON_COLUMNS and v is not None else v for k, v in fields.items()}


class Store:
    """A store folder: ``store.db`` plus per-sweep files (trial parameter files and logs)."""

    def __init__(self, root: str | os.PathLike[str] | None = None):
        self.root = env.store_dir(root)
        self.path = self.root / DB_NAME
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()  # one connection, shared by the heartbeat thread

    # -- connection ---------------------------------------------------------------------------
    def exists(self) -> bool:
        return self.path.is_file()

    def _connect(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=60, isolation_level=None,
                                   check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA busy_timeout = 60000")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version and conn.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise sqlite3.DatabaseError("database disk image is malformed")
            if version > SCHEMA_VERSION:
                raise UserError(
                    f"run store {self.path} was written by a newer cnn-tracker (schema {version}, "
                    f"this one knows {SCHEMA_VERSION}): upgrade cnn-tracker or use another --store."
                )
            if version < SCHEMA_VERSION:
                conn.execute("BEGIN IMMEDIATE")
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            raise self._damaged(exc) from None
        except OSError as exc:
            raise UserError(
                f"run store folder {self.root} cannot be created ({exc.strerror}): point --store / "
                f"{env.STORE_VAR} at a writable folder."
            ) from None
        self._conn = conn
        return conn

    def _damaged(self, exc: BaseException) -> UserError:
        return UserError(
            f"run store {self.path} cannot be opened ({exc}): it is damaged or not a cnn-tracker "
            f"store, and is left untouched. Recover what is readable with `cnn-tracker store "
            f"recover --store {self.root}` (the damaged file is kept beside it), or point --store / "
            f"{env.STORE_VAR} at another folder."
        )

    def open(self) -> "Store":
        """Create or open the database now (so a bad store fails before anything else starts)."""
        with self._lock:
            self._connect()
        return self

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """A short write transaction (BEGIN IMMEDIATE takes the write lock up front)."""
        with self._lock:
            conn = self._connect()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                if "disk is full" in str(exc) or "disk I/O" in str(exc):
                    raise UserError(f"cannot write the run store {self.path} ({exc}): free disk "
                                    "space, then run the command again.") from None
                raise
            except sqlite3.DatabaseError as exc:
                raise self._damaged(exc) from None

    def _read(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return self._connect().execute(sql, args).fetchall()
            except sqlite3.OperationalError:
                raise
            except sqlite3.DatabaseError as exc:
                raise self._damaged(exc) from None

    # -- sweeps -------------------------------------------------------------------------------
    def create_sweep(self, config: dict[str, Any], project: str) -> Sweep:
        sweep_id = new_id()
        with self._tx() as c:
            c.execute(
                "INSERT INTO sweeps (id, name, project, method, config, state, created_at) "
                "VALUES (?, ?, ?, ?, ?, 'running', ?)",
                (sweep_id, config.get("name"), project, config["method"], _dumps(config), time.time()),
            )
        return self.sweep(sweep_id)

    @_decoded
    def find_sweep(self, sweep_id: str) -> Sweep | None:
        if not self.exists():
            return None
        rows = self._read("SELECT * FROM sweeps WHERE id = ?", (sweep_id,))
        return _row_to_sweep(rows[0]) if rows else None

    def sweep(self, sweep_id: str) -> Sweep:
        found = self.find_sweep(sweep_id)
        if found is None:
            known = [s.id for s in self.sweeps()] if self.exists() else []
            hint = f" Sweeps here: {', '.join(known[:10])}." if known else " There are none yet."
            raise UserError(
                f"sweep '{sweep_id}' is not in the run store {self.root}.{hint} Create one with "
                "`cnn-tracker sweep create FILE --offline`, or pass --store / set "
                f"{env.STORE_VAR} to the folder that holds it."
            )
        return found

    @_decoded
    def sweeps(self) -> list[Sweep]:
        if not self.exists():
            return []
        return [_row_to_sweep(row) for row in self._read("SELECT * FROM sweeps ORDER BY created_at")]

    def set_sweep_state(self, sweep_id: str, state: str, message: str | None = None) -> None:
        """End a running sweep (``finished``, with why). Called by runs.lifecycle only."""
        with self._tx() as c:
            c.execute("UPDATE sweeps SET state = ?, message = ? WHERE id = ? AND state = 'running'",
                      (state, message, sweep_id))

    def move_sweep(self, sweep_id: str, state: str, from_state: str, message: str | None) -> bool:
        """set_sweep_state from ``from_state`` (False: it was not in it). runs.lifecycle only."""
        with self._tx() as c:
            return bool(c.execute("UPDATE sweeps SET state = ?, message = ? WHERE id = ? AND state = ?",
                                  (state, message, sweep_id, from_state)).rowcount)

    def sweep_files(self, sweep_id: str) -> Path:
        folder = self.root / "sweeps" / sweep_id
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    # -- runs ---------------------------------------------------------------------------------
    @_decoded
    def runs(self, *, sweep_id: str | None = None, project: str | None = None,
             with_history: bool = True) -> list[Run]:
        if not self.exists():
            return []
        where, args = [], []
        if sweep_id is not None:
            where.append("sweep_id = ?")
            args.append(sweep_id)
        if project is not None:
            where.append("project = ?")
            args.append(project)
        sql = "SELECT * FROM runs" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY seq"
        runs = [_row_to_run(r) for r in self._read(sql, tuple(args))]
        if with_history and runs:
            by_id = {r.id: r for r in runs}
            marks = ",".join("?" * len(by_id))
            for row in self._read(
                f"SELECT run_id, metrics FROM history WHERE run_id IN ({marks}) ORDER BY run_id, epoch",
                tuple(by_id),
            ):
                by_id[row["run_id"]].history.append(json.loads(row["metrics"]))
        return runs

    @_decoded
    def run(self, run_id: str) -> Run | None:
        if not self.exists():
            return None
        rows = self._read("SELECT * FROM runs WHERE id = ?", (run_id,))
        if not rows:
            return None
        run = _row_to_run(rows[0])
        run.history = [json.loads(r["metrics"]) for r in self._read(
            "SELECT metrics FROM history WHERE run_id = ? ORDER BY epoch", (run_id,))]
        return run

    def ids_where(self, states: tuple[str, ...], *, sweep_id: str | None = None,
                  heartbeat_before: float | None = None) -> list[str]:
        """Ids of runs in ``states`` (oldest first), of one sweep and/or silent since a time."""
        sql = f"SELECT id FROM runs WHERE state IN ({','.join('?' * len(states))})"
        args: list[Any] = list(states)
        if sweep_id is not None:
            sql += " AND sweep_id = ?"
            args.append(sweep_id)
        if heartbeat_before is not None:
            sql += " AND heartbeat_at < ?"
            args.append(heartbeat_before)
        return [r[0] for r in self._read(sql + " ORDER BY seq", tuple(args))] if self.exists() else []

    # -- writes of a run's state: runs.lifecycle only ---------------------------------------
    def insert_run(self, fields: dict[str, Any]) -> None:
        """Insert a run row (``fields`` are column values; JSON columns as Python objects)."""
        with self._tx() as c:
            _insert(c, fields)

    def insert_trial(self, sweep_id: str, fields: dict[str, Any], *, expect_seq: int,
                     cap: int | None) -> bool:
        """Insert a sweep's new trial only if no run was added since ``expect_seq`` was read, the
        sweep still runs and its ``cap`` is not reached (optimistic concurrency: the suggestion
        was computed outside the write lock). False = another agent got there first."""
        with self._tx() as c:
            seq, count = c.execute("SELECT COALESCE(MAX(seq), 0), COUNT(*) FROM runs WHERE "
                                   "sweep_id = ?", (sweep_id,)).fetchone()
            state = c.execute("SELECT state FROM sweeps WHERE id = ?", (sweep_id,)).fetchone()[0]
            if seq != expect_seq or state != "running" or (cap is not None and count >= cap):
                return False
            _insert(c, {"sweep_id": sweep_id, **fields})
        return True

    def transition(self, run_id: str, to_state: str, from_states: tuple[str, ...],
                   fields: dict[str, Any] | None = None, *,
                   heartbeat_before: float | None = None) -> bool:
        """Set ``state`` (and ``fields``) if the run is in ``from_states`` (and, when given,
        silent since ``heartbeat_before``), atomically. False = it was not (nothing written)."""
        row = _encode({**(fields or {}), "state": to_state})
        sql = (f"UPDATE runs SET {', '.join(f'{k} = ?' for k in row)} WHERE id = ? "
               f"AND state IN ({','.join('?' * len(from_states))})")
        args = [*row.values(), run_id, *from_states]
        if heartbeat_before is not None:
            sql += " AND heartbeat_at < ?"
            args.append(heartbeat_before)
        with self._tx() as c:
            return bool(c.execute(sql, tuple(args)).rowcount)

    # -- writes of a run's data (any process of the run) -------------------------------------
    def update_run(self, run_id: str, fields: dict[str, Any]) -> None:
        """Set columns other than ``state`` (process id, log path, exit code, checkpoint, ...)."""
        assert "state" not in fields, "a run's state changes through runs.lifecycle"
        row = _encode(fields)
        with self._tx() as c:
            c.execute(f"UPDATE runs SET {', '.join(f'{k} = ?' for k in row)} WHERE id = ?",
                      (*row.values(), run_id))

    def record_epoch(self, run_id: str, epoch: int, metrics: dict[str, Any]) -> None:
        now = time.time()
        with self._tx() as c:
            c.execute("INSERT OR REPLACE INTO history (run_id, epoch, metrics) VALUES (?, ?, ?)",
                      (run_id, epoch, _dumps(metrics)))
            c.execute("UPDATE runs SET epochs = MAX(epochs, ?), heartbeat_at = ? WHERE id = ?",
                      (epoch, now, run_id))

    def set_checkpoint(self, run_id: str, path: str) -> None:
        self.update_run(run_id, {"checkpoint": path})

    def heartbeat(self, run_id: str) -> None:
        with self._tx() as c:
            c.execute("UPDATE runs SET heartbeat_at = ? WHERE id = ? AND state IN ('pending', "
                      "'running')", (time.time(), run_id))
