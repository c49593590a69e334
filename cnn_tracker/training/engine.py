"""Training and evaluation in pure torch. Nothing here imports wandb.

``train(cfg, data, tracker)`` runs the epochs, keeps the best-by-validation checkpoint, then
evaluates the test set once with it. The tracker only receives numbers and file paths.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import torch
from torch import nn

from cnn_tracker.config import TrainConfig
from cnn_tracker.errors import ConfigError
from cnn_tracker.training import checkpoint as ckpt_io
from cnn_tracker.training.data import (
    Data,
    DatasetSpec,
    Split,
    eval_batches,
    train_batches,
)
from cnn_tracker.training.models import build_model, count_parameters, model_args


class EpochSink(Protocol):
    """What the loop reports to (a Tracker satisfies it)."""

    def log_metrics(self, metrics: dict[str, float], epoch: int) -> None: ...

    def log_checkpoint(self, path: Path, metadata: dict[str, Any]) -> None: ...

    def log_batch(self, metrics: dict[str, float]) -> None: ...


@dataclass
class EvalResult:
    loss: float
    accuracy: float
    n: int
    labels: np.ndarray | None = None  # int64 [N], when collected
    probs: np.ndarray | None = None  # float32 [N, classes], when collected

    @property
    def preds(self) -> np.ndarray:
        assert self.probs is not None
        return self.probs.argmax(1)


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


class Preempted(Exception):
    """Training stopped on a signal; a resumable checkpoint was written first."""

    def __init__(self, signum: int, path: Path, epoch: int, batch: int, steps_per_epoch: int):
        super().__init__(f"stopped by signal {signum} at epoch {epoch}, batch {batch}/{steps_per_epoch}")
        self.signum, self.path, self.epoch, self.batch = signum, path, epoch, batch
        self.steps_per_epoch = steps_per_epoch


def _rng_states(device: torch.device) -> dict[str, Any]:
    states: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def _set_rng_states(states: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(states["torch"])
    if device.type == "cuda" and "cuda" in states:
        torch.cuda.set_rng_state(states["cuda"], device)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "invalid value 'cuda' for 'device': no CUDA GPU is visible here. "
            "Use --device cpu (or auto)."
        )
    return torch.device(name)


def resolve_precision(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``; None = plain fp32."""
    if name == "fp32" or (name == "auto" and device.type != "cuda"):
        return None
    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if name == "fp16" and device.type != "cuda":
        raise ConfigError("invalid value 'fp16' for 'precision' on the CPU: fp16 autocast needs a "
                          "CUDA GPU. Use --precision bf16 or fp32 on the CPU.")
    if name == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError("invalid value 'bf16' for 'precision': this GPU has no bf16 support. "
                          "Use --precision fp16 (or auto).")
    return torch.bfloat16 if name == "bf16" else torch.float16


def autocast(device: torch.device, dtype: torch.dtype | None):
    """Mixed-precision context for forward passes (a no-op for fp32)."""
    return nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def prepare_model(model: nn.Module, cfg: TrainConfig, device: torch.device) -> tuple[nn.Module, nn.Module]:
    """(model on ``device`` in its memory format, the callable to run it: compiled or the same)."""
    model = model.to(device)
    if cfg.channels_last and any(isinstance(m, nn.Conv2d) for m in model.modules()):
        model = model.to(memory_format=torch.channels_last)
    run = torch.compile(model) if cfg.compile else model
    return model, run


def set_determinism(cfg: TrainConfig) -> None:
    torch.manual_seed(cfg.seed)
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    else:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.benchmark = True


def make_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    params = model.parameters()
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(
        params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0,
        weight_decay=cfg.weight_decay,
    )


def make_scheduler(cfg: TrainConfig, opt: torch.optim.Optimizer, total_steps: int):
    """A per-batch LR schedule, or None."""
    if cfg.scheduler == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=cfg.lr, total_steps=total_steps, pct_start=0.25,
            cycle_momentum=cfg.optimizer == "sgd",
        )
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps)
    return None


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    split: Split,
    spec: DatasetSpec,
    batch_size: int,
    *,
    collect: bool = False,
    amp_dtype: torch.dtype | None = None,
    run: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> EvalResult:
    """Mean cross-entropy (no smoothing) and accuracy over ``split``; probs when ``collect``.

    ``run`` is the callable that applies the model (a compiled wrapper of it), ``amp_dtype`` the
    autocast dtype (None = fp32); the loss and softmax are always computed in fp32.
    """
    run = model if run is None else run
    was_training = model.training
    model.eval()
    device = split.images.device
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    probs = []
    for x, y in eval_batches(split, spec, batch_size):
        with autocast(device, amp_dtype):
            logits = run(x).float()
        loss_sum += nn.functional.cross_entropy(logits, y, reduction="sum").double()
        correct += (logits.argmax(1) == y).sum()
        if collect:
            probs.append(torch.softmax(logits, 1).cpu())
    model.train(was_training)
    n = len(split)
    return EvalResult(
        loss=float(loss_sum) / max(n, 1),
        accuracy=float(correct) / max(n, 1),
        n=n,
        labels=split.labels.cpu().numpy() if collect else None,
        probs=torch.cat(probs).numpy() if collect and probs else None,
    )


def _progress(total: int, epoch: int, epochs: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=f"epoch {epoch}/{epochs}", unit="batch", leave=False,
                file=sys.stderr, dynamic_ncols=True)


def train(
    cfg: TrainConfig,
    data: Data,
    tracker: EpochSink,
    *,
    checkpoint_dir: Path,
    progress: bool = False,
    log: Callable[[str], None] = lambda line: None,
    should_stop: Callable[[int, dict[str, float]], str] | None = None,
    after_epoch: Callable[[int, Callable[[Split], EvalResult]], str] | None = None,
    stop_signal: Callable[[], int] | None = None,
    resume: dict[str, Any] | None = None,
    run_info: Callable[[int], dict[str, Any]] | None = None,
) -> TrainResult:
    """Train ``cfg.model`` on ``data``; select by val accuracy; evaluate test once on the best.

    ``should_stop(epoch, metrics)`` is asked after every epoch (once its metrics and checkpoints
    are recorded); a non-empty answer ends training there (a sweep's early termination), and the
    best checkpoint so far is still evaluated on the test set.

    ``after_epoch(epoch, evaluate_split)`` is for measurement (the bench): called after each epoch,
    outside the timed part, with a function that evaluates the current weights on a split; a
    non-empty answer ends training like ``should_stop``.

    Preemption: ``stop_signal()`` is polled after every batch; a non-zero answer (the signal
    number) writes ``resume.pt`` (weights, optimizer, scheduler, grad scaler, RNG states, the
    position inside the epoch, history and best so far) and raises :class:`Preempted`.
    ``last.pt`` carries the same resume state at every epoch end, so even a killed run can
    continue from its last epoch. ``resume`` (the ``"resume"`` section of either file, with the
    file's ``state_dict``) continues such a run exactly where it stopped: with the same seed in
    deterministic mode the result equals an uninterrupted run. ``run_info`` (the tracker's run id,
    name, W&B step; called with the number of tracker calls still to come) is stored in the
    resume section for ``train --resume``.
    """
    device = data.train.images.device
    set_determinism(cfg)
    amp_dtype = resolve_precision(cfg.precision, device)
    margs = model_args(cfg.model, cfg.hidden_units, cfg.dropout, cfg.batch_norm,
                       tuple(data.train.images.shape[1:]), len(data.class_names))
    model, run = prepare_model(build_model(cfg.model, margs), cfg, device)
    n_params = count_parameters(model)
    opt = make_optimizer(cfg, model)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    steps_per_epoch = -(-len(data.train) // cfg.batch_size)
    sched = make_scheduler(cfg, opt, cfg.epochs * steps_per_epoch)
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    shuffle_gen = torch.Generator().manual_seed(cfg.seed + 1)
    best_path, last_path = checkpoint_dir / "best.pt", checkpoint_dir / "last.pt"
    resume_path = checkpoint_dir / "resume.pt"

    history: list[dict[str, float]] = []
    best: dict[str, float] = {}
    best_epoch = 0
    train_seconds = 0.0
    global_step = 0
    stopped_early = ""
    start_epoch, start_batch, partial = 1, 0, None
    if resume is not None:
        model.load_state_dict(resume["state_dict"])
        opt.load_state_dict(resume["optimizer"])
        if sched is not None and resume.get("scheduler") is not None:
            sched.load_state_dict(resume["scheduler"])
        scaler.load_state_dict(resume["scaler"])
        history = [dict(h) for h in resume["history"]]
        best, best_epoch = dict(resume["best"]), int(resume["best_epoch"])
        global_step, train_seconds = int(resume["global_step"]), float(resume["train_seconds"])
        start_epoch, start_batch, partial = int(resume["epoch"]), int(resume["batch"]), resume["partial"]
        shuffle_gen.set_state(resume["rng"]["epoch_start"])
        _set_rng_states(resume["rng"], device)
        log(f"resuming at epoch {start_epoch}, batch {start_batch}/{steps_per_epoch}")

    def resume_state(epoch: int, batch: int, epoch_start: torch.Tensor, sums: tuple, seconds: float,
                     logs_ahead: int = 0):
        """The ``"resume"`` section: continue at ``batch`` (batches done) of ``epoch``.

        ``logs_ahead``: tracker calls still to come for this state (the epoch's metrics, when
        last.pt is saved before they are logged), so a resumed W&B run continues after them.
        """
        return {
            "epoch": epoch, "batch": batch, "steps_per_epoch": steps_per_epoch,
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict() if sched is not None else None,
            "scaler": scaler.state_dict(),
            "rng": {**_rng_states(device), "epoch_start": epoch_start},
            "partial": {"loss_sum": sums[0].detach().cpu(), "correct": sums[1].detach().cpu(),
                        "seconds": seconds},
            "history": history, "best": best, "best_epoch": best_epoch,
            "global_step": global_step, "train_seconds": train_seconds,
            "run": run_info(logs_ahead) if run_info is not None else {},
        }

    for epoch in range(start_epoch, cfg.epochs + 1):
        model.train()
        first = start_batch if epoch == start_epoch else 0
        bar = _progress(steps_per_epoch, epoch, cfg.epochs, progress)
        if bar is not None and first:
            bar.update(first)
        epoch_start = shuffle_gen.get_state()  # the epoch's shuffling and augmentation draws
        start = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.int64)
        before = 0.0  # seconds of this epoch spent before a resume
        if first and partial is not None:
            loss_sum += partial["loss_sum"].to(device)
            correct += partial["correct"].to(device)
            before = float(partial["seconds"])
        batch = first
        for x, y in train_batches(data.train, data.spec, cfg.batch_size, shuffle_gen, cfg.augment,
                                  start_batch=first):
            with autocast(device, amp_dtype):
                logits = run(x)
                loss = criterion(logits.float(), y)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            if sched is not None:
                sched.step()
            # Accumulated on the device; read once per epoch (no per-batch host sync).
            loss_sum += loss.detach() * len(y)
            correct += (logits.detach().argmax(1) == y).sum()
            global_step += 1
            batch += 1
            if cfg.log_every and global_step % cfg.log_every == 0:  # opt-in: one host sync
                tracker.log_batch({"trainer/global_step": global_step, "batch/loss": loss.item(),
                                   "batch/lr": opt.param_groups[0]["lr"]})
            if bar is not None:
                bar.update()
            signum = stop_signal() if stop_signal is not None else 0
            if signum:
                if bar is not None:
                    bar.close()
                seconds = before + time.perf_counter() - start
                train_seconds += time.perf_counter() - start
                state = ckpt_io.make_checkpoint(model, cfg.model, margs, cfg, data.spec, epoch - 1,
                                                history[-1] if history else {})
                state["resume"] = resume_state(epoch, batch, epoch_start, (loss_sum, correct), seconds)
                ckpt_io.atomic_save(state, resume_path)
                raise Preempted(signum, resume_path, epoch, batch, steps_per_epoch)
        train_loss = float(loss_sum) / len(data.train)
        epoch_time = before + time.perf_counter() - start
        train_seconds += time.perf_counter() - start
        if bar is not None:
            bar.close()
        val = evaluate(model, data.val, data.spec, cfg.eval_batch_size, amp_dtype=amp_dtype, run=run)
        metrics = {
            "epoch": epoch,
            "train/loss": train_loss,
            "train/accuracy": float(correct) / len(data.train),
            "val/loss": val.loss,
            "val/accuracy": val.accuracy,
            "lr": opt.param_groups[0]["lr"],
            "perf/epoch_seconds": epoch_time,
            "perf/images_per_second": len(data.train) / epoch_time,
        }
        history.append(metrics)
        improved = not best or val.accuracy > best["val/accuracy"]
        if improved:
            best_epoch, best = epoch, {"val/accuracy": val.accuracy, "val/loss": val.loss}
        # Checkpoints first, then the report: an epoch the tracker has seen can be resumed.
        state = ckpt_io.make_checkpoint(model, cfg.model, margs, cfg, data.spec, epoch, metrics)
        if improved:
            ckpt_io.atomic_save(state, best_path)
        # last.pt: the latest weights, resumable at the start of the next epoch.
        zero = torch.zeros(())
        ckpt_io.atomic_save({**state, "resume": resume_state(
            epoch + 1, 0, shuffle_gen.get_state(), (zero, zero.long()), 0.0, logs_ahead=1)}, last_path)
        tracker.log_metrics(metrics, epoch)
        if improved:
            tracker.log_checkpoint(best_path, {**metrics, "model": cfg.model,
                                               "dataset": cfg.dataset, "n_params": n_params})
        log(
            f"epoch {epoch}/{cfg.epochs}  train loss {train_loss:.4f} acc {metrics['train/accuracy']:.4f}"
            f"  val loss {val.loss:.4f} acc {val.accuracy:.4f}  {epoch_time:.1f}s"
            f"  {metrics['perf/images_per_second']:.0f} img/s{'  *best' if improved else ''}"
        )
        reason = ""
        if after_epoch is not None:  # every epoch: the bench reads test accuracy after the last too
            reason = after_epoch(epoch, lambda split: evaluate(
                model, split, data.spec, cfg.eval_batch_size, amp_dtype=amp_dtype, run=run))
        if not reason and should_stop is not None and epoch < cfg.epochs:
            reason = should_stop(epoch, metrics)
        if reason and epoch < cfg.epochs:
            stopped_early = reason
            log(f"stopped after epoch {epoch}/{cfg.epochs}: {reason}")
            break
        signum = stop_signal() if stop_signal is not None and epoch < cfg.epochs else 0
        if signum:  # between epochs: last.pt is the resume point
            raise Preempted(signum, last_path, epoch + 1, 0, steps_per_epoch)

    best_state = ckpt_io.load_checkpoint(best_path)
    model.load_state_dict(best_state["state_dict"])
    model.eval()
    test = evaluate(model, data.test, data.spec, cfg.eval_batch_size, collect=True,
                    amp_dtype=amp_dtype, run=run)
    return TrainResult(
        model=model, model_name=cfg.model, model_args=margs, n_params=n_params, history=history,
        best_epoch=best_epoch, best=best, test=test, best_path=best_path, last_path=last_path,
        train_seconds=train_seconds, device=str(device), stopped_early=stopped_early,
        resumed_from=f"epoch {start_epoch}, batch {start_batch}" if resume is not None else "",
    )
