"""W&B as a :class:`RunSource`: sweeps, projects and runs read through ``tracking.wandb_api``.

Everything here needs a W&B server; tests replace ``wandb.Api`` with a fake. This module never
imports wandb itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnn_tracker.errors import UserError, first_line
from cnn_tracker.results.source import (
    FALLBACK_METRIC,
    Row,
    RunSource,
    number,
    resolve_goal,
    searched_parameters,
    sweep_metric,
)
from cnn_tracker.tracking.wandb_api import api as _api


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


def _run_row(run, params: list[str], metric: str) -> dict[str, Any]:
    summary = dict(run.summary_metrics or {})
    return {
        "id": run.id, "name": run.name, "state": run.state, "stale": False,
        "params": {k: run.config.get(k) for k in params},
        "metric": number(summary.get(metric)),
        "epochs": summary.get("epoch"),
        "test/accuracy": number(summary.get("test/accuracy")),
    }


def _sweep(api, path: str, hint: str = ""):
    try:
        return api.sweep(path)
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"W&B sweep '{path}' not found ({first_line(exc)}){hint}.") from None


def sweep_status(path: str) -> dict[str, Any]:
    sweep = _sweep(_api(), path, ": give entity/project/sweep_id")
    config = dict(sweep.config or {})
    metric, goal = sweep_metric(config)
    params = searched_parameters(config)
    rows = [_run_row(r, params, metric) for r in sweep.runs]
    best = sweep.best_run()
    return {
        "sweep": path, "source": "wandb", "method": config.get("method"), "state": sweep.state,
        "metric": {"name": metric, "goal": goal}, "parameters": params, "runs": rows,
        "best": best.id if best is not None else None,
    }


def _pick(candidates, metric: str, goal: str, target: str):
    scored = [(v, r) for r in candidates if r.state in ("finished", "running")
              and (v := number(dict(r.summary_metrics or {}).get(metric))) is not None]
    if not scored:
        raise UserError(f"no run of '{target}' has the metric '{metric}' yet.")
    pick = max if goal.startswith("max") else min
    return pick(scored, key=lambda t: t[0])[1]


def best_run(target: str, metric: str | None, goal: str | None, entity: str | None
             ) -> dict[str, Any]:
    """The best run of a W&B sweep (``entity/project/sweep_id``) or project (``[entity/]project``)."""
    api = _api()
    parts = target.strip("/").split("/")
    run = None
    if len(parts) >= 3:  # a sweep
        path = sweep_path(target, None, entity)
        sweep = _sweep(api, path)
        own = sweep_metric(dict(sweep.config or {}))
        metric, goal = resolve_goal(metric, goal, own)
        if (metric, goal) == own:
            run = sweep.best_run()
        candidates = list(sweep.runs)
        entity_, project = path.split("/")[:2]
    else:
        project = parts[-1]
        entity_ = parts[0] if len(parts) == 2 else entity
        metric, goal = resolve_goal(metric, goal, None)
        order = ("-" if goal.startswith("max") else "+") + f"summary_metrics.{metric}"
        try:
            candidates = list(api.runs(f"{entity_}/{project}" if entity_ else project, order=order,
                                       per_page=100))
        except Exception as exc:  # noqa: BLE001
            raise UserError(f"W&B project '{target}' cannot be read ({first_line(exc)}).") from None
    if run is None:
        run = _pick(candidates, metric, goal, target)
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


def row_from_wandb(run: Any, metric: str) -> Row:
    """A row from a ``wandb.apis.public.Run`` (config and summary as W&B holds them)."""
    s = dict(run.summary_metrics or {})
    config = {k: v for k, v in dict(run.config or {}).items() if not str(k).startswith("_")}
    sweep = getattr(run, "sweep", None)
    return Row(
        id=run.id, name=run.name or run.id, state=run.state, config=config,
        sweep=getattr(sweep, "id", None), metric=number(s.get(metric)),
        numbers={
            "n_params": number(s.get("model/n_params")),
            "best_val_accuracy": number(s.get("best/val_accuracy")) or number(s.get("val/accuracy")),
            "test_accuracy": number(s.get("test/accuracy")),
            "epochs": number(s.get("epoch")),
            "train_seconds": number(s.get("perf/train_seconds")),
            "images_per_second": number(s.get("perf/images_per_second")),  # the last epoch's
        },
    )


def wandb_rows(*, sweep: str | None, project: str | None, run_ids: list[str] | None,
               entity: str | None, metric: str) -> tuple[list[Row], dict[str, Any] | None]:
    """(rows, the sweep's config or None) through ``wandb.Api()``: a sweep, a project or run paths."""
    api = _api()
    config = None
    try:
        if run_ids:
            runs = [api.run(r) for r in run_ids]
        elif sweep is not None:
            found = api.sweep(sweep_path(sweep, project, entity))
            config = dict(found.config or {})
            runs = list(found.runs)
        else:
            path = project if project is None or "/" in project or not entity else f"{entity}/{project}"
            runs = list(api.runs(path))
    except Exception as exc:  # noqa: BLE001 - the SDK raises several types (CommError, ValueError)
        what = run_ids or sweep or project
        raise UserError(f"W&B could not list the runs of {what} ({first_line(exc)}): "
                        "check the path (entity/project[/sweep]) and WANDB_API_KEY.") from None
    return [row_from_wandb(r, metric) for r in runs], config


class WandbSource(RunSource):
    """W&B's public API; bare sweep ids and project names get ``entity`` / ``project``."""

    kind = "wandb"
    where = "W&B"

    def __init__(self, entity: str | None = None, project: str | None = None):
        self.entity, self.project = entity, project

    def sweep_status(self, sweep_id: str) -> dict[str, Any]:
        return sweep_status(sweep_path(sweep_id, self.project, self.entity))

    def best(self, target: str, metric: str | None, goal: str | None) -> dict[str, Any]:
        return best_run(target, metric, goal, self.entity)

    def fetch_checkpoint(self, found: dict[str, Any], folder: Path) -> Path:
        return download_checkpoint(found["checkpoint"], folder)

    def link_checkpoint(self, found: dict[str, Any], target: str) -> str:
        """Link the best run's ``model-<run>:best`` into the Registry (``REGISTRY/COLLECTION``)."""
        from cnn_tracker.tracking.wandb_api import link_artifact

        return link_artifact(found["checkpoint"], target)

    def rows(self, *, sweep: str | None, project: str | None, run_ids: list[str] | None,
             metric: str = FALLBACK_METRIC) -> tuple[list[Row], dict[str, Any] | None]:
        return wandb_rows(sweep=sweep, project=project or (self.project if sweep else None),
                          run_ids=run_ids, entity=self.entity, metric=metric)
