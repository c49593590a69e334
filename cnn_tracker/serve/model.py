"""A SOURCE to serve, loaded and checked: a checkpoint file, a W&B artifact, a sweep's best.

The checkpoint is read with ``torch.load(..., weights_only=True)`` (``load_for_inference``) and
its sha256 is computed before and after loading (a file replaced meanwhile is refused); when the
source records a digest (the run store's copy, ``--sha256``) it must match before anything is
loaded. Artifacts are verified against their W&B manifest by ``tracking.artifacts``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cnn_tracker import env
from cnn_tracker.errors import UserError
from cnn_tracker.training.batches import normalize

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")  # a SOURCE with these is a file, never a sweep


@dataclass
class ServedModel:
    """A loaded model and everything ``/v1/model`` tells about it."""

    model: torch.nn.Module
    spec: Any  # the DatasetSpec with the checkpoint's normalization and class names
    checkpoint: dict[str, Any]
    path: Path
    sha256: str
    source: str  # the SOURCE as given
    artifact: str | None = None  # W&B artifact reference, when known
    run: dict[str, Any] | None = None  # {"id", "name", "source"} of the run, when known
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def class_names(self) -> list[str]:
        return list(self.spec.class_names)

    def probabilities(self, inputs: torch.Tensor) -> torch.Tensor:
        """Softmax over classes of uint8 inputs [N, 1, 28, 28], as ``predict_files`` computes it."""
        with torch.inference_mode():
            logits = self.model(normalize(inputs.to(self.device), self.spec))
            return torch.softmax(logits.float(), 1).cpu()

    def warm_up(self) -> None:
        """One forward pass, so the first request does not pay for lazy initialisation."""
        self.probabilities(torch.zeros((1, 1, 28, 28), dtype=torch.uint8))

    def describe(self) -> dict[str, Any]:
        from cnn_tracker.training.models import count_parameters

        ckpt = self.checkpoint
        return {
            "model": ckpt["model"], "dataset": ckpt["dataset"], "classes": self.class_names,
            "parameters": count_parameters(self.model), "epoch": ckpt.get("epoch"),
            "metrics": dict(ckpt.get("metrics", {})),
            "checkpoint": {"path": str(self.path), "sha256": self.sha256},
            "artifact": self.artifact, "run": self.run, "source": self.source,
            "device": str(self.device),
        }


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_served(source: str, *, device: str = "auto", store_dir: str | None = None,
                expect_sha256: str | None = None) -> ServedModel:
    """Resolve ``source``, check its digest, load it with weights_only=True: a UserError naming
    the problem when any step fails (the CLI prints it as one ``Error:`` line, exit 2)."""
    from cnn_tracker.tools.inference import load_for_inference
    from cnn_tracker.training.checkpoint import load_checkpoint

    path, known_digest, info = resolve_source(source, store_dir)
    if not path.is_file():
        load_checkpoint(path)  # names what is wrong: missing, a folder, ...
    try:
        digest = sha256_of(path)  # once: the file checked is the file loaded (re-hashed after)
    except OSError as exc:
        raise UserError(f"checkpoint '{path}' cannot be read ({exc.strerror}): check its "
                        "permissions.") from None
    for expected, whose in ((known_digest, "the run store's record"), (expect_sha256, "--sha256")):
        _check_digest(path, digest, expected, whose)
    ckpt, model, spec = load_for_inference(path, device)
    if sha256_of(path) != digest:
        raise UserError(f"checkpoint '{path}' changed while it was being loaded: serve a file "
                        "that nothing is writing to.")
    return ServedModel(model=model, spec=spec, checkpoint=ckpt, path=path, sha256=digest,
                       source=source, device=next(model.parameters()).device, **info)


def _check_digest(path: Path, actual: str, expected: str | None, whose: str) -> None:
    if expected and actual != expected.strip().lower():
        raise UserError(f"checkpoint '{path}' has sha256 {actual[:16]}..., but {whose} says "
                        f"{expected.strip()[:16]}...: the file is damaged or not the one meant; "
                        "nothing was served.")


def resolve_source(source: str, store_dir: str | None = None
                   ) -> tuple[Path, str | None, dict[str, Any]]:
    """(local checkpoint file, its recorded sha256 or None, artifact/run info) for ``source``."""
    from cnn_tracker.tracking.artifacts import is_artifact_ref, resolve_checkpoint

    if Path(source).exists() or source.endswith(CHECKPOINT_SUFFIXES):
        return Path(source), None, {}  # load_checkpoint names a missing file
    if is_artifact_ref(source):
        return resolve_checkpoint(source), None, {"artifact": source}
    return _best_of(source, store_dir)


def _best_of(target: str, store_dir: str | None) -> tuple[Path, str | None, dict[str, Any]]:
    """The best checkpoint of a sweep or project, found as ``cnn-tracker best`` finds it."""
    from cnn_tracker.results.source import open_source
    from cnn_tracker.store.db import Store

    store = Store(store_dir)
    source = open_source(target, store, what=f"'{target}' (not a checkpoint file, a W&B artifact "
                                              "reference or a sweep / project with runs)")
    found = source.best(target, None, None)
    folder = env.default_cache_dir() / "serve" / _safe(target) / found["run_id"]
    path = source.fetch_checkpoint(found, folder)
    if path.is_dir() or path.suffix != ".pt":
        raise UserError(f"the best run of '{target}' ({found['run_id']}) is another program's "
                        "trial: it has no cnn-tracker checkpoint to serve.")
    artifact = found["checkpoint"] if found.get("source") == "wandb" else None
    run = {"id": found["run_id"], "name": found.get("run_name"), "source": found.get("source"),
           "metric": found.get("metric"), "sha256": found.get("checkpoint_sha256")}
    return path, found.get("checkpoint_sha256"), {"artifact": artifact, "run": run}


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:100] or "_"


def is_search_target(source: str) -> bool:
    """True when ``source`` names a sweep or project (its best run), not a file or an artifact."""
    from cnn_tracker.tracking.artifacts import is_artifact_ref

    return not (Path(source).exists() or source.endswith(CHECKPOINT_SUFFIXES)
                or is_artifact_ref(source))


def best_follower(source: str, *, device: str = "auto", store_dir: str | None = None):
    """``refresh(current) -> ServedModel | None`` for ``--follow-best``: the sweep's best again,
    loaded and checked, when it is another run or checkpoint than ``current``'s; else None."""
    from cnn_tracker.results.source import open_source
    from cnn_tracker.store.db import Store

    def refresh(current: ServedModel) -> ServedModel | None:
        found = open_source(source, Store(store_dir)).best(source, None, None)
        live = current.run or {}
        same_run = found["run_id"] == live.get("id")
        if same_run and (found.get("checkpoint_sha256") or found.get("metric")) == (
                live.get("sha256") or live.get("metric")):
            return None  # nothing new: no download, no load
        new = load_served(source, device=device, store_dir=store_dir)
        return None if new.sha256 == current.sha256 else new

    return refresh
