"""Checkpoint references: a local file, or a W&B model artifact (``entity/project/model-id:best``).

Artifacts are fetched through the official SDK (``wandb.Api().artifact(...).download()``); this
module stays a thin layer over it.
"""

from __future__ import annotations

import re
from pathlib import Path

from . import env
from .errors import CheckpointError, UserError, first_line

# [entity/][project/]name:alias-or-version, e.g. me/cnn-tracker/model-1a2b3c4d:best
ARTIFACT_REF = re.compile(r"^(?:[\w.-]+/){0,2}[\w.-]+:[\w.-]+$")


def is_artifact_ref(ref: str) -> bool:
    return bool(ARTIFACT_REF.match(ref)) and not Path(ref).exists()


def resolve_checkpoint(ref: str, download_root: Path | None = None) -> Path:
    """A local checkpoint path for ``ref``: the file itself, or the downloaded artifact's file."""
    if not is_artifact_ref(ref):
        return Path(ref)
    root = download_root or env.default_cache_dir() / "artifacts"
    return download_artifact(ref, root / ref.replace("/", "_").replace(":", "_"))


def download_artifact(ref: str, folder: Path) -> Path:
    """Download the model artifact ``ref`` into ``folder``; return its checkpoint file."""
    if not env.has_api_key():
        raise UserError(
            f"'{ref}' looks like a W&B artifact reference, but no W&B API key is configured: "
            "set WANDB_API_KEY (or run `wandb login`), or pass a local checkpoint file."
        )
    import wandb

    try:
        artifact = wandb.Api().artifact(ref, type="model")
        folder = Path(artifact.download(root=str(folder)))
    except (wandb.errors.Error, ValueError, OSError) as exc:  # OSError covers requests' errors
        raise UserError(f"cannot fetch the W&B artifact '{ref}' ({first_line(exc)}): check the name, "
                        "alias, your access to the project and the network.") from None
    candidates = sorted(folder.glob("*.pt"))
    preferred = [p for p in candidates if p.name == "best.pt"] or candidates
    if not preferred:
        raise CheckpointError(f"the W&B artifact '{ref}' holds no .pt checkpoint file.")
    return preferred[0]
