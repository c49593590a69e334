"""The run store: sweeps, runs, per-epoch metrics and best checkpoints, in SQLite or PostgreSQL.

Every ``train`` run is recorded here, and the offline sweep engine keeps all its state here;
agents, trials and ``sweep status`` share a store. One SQL text serves both databases
(:mod:`cnn_tracker.store.backend`). These are its plain reads and writes; it never decides a state: its writers of one (``insert_run``, ``insert_trial``,
``transition``, ``set_sweep_state``, ``move_sweep``) are called by :mod:`cnn_tracker.runs.lifecycle`
alone. No wandb or torch here.

The connection, its retries and kept reports are :class:`cnn_tracker.store.session.Session`'s.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import socket
from pathlib import Path
from typing import Any

from cnn_tracker import env
from cnn_tracker.errors import UserError
from cnn_tracker.store.query import NOW, Query, assignments
from cnn_tracker.store.records import Run, Sweep, new_id
from cnn_tracker.store.session import Session, StoreUnavailable

__all__ = ["NOW", "Store", "StoreUnavailable"]

ACTIVE_STATES = ("pending", "running")
# "stopped" = ended early by the sweep's early_terminate (hyperband); the rest follow W&B.
# "preempted" = stopped by SIGTERM/SIGINT after saving a resume checkpoint: an agent of its
# sweep requeues it (continues it with `train --resume`) before starting new trials.
TERMINAL_STATES = ("finished", "stopped", "crashed", "failed", "killed", "preempted")
STALE_SECONDS = 120.0  # a running run silent for this long is marked crashed (agent --stale-after)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, default=str, allow_nan=True)


def _decoded(method):
    """Rows whose JSON does not parse are damage too (a torn page): same error as the driver's."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError) as exc:
            raise self._backend.damaged(exc) from None

    return wrapper


def _row_to_sweep(row: dict[str, Any]) -> Sweep:
    return Sweep(**{**row, "config": json.loads(row["config"])})


def _row_to_run(row: dict[str, Any]) -> Run:
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


def _encode(fields: dict[str, Any]) -> dict[str, Any]:
    unknown = set(fields) - set(_RUN_COLUMNS)
    assert not unknown, f"not run columns: {unknown}"
    return {k: _dumps(v) if k in _JSON_COLUMNS and v is not None else v for k, v in fields.items()}


def _insert(q: Query, fields: dict[str, Any]) -> None:
    """INSERT one run row (creation time and host added); a row already there is kept."""
    row = _encode({"created_at": NOW, "host": socket.gethostname(), **fields})
    values, args = assignments(q, row)
    q.exec(f"INSERT INTO runs ({', '.join(row)}) VALUES ({', '.join(values)}) "
           "ON CONFLICT (id) DO NOTHING", *args)


# The names a run's checkpoints are stored under (the checkpoints table's ``name``): a finished
# run's best, and a preempted run's resume file with its best epoch so far, for another machine.
STORED_BEST, STORED_RESUME, STORED_RESUME_BEST = "best", "resume", "resume-best"


class Store(Session):
    """A run store: a folder (``store.db`` + per-sweep files) or a PostgreSQL URL."""

    # -- sweeps -------------------------------------------------------------------------------
    def create_sweep(self, config: dict[str, Any], project: str) -> Sweep:
        sweep_id = new_id()

        def write(q: Query, retried: bool) -> None:
            q.exec(f"INSERT INTO sweeps (id, name, project, method, config, state, created_at) "
                   f"VALUES (?, ?, ?, ?, ?, 'running', {q.NOW}) ON CONFLICT (id) DO NOTHING",
                   sweep_id, config.get("name"), project, config["method"], _dumps(config))

        self._call(write, write=True)
        return self.sweep(sweep_id)

    def _rows(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        return self._call(lambda q, r: q.rows(sql, *args), write=False)

    @_decoded
    def find_sweep(self, sweep_id: str) -> Sweep | None:
        if not self.exists():
            return None
        rows = self._rows("SELECT * FROM sweeps WHERE id = ?", sweep_id)
        return _row_to_sweep(rows[0]) if rows else None

    def sweep(self, sweep_id: str) -> Sweep:
        found = self.find_sweep(sweep_id)
        if found is None:
            known = [s.id for s in self.sweeps()] if self.exists() else []
            hint = f" Sweeps here: {', '.join(known[:10])}." if known else " There are none yet."
            raise UserError(
                f"sweep '{sweep_id}' is not in the run store {self.where}.{hint} Create one with "
                "`cnn-tracker sweep create FILE --offline`, or pass --store / set "
                f"{env.STORE_VAR} to the store that holds it."
            )
        return found

    @_decoded
    def sweeps(self) -> list[Sweep]:
        if not self.exists():
            return []
        return [_row_to_sweep(row) for row in self._rows("SELECT * FROM sweeps ORDER BY created_at")]

    def set_sweep_state(self, sweep_id: str, state: str, message: str | None = None) -> None:
        """End a running sweep (``finished``, with why). Called by runs.lifecycle only."""
        self.move_sweep(sweep_id, state, "running", message)

    def move_sweep(self, sweep_id: str, state: str, from_state: str, message: str | None) -> bool:
        """set_sweep_state from ``from_state`` (False: it was not in it). runs.lifecycle only."""
        def write(q: Query, retried: bool) -> bool:
            moved = q.exec("UPDATE sweeps SET state = ?, message = ? WHERE id = ? AND state = ?",
                           state, message, sweep_id, from_state).rowcount
            return bool(moved) or (retried and q.one("SELECT state FROM sweeps WHERE id = ?",
                                                     sweep_id)["state"] == state)

        return self._call(write, write=True)

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
        for column, value in (("sweep_id", sweep_id), ("project", project)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        sql = "SELECT * FROM runs" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY seq"

        def read(q: Query, retried: bool) -> list[Run]:  # one snapshot: runs and their history
            runs = [_row_to_run(r) for r in q.rows(sql, *args)]
            if with_history and runs:
                by_id = {r.id: r for r in runs}
                for row in q.rows(f"SELECT h.run_id, h.metrics FROM history h JOIN runs r ON "
                                  f"r.id = h.run_id{' WHERE ' + ' AND '.join('r.' + w for w in where) if where else ''} "
                                  "ORDER BY h.run_id, h.epoch", *args):
                    if row["run_id"] in by_id:
                        by_id[row["run_id"]].history.append(json.loads(row["metrics"]))
            return runs

        return self._call(read, write=False)

    @_decoded
    def run(self, run_id: str) -> Run | None:
        if not self.exists():
            return None

        def read(q: Query, retried: bool) -> Run | None:
            row = q.one("SELECT * FROM runs WHERE id = ?", run_id)
            if row is None:
                return None
            run = _row_to_run(row)
            run.history = [json.loads(r["metrics"]) for r in q.rows(
                "SELECT metrics FROM history WHERE run_id = ? ORDER BY epoch", run_id)]
            return run

        return self._call(read, write=False)

    def ids_where(self, states: tuple[str, ...], *, sweep_id: str | None = None,
                  silent_for: float | None = None) -> list[str]:
        """Ids of runs in ``states`` (oldest first), of one sweep and/or without a heartbeat for
        ``silent_for`` seconds of the database's clock."""
        if not self.exists():
            return []
        sql = f"SELECT id FROM runs WHERE state IN ({','.join('?' * len(states))})"
        args: list[Any] = list(states)
        if sweep_id is not None:
            sql += " AND sweep_id = ?"
            args.append(sweep_id)
        if silent_for is not None:
            sql += f" AND heartbeat_at < {self._backend.NOW} - ?"
            args.append(float(silent_for))
        return [r["id"] for r in self._rows(sql + " ORDER BY seq", *args)]

    # -- writes of a run's state: runs.lifecycle only ---------------------------------------
    def insert_run(self, fields: dict[str, Any]) -> None:
        """Insert a run row (``fields`` are column values; JSON columns as Python objects)."""
        self._call(lambda q, retried: _insert(q, fields), write=True)

    def insert_trial(self, sweep_id: str, fields: dict[str, Any], *, expect_seq: int,
                     cap: int | None) -> bool:
        """Insert a sweep's new trial only if no run was added since ``expect_seq`` was read, the
        sweep still runs and its ``cap`` is not reached (optimistic concurrency: the suggestion
        was computed outside the transaction; the sweep's row is locked while this one checks).
        False = another agent got there first."""
        def write(q: Query, retried: bool) -> bool:
            state = q.one(f"SELECT state FROM sweeps WHERE id = ?{q.FOR_UPDATE}", sweep_id)["state"]
            if q.one("SELECT 1 AS x FROM runs WHERE id = ?", fields["id"]) is not None:
                return True  # our own insert, committed before the connection was lost
            row = q.one("SELECT COALESCE(MAX(seq), 0) AS seq, COUNT(*) AS n FROM runs WHERE "
                        "sweep_id = ?", sweep_id)
            if row["seq"] != expect_seq or state != "running" or (cap is not None and row["n"] >= cap):
                return False
            _insert(q, {"sweep_id": sweep_id, **fields})
            return True

        return self._call(write, write=True)

    def transition(self, run_id: str, to_state: str, from_states: tuple[str, ...],
                   fields: dict[str, Any] | None = None, *,
                   silent_for: float | None = None) -> bool:
        """Set ``state`` (and ``fields``) if the run is in ``from_states`` (and, when given,
        silent for ``silent_for`` s), atomically. False = it was not (nothing written)."""
        row = _encode({**(fields or {}), "state": to_state})

        def write(q: Query, retried: bool) -> bool:
            values, args = assignments(q, row)
            sql = (f"UPDATE runs SET {', '.join(f'{k} = {v}' for k, v in zip(row, values))} "
                   f"WHERE id = ? AND state IN ({','.join('?' * len(from_states))})")
            args += [run_id, *from_states]
            if silent_for is not None:
                sql += f" AND heartbeat_at < {q.NOW} - ?"
                args.append(float(silent_for))
            if q.exec(sql, *args).rowcount:
                return True
            # retried: our commit may have landed before the connection was lost
            return retried and (q.one("SELECT state FROM runs WHERE id = ?", run_id) or {}).get(
                "state") == to_state

        return self._call(write, write=True)

    # -- writes of a run's data (any process of the run) -------------------------------------
    def update_run(self, run_id: str, fields: dict[str, Any], *, wait: bool = True) -> None:
        """Set columns other than ``state`` (process id, log path, exit code, checkpoint, ...);
        ``wait=False``: a report, kept while the server is away."""
        assert "state" not in fields, "a run's state changes through runs.lifecycle"
        row = _encode(fields)

        def write(q: Query, retried: bool) -> None:
            values, args = assignments(q, row)
            q.exec(f"UPDATE runs SET {', '.join(f'{k} = {v}' for k, v in zip(row, values))} "
                   "WHERE id = ?", *args, run_id)

        self._call(write, write=True) if wait else self.report(write)

    def record_epoch(self, run_id: str, epoch: int, metrics: dict[str, Any], *,
                     wait: bool = True) -> None:
        """One epoch's metrics (a heartbeat too); ``wait=False``: kept while the server is away."""
        def write(q: Query, retried: bool) -> None:
            q.exec("INSERT INTO history (run_id, epoch, metrics) VALUES (?, ?, ?) ON CONFLICT "
                   "(run_id, epoch) DO UPDATE SET metrics = excluded.metrics",
                   run_id, epoch, _dumps(metrics))
            q.exec(f"UPDATE runs SET epochs = {q.GREATEST}(epochs, ?), heartbeat_at = {q.NOW} "
                   "WHERE id = ?", epoch, run_id)

        if wait:
            self._call(write, write=True)
        else:
            self.report(write)

    def set_checkpoint(self, run_id: str, path: str) -> None:
        self.update_run(run_id, {"checkpoint": path}, wait=False)

    def heartbeat(self, run_id: str, *, wait: bool = True) -> None:
        self._call(lambda q, retried: q.exec(
            f"UPDATE runs SET heartbeat_at = {q.NOW} WHERE id = ? AND state IN ('pending', "
            "'running')", run_id), write=True, patient=wait)

    # -- checkpoints: a run's best model, for any machine ------------------------------------
    def put_checkpoint(self, run_id: str, name: str, path: str | os.PathLike[str]) -> str:
        """Keep the file's bytes under (run, name); its sha256 is returned and checked on read."""
        data = Path(path).read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        self._call(lambda q, retried: q.exec(
            "INSERT INTO checkpoints (run_id, name, sha256, size, data, created_at) VALUES "
            f"(?, ?, ?, ?, ?, {q.NOW}) ON CONFLICT (run_id, name) DO UPDATE SET "
            "sha256 = excluded.sha256, size = excluded.size, data = excluded.data, "
            "created_at = excluded.created_at", run_id, name, digest, len(data), data), write=True)
        return digest

    def stored_checkpoints(self, name: str = STORED_BEST) -> dict[str, str]:
        """run id -> sha256 of every stored checkpoint called ``name``."""
        if not self.exists():
            return {}
        return {r["run_id"]: r["sha256"] for r in self._rows(
            "SELECT run_id, sha256 FROM checkpoints WHERE name = ?", name)}

    def checkpoint_bytes(self, run_id: str, name: str = STORED_BEST) -> bytes | None:
        """The stored file, its digest verified (a mismatch is damage: UserError)."""
        row = self._call(lambda q, r: q.one("SELECT sha256, data FROM checkpoints WHERE "
                                            "run_id = ? AND name = ?", run_id, name), write=False)
        if row is None:
            return None
        data = bytes(row["data"])
        if hashlib.sha256(data).hexdigest() != row["sha256"]:
            raise UserError(f"the stored {name} checkpoint of run {run_id} in {self.where} does not "
                            f"match its sha256 {row['sha256'][:12]}...: it is damaged; fetch it "
                            "from the run's own machine or W&B artifact instead.")
        return data
