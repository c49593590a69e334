"""Batches from split tensors: a permutation per epoch, normalizing on the fly, augmentation
(shifts, flips) as one batched gather, rotations and zooms as one batched ``grid_sample``. No
per-sample PIL transform, no DataLoader workers.

Randomness (shuffling, augmentation) comes from a CPU generator seeded by the config, so the same
seed gives the same batches on every device.
"""

from __future__ import annotations

from typing import Iterator

import torch

from cnn_tracker.training.data import MAX_SHIFT, DatasetSpec, Split


def normalize(images: torch.Tensor, spec: DatasetSpec) -> torch.Tensor:
    """uint8 ``[B, 1, 28, 28]`` -> float32 standardized with the dataset's mean and std."""
    return (images.float() * (1.0 / 255.0) - spec.mean) * (1.0 / spec.std)


def augment_batch(
    images: torch.Tensor, shifts: torch.Tensor, flips: torch.Tensor | None
) -> torch.Tensor:
    """Shift each image by ``shifts[i] = (dy, dx)`` px (zero fill) and mirror it where ``flips``.

    One gather over a zero-padded batch; ``shifts`` in [-MAX_SHIFT, MAX_SHIFT].
    """
    b, _, h, w = images.shape
    padded = torch.nn.functional.pad(images, (MAX_SHIFT,) * 4)
    rows = torch.arange(h, device=images.device)
    cols = torch.arange(w, device=images.device)
    row_idx = rows[None, :] + (shifts[:, 0:1] + MAX_SHIFT)  # [B, h]
    col_src = cols.expand(b, w)
    if flips is not None:
        col_src = torch.where(flips[:, None], (w - 1) - cols, cols)
    col_idx = col_src + (shifts[:, 1:2] + MAX_SHIFT)  # [B, w]
    batch_idx = torch.arange(b, device=images.device)[:, None, None]
    out = padded[batch_idx, 0, row_idx[:, :, None], col_idx[:, None, :]]
    return out.unsqueeze(1)


def warp_batch(images: torch.Tensor, degrees: torch.Tensor | None,
               zooms: torch.Tensor | None = None) -> torch.Tensor:
    """Rotate each image of a float ``[B, 1, H, W]`` batch by ``degrees[i]`` (counter-clockwise as
    displayed) and scale it by ``zooms[i]`` (> 1 enlarges), both about its centre, in one bilinear
    resampling with zero fill (the background of both datasets). ``None`` = 0 degrees / 1x."""
    ones = torch.ones(len(images), dtype=images.dtype, device=images.device)
    theta = torch.zeros_like(ones) if degrees is None else degrees.to(images.dtype) * (torch.pi / 180.0)
    inv_zoom = ones if zooms is None else 1 / zooms.to(images.dtype)
    cos, sin = torch.cos(theta) * inv_zoom, torch.sin(theta) * inv_zoom
    zero = torch.zeros_like(cos)
    # affine_grid maps output to input coordinates (x right, y down): the inverse transform.
    matrix = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = torch.nn.functional.affine_grid(matrix, list(images.shape), align_corners=False)
    return torch.nn.functional.grid_sample(images, grid, mode="bilinear", padding_mode="zeros",
                                           align_corners=False)


class EpochPlan:
    """Shuffling and augmentation draws for one epoch, made on the CPU then moved once.

    The draws come in a fixed order (order, shifts, flips, angles, zooms), each only when used, so
    a run without rotations or zooms draws exactly what it drew before those keys existed."""

    def __init__(self, n: int, generator: torch.Generator, augment: bool, hflip: bool, device,
                 rotate: float = 0.0, zoom: float = 0.0):
        self.order = torch.randperm(n, generator=generator).to(device, non_blocking=True)
        self.shifts = self.flips = self.angles = self.zooms = None
        if augment:
            shifts = torch.randint(-MAX_SHIFT, MAX_SHIFT + 1, (n, 2), generator=generator)
            self.shifts = shifts.to(device, non_blocking=True)
            if hflip:
                flips = torch.rand(n, generator=generator) < 0.5
                self.flips = flips.to(device, non_blocking=True)
        if rotate > 0:
            angles = (torch.rand(n, generator=generator) * 2 - 1) * rotate
            self.angles = angles.to(device, non_blocking=True)
        if zoom > 0:
            zooms = 1 + (torch.rand(n, generator=generator) * 2 - 1) * zoom
            self.zooms = zooms.to(device, non_blocking=True)


def train_batches(
    split: Split,
    spec: DatasetSpec,
    batch_size: int,
    generator: torch.Generator,
    augment: bool,
    start_batch: int = 0,
    rotate: float = 0.0,
    zoom: float = 0.0,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Shuffled, (augmented, rotated, zoomed,) normalized batches; the last partial batch is kept.

    The whole epoch's draws are made first, so ``start_batch`` (a resumed epoch) skips batches
    without changing the ones that follow.
    """
    plan = EpochPlan(len(split), generator, augment, spec.hflip, split.images.device, rotate, zoom)
    for start in range(start_batch * batch_size, len(split), batch_size):
        idx = plan.order[start : start + batch_size]
        images = split.images[idx]
        if plan.shifts is not None:
            images = augment_batch(images, plan.shifts[start : start + batch_size],
                                   _part(plan.flips, start, batch_size))
        if plan.angles is not None or plan.zooms is not None:  # on raw pixels: zero = background
            images = warp_batch(images.float(), _part(plan.angles, start, batch_size),
                                _part(plan.zooms, start, batch_size))
        yield normalize(images, spec), split.labels[idx]


def _part(draws: torch.Tensor | None, start: int, size: int) -> torch.Tensor | None:
    """One batch's slice of an epoch's draws, or None where that draw is not made."""
    return None if draws is None else draws[start : start + size]


def eval_batches(
    split: Split, spec: DatasetSpec, batch_size: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches in dataset order, normalized, no augmentation."""
    for start in range(0, len(split), batch_size):
        yield (
            normalize(split.images[start : start + batch_size], spec),
            split.labels[start : start + batch_size],
        )
