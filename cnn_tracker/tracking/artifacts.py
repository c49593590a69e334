"""Checkpoint references: a local file, or a W&B model artifact (``entity/project/model-id:best``).

A run logs ``model-<run id>`` twice over: each new best as ``best.pt`` with alias ``best``, and
at the end of training ``last.pt`` with alias ``latest`` (Lightning's WandbLogger convention),
each version with ``score`` (its val/accuracy) and ``epoch`` in the metadata.

Online, a download is an input of a short W&B run of job type ``eval`` (``run.use_artifact``),
so W&B's lineage graph shows who used which checkpoint; offline (or with WANDB_MODE=offline),
where a run cannot record a use, it goes through ``wandb.Api().artifact(...)`` (the Api from
``tracking.wandb_api``). Every downloaded file is checked with ``Artifact.verify`` against the
manifest before anything is loaded.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

from cnn_tracker import env
from cnn_tracker.errors import CheckpointError, UserError, first_line
from cnn_tracker.inputs import clip

# [entity/][project/]name:alias-or-version, e.g. me/cnn-tracker/model-1a2b3c4d:best
ARTIFACT_REF = re.compile(r"^(?:[\w.-]+/){0,2}[\w.-]+:[\w.-]+$")
EVAL_JOB_TYPE = "eval"  # job type of the run that records a download as an artifact use


def is_artifact_ref(ref: str) -> bool:
    return bool(ARTIFACT_REF.match(ref)) and not Path(ref).exists()


def resolve_checkpoint(ref: str, download_root: Path | None = None) -> Path:
    """A local checkpoint path for ``ref``: the file itself, or the downloaded artifact's file."""
    if not is_artifact_ref(ref):
        return Path(ref)
    root = download_root or env.artifact_dir()
    return download_artifact(ref, root / ref.replace("/", "_").replace(":", "_"))


def ref_project(ref: str) -> tuple[str | None, str | None]:
    """(entity, project) named by ``ref``, None where it names none (W&B's defaults apply)."""
    parts = ref.split(":", 1)[0].split("/")
    return (parts[-3] if len(parts) == 3 else None), (parts[-2] if len(parts) >= 2 else None)


def download_artifact(ref: str, folder: Path) -> Path:
    """Download the model artifact ``ref`` into ``folder``; return its checkpoint file."""
    if not env.has_api_key():
        raise UserError(
            f"'{ref}' looks like a W&B artifact reference, but no W&B API key is configured: "
            "set WANDB_API_KEY (or run `wandb login`), or pass a local checkpoint file."
        )
    if env.resolve_mode(None)[0] == "online":
        return _download_in_eval_run(ref, folder)
    from cnn_tracker.tracking.wandb_api import client

    return _fetch(ref, folder, lambda: client().artifact(ref, type="model"))


def _download_in_eval_run(ref: str, folder: Path) -> Path:
    """``run.use_artifact(ref)`` in a short ``eval`` run of the artifact's project, then finish."""
    import wandb

    entity, project = ref_project(ref)
    try:
        run = wandb.init(entity=entity, project=project, job_type=EVAL_JOB_TYPE, mode="online",
                         settings=wandb.Settings(silent=True))
    except wandb.errors.Error as exc:
        raise UserError(f"W&B could not start the eval run that records the use of '{ref}' "
                        f"({first_line(exc)}): check WANDB_API_KEY and the network, or set "
                        "WANDB_MODE=offline to download without lineage.") from None
    exit_code = 1
    try:
        path = _fetch(ref, folder, lambda: run.use_artifact(ref, type="model"))
        exit_code = 0
        return path
    finally:
        run.finish(exit_code=exit_code)


def _fetch(ref: str, folder: Path, get_artifact) -> Path:
    import wandb

    try:
        artifact = get_artifact()
        outside = [p for p in artifact.manifest.entries
                   if Path(p).is_absolute() or ".." in Path(p).parts]
        if outside:  # a download target must stay inside its folder
            raise CheckpointError(f"the W&B artifact '{ref}' names a file outside its download "
                                  f"folder ({clip(outside[0])}): refused, nothing was downloaded.")
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
    """``artifact.verify(folder)``: every manifest file present and matching its digest.

    Returns the verified paths (relative to ``folder``). Reference entries (files stored outside
    W&B, digest = an ETag) are skipped, as ``Artifact.verify`` does; they are never loaded. A
    failure (verify raises ValueError, or FileNotFoundError for a missing file) becomes a
    CheckpointError naming the file and both digests.
    """
    try:
        artifact.verify(root=str(folder))
    except (ValueError, OSError) as exc:
        raise _verify_error(artifact, folder, ref, exc) from None
    return [str(p) for p, entry in artifact.manifest.entries.items() if entry.ref is None]


def file_digest(path: Path, alg: str) -> str:
    """A manifest digest of ``path``: base64 of its MD5 or XXH128 (W&B's two algorithms)."""
    if alg == "XXH128":
        import xxhash  # a dependency of wandb, used by it for XXH128 manifests

        h = xxhash.xxh128()
    else:
        h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return base64.b64encode(h.digest()).decode()


def _verify_error(artifact, folder: Path, ref: str, exc: Exception) -> CheckpointError:
    """Which file failed ``Artifact.verify``, said with the digests (verify names only the path)."""
    fix = f"Delete {folder} and download again; nothing was loaded."
    for path, entry in artifact.manifest.entries.items():
        if entry.ref is not None:
            continue
        file = folder / path
        if not file.is_file():
            return CheckpointError(
                f"the W&B artifact '{ref}' is missing its file '{path}' in {folder} (manifest "
                f"digest {entry.digest}, no file on disk): the download is incomplete. {fix}")
        alg = "XXH128" if (entry.extra or {}).get("alg") == "XXH128" else "MD5"  # as W&B reads it
        if (digest := file_digest(file, alg)) != entry.digest:
            return CheckpointError(
                f"the W&B artifact '{ref}' file '{path}' in {folder} does not match its manifest "
                f"({alg} digest {digest}, manifest {entry.digest}): the file was modified or "
                f"corrupted (in transit, in W&B's cache or on disk). {fix}")
    return CheckpointError(  # e.g. "Found file ... which is not a member of artifact"
        f"the W&B artifact '{ref}' does not verify in {folder} ({first_line(exc)}): download it "
        "into an empty folder; nothing was loaded.")
