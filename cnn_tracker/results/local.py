"""The local run store as a :class:`RunSource`: sweep status and lists, best runs, compare rows.

Reads only: a run whose heartbeat stopped is *shown* as stale here; marking it crashed is the
agents' job (``runs.lifecycle.reap_stale``).
"""

from __future__ import annotations

import shutil
import statistics
import time
from pathlib import Path
from typing import Any

from cnn_tracker.errors import UserError
from cnn_tracker.files import atomic_write
from cnn_tracker.results.source import (
    FALLBACK_METRIC,
    Row,
    RunSource,
    default_goal,
    number,
    resolve_goal,
    searched_parameters,
    sweep_metric,
)
from cnn_tracker.search.command import runs_our_train
from cnn_tracker.store.db import ACTIVE_STATES, STALE_SECONDS, Store
from cnn_tracker.store.records import Run, Sweep, numeric_summary

DONE = ("finished", "stopped")  # the states whose metrics rank (best run)


def _best(runs: list[Run], metric: str, goal: str) -> Run | None:
    scored = [(v, r) for r in runs if r.state in DONE
              and (v := r.best_metric(metric, goal)) is not None]
    if not scored:
        return None
    pick = max if goal.startswith("max") else min
    return pick(scored, key=lambda t: t[0])[1]


def silent_seconds(run: Run, now: float | None = None) -> float | None:
    """Seconds since a pending/running run's last heartbeat when over STALE_SECONDS, else None."""
    if run.state not in ACTIVE_STATES or run.heartbeat_at is None:
        return None
    age = (now or time.time()) - run.heartbeat_at
    return age if age > STALE_SECONDS else None


def run_row(run: Run, params: list[str], metric: str, goal: str, now: float) -> dict[str, Any]:
    """``now``: the store's clock (heartbeats and start times are written by it)."""
    silent = silent_seconds(run, now)
    seconds = run.duration(now)
    return {
        "id": run.id, "name": run.name, "state": run.state, "stale": silent is not None,
        "no_heartbeat_s": round(silent) if silent is not None else None,
        "params": {k: run.params.get(k, run.config.get(k)) for k in params},
        "metric": run.best_metric(metric, goal), "epochs": run.epochs,
        "test/accuracy": run.summary.get("test/accuracy"),
        "seconds": round(seconds, 1) if seconds is not None else None,
        "message": run.message,
    }


def sweep_status(store: Store, sweep_id: str) -> dict[str, Any]:
    """The status of a local sweep (a read: nothing in the store changes)."""
    return _status(store, store.sweep(sweep_id))


def _status(store: Store, sweep: Sweep) -> dict[str, Any]:
    metric, goal = sweep_metric(sweep.config)
    params = searched_parameters(sweep.config)
    runs = store.runs(sweep_id=sweep.id)
    now = store.clock()
    best = _best(runs, metric, goal)
    counts: dict[str, int] = {}
    for r in runs:
        counts[r.state] = counts.get(r.state, 0) + 1
    return {
        "sweep": sweep.id, "source": "local", "store": store.where, "name": sweep.name,
        "project": sweep.project, "method": sweep.method, "state": sweep.state,
        "message": sweep.message, "run_cap": sweep.run_cap,
        "metric": {"name": metric, "goal": goal}, "parameters": params, "counts": counts,
        "runs": [run_row(r, params, metric, goal, now) for r in runs],
        "best": best.id if best else None,
    }


def sweep_list(store: Store) -> list[dict[str, Any]]:
    out = []
    for sweep in store.sweeps():
        status = _status(store, sweep)
        best = next((r for r in status["runs"] if r["id"] == status["best"]), None)
        out.append({
            "sweep": sweep.id, "name": sweep.name, "project": sweep.project, "method": sweep.method,
            "state": sweep.state, "runs": len(status["runs"]), "counts": status["counts"],
            "metric": status["metric"], "best": status["best"],
            "best_value": best["metric"] if best else None,
            "created": time.strftime("%Y-%m-%d %H:%M", time.localtime(sweep.created_at)),
        })
    return out


def best_local(store: Store, target: str, metric: str | None, goal: str | None) -> dict[str, Any] | None:
    """The best run of a local sweep or project, or None when ``target`` is neither here."""
    sweep = store.find_sweep(target)
    if sweep is not None:
        metric, goal = resolve_goal(metric, goal, sweep_metric(sweep.config))
        runs = store.runs(sweep_id=sweep.id)
    else:
        runs = store.runs(project=target)
        if not runs:
            return None
        metric, goal = resolve_goal(metric, goal, None)
    stored = store.stored_checkpoints()
    foreign = sweep is not None and not runs_our_train(sweep.config)  # its files: its W&B run
    candidates = [r for r in runs if foreign or r.id in stored
                  or (r.checkpoint and Path(r.checkpoint).is_file())]
    best = _best(candidates, metric, goal)
    if best is None:
        raise UserError(f"no finished run of '{target}'{'' if foreign else ' with a checkpoint'} has the metric "
                        f"'{metric}' yet ({len(runs)} run(s) recorded in {store.where}).")
    return {
        "source": "local", "target": target, "run_id": best.id, "run_name": best.name or best.id,
        "state": best.state, "sweep": best.sweep_id, "config": best.config or best.params,
        "metric": {"name": metric, "goal": goal, "value": best.best_metric(metric, goal)},
        "metrics": numeric_summary(best.summary), "checkpoint": best.checkpoint,
        "checkpoint_sha256": stored.get(best.id), "host": best.host,
        "wandb_dir": best.wandb_dir, "output_dir": best.output_dir,
        **({"program": sweep.config.get("program")} if foreign else {}),
    }


def copy_checkpoint(store: Store, found: dict[str, Any], folder: Path) -> Path:
    """The best checkpoint into ``folder/best.pt`` (the name the W&B artifact uses): from the
    store (any machine; its digest checked), else from the run's folder on this machine."""
    if "program" in found:  # a foreign program's trial: the files of its own W&B run
        return copy_run_files(found, Path(folder))
    data = store.checkpoint_bytes(found["run_id"]) if found.get("checkpoint_sha256") else None
    if data is None:
        path = found.get("checkpoint")
        if not path or not Path(path).is_file():
            raise UserError(f"the best checkpoint of run {found['run_id']} is not in {store.where} "
                            f"and not on this machine ({path}, written on {found.get('host')}): "
                            "download it there, or from its W&B artifact.")
        data = Path(path).read_bytes()
    return atomic_write(Path(folder) / "best.pt", data)


def copy_run_files(found: dict[str, Any], folder: Path) -> Path:
    """A foreign trial's offline W&B run folder (its ``.wandb`` file: config, history, summary;
    and its files) into ``folder``: ``wandb sync`` or ``wandb leet`` it from there."""
    runs = sorted(Path(found.get("wandb_dir") or "-").glob(f"wandb/*run-*-{found['run_id']}"))
    if not runs:
        raise UserError(f"the W&B run of trial {found['run_id']} is not on this machine (looked in "
                        f"{found.get('wandb_dir')}, written on {found.get('host')}): download it there.")
    target = folder / runs[-1].name
    if target.exists():
        raise UserError(f"{target} exists already: choose an empty --download folder.")
    shutil.copytree(runs[-1], target)
    return target


def row_from_store(run: Run, metric: str) -> Row:
    s = run.summary
    per_epoch = [h["perf/images_per_second"] for h in run.history if "perf/images_per_second" in h]
    train_seconds = number(s.get("perf/train_seconds"))
    if train_seconds is None and any("perf/epoch_seconds" in h for h in run.history):
        train_seconds = sum(h.get("perf/epoch_seconds", 0.0) for h in run.history)
    return Row(
        id=run.id, name=run.name or run.id, state=run.state, config=dict(run.config or run.params),
        sweep=run.sweep_id, metric=run.best_metric(metric, default_goal(metric)),
        numbers={
            "n_params": number(s.get("model/n_params")),
            "best_val_accuracy": number(s.get("best/val_accuracy")) or run.best_metric("val/accuracy", "maximize"),
            "test_accuracy": number(s.get("test/accuracy")),
            "epochs": float(run.epochs) if run.epochs else None,
            "train_seconds": train_seconds,
            "images_per_second": statistics.median(per_epoch) if per_epoch else None,
        },
    )


class LocalSource(RunSource):
    """The local run store (offline runs and sweeps)."""

    kind = "local"

    def __init__(self, store: Store):
        self.store = store
        self.where = f"local store {store.where}"

    def missing(self, *, target: str | None, project: str | None,
                run_ids: list[str] | None) -> str | None:
        """What of the selection is not here (as a message label), or None when all of it is."""
        if run_ids:
            absent = [r for r in run_ids if self.store.run(r) is None]
            return f"run '{absent[0]}'" if absent else None
        for name in (target, project):
            if name is not None and self.store.find_sweep(name) is None \
                    and not self.store.runs(project=name, with_history=False):
                return f"'{name}'"
        return None

    def sweep_status(self, sweep_id: str) -> dict[str, Any]:
        return sweep_status(self.store, sweep_id)

    def sweep_list(self) -> list[dict[str, Any]]:
        return sweep_list(self.store)

    def best(self, target: str, metric: str | None, goal: str | None) -> dict[str, Any]:
        found = best_local(self.store, target, metric, goal)
        if found is None:  # open_source checked it is here; only a concurrent delete gets here
            raise UserError(f"'{target}' is neither a sweep nor a project with runs in {self.where}.")
        return found

    def fetch_checkpoint(self, found: dict[str, Any], folder: Path) -> Path:
        return copy_checkpoint(self.store, found, folder)

    def rows(self, *, sweep: str | None, project: str | None, run_ids: list[str] | None,
             metric: str = FALLBACK_METRIC) -> tuple[list[Row], dict[str, Any] | None]:
        store = self.store
        if run_ids:
            runs = []
            for run_id in run_ids:
                run = store.run(run_id)
                if run is None:
                    raise UserError(f"run '{run_id}' is not in the local run store {store.where}: check the "
                                    "id (`cnn-tracker sweep status SWEEP_ID` lists run ids) or pass --store.")
                runs.append(run)
            return [row_from_store(r, metric) for r in runs], None
        config = store.sweep(sweep).config if sweep is not None else None  # UserError when unknown
        runs = store.runs(sweep_id=sweep, project=project)
        return [row_from_store(r, metric) for r in runs], config
