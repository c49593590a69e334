"""Trackers: where a run's config, metrics, checkpoints and report go.

This is the only module that imports ``wandb`` for runs. The training loop talks to the small
:class:`Tracker` interface; :class:`NullTracker` serves ``mode=disabled`` without touching wandb.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Mapping

from cnn_tracker import env
from cnn_tracker.config import RunSettings, TrainConfig
from cnn_tracker.errors import UserError, first_line
from cnn_tracker.training.reports import TestReport, format_top3

# The config column naming a sweep's trial's sweep (set by us, not a hyperparameter).
SWEEP_KEY = "sweep_id"
# Prefixes of per-epoch keys; all are plotted against `epoch` on the dashboard.
EPOCH_KEYS = ("train/*", "val/*", "lr", "perf/*")


class Tracker:
    """No-op base: every hook does nothing. Subclasses override what they record."""

    mode = "disabled"
    run_id: str = ""
    run_name: str = ""
    files_dir: Path | None = None  # folder uploaded with the run (W&B run files), if any
    sync_dir: Path | None = None  # offline run folder to pass to `wandb sync`, if any
    init_seconds: float = 0.0  # wall time of wandb.init (0 when disabled)
    finish_seconds: float = 0.0  # wall time of finish(): flushing and closing the run
    step: int = 0  # the W&B step of the next log call (kept in resume checkpoints)

    def config(self) -> dict[str, Any]:
        """Hyperparameters as the tracker holds them (a sweep may have changed them)."""
        return {}

    def update_config(self, values: Mapping[str, Any]) -> None: ...

    def log_metrics(self, metrics: dict[str, float], epoch: int) -> None: ...

    def log_checkpoint(self, path: Path, metadata: dict[str, Any]) -> None: ...

    def log_last_checkpoint(self, path: Path, metadata: dict[str, Any]) -> None:
        """The end of training: the last epoch's checkpoint (``last.pt``) and its metrics."""

    def log_batch(self, metrics: dict[str, float]) -> None: ...

    def log_report(self, report: TestReport, misclassified: int, plots: dict[str, Path]) -> None: ...

    def log_summary(self, values: Mapping[str, Any]) -> None: ...

    def seed_best(self, history: list[dict[str, float]]) -> None:
        """A resumed run's best-so-far summaries start from its earlier epochs."""

    def mark_preempting(self) -> None:
        """Tell W&B the run is being preempted (a sweep requeues it when it exits non-zero)."""

    def finish(self, exit_code: int = 0) -> None: ...


class NullTracker(Tracker):
    """``mode=disabled``: records nothing, needs no wandb."""

    def __init__(self, cfg: TrainConfig, settings: RunSettings, run_id: str | None = None):
        self.run_id = run_id or env.wandb_run_id() or secrets.token_hex(4)
        self.run_name = settings.name or f"{cfg.model}-{cfg.dataset}-{self.run_id}"
        self._config = asdict(cfg)

    def config(self) -> dict[str, Any]:
        return dict(self._config)


class WandbTracker(Tracker):
    """A W&B run (online or offline). Constructing it calls ``wandb.init``.

    ``resume_id``/``resume_step`` continue a preempted run: online, W&B resumes the run itself
    (``resume="allow"``); offline, W&B cannot resume, so the new offline run folder gets the
    same id and continues the step count, to be uploaded after the first with
    ``wandb sync --id RUN DIR1 DIR2``. Every log call therefore passes an explicit step.
    """

    def __init__(self, cfg: TrainConfig, settings: RunSettings, mode: str,
                 resume_id: str | None = None, resume_step: int = 0,
                 on_stop: Callable[[], None] | None = None, quiet: bool = False):
        import wandb

        self._wandb = wandb
        start = time.perf_counter()
        # Name, notes and tags left None here are read by the SDK from WANDB_NAME, WANDB_NOTES,
        # WANDB_TAGS; the group comes from --group or WANDB_RUN_GROUP (never the sweep: W&B
        # averages a group's runs into one line, and a sweep's trials differ by design).
        sdk_settings = wandb.Settings(**({"stop_fn": on_stop} if on_stop else {}),
                                      **({"silent": True} if quiet else {}))
        try:
            self.run = wandb.init(
                project=settings.project,
                entity=settings.entity,
                group=settings.group,
                name=settings.name,
                notes=settings.notes,
                job_type=settings.job_type or env.get(env.WANDB_JOB_TYPE) or "train",
                mode=mode,
                config=asdict(cfg),
                settings=sdk_settings,
                **({"id": resume_id, "resume": "allow"} if resume_id else {}),
            )
        except wandb.errors.Error as exc:
            raise UserError(
                f"W&B could not start the run in {mode} mode ({first_line(exc)}): check WANDB_API_KEY, "
                "WANDB_ENTITY and the network, or use --mode offline and `wandb sync` later."
            ) from None
        self.init_seconds = time.perf_counter() - start
        self.mode = mode
        self.run_id = self.run.id
        self.step = max(resume_step, int(self.run.step or 0)) if resume_id else 0
        # Name and tags from the final config: a sweep may have changed model or dataset. Ours
        # are added to the user's (WANDB_TAGS, --tags); our name only when none was given.
        model = self.run.config.get("model", cfg.model)
        dataset = self.run.config.get("dataset", cfg.dataset)
        sweep = env.sweep_id()
        if sweep:  # a sweep's trials: the sweep as a config column and a tag, not a group
            self.run.config.update({SWEEP_KEY: sweep}, allow_val_change=True)
        self.run.tags = tuple(dict.fromkeys([*(self.run.tags or ()), *settings.tags,
                                             str(dataset), str(model),
                                             *([f"sweep-{sweep}"] if sweep else [])]))
        if not settings.name and not env.get(env.WANDB_NAME):
            self.run.name = f"{model}-{dataset}-{self.run.id}"  # <model>-<dataset>-<run id>
        self.run_name = self.run.name
        self.files_dir = Path(self.run.dir)
        self.sync_dir = self.files_dir.parent if mode == "offline" else None
        self.run.define_metric("epoch")
        for pattern in EPOCH_KEYS:
            self.run.define_metric(pattern, step_metric="epoch")
        self._best: dict[str, float] = {}
        self.run.define_metric("trainer/global_step")  # x-axis of opt-in per-batch logs
        self.run.define_metric("batch/*", step_metric="trainer/global_step")

    def config(self) -> dict[str, Any]:
        return {k: v for k, v in dict(self.run.config).items()
                if not k.startswith("_") and k != SWEEP_KEY}

    def seed_best(self, history: list[dict[str, float]]) -> None:
        """A resumed run's best-so-far summaries start from its earlier epochs."""
        for metrics in history:
            self._keep_best(metrics)

    def update_config(self, values: Mapping[str, Any]) -> None:
        self.run.config.update(dict(values), allow_val_change=True)

    def _log(self, payload: dict[str, Any]) -> None:
        self.run.log(payload, step=self.step)
        self.step += 1

    def log_metrics(self, metrics: dict[str, float], epoch: int) -> None:
        self._log(dict(metrics))
        self._keep_best(metrics)

    def _keep_best(self, metrics: dict[str, float]) -> None:
        """Summary of val/accuracy (val/loss) = best so far, as a plain number: what sweep
        tables, `Sweep.best_run()` and run sorting compare. (define_metric(summary="max") would
        store {"max": x}, which they cannot sort.)"""
        for key, better in (("val/accuracy", max), ("val/loss", min)):
            if key in metrics:
                value = float(metrics[key])
                self._best[key] = better(self._best.get(key, value), value)
                self.run.summary[key] = self._best[key]

    def log_batch(self, metrics: dict[str, float]) -> None:
        self._log(dict(metrics))

    def log_checkpoint(self, path: Path, metadata: dict[str, Any]) -> None:
        """A new best checkpoint: ``model-<run id>`` holding ``best.pt``, alias ``best``."""
        self._log_model(path, "best.pt", "best", metadata,
                        f"best-by-validation checkpoint of run {self.run.id}")

    def log_last_checkpoint(self, path: Path, metadata: dict[str, Any]) -> None:
        """The end of training: ``model-<run id>`` holding ``last.pt``, alias ``latest``.

        Once, not every epoch: last.pt carries the optimizer and resume state, and uploading it
        each epoch would double a run's upload for versions nobody reads (`best` is per epoch).
        """
        self._log_model(path, "last.pt", "latest", metadata,
                        f"last-epoch checkpoint of run {self.run.id}")

    def _log_model(self, path: Path, name: str, alias: str, metadata: dict[str, Any],
                   description: str) -> None:
        """One version of ``model-<run id>``; ``score`` (val/accuracy) and ``epoch`` in metadata,
        as Lightning's WandbLogger records them."""
        meta = {k: v for k, v in metadata.items() if isinstance(v, (int, float, str))}
        meta.update({"score": metadata.get("val/accuracy"), "epoch": metadata.get("epoch"),
                     "file": name})
        artifact = self._wandb.Artifact(f"model-{self.run.id}", type="model",
                                        description=description, metadata=meta)
        artifact.add_file(str(path), name=name)
        self.run.log_artifact(artifact, aliases=[alias])

    def log_report(self, report: TestReport, misclassified: int, plots: dict[str, Path]) -> None:
        wandb = self._wandb
        names = list(report.class_names)
        per_class = wandb.Table(columns=["class_id", "class", "accuracy", "errors", "support"])
        for row in report.per_class():
            per_class.add_data(row["class_id"], row["class"], row["accuracy"], row["errors"],
                               row["support"])
        pairs = wandb.Table(columns=["rank", "true", "predicted", "count"])
        for row in report.confused_pairs():
            pairs.add_data(row["rank"], row["true"], row["predicted"], row["count"])
        wrong = wandb.Table(columns=["image", "index", "true", "predicted", "confidence", "top3"])
        for row in report.misclassified(misclassified):
            wrong.add_data(
                wandb.Image(report.images[row["index"]],
                            caption=f"true {row['true']} / predicted {row['predicted']}"),
                row["index"], row["true"], row["predicted"], row["confidence"],
                format_top3(row["top3"]),
            )
        payload: dict[str, Any] = {
            # W&B's chart: "Actual" = true class (rows of our PNG), "Predicted" = columns.
            "test/confusion_matrix": wandb.plot.confusion_matrix(
                y_true=report.labels.tolist(), preds=report.preds.tolist(), class_names=names,
                title="test confusion matrix",
            ),
            "test/per_class": per_class,
            "test/most_confused": pairs,
            "test/misclassified": wrong,
        }
        for key, path in plots.items():
            payload[key] = wandb.Image(str(path))
        self._log(payload)

    def log_summary(self, values: Mapping[str, Any]) -> None:
        for key, value in values.items():
            self.run.summary[key] = value

    def mark_preempting(self) -> None:
        self.run.mark_preempting()

    def finish(self, exit_code: int = 0) -> None:
        start = time.perf_counter()
        self.run.finish(exit_code=exit_code)
        self.finish_seconds = time.perf_counter() - start


def make_tracker(cfg: TrainConfig, settings: RunSettings, mode: str, resume_id: str | None = None,
                 resume_step: int = 0, on_stop: Callable[[], None] | None = None,
                 quiet: bool = False) -> Tracker:
    """The tracker for ``mode``; ``on_stop`` is called when W&B says the run should stop."""
    if mode == "disabled":
        return NullTracker(cfg, settings, resume_id)
    return WandbTracker(cfg, settings, mode, resume_id=resume_id, resume_step=resume_step,
                        on_stop=on_stop, quiet=quiet)
