"""Where runs are read back from: one :class:`RunSource` interface, two backends.

``LocalSource(store)`` (``results.local``) reads the local run store; ``WandbSource(entity,
project)`` (``results.remote``) reads W&B through ``tracking.wandb_api``. :func:`open_source`
chooses between them once per command; nothing after it asks which one it got. This module also
owns the metric conventions both backends share (:func:`sweep_metric`, :func:`default_goal`).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnn_tracker import env
from cnn_tracker.errors import UserError
from cnn_tracker.store.db import Store
from cnn_tracker.store.records import declared_metric

FALLBACK_METRIC = "val/accuracy"  # the metric of a sweep that names none, and of --metric's default


def default_goal(metric: str) -> str:
    """The goal of an ad-hoc metric: losses and times are minimized, everything else maximized."""
    return "minimize" if "loss" in metric or "seconds" in metric else "maximize"


def sweep_metric(config: dict[str, Any]) -> tuple[str, str]:
    """(name, goal) of a sweep config's metric, read the way W&B reads it.

    A ``metric`` without ``goal`` is minimized (W&B's documented default, and what its engine
    optimises); a sweep without a metric is ranked by val/accuracy, maximized.
    """
    return declared_metric(config) or (FALLBACK_METRIC, default_goal(FALLBACK_METRIC))


def resolve_goal(metric: str | None, goal: str | None, sweep: tuple[str, str] | None) -> tuple[str, str]:
    """(metric, goal) for ranking: the options given, else the sweep's, else the defaults."""
    s_metric, s_goal = sweep or (FALLBACK_METRIC, default_goal(FALLBACK_METRIC))
    metric = metric or s_metric
    return metric, goal or (s_goal if metric == s_metric else default_goal(metric))


def searched_parameters(config: dict[str, Any]) -> list[str]:
    """The parameters a sweep varies (a fixed ``value:`` is the same for every run)."""
    params = config.get("parameters") or {}
    return [k for k, v in params.items() if not (isinstance(v, dict) and set(v) <= {"value"})]


def number(value: Any) -> float | None:
    """A finite float from a summary value (also W&B's ``{"max": x}`` forms), else None."""
    if isinstance(value, dict):  # a define_metric summary such as {"max": x}
        value = value.get("max", value.get("min", value.get("last")))
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


@dataclass
class Row:
    """One run for ``compare``, whichever source it came from."""

    id: str
    name: str
    state: str
    config: dict[str, Any]
    numbers: dict[str, float | None]
    metric: float | None = None  # the value of --metric (best of the run when it is per epoch)
    sweep: str | None = None


class RunSource(ABC):
    """Runs and sweeps to read back: what ``sweep status``, ``best`` and ``compare`` need."""

    kind: str  # "local" or "wandb", the ``source`` field of the JSON outputs
    where: str  # for messages: "local store PATH" or "W&B"

    @abstractmethod
    def sweep_status(self, sweep_id: str) -> dict[str, Any]:
        """The sweep's state, metric, searched parameters, one row per run and the best run id."""

    @abstractmethod
    def best(self, target: str, metric: str | None, goal: str | None) -> dict[str, Any]:
        """The best run of a sweep or project: id, state, config, metric value, metrics and
        ``checkpoint`` (a file or an artifact reference); UserError when none qualifies."""

    @abstractmethod
    def fetch_checkpoint(self, found: dict[str, Any], folder: Path) -> Path:
        """Put the checkpoint of a :meth:`best` result into ``folder`` (as ``best.pt``)."""

    @abstractmethod
    def rows(self, *, sweep: str | None, project: str | None, run_ids: list[str] | None,
             metric: str) -> tuple[list[Row], dict[str, Any] | None]:
        """(rows, the sweep's config or None) of a sweep, a project, some runs, or every run."""

    def sweep_list(self) -> list[dict[str, Any]]:
        """One summary per sweep; only the local store can list its sweeps."""
        raise UserError("listing sweeps reads the local run store only; for W&B see the "
                        "project's Sweeps page.")


def not_found_error(what: str, store: Store) -> UserError:
    """Neither in the local store nor reachable on W&B (no API key)."""
    return UserError(f"{what} is not in the local run store {store.where}, and no W&B API key is "
                     f"configured to look it up on W&B: check the id, pass --store / set "
                     f"{env.STORE_VAR} to the store that holds it, or set WANDB_API_KEY.")


def require_wandb(what: str, store: Store) -> None:
    """Raise :func:`not_found_error` unless a W&B API key is configured."""
    if not env.has_api_key():
        raise not_found_error(what, store)


def open_source(target: str | None, store: Store, *, project: str | None = None,
                run_ids: list[str] | None = None, entity: str | None = None,
                what: str | None = None) -> RunSource:
    """The source that holds ``target`` (a sweep id or project), ``project`` or ``run_ids``.

    The local store when it holds them (or when nothing is named: every local run), else W&B
    when an API key is configured, else a UserError naming ``what`` (default: the target).
    ``entity`` and ``project`` default to WANDB_ENTITY / WANDB_PROJECT for W&B paths.
    """
    from cnn_tracker.results.local import LocalSource

    local = LocalSource(store)
    missing = local.missing(target=target, project=project, run_ids=run_ids)
    if missing is None:
        return local
    require_wandb(what or missing, store)
    from cnn_tracker.results.remote import WandbSource

    return WandbSource(entity or env.wandb_entity(), project or env.wandb_project())
