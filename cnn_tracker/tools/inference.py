"""Evaluate a checkpoint on a test set, and predict classes of image files."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnn_tracker.errors import UserError
from cnn_tracker.training.batches import normalize
from cnn_tracker.training.checkpoint import load_checkpoint, model_from_checkpoint
from cnn_tracker.training.data import IMAGE_SHAPE, Split, get_spec, load_split
from cnn_tracker.training.evaluation import evaluate
from cnn_tracker.training.reports import TestReport
from cnn_tracker.training.runtime import resolve_device


def load_for_inference(path: Path, device: str = "auto"):
    """(checkpoint dict, model on device, dataset spec with the checkpoint's normalization)."""
    ckpt = load_checkpoint(path)
    model = model_from_checkpoint(ckpt, path).to(resolve_device(device))
    spec = dataclasses.replace(
        get_spec(ckpt["dataset"]),
        mean=float(ckpt["normalization"]["mean"]),
        std=float(ckpt["normalization"]["std"]),
        class_names=tuple(ckpt["class_names"]),
    )
    return ckpt, model, spec


def evaluate_checkpoint(
    path: Path, data_dir: Path, dataset: str | None = None, device: str = "auto",
    batch_size: int | None = None,
) -> tuple[dict[str, Any], TestReport]:
    """Test-set report of the checkpoint at ``path`` (on its own dataset unless ``dataset``)."""
    ckpt, model, spec = load_for_inference(path, device)
    data_spec = get_spec(dataset or ckpt["dataset"])
    if len(data_spec.class_names) != len(spec.class_names):
        raise UserError(f"checkpoint '{path}' has {len(spec.class_names)} classes but "
                        f"{data_spec.name} has {len(data_spec.class_names)}.")
    images, labels = load_split(data_spec, data_dir, train=False)
    dev = next(model.parameters()).device
    split = Split(images, labels).to(dev)
    bs = batch_size or int(ckpt["config"].get("eval_batch_size", 1000))
    result = evaluate(model, split, spec, bs, collect=True)
    names = list(data_spec.class_names)
    report = TestReport(names, result.labels, result.probs, images[:, 0].numpy(),
                        result.loss, result.accuracy)
    return ckpt, report


def load_image(path: Path, spec) -> torch.Tensor:
    """An image file as the dataset shows images: uint8 [1, 28, 28], light object on black.

    Any size or mode: transparency goes onto white, a light background is inverted, the object is
    cropped to its bounding box, scaled to fit (20 px box for digits like MNIST, 28 px for
    clothes) and centred. A 28x28 image with a dark background is used as it is.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
    except FileNotFoundError:
        raise UserError(f"image '{path}' does not exist: check the path.") from None
    except IsADirectoryError:
        raise UserError(f"'{path}' is a folder, not an image file.") from None
    except PermissionError:
        raise UserError(f"image '{path}' cannot be read (permission denied): check the file's "
                        "permissions, or copy it somewhere readable.") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise UserError(f"'{path}' is not a readable image ({type(exc).__name__}): "
                        "pass a PNG, JPEG, BMP or other image file.") from None
    if img.mode in ("RGBA", "LA", "P"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    gray = np.asarray(img.convert("L"), dtype=np.float32)
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if np.median(border) > 127:
        gray = 255.0 - gray
    h, w = IMAGE_SHAPE[1:]
    if gray.shape == (h, w):
        out = gray
    else:
        mask = gray > 0.25 * gray.max() if gray.max() > 0 else np.zeros_like(gray, bool)
        if mask.any():
            rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
            gray = gray[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        box = 20 if spec.name == "mnist" else 28
        scale = box / max(gray.shape)
        size = (max(1, round(gray.shape[1] * scale)), max(1, round(gray.shape[0] * scale)))
        small = np.asarray(
            Image.fromarray(gray.clip(0, 255).astype(np.uint8)).resize(size, Image.LANCZOS),
            dtype=np.float32,
        )
        out = np.zeros((h, w), np.float32)
        top, left = (h - small.shape[0]) // 2, (w - small.shape[1]) // 2
        out[top : top + small.shape[0], left : left + small.shape[1]] = small
    return torch.from_numpy(out.clip(0, 255).round().astype(np.uint8))[None]


@torch.inference_mode()
def predict_files(path: Path, images: list[Path], top_k: int, device: str = "auto") -> list[dict]:
    ckpt, model, spec = load_for_inference(path, device)
    k = min(top_k, len(spec.class_names))
    dev = next(model.parameters()).device
    batch = torch.stack([load_image(Path(p), spec) for p in images]).to(dev)
    probs = torch.softmax(model(normalize(batch, spec)).float(), 1).cpu()
    out = []
    for p, row in zip(images, probs):
        top = torch.topk(row, k)
        out.append({
            "image": str(p),
            "predicted": spec.class_names[int(top.indices[0])],
            "top": [{"class": spec.class_names[int(i)], "probability": float(v)}
                    for v, i in zip(top.values, top.indices)],
        })
    return out
