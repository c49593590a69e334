"""The offline suggestion engine: W&B's open-source ``sweeps`` package over our stored runs.

Suggestions and early termination come from ``sweeps.next_run`` / ``sweeps.stop_runs`` (grid,
random, bayes, hyperband), the same algorithms as the W&B cloud controller. This module only
adapts our stored runs to its ``SweepRun`` objects. Its functions are pure: they read runs and
return verdicts; writing state is runs.lifecycle's job.
"""

from __future__ import annotations

import json
import warnings
from typing import Any

from cnn_tracker.store.records import numeric_summary


def import_sweeps():
    """The ``sweeps`` package, without its pydantic-v2 config warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import sweeps.config.schema  # noqa: F401  (loads the JSON schema once)

        import sweeps
    return sweeps


# Our states -> W&B's. An early-terminated run ("stopped") has real, finished metrics.
_STATE = {"pending": "pending", "running": "running", "finished": "finished",
          "stopped": "finished", "crashed": "crashed", "failed": "failed", "killed": "killed",
          "preempted": "preempted"}


def to_sweep_runs(runs) -> list:
    sweeps = import_sweeps()
    return [
        sweeps.SweepRun(
            name=r.id, state=_STATE[r.state],
            config={k: {"value": v} for k, v in r.params.items()},
            history=r.history, summary_metrics=numeric_summary(r.summary),
        )
        for r in runs
    ]


def plain(value: Any) -> Any:
    """A numpy scalar as the int / float it holds (JSON and our config want plain numbers)."""
    return value.item() if hasattr(value, "item") else value


def suggest(sweep, runs) -> tuple[dict[str, Any], dict[str, Any] | None] | None:
    """The sweep's next parameters from W&B's engine, or None when a grid is exhausted."""
    sweeps = import_sweeps()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn GP convergence chatter
        nxt = sweeps.next_run(sweep.config, to_sweep_runs(runs))
    if nxt is None:
        return None
    params = {k: plain(v["value"]) for k, v in nxt.config.items()}  # q_ draws are numpy ints
    info = nxt.search_info
    return params, json.loads(json.dumps(info, default=float)) if info else None


def should_stop(sweep, runs, run_id: str) -> tuple[bool, str]:
    """Hyperband's verdict on ``run_id`` given every run's history so far; (stop, explanation)."""
    if "early_terminate" not in sweep.config or sweep.metric is None:
        return False, ""
    sweeps = import_sweeps()
    sweep_runs = to_sweep_runs(runs)
    stopped = sweeps.stop_runs(sweep.config, sweep_runs)
    for run in stopped:
        if run.name == run_id:
            lines = (run.early_terminate_info or {}).get("lines") or [""]
            return True, str(lines[-1]).strip()
    return False, ""
