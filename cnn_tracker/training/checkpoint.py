"""Self-describing checkpoints: everything needed to rebuild, normalize and label, in one file.

A checkpoint is a plain dict of tensors, numbers, strings and lists, so it loads with
``torch.load(..., weights_only=True)``, which refuses pickled code. Files are written to a temp
name and renamed, so a crash never leaves a half-written checkpoint under the real name.
"""

from __future__ import annotations

import io
import os
import pickle
import platform
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnn_tracker.config import TrainConfig
from cnn_tracker.errors import CheckpointError, UserError, first_line
from cnn_tracker.files import atomic_write
from cnn_tracker.training.data import DatasetSpec
from cnn_tracker.training.models import build_model

FORMAT = "cnn-tracker-checkpoint/1"
REQUIRED = ("format", "model", "model_args", "state_dict", "config", "dataset", "class_names",
            "normalization")


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
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
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
    return ckpt


def model_from_checkpoint(ckpt: dict[str, Any], path: str | os.PathLike[str] = "checkpoint") -> nn.Module:
    """Rebuild the model a checkpoint describes and load its weights (strict), in eval mode."""
    try:
        model = build_model(ckpt["model"], ckpt["model_args"])
    except (UserError, TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(
            f"checkpoint '{path}' describes a model that cannot be built "
            f"({ckpt.get('model')!r} with {ckpt.get('model_args')!r}: {exc})."
        ) from None
    try:
        model.load_state_dict(ckpt["state_dict"], strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"checkpoint '{path}' weights do not fit its model {ckpt['model']!r} ({first_line(exc)}): "
            "the file was edited or belongs to another architecture."
        ) from None
    return model.eval()
