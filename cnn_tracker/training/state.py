"""The resume checkpoint format: what training needs to continue exactly where it stopped.

A run's checkpoints live in one folder (:class:`CheckpointFiles`): ``best.pt`` (the best epoch's
weights, the uploaded artifact: no training state), ``last.pt`` (every epoch end, resumable at the
start of the next epoch) and ``resume.pt`` (written when a signal stops training mid-epoch).
The last two are checkpoints (:mod:`cnn_tracker.training.checkpoint`) with a ``"resume"`` section:
:meth:`TrainState.to_dict`. The model weights are the checkpoint's own ``state_dict``; with ``ema``
on, that is the weights' moving average (what the metrics were measured with), and the section's
``"ema"`` holds the trained weights and the number of updates averaged.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cnn_tracker.errors import CheckpointError
from cnn_tracker.training.checkpoint import load_checkpoint

BEST, LAST, RESUME = "best.pt", "last.pt", "resume.pt"
# Keys a "resume" section must have (steps_per_epoch and scheduler are optional).
REQUIRED = ("epoch", "batch", "optimizer", "scaler", "rng", "partial", "history", "best",
            "best_epoch", "global_step", "train_seconds", "run")


@dataclass(frozen=True)
class CheckpointFiles:
    """The checkpoint files of one run, in ``folder`` (a run's ``<output>/checkpoints``)."""

    folder: Path

    @property
    def best(self) -> Path:
        return Path(self.folder) / BEST

    @property
    def last(self) -> Path:
        return Path(self.folder) / LAST

    @property
    def resume(self) -> Path:
        return Path(self.folder) / RESUME

    def resumable(self) -> list[Path]:
        """The files present that carry a resume section: resume.pt, then last.pt."""
        return [p for p in (self.resume, self.last) if p.is_file()]


def rng_states(device: torch.device) -> dict[str, torch.Tensor]:
    """The process's torch (and, on CUDA, the device's) generator states."""
    states = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


@dataclass
class TrainState:
    """Where training stopped and everything needed to continue it bit for bit."""

    epoch: int  # the epoch to continue (1-based)
    batch: int  # batches of that epoch already trained (0: start it)
    steps_per_epoch: int | None  # batches per epoch (None in files that predate it)
    optimizer: dict[str, Any]
    scheduler: dict[str, Any] | None  # None without an LR schedule
    scaler: dict[str, Any]  # the fp16 grad scaler
    rng: dict[str, torch.Tensor]  # generator states at the stop: "torch", and "cuda" on a GPU
    epoch_start: torch.Tensor  # the shuffling generator's state at the epoch's start
    loss_sum: torch.Tensor  # sum of batch loss x batch size over the epoch's trained batches
    correct: torch.Tensor  # correct predictions over them
    epoch_seconds: float  # s of this epoch trained before the stop
    history: list[dict[str, float]]  # the finished epochs' metrics
    best: dict[str, float]  # val metrics of the best epoch so far
    best_epoch: int
    global_step: int  # batches trained in all
    train_seconds: float  # s of training in all (epochs only)
    run: dict[str, Any]  # the tracker's run (id, name, W&B step, ...) for `train --resume`
    weights: dict[str, torch.Tensor] | None = None  # the trained model's: the checkpoint's
    # state_dict, or with ema the section's "ema"
    averaged: dict[str, torch.Tensor] | None = None  # with ema: the moving average's weights,
    # saved as the checkpoint's state_dict
    averaged_steps: int = 0  # with ema: the updates the average has had

    def to_dict(self) -> dict[str, Any]:
        """The checkpoint's ``"resume"`` section (without the weights the checkpoint's
        ``state_dict`` holds)."""
        section = {
            "epoch": self.epoch, "batch": self.batch, "steps_per_epoch": self.steps_per_epoch,
            "optimizer": self.optimizer,
            "scheduler": self.scheduler,
            "scaler": self.scaler,
            "rng": {**self.rng, "epoch_start": self.epoch_start},
            "partial": {"loss_sum": self.loss_sum.detach().cpu(), "correct": self.correct.detach().cpu(),
                        "seconds": self.epoch_seconds},
            "history": self.history, "best": self.best, "best_epoch": self.best_epoch,
            "global_step": self.global_step, "train_seconds": self.train_seconds,
            "run": self.run,
        }
        if self.averaged is not None:
            section["ema"] = {"trained_weights": self.weights, "steps": self.averaged_steps}
        return section

    @classmethod
    def from_dict(cls, section: dict[str, Any],
                  weights: dict[str, torch.Tensor] | None = None) -> "TrainState":
        """Read a ``"resume"`` section (checked by :func:`load_resume`); ``weights``: the
        checkpoint's ``state_dict``."""
        ema = section.get("ema")
        averaged, steps = None, 0
        if ema is not None:  # the state_dict is the average; the trained weights are here
            averaged, weights, steps = weights, ema["trained_weights"], int(ema["steps"])
        rng = dict(section["rng"])
        epoch_start = rng.pop("epoch_start")
        partial = section["partial"]
        return cls(
            epoch=int(section["epoch"]), batch=int(section["batch"]),
            steps_per_epoch=section.get("steps_per_epoch"),
            optimizer=section["optimizer"], scheduler=section.get("scheduler"),
            scaler=section["scaler"], rng=rng, epoch_start=epoch_start,
            loss_sum=partial["loss_sum"], correct=partial["correct"],
            epoch_seconds=float(partial["seconds"]),
            history=[dict(h) for h in section["history"]], best=dict(section["best"]),
            best_epoch=int(section["best_epoch"]), global_step=int(section["global_step"]),
            train_seconds=float(section["train_seconds"]), run=dict(section["run"]), weights=weights,
            averaged=averaged, averaged_steps=steps,
        )

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any]) -> "TrainState":
        """The state of a checkpoint loaded by :func:`load_resume`, with its weights."""
        return cls.from_dict(ckpt["resume"], weights=ckpt["state_dict"])

    def restore_rng(self, device: torch.device) -> None:
        """Put the process's generators back where they were at the stop."""
        torch.set_rng_state(self.rng["torch"])
        if device.type == "cuda" and "cuda" in self.rng:
            torch.cuda.set_rng_state(self.rng["cuda"], device)

    @property
    def position(self) -> tuple[int, int]:
        """(epoch, batch): how far along; the larger of two files is the one to resume."""
        return self.epoch, self.batch


def load_resume(path: str | os.PathLike[str]) -> tuple[dict[str, Any], TrainState]:
    """A checkpoint with a resume section (weights-only load) and its state, or a clear error."""
    ckpt = load_checkpoint(path)
    section = ckpt.get("resume")
    if not isinstance(section, dict):
        raise CheckpointError(
            f"checkpoint '{path}' holds weights only, no training state to resume: pass last.pt or "
            "resume.pt of the run (same folder), or its run id."
        )
    missing = [k for k in REQUIRED if k not in section]
    if missing:
        raise CheckpointError(f"the resume state in '{path}' lacks {', '.join(missing)}: it is "
                              "incomplete; resume from the run's last.pt instead.")
    try:
        state = TrainState.from_checkpoint(ckpt)
        ok = (isinstance(state.run, dict) and isinstance(state.rng.get("torch"), torch.Tensor)
              and state.epoch >= 1 and state.batch >= 0)
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError):
        ok = False
    if not ok:
        raise CheckpointError(f"the resume state in '{path}' is damaged (a field of the wrong type "
                              "or range): resume from the run's last.pt instead, or start again.")
    return ckpt, state
