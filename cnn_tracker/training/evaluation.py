"""Loss and accuracy of a model over a split, in pure torch (no tracking)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from cnn_tracker.training.batches import eval_batches
from cnn_tracker.training.data import DatasetSpec, Split
from cnn_tracker.training.runtime import autocast


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

