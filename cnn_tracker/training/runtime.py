"""What a run is built from, besides data and model: the device, the precision (autocast),
determinism, the prepared (channels-last, compiled) model, the optimizer, the LR schedule and the
weights' moving average.

``resolve_device`` and ``resolve_precision`` are called once per run by its caller (the runner's
plan, the bench); the loop receives their answers.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from cnn_tracker import env
from cnn_tracker.config import TrainConfig
from cnn_tracker.errors import ConfigError


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
        env.set_default(env.CUBLAS_WORKSPACE_VAR, ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    else:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.benchmark = True


def make_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """The config's optimizer; Adam and AdamW use torch's fused kernel (one kernel per step for
    all parameters) where this torch has one for the device, else its default."""
    params = list(model.parameters())
    if cfg.optimizer in ("adam", "adamw"):
        cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
        try:
            return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
        except (RuntimeError, TypeError, ValueError):  # torch < 2.4 on the CPU, or no fused kernel
            return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(
        params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0,
        weight_decay=cfg.weight_decay,
    )


def load_optimizer_state(opt: torch.optim.Optimizer, saved: dict[str, Any]) -> None:
    """``opt.load_state_dict(saved)``, keeping the kernel this process chose (``fused`` /
    ``foreach``): the saved groups carry the saving machine's, which this one may lack."""
    kernels = [{k: g.get(k) for k in ("fused", "foreach")} for g in opt.param_groups]
    opt.load_state_dict(saved)
    for group, kept in zip(opt.param_groups, kernels):
        group.update(kept)


def _debiased_ema(decay: float):
    """AveragedModel's ``multi_avg_fn`` for a bias-corrected exponential moving average (Adam's
    correction of its moments): after t updates the average is ``sum(decay**(t-i) * w_i) /
    sum(decay**(t-i))`` over the weights w_1..w_t seen, so early epochs are not pulled toward the
    initial weights (plain EMA at 0.999 still holds 65% of them after 430 steps). As one update:
    ``avg = d * avg + (1 - d) * w`` with ``d = decay * (1 - decay**n) / (1 - decay**(n + 1))``
    after n updates; d tends to ``decay``. Tensor arithmetic only: no host sync on a GPU.
    Integer buffers (BatchNorm's batch count) take the model's value."""

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor],
               n_averaged: torch.Tensor) -> None:
        if not averaged[0].is_floating_point():
            for avg, now in zip(averaged, current):
                avg.copy_(now)
            return
        n = n_averaged.to(averaged[0].dtype)
        d = decay * (1 - decay ** n) / (1 - decay ** (n + 1))
        torch._foreach_mul_(averaged, d)
        torch._foreach_add_(averaged, torch._foreach_mul(current, 1 - d))

    return update


def make_averaged(cfg: TrainConfig, model: nn.Module) -> AveragedModel | None:
    """The moving average of ``model``'s weights and buffers (BatchNorm statistics) with decay
    ``cfg.ema``, or None when it is off: torch's AveragedModel (a copy of the model, equal to it
    after the first ``update_parameters(model)``) with the bias-corrected rule of
    :func:`_debiased_ema`."""
    if not cfg.ema:
        return None
    return AveragedModel(model, multi_avg_fn=_debiased_ema(cfg.ema), use_buffers=True)


def make_scheduler(cfg: TrainConfig, opt: torch.optim.Optimizer, total_steps: int):
    """A per-batch LR schedule, or None."""
    if cfg.scheduler == "onecycle":
        # torch's OneCycleLR divides by zero when pct_start * total_steps == 1 (4 steps in all)
        return torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=cfg.lr, total_steps=total_steps, pct_start=0.25 if total_steps != 4 else 0.3,
            cycle_momentum=cfg.optimizer == "sgd",
        )
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps)
    return None

