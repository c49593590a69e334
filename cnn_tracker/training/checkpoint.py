"""Self-describing checkpoints: everything needed to rebuild, normalize and label, in one file.

A checkpoint is a plain dict of tensors, numbers, strings and lists, so it loads with
``torch.load(..., weights_only=True)``, which refuses pickled code. Files are written to a temp
name and renamed, so a crash never leaves a half-written checkpoint under the real name.
"""

from __future__ import annotations

import io
import math
import os
import pickle
import platform
import struct
import warnings
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnn_tracker.config import TrainConfig, make_config
from cnn_tracker.errors import CheckpointError, UserError, first_line
from cnn_tracker.files import atomic_write
from cnn_tracker.inputs import clip
from cnn_tracker.training.data import IMAGE_SHAPE, SPECS, DatasetSpec
from cnn_tracker.training.models import REGISTRY, build_model

FORMAT = "cnn-tracker-checkpoint/1"
REQUIRED = ("format", "model", "model_args", "state_dict", "config", "dataset", "class_names",
            "normalization")
MAX_CLASSES = 1000  # outputs a checkpoint's model may have (the datasets have 10)
MAX_CLASS_NAME = 100  # characters of one class name
MAX_TENSORS = 1000  # entries of a state_dict (the seed models have at most 26)


def library_versions() -> dict[str, str]:
    import torchvision

    from cnn_tracker import __version__

    return {
        "cnn_tracker": __version__,
        "torch": str(torch.__version__),
        "torchvision": str(torchvision.__version__),
        "python": platform.python_version(),
    }


def make_checkpoint(
    model: nn.Module,
    model_name: str,
    model_args: dict[str, Any],
    cfg: TrainConfig,
    spec: DatasetSpec,
    epoch: int,
    metrics: dict[str, float],
) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "model": model_name,
        "model_args": dict(model_args),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "config": asdict(cfg),
        "dataset": spec.name,
        "class_names": list(spec.class_names),
        "normalization": {"mean": spec.mean, "std": spec.std},
        "epoch": epoch,
        "metrics": {k: float(v) for k, v in metrics.items()},
        "versions": library_versions(),
    }


def atomic_save(obj: Any, path: Path) -> Path:
    """``torch.save`` to ``path`` whole or not at all (serialized in memory, then
    :func:`cnn_tracker.files.atomic_write`), so a failed write raises the OS error itself."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write(path, buffer.getbuffer())


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check a checkpoint file; only tensors and plain data are accepted."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint '{p}' does not exist: check the path.")
    if p.is_dir():
        raise CheckpointError(f"checkpoint '{p}' is a folder: give the .pt file inside it.")
    try:
        with warnings.catch_warnings():  # torch's notes on odd pickles: the checks below decide
            warnings.simplefilter("ignore")
            ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch names weights_only in every unpickling error; only this one means pickled code.
        if "Unsupported global" in str(exc):
            raise CheckpointError(
                f"checkpoint '{p}' contains pickled code or objects, which are refused for safety "
                "(loaded with weights_only=True). Only load files from sources you trust, and "
                "re-save them as a cnn-tracker checkpoint."
            ) from None
        # (torch's own text here suggests weights_only=False: exactly what must not be done.)
        raise CheckpointError(
            f"checkpoint '{p}' is corrupted, truncated or not a PyTorch file (it does not unpickle "
            "as tensors and plain data): use another copy (e.g. re-download the W&B artifact)."
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError, IndexError,
            TypeError, AttributeError, AssertionError, OverflowError, RecursionError,
            struct.error) as exc:  # what torch's weights-only unpickler raises on damaged bytes
        raise CheckpointError(
            f"checkpoint '{p}' is corrupted, truncated or not a PyTorch file ({first_line(exc)}): "
            "use another copy (e.g. re-download the W&B artifact)."
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(
            f"'{p}' is not a cnn-tracker checkpoint (no '{FORMAT}' format tag): "
            "pass a best.pt/last.pt written by `cnn-tracker train`."
        )
    missing = [k for k in REQUIRED if k not in ckpt]
    if missing:
        raise CheckpointError(f"checkpoint '{p}' lacks {', '.join(missing)}: it is incomplete.")
    problem = contents_problem(ckpt)
    if problem:
        raise CheckpointError(f"checkpoint '{p}' is not a valid cnn-tracker checkpoint: {problem}. "
                              "The file was edited or damaged: use another copy.")
    return ckpt


def _is_int(value: Any, lo: int, hi: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _args_problem(args: Any) -> str | None:
    """What is wrong with a checkpoint's ``model_args`` (types and ranges), or None."""
    keys = ("in_shape", "num_classes", "hidden_units", "dropout", "batch_norm")
    if not isinstance(args, dict) or set(args) != set(keys):
        shown = sorted(map(str, args)) if isinstance(args, dict) else type(args).__name__
        return f"'model_args' is {clip(shown)}, not a mapping of {', '.join(keys)}"
    checks = {
        "in_shape": (lambda v: isinstance(v, (list, tuple)) and list(v) == list(IMAGE_SHAPE),
                     f"{list(IMAGE_SHAPE)} (the datasets' images)"),
        "num_classes": (lambda v: _is_int(v, 1, MAX_CLASSES), f"an integer from 1 to {MAX_CLASSES}"),
        "hidden_units": (lambda v: _is_int(v, 1, 4096), "an integer from 1 to 4096"),
        "dropout": (lambda v: _is_number(v) and 0 <= v < 1, "a number >= 0 and < 1"),
        "batch_norm": (lambda v: isinstance(v, bool), "true or false"),
    }
    for key, (ok, expected) in checks.items():
        if not ok(args[key]):
            return f"'model_args.{key}' is {clip(args[key])}, not {expected}"
    return None


def _weights_problem(state: Any) -> str | None:
    if not isinstance(state, dict) or len(state) > MAX_TENSORS:
        return f"'state_dict' is not a mapping of at most {MAX_TENSORS} names to tensors"
    for key, value in state.items():
        if not isinstance(key, str):
            return f"'state_dict' has a key {clip(key)} that is not a string"
        if (not isinstance(value, torch.Tensor) or value.layout != torch.strided
                or value.is_quantized or value.device.type != "cpu"):
            return f"'state_dict.{clip(key, quote=False)}' is not a dense CPU tensor"
    return None


def contents_problem(ckpt: dict[str, Any]) -> str | None:
    """The first field of ``ckpt`` that is not what ``make_checkpoint`` writes, or None.

    Checked before any model is built or tensor allocated: types, ranges, class count = outputs.
    """
    model = ckpt["model"]
    if not isinstance(model, str) or model not in REGISTRY:
        return f"'model' is {clip(model)}, not one of {', '.join(REGISTRY)}"
    problem = _args_problem(ckpt["model_args"]) or _weights_problem(ckpt["state_dict"])
    if problem:
        return problem
    names, n = ckpt["class_names"], ckpt["model_args"]["num_classes"]
    if not isinstance(names, (list, tuple)) or not all(
            isinstance(c, str) and 0 < len(c) <= MAX_CLASS_NAME for c in names):
        return (f"'class_names' is {clip(names)}, not a list of names (strings of 1 to "
                f"{MAX_CLASS_NAME} characters)")
    if len(names) != n:
        return f"it has {len(names)} class names for a model with {n} outputs"
    if not isinstance(ckpt["dataset"], str) or ckpt["dataset"] not in SPECS:
        return f"'dataset' is {clip(ckpt['dataset'])}, not one of {', '.join(SPECS)}"
    norm = ckpt["normalization"]
    if not (isinstance(norm, dict) and _is_number(norm.get("mean"))
            and _is_number(norm.get("std")) and norm["std"] > 0):
        return f"'normalization' is {clip(norm)}, not {{mean: number, std: number > 0}}"
    if not isinstance(ckpt["config"], dict):
        return f"'config' is {clip(ckpt['config'])}, not a mapping"
    try:
        make_config(ckpt["config"], source="its config")
    except UserError as exc:
        return str(exc).rstrip(".")
    if "epoch" in ckpt and not _is_int(ckpt["epoch"], 0, 10**9):
        return f"'epoch' is {clip(ckpt['epoch'])}, not an integer >= 0"
    metrics = ckpt.get("metrics", {})
    if not isinstance(metrics, dict) or not all(
            isinstance(k, str) and _is_number(v) for k, v in metrics.items()):
        return f"'metrics' is {clip(metrics)}, not a mapping of names to numbers"
    return None


def _fit_problem(model: nn.Module, state: dict[str, torch.Tensor]) -> str | None:
    """Why ``state`` cannot load into ``model`` (names, shapes, dtypes), or None."""
    expected = model.state_dict()
    missing, unexpected = expected.keys() - state.keys(), state.keys() - expected.keys()
    if missing or unexpected:
        return (f"missing {clip(sorted(missing)[:3])}" if missing
                else f"unexpected {clip(sorted(unexpected)[:3])}")
    for key, want in expected.items():
        got = state[key]
        if tuple(got.shape) != tuple(want.shape):
            return f"size mismatch for {key}: {list(got.shape)} in the file, {list(want.shape)} in the model"
        if got.dtype.is_floating_point != want.dtype.is_floating_point or got.dtype.is_complex:
            return f"{key} is {got.dtype}, the model holds {want.dtype}"
    return None


def model_from_checkpoint(ckpt: dict[str, Any], path: str | os.PathLike[str] = "checkpoint") -> nn.Module:
    """Rebuild the model a checkpoint describes and load its weights (strict), in eval mode."""
    try:
        with torch.device("meta"):  # shapes only: nothing allocated until the weights fit
            skeleton = build_model(ckpt["model"], ckpt["model_args"])
    except (UserError, TypeError, ValueError, KeyError, RuntimeError) as exc:
        raise CheckpointError(
            f"checkpoint '{path}' describes a model that cannot be built "
            f"({clip(ckpt.get('model'))} with {clip(ckpt.get('model_args'))}: {first_line(exc)})."
        ) from None
    problem = _fit_problem(skeleton, ckpt["state_dict"])
    if problem is None:
        model = build_model(ckpt["model"], ckpt["model_args"])
        try:
            model.load_state_dict(ckpt["state_dict"], strict=True)
        except RuntimeError as exc:
            problem = first_line(exc)
    if problem is not None:
        raise CheckpointError(
            f"checkpoint '{path}' weights do not fit its model {ckpt['model']!r} ({problem}): "
            "the file was edited or belongs to another architecture."
        )
    return model.eval()
