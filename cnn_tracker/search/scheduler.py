"""Which trial an agent runs next: a preempted one to resume, else the engine's next suggestion.

The suggestion is computed *outside* the store's write lock (a Bayesian fit can take seconds) and
committed only if no other agent added a run in the meantime (optimistic concurrency), so no two
agents ever start the same trial and the fit never blocks anybody's epoch report.
"""

from __future__ import annotations

from typing import Any, Callable

from cnn_tracker.errors import UserError
from cnn_tracker.runs import lifecycle
from cnn_tracker.search.engine import suggest as engine_suggest
from cnn_tracker.store.db import Store
from cnn_tracker.store.records import Run, Sweep

Suggest = Callable[[Sweep, list[Run]], "tuple[dict[str, Any], dict[str, Any] | None] | None"]


def claim_trial(store: Store, sweep_id: str, suggest: Suggest = engine_suggest, *, agent: str,
                attempts: int = 50) -> tuple[Run | None, str]:
    """Reserve the sweep's next trial for ``agent``: (run, "") or (None, why the sweep is done)."""
    for _ in range(attempts):
        requeued = lifecycle.requeue_preempted(store, sweep_id, agent)
        if requeued is not None:
            return requeued, ""
        sweep = store.sweep(sweep_id)
        if sweep.state != "running":
            return None, f"sweep {sweep_id} is {sweep.state}" + (
                f": {sweep.message}" if sweep.message else "")
        runs = store.runs(sweep_id=sweep_id)
        last_seq = runs[-1].seq if runs else 0
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
