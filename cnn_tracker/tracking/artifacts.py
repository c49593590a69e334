"""Checkpoint references: a local file, or a W&B model artifact (``entity/project/model-id:best``).

Artifacts are fetched through the official SDK (``wandb.Api().artifact(...).download()``, the
Api from ``tracking.wandb_api``); this module stays a thin layer over it. Every downloaded file
is checked against the digest in the artifact's manifest before anything is loaded.
"""

from __future__ import annotations

import re
from pathlib import Path

from cnn_tracker import env
from cnn_tracker.errors import CheckpointError, UserError, first_line

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

    from cnn_tracker.tracking.wandb_api import client

    try:
        artifact = client().artifact(ref, type="model")
        folder = Path(artifact.download(root=str(folder)))
    except (wandb.errors.Error, ValueError, OSError) as exc:  # OSError covers requests' errors
        raise UserError(f"cannot fetch the W&B artifact '{ref}' ({first_line(exc)}): check the name, "
                        "alias, your access to the project and the network.") from None
    checkpoints = [p for p in verify_download(artifact, folder, ref) if p.endswith(".pt")]
    preferred = [p for p in checkpoints if Path(p).name == "best.pt"] or sorted(checkpoints)
    if not preferred:
        raise CheckpointError(f"the W&B artifact '{ref}' holds no .pt checkpoint file.")
    return folder / preferred[0]


def verify_download(artifact, folder: Path, ref: str) -> list[str]:
    """Check each file of ``artifact``'s manifest under ``folder`` against its manifest digest.

    Returns the verified paths (relative to ``folder``). A missing or changed file is a
    CheckpointError naming the file and both digests. Reference entries (files stored outside
    W&B, digest = an ETag) are skipped, as ``Artifact.verify`` does; they are never loaded.
    """
    from wandb.sdk.lib.hashutil import (  # what W&B itself uses
        md5_file_b64,
        xxh128_file_b64,
    )

    verified = []
    fix = f"Delete {folder} and download again; nothing was loaded."
    for path, entry in artifact.manifest.entries.items():
        if entry.ref is not None:
            continue
        file = folder / path
        if not file.is_file():
            raise CheckpointError(
                f"the W&B artifact '{ref}' is missing its file '{path}' in {folder} (manifest "
                f"digest {entry.digest}, no file on disk): the download is incomplete. {fix}")
        alg = "XXH128" if (entry.extra or {}).get("alg") == "XXH128" else "MD5"  # as W&B reads it
        digest = (xxh128_file_b64 if alg == "XXH128" else md5_file_b64)(str(file))
        if digest != entry.digest:
            raise CheckpointError(
                f"the W&B artifact '{ref}' file '{path}' in {folder} does not match its manifest "
                f"({alg} digest {digest}, manifest {entry.digest}): the file was modified or "
                f"corrupted (in transit, in W&B's cache or on disk). {fix}")
        verified.append(str(path))
    return verified
