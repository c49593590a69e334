"""What the training loop reports to and asks between its steps (:class:`TrainHooks`), and how it
ends on a signal (:class:`Preempted`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from cnn_tracker.training.data import Split
from cnn_tracker.training.evaluation import EvalResult


class Preempted(Exception):
    """Training stopped on a signal; a resumable checkpoint was written first."""

    def __init__(self, signum: int, path: Path, epoch: int, batch: int, steps_per_epoch: int):
        super().__init__(f"stopped by signal {signum} at epoch {epoch}, batch {batch}/{steps_per_epoch}")
        self.signum, self.path, self.epoch, self.batch = signum, path, epoch, batch
        self.steps_per_epoch = steps_per_epoch


class TrainHooks:
    """What the loop reports to and asks between its steps; each hook here does nothing. (The
    runner's Recorder passes events to the tracker and the run store; the bench reads accuracy.)"""

    def log_metrics(self, metrics: dict[str, float], epoch: int) -> None:
        """An epoch's metrics, after its checkpoints are saved."""

    def log_checkpoint(self, path: Path, metadata: dict[str, Any]) -> None:
        """A new best checkpoint (``best.pt``), with its epoch's metrics."""

    def log_batch(self, metrics: dict[str, float]) -> None:
        """Every ``cfg.log_every`` batches (opt-in: one host sync each)."""

    def log(self, line: str) -> None:
        """A line of progress for the console."""

    def should_stop(self, epoch: int, metrics: dict[str, float]) -> str:
        """Asked after every epoch but the last: a non-empty reason ends training there."""
        return ""

    def after_epoch(self, epoch: int, evaluate: Callable[[Split], EvalResult]) -> str:
        """Measurement after every epoch, outside the timed part, with a function that evaluates
        the current weights on a split; a non-empty answer ends training like should_stop."""
        return ""

    def stop_signal(self) -> int:
        """Polled after every batch: a signal number stops training with a resume checkpoint."""
        return 0

    def stop_requested(self) -> str:
        """Polled after every batch: a non-empty reason ends training cleanly at once (a stop,
        not a preemption): the best checkpoint so far is tested (the partial epoch is validated
        first when no epoch has ended yet)."""
        return ""

    def run_info(self, logs_ahead: int) -> dict[str, Any]:
        """The tracker's run (id, name, W&B step after ``logs_ahead`` more log calls), kept in
        resume checkpoints for ``train --resume``."""
        return {}
