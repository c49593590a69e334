"""Which trial an agent runs next: a preempted one to resume, else the engine's next suggestion.

The suggestion is computed *outside* the store's write lock (a Bayesian fit can take seconds) and
committed only if no other agent added a run in the meantime (optimistic concurrency), so no two
agents ever start the same trial and the fit never blocks anybody's epoch report.

A paused or canceled sweep hands out nothing (not even a preempted trial); a stopped or finished
one only its preempted trials. A sweep finishes when a run reached its ``metric.target``.
"""

from __future__ import annotations

from typing import Any, Callable

from cnn_tracker.errors import UserError
from cnn_tracker.runs import lifecycle
from cnn_tracker.search.engine import suggest as engine_suggest
from cnn_tracker.store.db import Store
from cnn_tracker.store.records import Run, Sweep

HOLD_STATES = ("paused", "canceled")  # sweeps whose agents claim nothing at all
Suggest = Callable[[Sweep, list[Run]], "tuple[dict[str, Any], dict[str, Any] | None] | None"]


def claim_trial(store: Store, sweep_id: str, suggest: Suggest = engine_suggest, *, agent: str,
                attempts: int = 50) -> tuple[Run | None, str]:
    """Reserve the sweep's next trial for ``agent``: (run, "") or (None, why the sweep is done)."""
    for _ in range(attempts):
        sweep = store.sweep(sweep_id)  # a requeue leaves it as it is
        if sweep.state not in HOLD_STATES:  # paused/canceled: not even a requeue
            requeued = lifecycle.requeue_preempted(store, sweep_id, agent)
            if requeued is not None:
                return requeued, ""
        if sweep.state != "running":
            return None, f"sweep {sweep_id} is {sweep.state}" + (
                f": {sweep.message}" if sweep.message else "")
        runs = store.runs(sweep_id=sweep_id)
        last_seq = runs[-1].seq if runs else 0
        reached = target_reached(sweep, runs)
        if reached:
            lifecycle.finish_sweep(store, sweep_id, reached)
            continue
        cap = sweep.run_cap
        if cap is not None and len(runs) >= cap:
            lifecycle.finish_sweep(store, sweep_id, f"run_cap {cap} reached")
            continue
        suggestion = suggest(sweep, runs)
        if suggestion is None:
            lifecycle.finish_sweep(store, sweep_id,
                                   f"all {len(runs)} configurations of the grid were run")
            continue
        params, info = suggestion
        run = lifecycle.reserve_trial(store, sweep, params, info, agent=agent, expect_seq=last_seq)
        if run is not None:
            return run, ""
    raise UserError(f"could not claim a trial of sweep {sweep_id} after {attempts} attempts: "
                    "too many agents are racing; start fewer agents.")


def target_reached(sweep: Sweep, runs: list[Run]) -> str | None:
    """Why the sweep is done when a finished (or early-stopped) run reached ``metric.target``,
    W&B's rule: the best value of the metric, goal-aware (maximize: >= target; a metric without
    goal is minimized: <= target); None when no run reached it or there is no target."""
    target = (sweep.config.get("metric") or {}).get("target")
    if sweep.metric is None or not isinstance(target, (int, float)) or isinstance(target, bool):
        return None
    name, goal = sweep.metric
    maximize = goal.startswith("max")
    for run in runs:
        value = run.best_metric(name, goal) if run.state in ("finished", "stopped") else None
        if value is not None and (value >= target if maximize else value <= target):
            return (f"run {run.id} reached the target: {name} {value:.6g} "
                    f"{'>=' if maximize else '<='} {target:g}")
    return None
