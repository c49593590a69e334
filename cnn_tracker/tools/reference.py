"""The reference loop the bench compares against: torchvision dataset + DataLoader +
per-sample ToTensor/Normalize, Adam 1e-3, a ``loss.item()`` per batch, on a reference project's
model: TinyVGG-10 at batch 32 for MNIST (the MLP-vs-TinyVGG tutorial's loop), FashionCNN at
batch 128 for Fashion-MNIST (the 92.69% Fashion-MNIST project's loop; that project does not state
its dense width, and 256 is the width measured to reach 92.64% in this loop).

Written here (not copied from the reference projects) so both sides run in one process on the same machine.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnn_tracker.recipes import Reference
from cnn_tracker.training.data import DatasetSpec, tv_class
from cnn_tracker.training.models import build_model, model_args


def _reference_loaders(spec: DatasetSpec, root: Path, batch_size: int, seed: int):
    """torchvision datasets with per-sample ToTensor + Normalize, as the reference projects load them."""
    from torch.utils.data import DataLoader
    from torchvision import transforms

    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((spec.mean,), (spec.std,))])
    cls = tv_class(spec)
    train_set = cls(str(root), train=True, transform=tf)
    test_set = cls(str(root), train=False, transform=tf)
    gen = torch.Generator().manual_seed(seed)
    return (DataLoader(train_set, batch_size=batch_size, shuffle=True, generator=gen),
            DataLoader(test_set, batch_size=1000))


def _reference_model(ref: Reference, device: torch.device, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(ref.model, model_args(ref.model, ref.hidden_units, None)).to(device)


def _reference_epoch(model, loader, opt, device, max_images: int | None = None) -> tuple[float, int]:
    """One reference pass (or its first ``max_images``): (seconds, images)."""
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    seen, train_loss, train_correct = 0, 0.0, 0
    start = time.perf_counter()
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        logits = model(x)
        loss = loss_fn(logits, y)
        train_loss += loss.item()  # the reference projects' per-batch bookkeeping (a host sync per batch)
        train_correct += (logits.argmax(1) == y).sum().item()
        opt.zero_grad()
        loss.backward()
        opt.step()
        seen += len(y)
        if max_images is not None and seen >= max_images:
            break
    return time.perf_counter() - start, seen


@torch.inference_mode()
def _reference_test(model, loader, device) -> float:
    model.eval()
    correct = total = 0
    for x, y in loader:
        correct += (model(x.to(device)).argmax(1) == y.to(device)).sum().item()
        total += len(y)
    return correct / max(total, 1)


def reference_throughput(ref: Reference, spec: DatasetSpec, root: Path, device: torch.device,
                         n_images: int, seed: int = 0) -> float:
    train_loader, _ = _reference_loaders(spec, root, ref.batch_size, seed)
    model = _reference_model(ref, device, seed)
    opt = torch.optim.Adam(model.parameters(), lr=ref.lr)
    seconds, seen = _reference_epoch(model, train_loader, opt, device, max_images=n_images)
    return seen / seconds


def reference_time_to_target(ref: Reference, spec: DatasetSpec, root: Path, device: torch.device,
                             target: float, budget: float, max_epochs: int) -> dict[str, Any]:
    train_loader, test_loader = _reference_loaders(spec, root, ref.batch_size, seed=0)
    model = _reference_model(ref, device, seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=ref.lr)
    elapsed, by_epoch, images = 0.0, [], 0
    while len(by_epoch) < max_epochs and elapsed < budget:
        seconds, seen = _reference_epoch(model, train_loader, opt, device)
        elapsed += seconds
        images += seen
        by_epoch.append(_reference_test(model, test_loader, device))
        if by_epoch[-1] >= target:
            break
    return {
        "reached": bool(by_epoch) and by_epoch[-1] >= target,
        "epochs": len(by_epoch),
        "seconds": elapsed,
        "test_accuracy_by_epoch": [round(a, 4) for a in by_epoch],
        "images_per_second": images / elapsed if elapsed else float("nan"),
        "budget_seconds": budget,
        "max_epochs": max_epochs,
    }
