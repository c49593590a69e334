"""The W&B cloud side of sweeps, kept thin over the official SDK (``wandb.sweep``, ``wandb.Api``).

Everything here needs a W&B server; tests replace ``wandb.sweep`` / ``wandb.Api`` with fakes.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from cnn_tracker.errors import UserError, first_line
from cnn_tracker.results.local import searched_parameters


def _wandb():
    import wandb

    return wandb


def _api():
    wandb = _wandb()
    try:
        return wandb.Api(timeout=30)
    except Exception as exc:  # noqa: BLE001 - the SDK raises several types for "no login"
        raise UserError(f"W&B API unavailable ({first_line(exc)}): set WANDB_API_KEY or run "
                        "`wandb login`, or use the local store (--offline).") from None


def create_sweep(config: dict[str, Any], project: str, entity: str | None) -> str:
    """Register the sweep with W&B; returns its id."""
    wandb = _wandb()
    try:
        return wandb.sweep(sweep=config, project=project, entity=entity)
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"W&B could not create the sweep ({first_line(exc)}): check WANDB_API_KEY, "
                        "the entity/project and the network, or use --offline.") from None


def sweep_path(sweep_id: str, project: str | None, entity: str | None) -> str:
    """``entity/project/id`` from an id that may already carry project and entity."""
    parts = sweep_id.strip("/").split("/")
    if len(parts) >= 4 and "sweeps" in parts:  # .../entity/project/sweeps/id (a URL path)
        i = parts.index("sweeps")
        parts = [*parts[max(0, i - 2):i], parts[i + 1]]
    if len(parts) == 1:
        parts = [p for p in (entity, project) if p] + parts
    elif len(parts) == 2 and entity:
        parts = [entity, *parts]
    return "/".join(parts[-3:])


def _metric_of(config: dict[str, Any]) -> tuple[str, str]:
    metric = config.get("metric") or {}
    return str(metric.get("name", "val/accuracy")), str(metric.get("goal", "maximize"))


def number(value: Any) -> float | None:
    """A finite float from a W&B summary value (also ``{"max": x}`` forms), else None."""
    if isinstance(value, dict):  # a define_metric summary such as {"max": x}
        value = value.get("max", value.get("min", value.get("last")))
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _run_row(run, params: list[str], metric: str) -> dict[str, Any]:
    summary = dict(run.summary_metrics or {})
    return {
        "id": run.id, "name": run.name, "state": run.state,
        "params": {k: run.config.get(k) for k in params},
        "metric": number(summary.get(metric)),
        "epochs": summary.get("epoch"),
        "test/accuracy": number(summary.get("test/accuracy")),
    }


def sweep_status(path: str) -> dict[str, Any]:
    api = _api()
    try:
        sweep = api.sweep(path)
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"W&B sweep '{path}' not found ({first_line(exc)}): give "
                        "entity/project/sweep_id.") from None
    config = dict(sweep.config or {})
    metric, goal = _metric_of(config)
    params = searched_parameters(config)
    rows = [_run_row(r, params, metric) for r in sweep.runs]
    best = sweep.best_run()
    return {
        "sweep": path, "source": "wandb", "method": config.get("method"), "state": sweep.state,
        "metric": {"name": metric, "goal": goal}, "parameters": params, "runs": rows,
        "best": best.id if best is not None else None,
    }


def best_run(target: str, metric: str | None, goal: str | None, entity: str | None
             ) -> dict[str, Any]:
    """The best run of a W&B sweep (``entity/project/sweep_id``) or project (``[entity/]project``)."""
    api = _api()
    parts = target.strip("/").split("/")
    run = None
    if len(parts) >= 3:  # a sweep
        path = sweep_path(target, None, entity)
        try:
            sweep = api.sweep(path)
        except Exception as exc:  # noqa: BLE001
            raise UserError(f"W&B sweep '{path}' not found ({first_line(exc)}).") from None
        sweep_metric, sweep_goal = _metric_of(dict(sweep.config or {}))
        metric, goal = metric or sweep_metric, goal or sweep_goal
        if metric == sweep_metric:
            run = sweep.best_run()
        candidates = list(sweep.runs)
        entity_, project = path.split("/")[:2]
    else:
        project = parts[-1]
        entity_ = parts[0] if len(parts) == 2 else entity
        metric, goal = metric or "val/accuracy", goal or "maximize"
        order = ("-" if goal.startswith("max") else "+") + f"summary_metrics.{metric}"
        try:
            candidates = list(api.runs(f"{entity_}/{project}" if entity_ else project, order=order,
                                       per_page=100))
        except Exception as exc:  # noqa: BLE001
            raise UserError(f"W&B project '{target}' cannot be read ({first_line(exc)}).") from None
    if run is None:
        scored = [(v, r) for r in candidates if r.state in ("finished", "running")
                  and (v := number(dict(r.summary_metrics or {}).get(metric))) is not None]
        if not scored:
            raise UserError(f"no run of '{target}' has the metric '{metric}' yet.")
        pick = max if goal.startswith("max") else min
        run = pick(scored, key=lambda t: t[0])[1]
    entity_ = entity_ or getattr(run, "entity", None)
    project = project or getattr(run, "project", None)
    summary = dict(run.summary_metrics or {})
    return {
        "source": "wandb", "target": target, "run_id": run.id, "run_name": run.name,
        "state": run.state, "config": {k: v for k, v in dict(run.config).items() if not k.startswith("_")},
        "metric": {"name": metric, "goal": goal, "value": number(summary.get(metric))},
        "metrics": {k: v for k, v in summary.items() if number(v) is not None and not k.startswith("_")},
        "checkpoint": f"{entity_ + '/' if entity_ else ''}{project}/model-{run.id}:best",
    }


def download_checkpoint(artifact_ref: str, folder: Path) -> Path:
    """Download ``model-<run>:best`` into ``folder``; returns the checkpoint file."""
    from cnn_tracker.tracking.artifacts import download_artifact

    return download_artifact(artifact_ref, folder)
