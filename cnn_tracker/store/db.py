"""The local run store: one SQLite database of sweeps, runs and per-epoch metrics.

Every ``train`` run is recorded here (so offline runs can be listed and compared later), and the
offline sweep engine keeps its whole state here. Several processes share one store: agents claim
trials, trials report epochs, ``sweep status`` reads. SQLite in WAL mode with short write
transactions serialises them; a trial's suggestion is computed *outside* the write lock and only
committed if no other agent added a run in the meantime (optimistic concurrency), so no two
agents ever start the same trial and the Bayesian fit never blocks anybody's epoch report.

Nothing here imports wandb or torch.
"""

from __future__ import annotations

import functools
import json
import math
import os
import secrets
import socket
import sqlite3
import string
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from cnn_tracker.errors import UserError

STORE_VAR = "CNN_TRACKER_STORE"
DEFAULT_STORE = ".cnn-tracker"
DB_NAME = "store.db"
SCHEMA_VERSION = 1

ACTIVE_STATES = ("pending", "running")
# "stopped" = ended early by the sweep's early_terminate (hyperband); the rest follow W&B.
# "preempted" = stopped by SIGTERM/SIGINT after saving a resume checkpoint: an agent of its
# sweep requeues it (continues it with `train --resume`) before starting new trials.
TERMINAL_STATES = ("finished", "stopped", "crashed", "failed", "killed", "preempted")
HEARTBEAT_SECONDS = 10.0  # how often a live run touches its heartbeat (CNN_TRACKER_HEARTBEAT_SECONDS)
HEARTBEAT_VAR = "CNN_TRACKER_HEARTBEAT_SECONDS"
STALE_SECONDS = 120.0  # a running run silent for this long is marked crashed (agent --stale-after)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sweeps (
    id TEXT PRIMARY KEY,
    name TEXT,
    project TEXT NOT NULL,
    method TEXT NOT NULL,
    config TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'running',
    message TEXT,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    sweep_id TEXT,
    project TEXT,
    name TEXT,
    state TEXT NOT NULL,
    params TEXT NOT NULL DEFAULT '{}',
    config TEXT NOT NULL DEFAULT '{}',
    summary TEXT NOT NULL DEFAULT '{}',
    search_info TEXT,
    agent TEXT,
    host TEXT,
    pid INTEGER,
    exitcode INTEGER,
    should_stop INTEGER NOT NULL DEFAULT 0,
    epochs INTEGER NOT NULL DEFAULT 0,
    checkpoint TEXT,
    output_dir TEXT,
    wandb_dir TEXT,
    log_path TEXT,
    message TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    ended_at REAL,
    heartbeat_at REAL
);
CREATE INDEX IF NOT EXISTS runs_by_sweep ON runs (sweep_id, seq);
CREATE TABLE IF NOT EXISTS history (
    run_id TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    metrics TEXT NOT NULL,
    PRIMARY KEY (run_id, epoch)
);
"""


def store_dir(cli_value: str | os.PathLike[str] | None = None) -> Path:
    """``--store`` > CNN_TRACKER_STORE > ``./.cnn-tracker``, as an absolute path."""
    value = cli_value or os.environ.get(STORE_VAR) or DEFAULT_STORE
    return Path(value).expanduser().absolute()


def heartbeat_seconds() -> float:
    """Seconds between heartbeats: CNN_TRACKER_HEARTBEAT_SECONDS, else HEARTBEAT_SECONDS."""
    raw = os.environ.get(HEARTBEAT_VAR, "").strip()
    if not raw:
        return HEARTBEAT_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0.05 <= value <= 3600:
        raise UserError(f"invalid {HEARTBEAT_VAR}={raw!r}: give seconds between 0.05 and 3600 "
                        f"(default {HEARTBEAT_SECONDS:g}), or unset it.")
    return value


def new_id(length: int = 8) -> str:
    """A W&B-style id: lowercase letters and digits."""
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


def _dumps(obj: Any) -> str:
    return json.dumps(obj, default=str, allow_nan=True)


def _finite_numbers(mapping: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, v in mapping.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


@dataclass
class Sweep:
    id: str
    name: str | None
    project: str
    method: str
    config: dict[str, Any]
    state: str
    message: str | None
    created_at: float

    @property
    def metric(self) -> tuple[str, str] | None:
        """(name, goal) of the sweep's metric, if it has one."""
        metric = self.config.get("metric")
        if not isinstance(metric, dict) or "name" not in metric:
            return None
        return str(metric["name"]), str(metric.get("goal", "minimize"))

    @property
    def run_cap(self) -> int | None:
        cap = self.config.get("run_cap")
        return int(cap) if isinstance(cap, int) and cap > 0 else None


@dataclass
class Run:
    seq: int
    id: str
    sweep_id: str | None
    project: str | None
    name: str | None
    state: str
    params: dict[str, Any]
    config: dict[str, Any]
    summary: dict[str, Any]
    agent: str | None
    host: str | None
    pid: int | None
    exitcode: int | None
    should_stop: bool
    epochs: int
    checkpoint: str | None
    output_dir: str | None
    wandb_dir: str | None
    log_path: str | None
    message: str | None
    created_at: float
    started_at: float | None
    ended_at: float | None
    heartbeat_at: float | None
    history: list[dict[str, Any]] = field(default_factory=list)

    def metric_values(self, name: str) -> list[float]:
        """Every finite value of ``name``: per-epoch history, then the summary."""
        values = [h[name] for h in self.history if name in h]
        if name in self.summary:
            values.append(self.summary[name])
        return list(_finite_numbers(dict(enumerate(values))).values())

    def best_metric(self, name: str, goal: str) -> float | None:
        values = self.metric_values(name)
        if not values:
            return None
        return max(values) if goal.startswith("max") else min(values)

    @property
    def seconds(self) -> float | None:
        if self.started_at is None:
            return None
        return (self.ended_at or time.time()) - self.started_at


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


class Store:
    """A store folder: ``store.db`` plus per-sweep files (trial parameter files and logs)."""

    def __init__(self, root: str | os.PathLike[str] | None = None):
        self.root = store_dir(root)
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
                f"{STORE_VAR} at a writable folder."
            ) from None
        self._conn = conn
        return conn

    def _damaged(self, exc: BaseException) -> UserError:
        return UserError(
            f"run store {self.path} cannot be opened ({exc}): it is damaged or not a cnn-tracker "
            f"store, and is left untouched. Recover what is readable with `cnn-tracker store "
            f"recover --store {self.root}` (the damaged file is kept beside it), or point --store / "
            f"{STORE_VAR} at another folder."
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
                f"{STORE_VAR} to the folder that holds it."
            )
        return found

    @_decoded
    def sweeps(self) -> list[Sweep]:
        if not self.exists():
            return []
        return [_row_to_sweep(row) for row in self._read("SELECT * FROM sweeps ORDER BY created_at")]

    def set_sweep_state(self, sweep_id: str, state: str, message: str | None = None) -> None:
        with self._tx() as c:
            c.execute("UPDATE sweeps SET state = ?, message = ? WHERE id = ? AND state = 'running'",
                      (state, message, sweep_id))

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

    def claim_trial(
        self,
        sweep_id: str,
        suggest: Callable[[Sweep, list[Run]], tuple[dict[str, Any], dict[str, Any] | None] | None],
        agent: str,
        attempts: int = 50,
    ) -> tuple[Run | None, str]:
        """Reserve the sweep's next trial for ``agent``: (run, "") or (None, why the sweep is done).

        ``suggest`` sees a snapshot and may take seconds (a Bayesian fit); the new run is only
        inserted if no run was added to the sweep since the snapshot, else it is recomputed.
        """
        for _ in range(attempts):
            requeued = self._requeue_preempted(sweep_id, agent)
            if requeued is not None:
                return requeued, ""
            sweep = self.sweep(sweep_id)
            if sweep.state != "running":
                return None, f"sweep {sweep_id} is {sweep.state}" + (
                    f": {sweep.message}" if sweep.message else "")
            runs = self.runs(sweep_id=sweep_id)
            last_seq = runs[-1].seq if runs else 0
            cap = sweep.run_cap
            if cap is not None and len(runs) >= cap:
                self.set_sweep_state(sweep_id, "finished", f"run_cap {cap} reached")
                continue
            suggestion = suggest(sweep, runs)
            if suggestion is None:
                self.set_sweep_state(sweep_id, "finished",
                                     f"all {len(runs)} configurations of the grid were run")
                continue
            params, info = suggestion
            run_id = new_id()
            now = time.time()
            with self._tx() as c:
                seq, count = c.execute(
                    "SELECT COALESCE(MAX(seq), 0), COUNT(*) FROM runs WHERE sweep_id = ?",
                    (sweep_id,)).fetchone()
                state = c.execute("SELECT state FROM sweeps WHERE id = ?", (sweep_id,)).fetchone()[0]
                if seq != last_seq or state != "running" or (cap is not None and count >= cap):
                    continue  # another agent got there first: look again
                c.execute(
                    "INSERT INTO runs (id, sweep_id, project, state, params, search_info, agent, "
                    "host, created_at, heartbeat_at) VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?)",
                    (run_id, sweep_id, sweep.project, _dumps(params), _dumps(info), agent,
                     socket.gethostname(), now, now),
                )
            return self.run(run_id), ""
        raise UserError(f"could not claim a trial of sweep {sweep_id} after {attempts} attempts: "
                        "too many agents are racing; start fewer agents.")

    def _requeue_preempted(self, sweep_id: str, agent: str) -> Run | None:
        """Reserve the sweep's oldest preempted trial (to be resumed), if any.

        Preempted trials are continued even when the sweep is already finished (its run_cap
        counted them) or stopped: their results are part of it.
        """
        with self._tx() as c:
            row = c.execute("SELECT id FROM runs WHERE sweep_id = ? AND state = 'preempted' "
                            "ORDER BY seq LIMIT 1", (sweep_id,)).fetchone()
            if row is None:
                return None
            c.execute("UPDATE runs SET state = 'pending', agent = ?, host = ?, heartbeat_at = ? "
                      "WHERE id = ?",
                      (agent, socket.gethostname(), time.time(), row[0]))
        return self.run(row[0])

    def start_run(self, run_id: str, *, sweep_id: str | None, project: str | None, name: str,
                  config: dict[str, Any], output_dir: str, wandb_dir: str | None,
                  params: dict[str, Any] | None = None) -> None:
        """Record that ``run_id`` is training (insert it, or update the trial an agent reserved).

        ``params`` (the swept values) only matter for a run inserted here, e.g. an imported one.
        """
        now = time.time()
        with self._tx() as c:
            # A resumed run keeps its first start time and its history; its end is reset.
            updated = c.execute(
                "UPDATE runs SET state = 'running', name = ?, config = ?, output_dir = ?, "
                "wandb_dir = ?, pid = ?, host = ?, started_at = COALESCE(started_at, ?), "
                "heartbeat_at = ?, ended_at = NULL, exitcode = NULL, message = NULL, "
                "project = COALESCE(project, ?) WHERE id = ?",
                (name, _dumps(config), output_dir, wandb_dir, os.getpid(), socket.gethostname(),
                 now, now, project, run_id),
            ).rowcount
            if not updated:
                c.execute(
                    "INSERT INTO runs (id, sweep_id, project, name, state, params, config, "
                    "output_dir, wandb_dir, pid, host, created_at, started_at, heartbeat_at) "
                    "VALUES (?, ?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (run_id, sweep_id, project, name, _dumps(params or {}), _dumps(config),
                     output_dir, wandb_dir, os.getpid(), socket.gethostname(), now, now, now),
                )

    def mark_running(self, run_id: str, pid: int, log_path: str | None) -> None:
        now = time.time()
        with self._tx() as c:
            c.execute("UPDATE runs SET state = 'running', pid = ?, log_path = ?, "
                      "started_at = COALESCE(started_at, ?), heartbeat_at = ? "
                      "WHERE id = ? AND state = 'pending'", (pid, log_path, now, now, run_id))

    def record_epoch(self, run_id: str, epoch: int, metrics: dict[str, Any]) -> None:
        now = time.time()
        with self._tx() as c:
            c.execute("INSERT OR REPLACE INTO history (run_id, epoch, metrics) VALUES (?, ?, ?)",
                      (run_id, epoch, _dumps(metrics)))
            c.execute("UPDATE runs SET epochs = MAX(epochs, ?), heartbeat_at = ? WHERE id = ?",
                      (epoch, now, run_id))

    def set_checkpoint(self, run_id: str, path: str) -> None:
        with self._tx() as c:
            c.execute("UPDATE runs SET checkpoint = ? WHERE id = ?", (path, run_id))

    def heartbeat(self, run_id: str) -> None:
        with self._tx() as c:
            c.execute("UPDATE runs SET heartbeat_at = ? WHERE id = ? AND state IN ('pending', 'running')",
                      (time.time(), run_id))

    def end_run(self, run_id: str, state: str, *, summary: dict[str, Any] | None = None,
                exitcode: int | None = None, message: str | None = None,
                only_if_active: bool = False) -> bool:
        """Record a run's end; with ``only_if_active``, leave a state the run recorded itself.

        ``exitcode`` is recorded either way: the process's exit code is known only to its agent.
        """
        assert state in TERMINAL_STATES, state
        sql = ("UPDATE runs SET state = ?, ended_at = COALESCE(ended_at, ?), "
               "message = COALESCE(?, message), summary = COALESCE(?, summary) WHERE id = ?")
        if only_if_active:
            sql += " AND state IN ('pending', 'running')"
        with self._tx() as c:
            n = c.execute(sql, (state, time.time(), message,
                                _dumps(summary) if summary is not None else None, run_id)).rowcount
            if exitcode is not None:
                c.execute("UPDATE runs SET exitcode = ? WHERE id = ?", (exitcode, run_id))
        return bool(n)

    def reap_stale(self, timeout: float = STALE_SECONDS) -> list[str]:
        """Mark runs whose process stopped sending heartbeats as crashed; return their ids."""
        if not self.exists():
            return []
        cutoff = time.time() - timeout
        with self._tx() as c:
            ids = [r[0] for r in c.execute(
                "SELECT id FROM runs WHERE state IN ('pending', 'running') AND heartbeat_at < ?",
                (cutoff,))]
            for run_id in ids:
                c.execute("UPDATE runs SET state = 'crashed', ended_at = ?, message = ? WHERE id = ?",
                          (time.time(), f"no heartbeat for {timeout:.0f} s: the process vanished",
                           run_id))
        return ids


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
    kept: dict[str, int] = {}
    fresh = Store(root).open()
    try:
        with fresh._tx() as dst:
            for table in ("sweeps", "runs", "history"):
                rows: dict[int, tuple] = {}
                for order in ("ASC", "DESC"):
                    try:
                        for row in src.execute(f"SELECT rowid, * FROM {table} ORDER BY rowid {order}"):
                            rows[row[0]] = row[1:]
                    except sqlite3.DatabaseError:
                        continue  # a bad page: the other direction reads past it
                columns = [d[0] for d in src.execute(f"SELECT * FROM {table} LIMIT 0").description]
                n = 0
                for rowid in sorted(rows):
                    values = rows[rowid]
                    if not _intact(dict(zip(columns, values))):
                        continue  # a row torn by the damage
                    dst.execute(f"INSERT OR IGNORE INTO {table} VALUES ({','.join('?' * len(values))})",
                                values)
                    n += 1
                kept[table] = n
    finally:
        src.close()
        fresh.close()
    return {"damaged": str(damaged), "store": str(store.path), "tables": kept}


class Heartbeat:
    """Touches a run's heartbeat from a daemon thread until stopped."""

    def __init__(self, store: Store, run_id: str, every: float | None = None):
        self._store, self._run_id = store, run_id
        self._every = heartbeat_seconds() if every is None else every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cnn-tracker-heartbeat", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self._every):
            try:
                self._store.heartbeat(self._run_id)
            except (sqlite3.Error, UserError):
                pass  # a busy or vanished store must not kill training; the next beat retries

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def numeric_summary(summary: dict[str, Any]) -> dict[str, float]:
    """The finite numeric entries of a summary (what sweep algorithms and tables compare)."""
    return _finite_numbers(summary)
