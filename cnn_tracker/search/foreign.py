"""Trials of any W&B program: the agent reads their metrics from their own offline W&B run.

Our ``train`` reports to the store itself. Any other program (a user's script with plain
``wandb.init`` / ``wandb.log``) does not know the store: its agent gives it its own W&B folder,
follows the trial's run file with W&B's reader (:mod:`cnn_tracker.tracking.runfile`) and relays
each history row to the store as it is written (so hyperband judges it while it runs: a trial to
stop gets SIGTERM, as from ``wandb agent``) and the summary at its end (for bayes and ``best``).
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Callable

from cnn_tracker.runs import lifecycle
from cnn_tracker.store.db import Store
from cnn_tracker.store.records import Run, Sweep

WAIT_FOR_RUN_FILE_SECONDS = 0.2  # poll for the trial's run file to appear (after wandb.init)


class Relay:
    """A foreign trial's metrics, from its run file to the store (and hyperband's verdicts)."""

    def __init__(self, store: Store, sweep: Sweep, run: Run, wandb_dir: Path, pid: int,
                 echo: Callable[[str], None], name: str):
        self.store, self.sweep, self.run, self.wandb_dir = store, sweep, run, wandb_dir
        self.pid, self.echo, self.name = pid, echo, name
        self.rows: list[dict[str, float]] = []
        self.stop_reason = ""
        self._follower = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._attach, name="cnn-tracker-relay", daemon=True)
        self._thread.start()

    def _attach(self) -> None:
        from cnn_tracker.tracking.runfile import Follower, find_run_file

        while not self._done.is_set():
            path = find_run_file(self.wandb_dir, self.run.id)
            if path is not None:
                self._follower = Follower(path, self._row)
                return
            self._done.wait(WAIT_FOR_RUN_FILE_SECONDS)

    def _row(self, row: dict[str, float]) -> None:
        self.rows.append(row)
        self.store.record_epoch(self.run.id, len(self.rows), row)
        metric = self.sweep.metric
        if "early_terminate" in self.sweep.config and not self.stop_reason and metric \
                and metric[0] in row:  # hyperband reads only the rows that hold its metric
            self._judge()

    def _judge(self) -> None:
        from cnn_tracker.search.engine import should_stop

        stop, why = should_stop(self.sweep, self.store.runs(sweep_id=self.sweep.id), self.run.id)
        if not stop:
            return
        self.stop_reason = f"early_terminate ({self.sweep.config['early_terminate'].get('type')}): {why}"
        lifecycle.request_stop(self.store, self.run.id, self.stop_reason)
        self.echo(f"[{self.name}] stopping trial {self.run.id} (SIGTERM): {self.stop_reason}")
        try:
            os.killpg(self.pid, signal.SIGTERM)  # as wandb agent stops a run
        except (ProcessLookupError, PermissionError):
            pass

    def finish(self, state: str) -> tuple[str, dict[str, float], str | None]:
        """After the process ended: (state, summary, message) to record."""
        from cnn_tracker.tracking.runfile import find_run_file, numbers, read_summary

        self._done.set()
        self._thread.join(timeout=5)
        if self._follower is not None:
            self._follower.stop()
        path = find_run_file(self.wandb_dir, self.run.id)
        summary: dict[str, float] = {}
        if path is not None:
            try:
                summary = numbers(read_summary(path).get("summary") or {})
            except (RuntimeError, ValueError, OSError) as exc:
                return state, {}, f"could not read the trial's W&B run {path}: {exc}"
        if self.stop_reason and state in ("finished", "killed"):
            state = "stopped"
        return state, summary, self._missing_metric(path, summary) or (self.stop_reason or None)

    def _missing_metric(self, path: Path | None, summary: dict[str, float]) -> str | None:
        metric = self.sweep.metric
        if metric is None or metric[0] in summary or any(metric[0] in r for r in self.rows):
            return None
        if path is None:
            return (f"the trial started no W&B run (no run file in {self.wandb_dir}): the sweep's "
                    f"metric '{metric[0]}' must be logged with wandb.init() and wandb.log()")
        logged = sorted(k for k in {*(k for r in self.rows for k in r), *summary}
                        if not k.startswith("_"))
        return (f"the trial never logged the sweep's metric '{metric[0]}' (it logged: "
                f"{', '.join(logged[:12]) or 'nothing'}): log it with wandb.log({{'{metric[0]}': ...}})")

