"""The training loop, in pure torch. Nothing here imports wandb.

``train(cfg, data, hooks, files=..., amp_dtype=...)`` runs the epochs, keeps the best-by-validation
checkpoint, then evaluates the test set once with it. The hooks (:class:`TrainHooks`) only receive
numbers and file paths; the resume state is a :class:`~cnn_tracker.training.state.TrainState`.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnn_tracker.config import TrainConfig
from cnn_tracker.training import checkpoint as ckpt_io
from cnn_tracker.training.batches import train_batches
from cnn_tracker.training.data import Data, Split
from cnn_tracker.training.evaluation import EvalResult, evaluate
from cnn_tracker.training.hooks import Preempted, TrainHooks
from cnn_tracker.training.models import (
    build_model,
    count_parameters,
    model_args,
    with_tta,
)
from cnn_tracker.training.runtime import (
    autocast,
    load_optimizer_state,
    make_averaged,
    make_optimizer,
    make_scheduler,
    prepare_model,
    set_determinism,
)
from cnn_tracker.training.state import CheckpointFiles, TrainState, rng_states

# The loop's API; evaluate (defined in evaluation, used by the loop) is offered here too.
__all__ = ["EvalResult", "Preempted", "TrainHooks", "TrainResult", "evaluate", "train"]


@dataclass
class TrainResult:
    model: nn.Module  # with the best checkpoint's weights, in eval mode
    model_name: str
    model_args: dict[str, Any]
    n_params: int
    history: list[dict[str, float]]
    best_epoch: int
    best: dict[str, float]  # val metrics of the best epoch
    test: EvalResult
    best_path: Path
    last_path: Path
    train_seconds: float  # epochs only (no data loading, no test evaluation)
    device: str
    stopped_early: str = ""  # why training ended before cfg.epochs (early termination), if it did
    resumed_from: str = ""  # "epoch E, batch B" when this run continued a resume checkpoint


def _progress(total: int, epoch: int, epochs: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=f"epoch {epoch}/{epochs}", unit="batch", leave=False,
                file=sys.stderr, dynamic_ncols=True)


@dataclass
class _Loop:
    """What one run builds once (model, optimizer, ...), and its running totals."""

    cfg: TrainConfig
    data: Data
    files: CheckpointFiles
    amp_dtype: torch.dtype | None
    margs: dict[str, Any]
    model: nn.Module
    n_params: int
    run: nn.Module  # the callable that applies the model (compiled, or the model itself)
    averaged: Any  # the weights' moving average (torch AveragedModel), or None (cfg.ema 0)
    opt: torch.optim.Optimizer
    sched: Any  # a per-batch LR scheduler, or None
    scaler: torch.amp.GradScaler
    criterion: nn.Module
    shuffle_gen: torch.Generator  # the epochs' shuffling and augmentation draws
    steps_per_epoch: int
    history: list[dict[str, float]] = field(default_factory=list)
    best: dict[str, float] = field(default_factory=dict)  # val metrics of the best epoch
    best_epoch: int = 0
    global_step: int = 0
    train_seconds: float = 0.0

    @property
    def device(self) -> torch.device:
        return self.data.train.images.device

    @property
    def evaluated(self) -> nn.Module:
        """The model whose weights are validated, tested and saved as a checkpoint's
        ``state_dict``: the moving average when ``ema`` is on, else the trained model."""
        return self.model if self.averaged is None else self.averaged.module

    def evaluate(self, split: Split, collect: bool = False) -> EvalResult:
        return evaluate(self.evaluated, split, self.data.spec, self.cfg.eval_batch_size,
                        collect=collect, amp_dtype=self.amp_dtype,
                        run=self.run if self.averaged is None else with_tta(
                            self.averaged.module, self.cfg.tta, self.cfg.augment,
                            self.data.spec.hflip))

    def checkpoint(self, epoch: int, metrics: dict[str, float]) -> dict[str, Any]:
        return ckpt_io.make_checkpoint(self.evaluated, self.cfg.model, self.margs, self.cfg,
                                       self.data.spec, epoch, metrics)

    def restore(self, state: TrainState) -> None:
        """Continue from ``state`` (weights and their average, optimizer, scheduler, scaler,
        totals, RNG streams)."""
        self.model.load_state_dict(state.weights)
        if self.averaged is not None and state.averaged is not None:
            self.averaged.module.load_state_dict(state.averaged)
            self.averaged.n_averaged.fill_(state.averaged_steps)
        load_optimizer_state(self.opt, state.optimizer)
        if self.sched is not None and state.scheduler is not None:
            self.sched.load_state_dict(state.scheduler)
        self.scaler.load_state_dict(state.scaler)
        self.history = [dict(h) for h in state.history]
        self.best, self.best_epoch = dict(state.best), state.best_epoch
        self.global_step, self.train_seconds = state.global_step, state.train_seconds
        self.shuffle_gen.set_state(state.epoch_start)
        state.restore_rng(self.device)

    def state(self, epoch: int, batch: int, epoch_start: torch.Tensor, loss_sum: torch.Tensor,
              correct: torch.Tensor, seconds: float, run: dict[str, Any]) -> TrainState:
        """The state to continue at ``batch`` (batches done) of ``epoch``."""
        return TrainState(
            epoch=epoch, batch=batch, steps_per_epoch=self.steps_per_epoch,
            optimizer=self.opt.state_dict(),
            scheduler=self.sched.state_dict() if self.sched is not None else None,
            scaler=self.scaler.state_dict(), rng=rng_states(self.device), epoch_start=epoch_start,
            loss_sum=loss_sum, correct=correct, epoch_seconds=seconds, history=self.history,
            best=self.best, best_epoch=self.best_epoch, global_step=self.global_step,
            train_seconds=self.train_seconds, run=run,
            **({} if self.averaged is None else {
                "weights": self.model.state_dict(), "averaged": self.averaged.module.state_dict(),
                "averaged_steps": int(self.averaged.n_averaged)}))


def _setup(cfg: TrainConfig, data: Data, files: CheckpointFiles, amp_dtype: torch.dtype | None) -> _Loop:
    """Seed, then build the model, optimizer, scaler and schedule (in this order: the RNG draws
    of a run, and so a resumed run's equality with an uninterrupted one, depend on it)."""
    set_determinism(cfg)
    device = data.train.images.device
    margs = model_args(cfg.model, cfg.hidden_units, cfg.dropout, cfg.batch_norm,
                       tuple(data.train.images.shape[1:]), len(data.class_names))
    model, run = prepare_model(build_model(cfg.model, margs), cfg, device)
    averaged = make_averaged(cfg, model)
    run = with_tta(run, cfg.tta, cfg.augment, data.spec.hflip)
    opt = make_optimizer(cfg, model)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    steps_per_epoch = -(-len(data.train) // cfg.batch_size)
    sched = make_scheduler(cfg, opt, cfg.epochs * steps_per_epoch)
    return _Loop(cfg=cfg, data=data, files=files, amp_dtype=amp_dtype, margs=margs, model=model,
                 n_params=count_parameters(model), run=run, averaged=averaged,
                 opt=opt, sched=sched, scaler=scaler,
                 criterion=nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing),
                 shuffle_gen=torch.Generator().manual_seed(cfg.seed + 1),
                 steps_per_epoch=steps_per_epoch)


def _step(loop: _Loop, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step on a batch: (loss, logits)."""
    with autocast(loop.device, loop.amp_dtype):
        logits = loop.run(x)
        loss = loop.criterion(logits.float(), y)
    loop.opt.zero_grad(set_to_none=True)
    loop.scaler.scale(loss).backward()
    loop.scaler.step(loop.opt)
    loop.scaler.update()
    if loop.sched is not None:
        loop.sched.step()
    if loop.averaged is not None:
        loop.averaged.update_parameters(loop.model)
    return loss, logits


def _train_epoch(loop: _Loop, hooks: TrainHooks, epoch: int, resumed: TrainState | None,
                 progress: bool) -> tuple[float, torch.Tensor, float, int, str]:
    """The batches of ``epoch``, from where ``resumed`` stopped inside it if given: (mean train
    loss, correct predictions, seconds, images seen, stop reason). A stop signal saves resume.pt
    and raises Preempted; a stop request ends the epoch after the current batch."""
    cfg, data, device = loop.cfg, loop.data, loop.device
    loop.model.train()
    first = resumed.batch if resumed is not None else 0
    bar = _progress(loop.steps_per_epoch, epoch, cfg.epochs, progress)
    if bar is not None and first:
        bar.update(first)
    epoch_start = loop.shuffle_gen.get_state()  # the epoch's shuffling and augmentation draws
    start = time.perf_counter()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    before = 0.0  # seconds of this epoch spent before a resume
    if first:
        loss_sum += resumed.loss_sum.to(device)
        correct += resumed.correct.to(device)
        before = resumed.epoch_seconds
    batch = first
    for x, y in train_batches(data.train, data.spec, cfg.batch_size, loop.shuffle_gen, cfg.augment,
                              start_batch=first, rotate=cfg.rotate, zoom=cfg.zoom):
        loss, logits = _step(loop, x, y)
        # Accumulated on the device; read once per epoch (no per-batch host sync).
        loss_sum += loss.detach() * len(y)
        correct += (logits.detach().argmax(1) == y).sum()
        loop.global_step += 1
        batch += 1
        if cfg.log_every and loop.global_step % cfg.log_every == 0:  # opt-in: one host sync
            hooks.log_batch({"trainer/global_step": loop.global_step, "batch/loss": loss.item(),
                             "batch/lr": loop.opt.param_groups[0]["lr"]})
        if bar is not None:
            bar.update()
        signum = hooks.stop_signal()
        stop = "" if signum else hooks.stop_requested()
        if signum or stop:
            break
    else:
        signum, stop = 0, ""
    if not signum:  # one host sync: the epoch's work is done before it is timed
        seen = min(batch * cfg.batch_size, len(data.train))  # all of them unless stopped
        train_loss = float(loss_sum) / max(seen, 1)
    elapsed = time.perf_counter() - start
    loop.train_seconds += elapsed
    if bar is not None:
        bar.close()
    if signum:
        ckpt = loop.checkpoint(epoch - 1, loop.history[-1] if loop.history else {})
        state = loop.state(epoch, batch, epoch_start, loss_sum, correct, before + elapsed,
                           hooks.run_info(0))
        ckpt_io.atomic_save({**ckpt, "resume": state.to_dict()}, loop.files.resume)
        raise Preempted(signum, loop.files.resume, epoch, batch, loop.steps_per_epoch)
    return train_loss, correct, before + elapsed, seen, stop


def _end_epoch(loop: _Loop, hooks: TrainHooks, epoch: int, train_loss: float,
               correct: torch.Tensor, epoch_time: float, n_train: int) -> dict[str, float]:
    """Validate, save best.pt (when improved) and last.pt, then report; the epoch's metrics
    (train accuracy and images/s over the ``n_train`` images the epoch saw)."""
    cfg = loop.cfg
    val = loop.evaluate(loop.data.val)
    metrics = {
        "epoch": epoch,
        "train/loss": train_loss,
        "train/accuracy": float(correct) / n_train,
        "val/loss": val.loss,
        "val/accuracy": val.accuracy,
        "lr": loop.opt.param_groups[0]["lr"],
        "perf/epoch_seconds": epoch_time,
        "perf/images_per_second": n_train / epoch_time,
    }
    loop.history.append(metrics)
    improved = not loop.best or val.accuracy > loop.best["val/accuracy"]
    if improved:
        loop.best_epoch, loop.best = epoch, {"val/accuracy": val.accuracy, "val/loss": val.loss}
    # Checkpoints first, then the report: an epoch the tracker has seen can be resumed.
    ckpt = loop.checkpoint(epoch, metrics)
    if improved:
        ckpt_io.atomic_save(ckpt, loop.files.best)
    # last.pt: the latest weights, resumable at the start of the next epoch.
    zero = torch.zeros(())
    state = loop.state(epoch + 1, 0, loop.shuffle_gen.get_state(), zero, zero.long(), 0.0,
                       hooks.run_info(1))
    ckpt_io.atomic_save({**ckpt, "resume": state.to_dict()}, loop.files.last)
    hooks.log_metrics(metrics, epoch)
    if improved:
        hooks.log_checkpoint(loop.files.best, {**metrics, "model": cfg.model, "dataset": cfg.dataset,
                                               "n_params": loop.n_params})
    hooks.log(
        f"epoch {epoch}/{cfg.epochs}  train loss {train_loss:.4f} acc {metrics['train/accuracy']:.2%}"
        f"  val loss {val.loss:.4f} acc {val.accuracy:.2%}  {epoch_time:.1f}s"
        f"  {metrics['perf/images_per_second']:.0f} img/s{'  *best' if improved else ''}"
    )
    return metrics


def train(cfg: TrainConfig, data: Data, hooks: TrainHooks, *, files: CheckpointFiles,
          amp_dtype: torch.dtype | None, progress: bool = False,
          resume: TrainState | None = None) -> TrainResult:
    """Train ``cfg.model`` on ``data``; select by val accuracy; evaluate test once on the best.

    ``amp_dtype``: the autocast dtype (None = fp32), resolved once by the caller
    (:func:`resolve_precision`). Checkpoints go to ``files``. ``hooks`` receive metrics and
    checkpoints and may stop early (:class:`TrainHooks`); the best checkpoint so far is still
    evaluated on the test set. A stop signal (``hooks.stop_signal()``, polled after every batch)
    writes ``resume.pt`` and raises :class:`Preempted`; ``last.pt`` carries the same state at every
    epoch end. ``resume`` (a :class:`TrainState` of either file) continues such a run exactly:
    with the same seed in deterministic mode the result equals an uninterrupted run.
    """
    loop = _setup(cfg, data, files, amp_dtype)
    start_epoch = 1
    if resume is not None:
        loop.restore(resume)
        start_epoch = resume.epoch
        hooks.log(f"resuming at epoch {resume.epoch}, batch {resume.batch}/{loop.steps_per_epoch}")
    stopped_early = ""
    for epoch in range(start_epoch, cfg.epochs + 1):
        resumed = resume if resume is not None and epoch == start_epoch else None
        train_loss, correct, epoch_time, seen, stop = _train_epoch(loop, hooks, epoch, resumed,
                                                                   progress)
        if stop and loop.best:  # a stop mid-epoch: the best epoch so far is the result
            stopped_early = stop
            hooks.log(f"stopped during epoch {epoch}/{cfg.epochs}: {stop}")
            break
        metrics = _end_epoch(loop, hooks, epoch, train_loss, correct, epoch_time, seen)
        if stop:  # stopped inside the first epoch: its partial epoch is the best so far
            stopped_early = stop
            hooks.log(f"stopped during epoch {epoch}/{cfg.epochs} (after {seen} images): {stop}")
            break
        # after_epoch every epoch: the bench reads test accuracy after the last too.
        reason = hooks.after_epoch(epoch, loop.evaluate)
        if not reason and epoch < cfg.epochs:
            reason = hooks.should_stop(epoch, metrics) or hooks.stop_requested()
        if reason and epoch < cfg.epochs:
            stopped_early = reason
            hooks.log(f"stopped after epoch {epoch}/{cfg.epochs}: {reason}")
            break
        signum = hooks.stop_signal() if epoch < cfg.epochs else 0
        if signum:  # between epochs: last.pt is the resume point
            raise Preempted(signum, files.last, epoch + 1, 0, loop.steps_per_epoch)
    return _final_test(loop, stopped_early, resume)


def _final_test(loop: _Loop, stopped_early: str, resume: TrainState | None) -> TrainResult:
    """Load the best checkpoint's weights and evaluate the test set once."""
    best_state = ckpt_io.load_checkpoint(loop.files.best)
    loop.evaluated.load_state_dict(best_state["state_dict"])
    loop.evaluated.eval()
    test = loop.evaluate(loop.data.test, collect=True)
    return TrainResult(
        model=loop.evaluated, model_name=loop.cfg.model, model_args=loop.margs,
        n_params=loop.n_params, history=loop.history, best_epoch=loop.best_epoch,
        best=loop.best, test=test, best_path=loop.files.best, last_path=loop.files.last,
        train_seconds=loop.train_seconds, device=str(loop.device), stopped_early=stopped_early,
        resumed_from=f"epoch {resume.epoch}, batch {resume.batch}" if resume is not None else "",
    )
