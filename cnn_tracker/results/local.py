"""Reading the local run store: sweep status tables, sweep lists and the best run."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from cnn_tracker.errors import UserError
from cnn_tracker.store.db import Run, Store, Sweep, numeric_summary


def default_goal(metric: str) -> str:
    return "minimize" if "loss" in metric or "seconds" in metric else "maximize"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def table(rows: list[list[Any]], header: list[str]) -> str:
    cells = [header, *[[_fmt(c) for c in row] for row in rows]]
    widths = [max(len(str(r[i])) for r in cells) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _best(runs: list[Run], metric: str, goal: str) -> Run | None:
    scored = [(v, r) for r in runs if r.state in ("finished", "stopped")
              and (v := r.best_metric(metric, goal)) is not None]
    if not scored:
        return None
    pick = max if goal.startswith("max") else min
    return pick(scored, key=lambda t: t[0])[1]


def searched_parameters(config: dict[str, Any]) -> list[str]:
    """The parameters a sweep varies (a fixed ``value:`` is the same for every run)."""
    params = config.get("parameters") or {}
    return [k for k, v in params.items() if not (isinstance(v, dict) and set(v) <= {"value"})]


def run_row(run: Run, params: list[str], metric: str, goal: str) -> dict[str, Any]:
    return {
        "id": run.id, "name": run.name, "state": run.state,
        "params": {k: run.params.get(k, run.config.get(k)) for k in params},
        "metric": run.best_metric(metric, goal), "epochs": run.epochs,
        "test/accuracy": run.summary.get("test/accuracy"),
        "seconds": round(run.seconds, 1) if run.seconds is not None else None,
        "message": run.message,
    }


def sweep_status(store: Store, sweep_id: str, *, reap: bool = True) -> dict[str, Any]:
    """The status of a local sweep; first marks runs without a heartbeat as crashed (``reap``)."""
    if reap:
        store.reap_stale()
    sweep = store.sweep(sweep_id)
    metric, goal = sweep.metric or ("val/accuracy", "maximize")
    params = searched_parameters(sweep.config)
    runs = store.runs(sweep_id=sweep_id)
    best = _best(runs, metric, goal)
    counts: dict[str, int] = {}
    for r in runs:
        counts[r.state] = counts.get(r.state, 0) + 1
    return {
        "sweep": sweep.id, "source": "local", "store": str(store.root), "name": sweep.name,
        "project": sweep.project, "method": sweep.method, "state": sweep.state,
        "message": sweep.message, "run_cap": sweep.run_cap,
        "metric": {"name": metric, "goal": goal}, "parameters": params, "counts": counts,
        "runs": [run_row(r, params, metric, goal) for r in runs],
        "best": best.id if best else None,
    }


def format_status(status: dict[str, Any]) -> str:
    metric = status["metric"]["name"]
    params = status["parameters"]
    rows = [[r["id"], r["state"], *[r["params"].get(p) for p in params], r["metric"], r["epochs"],
             r.get("test/accuracy"), r.get("seconds")] for r in status["runs"]]
    head = (f"sweep {status['sweep']} ({status.get('method')}, {status.get('state')}"
            + (f": {status['message']}" if status.get("message") else "") + ")")
    if status.get("counts"):
        head += "  " + ", ".join(f"{n} {s}" for s, n in sorted(status["counts"].items()))
    lines = [head, table(rows, ["run", "state", *params, metric, "epochs done", "test/acc",
                                     "seconds"])]
    if status.get("best"):
        best = next(r for r in status["runs"] if r["id"] == status["best"])
        lines.append(f"best: {best['id']}  {metric} {_fmt(best['metric'])}  "
                     + " ".join(f"{k}={_fmt(v)}" for k, v in best["params"].items()))
    else:
        lines.append("best: none finished yet")
    return "\n".join(lines)


def sweep_list(store: Store) -> list[dict[str, Any]]:
    store.reap_stale()
    out = []
    for sweep in store.sweeps():
        status = sweep_status(store, sweep.id, reap=False)
        best = next((r for r in status["runs"] if r["id"] == status["best"]), None)
        out.append({
            "sweep": sweep.id, "name": sweep.name, "project": sweep.project, "method": sweep.method,
            "state": sweep.state, "runs": len(status["runs"]), "counts": status["counts"],
            "metric": status["metric"], "best": status["best"],
            "best_value": best["metric"] if best else None,
            "created": time.strftime("%Y-%m-%d %H:%M", time.localtime(sweep.created_at)),
        })
    return out


def format_list(items: list[dict[str, Any]]) -> str:
    rows = [[i["sweep"], i["name"], i["method"], i["project"], i["state"], i["runs"],
             i["metric"]["name"], i["best_value"], i["best"], i["created"]] for i in items]
    return table(rows, ["sweep", "name", "method", "project", "state", "runs", "metric", "best",
                        "best run", "created"])


def best_local(store: Store, target: str, metric: str | None, goal: str | None) -> dict[str, Any] | None:
    """The best run of a local sweep or project, or None when ``target`` is neither here."""
    sweep: Sweep | None = store.find_sweep(target)
    if sweep is not None:
        s_metric, s_goal = sweep.metric or ("val/accuracy", "maximize")
        metric = metric or s_metric
        goal = goal or (s_goal if metric == s_metric else default_goal(metric))
        runs = store.runs(sweep_id=sweep.id)
    else:
        runs = store.runs(project=target)
        if not runs:
            return None
        metric = metric or "val/accuracy"
        goal = goal or default_goal(metric)
    candidates = [r for r in runs if r.checkpoint and Path(r.checkpoint).is_file()]
    best = _best(candidates, metric, goal)
    if best is None:
        raise UserError(f"no finished run of '{target}' with a checkpoint has the metric "
                        f"'{metric}' yet ({len(runs)} run(s) recorded in {store.root}).")
    return {
        "source": "local", "target": target, "run_id": best.id, "run_name": best.name,
        "state": best.state, "sweep": best.sweep_id, "config": best.config,
        "metric": {"name": metric, "goal": goal, "value": best.best_metric(metric, goal)},
        "metrics": numeric_summary(best.summary), "checkpoint": best.checkpoint,
        "wandb_dir": best.wandb_dir, "output_dir": best.output_dir,
    }


def copy_checkpoint(path: str, folder: Path) -> Path:
    """Copy a local best checkpoint to ``folder/best.pt`` (the name the W&B artifact uses)."""
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / "best.pt"
    tmp = folder / ".best.pt.tmp"
    shutil.copyfile(path, tmp)
    tmp.replace(dest)
    return dest
