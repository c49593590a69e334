"""Evaluate a checkpoint on a test set, and predict classes of image files."""

from __future__ import annotations

import dataclasses
import re
import struct
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnn_tracker.config import TrainConfig
from cnn_tracker.errors import UserError
from cnn_tracker.training.batches import normalize
from cnn_tracker.training.checkpoint import load_checkpoint, model_from_checkpoint
from cnn_tracker.training.data import IMAGE_SHAPE, Split, get_spec, load_split
from cnn_tracker.training.evaluation import evaluate
from cnn_tracker.training.models import with_tta
from cnn_tracker.training.reports import TestReport
from cnn_tracker.training.runtime import resolve_device


def load_for_inference(path: Path, device: str = "auto"):
    """(checkpoint dict, model on device, dataset spec with the checkpoint's normalization).

    The model is evaluated as in training: with test-time flips when its config has ``tta``.
    """
    ckpt = load_checkpoint(path)
    model = model_from_checkpoint(ckpt, path).to(resolve_device(device))
    saved = ckpt["config"]
    model = with_tta(model, saved.get("tta"), bool(saved.get("augment")),
                     get_spec(ckpt["dataset"]).hflip).eval()
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
    result = evaluate(model, split, spec, eval_batch_size(ckpt, batch_size), collect=True)
    names = list(data_spec.class_names)
    report = TestReport(names, result.labels, result.probs, images[:, 0].numpy(),
                        result.loss, result.accuracy)
    return ckpt, report


def eval_batch_size(ckpt: dict[str, Any], override: int | None = None) -> int:
    """Images per evaluation forward pass: ``override``, else the checkpoint's own setting."""
    return override or int(ckpt["config"].get("eval_batch_size", TrainConfig.eval_batch_size))


MAX_PIXELS = 50_000_000  # an image may have at most this many pixels (a 50-megapixel photo)


def load_image(path: Path, spec) -> torch.Tensor:
    """An image file as the dataset shows images: uint8 [1, 28, 28], light object on black.

    Any size or mode PIL reads, prepared as the dataset itself was made (see
    :func:`dataset_image`). A 28x28 image is used as it is (inverted if its background is light).
    Its size is checked from the header before any pixel is decoded (a decompression bomb).
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():  # PIL's notes on odd files (bomb sizes, TIFF tags)
            warnings.simplefilter("ignore")
            gray = grayscale(Path(path), Image)
    except FileNotFoundError:
        raise UserError(f"image '{path}' does not exist: check the path.") from None
    except IsADirectoryError:
        raise UserError(f"'{path}' is a folder, not an image file.") from None
    except PermissionError:
        raise UserError(f"image '{path}' cannot be read (permission denied): check the file's "
                        "permissions, or copy it somewhere readable.") from None
    except Image.DecompressionBombError as exc:  # PIL's own limit, checked while it opens
        claimed = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(claimed.group(1)):,}" if claimed else f"more than {MAX_PIXELS:,}"
        raise UserError(f"image '{path}' claims {size} pixels: at most {MAX_PIXELS:,} are read (a "
                        "decompression bomb?); pass a smaller image.") from None
    except UnidentifiedImageError:
        raise UserError(f"'{path}' is not a readable image (UnidentifiedImageError): "
                        "pass a PNG, JPEG, BMP or other image file.") from None
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError, KeyError,
            struct.error) as exc:  # what PIL's decoders raise on damaged data
        what = "is truncated" if "truncated" in str(exc) else f"cannot be decoded ({type(exc).__name__})"
        raise UserError(f"image '{path}' {what}: pass a complete PNG, JPEG, BMP or other image "
                        "file (re-export or re-download it).") from None
    return torch.from_numpy(dataset_image(gray, digits=spec.name == "mnist"))[None]


def grayscale(path: Path, Image) -> np.ndarray:
    """The image's pixels as float32 gray 0-255: its size checked before decoding, any mode,
    the EXIF orientation applied, transparency over white."""
    from PIL import ImageOps

    with Image.open(path) as img:
        width, height = img.size
        if width * height > MAX_PIXELS or width < 1 or height < 1:
            raise UserError(f"image '{path}' is {width}x{height} pixels: at most {MAX_PIXELS:,} "
                            "are read (a decompression bomb?); pass a smaller image.")
        img.load()
        img = ImageOps.exif_transpose(img)
        if img.mode not in ("L", "RGB", "RGBA", "LA", "P", "1"):
            img = img.convert("RGBA" if "A" in img.mode else "RGB") if img.mode in (
                "PA", "RGBa", "La", "CMYK", "YCbCr", "RGBX") else _as_gray(img, Image)
        if img.mode in ("RGBA", "LA", "P"):
            rgba = img.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            img = Image.alpha_composite(background, rgba)
        return np.asarray(img.convert("L"), dtype=np.float32)


def _as_gray(img, Image):
    """Modes without a direct conversion to L (I;16, I, F, LAB, HSV, ...): scaled to 0-255."""
    try:
        return img.convert("L") if img.mode in ("LAB", "HSV") else Image.fromarray(
            _to_uint8(np.asarray(img, dtype=np.float64)), "L")
    except (ValueError, TypeError):
        return img.convert("RGB")


def _to_uint8(values: np.ndarray) -> np.ndarray:
    if values.ndim == 3:
        values = values.mean(axis=2)
    finite = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = float(finite.min()), float(finite.max())
    scaled = (finite - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(finite)
    return scaled.round().astype(np.uint8)


# Preprocessing at a working size: photos are shrunk to this longer side (px) first.
_WORK_SIDE = 160
_INK = 0.35  # a pixel is ink above this fraction of the brightest (blurred) ink


def dataset_image(gray: np.ndarray, digits: bool) -> np.ndarray:
    """A grayscale picture (0-255, any size) as a uint8 28x28 dataset image.

    MNIST (``digits``): light background inverted (decided by the border's median), background
    subtracted (a grey opening wider than any pen stroke, so shadows and gradients are not ink),
    cropped to the ink's bounding box, longer side scaled to 20 px, centred by centre of mass.
    Fashion-MNIST: the same, but the background is the plane through the border, and the object
    is fitted to 28 px and centred by its box (its objects fill the frame).
    """
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if np.median(border) > 127:
        gray = 255.0 - gray
    h, w = IMAGE_SHAPE[1:]
    if gray.shape == (h, w):
        return gray.clip(0, 255).round().astype(np.uint8)
    ink = _foreground(_shrink(gray, _WORK_SIDE), digits)
    if ink is None:  # nothing stands out from the background
        return np.zeros((h, w), np.uint8)
    small = _fit(ink, 20 if digits else 28)
    return _place(small, (h, w), by_mass=digits).clip(0, 255).round().astype(np.uint8)


def _shrink(gray: np.ndarray, side: int) -> np.ndarray:
    from PIL import Image

    scale = side / max(gray.shape)
    if scale >= 1:
        return gray
    size = (max(1, round(gray.shape[1] * scale)), max(1, round(gray.shape[0] * scale)))
    return np.asarray(Image.fromarray(gray.astype(np.float32), "F").resize(size, Image.BOX))


def _foreground(work: np.ndarray, digits: bool) -> np.ndarray | None:
    """The object cropped to its box, background 0 and ink stretched to 255; None if blank."""
    from scipy import ndimage  # scipy comes with scikit-learn

    side = max(work.shape)
    smooth = ndimage.gaussian_filter(work, sigma=max(0.6, side / 160))
    if digits:  # strokes are < 1/4 of the digit: an opening that wide leaves the background
        size = max(3, side // 4)
        background = ndimage.grey_opening(smooth, size=(size, size))
    else:
        background = _border_plane(smooth)
    fg = (smooth - background).clip(0, None)
    peak = float(fg.max())
    if peak < 12:  # under ~5% contrast: noise, not an object
        return None
    mask = fg > _INK * peak
    labels, n = ndimage.label(mask)
    sizes = ndimage.sum(mask, labels, range(1, n + 1))
    keep = np.isin(labels, 1 + np.flatnonzero(sizes >= 0.05 * sizes.max()))  # drop specks
    rows, cols = np.flatnonzero(keep.any(1)), np.flatnonzero(keep.any(0))
    near = ndimage.binary_dilation(keep, iterations=max(1, side // 60))
    source = np.where(near, fg, 0.0) if digits else fg  # clothes: keep their faint parts
    ink = source[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    if digits:  # MNIST strokes are saturated: stretch the stroke core to 255
        return (ink / (0.8 * peak) * 255).clip(0, 255)
    return (ink / peak * 255).clip(0, 255)


def _border_plane(img: np.ndarray) -> np.ndarray:
    """The least-squares plane a + b*y + c*x through the border pixels (an uneven background)."""
    h, w = img.shape
    yy, xx = np.mgrid[0:h, 0:w]
    edge = np.zeros((h, w), bool)
    edge[[0, -1], :] = edge[:, [0, -1]] = True
    design = np.stack([np.ones(edge.sum()), yy[edge], xx[edge]], 1)
    coef, *_ = np.linalg.lstsq(design, img[edge], rcond=None)
    return coef[0] + coef[1] * yy + coef[2] * xx


def _fit(ink: np.ndarray, box: int) -> np.ndarray:
    """``ink`` resized (antialiased) so its longer side is ``box`` px, keeping the aspect ratio."""
    from PIL import Image

    scale = box / max(ink.shape)
    size = (max(1, round(ink.shape[1] * scale)), max(1, round(ink.shape[0] * scale)))
    return np.asarray(Image.fromarray(ink.astype(np.float32), "F").resize(size, Image.LANCZOS))


def _place(small: np.ndarray, shape: tuple[int, int], by_mass: bool) -> np.ndarray:
    """``small`` in a black frame of ``shape``: its centre of mass (or box) at the centre."""
    h, w = shape
    sh, sw = small.shape
    if by_mass and small.sum() > 0:
        yy, xx = np.mgrid[0:sh, 0:sw]
        cy, cx = (yy * small).sum() / small.sum(), (xx * small).sum() / small.sum()
        top, left = round((h - 1) / 2 - cy), round((w - 1) / 2 - cx)
    else:
        top, left = (h - sh) // 2, (w - sw) // 2
    top, left = min(max(top, 0), h - sh), min(max(left, 0), w - sw)  # never cut the object
    out = np.zeros(shape, np.float32)
    out[top : top + sh, left : left + sw] = small.clip(0, None)
    return out


@torch.inference_mode()
def predict_files(path: Path, images: list[Path], top_k: int, device: str = "auto",
                  show_dir: Path | None = None) -> list[dict]:
    """Top-k classes of each image; with ``show_dir``, a PNG per image of the 28x28 input the
    model saw next to its prediction (its path under ``"shown"``)."""
    from cnn_tracker.training.reports import plot_input

    ckpt, model, spec = load_for_inference(path, device)
    k = min(top_k, len(spec.class_names))
    dev = next(model.parameters()).device
    inputs = torch.stack([load_image(Path(p), spec) for p in images])
    probs = torch.softmax(model(normalize(inputs.to(dev), spec)).float(), 1).cpu()
    out = []
    for n, (p, row) in enumerate(zip(images, probs)):
        top = torch.topk(row, k)
        out.append({
            "image": str(p),
            "predicted": spec.class_names[int(top.indices[0])],
            "top": [{"class": spec.class_names[int(i)], "probability": float(v)}
                    for v, i in zip(top.values, top.indices)],
        })
        if show_dir is not None:
            shown = Path(show_dir) / f"{n:03d}-{Path(p).stem}.png"
            out[-1]["shown"] = str(plot_input(inputs[n, 0].numpy(), out[-1], shown))
    return out
