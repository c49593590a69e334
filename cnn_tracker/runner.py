"""One tracked training run, from the CLI's config to a finished W&B run and local outputs.

Order matters for "nothing half-written": everything that can be checked before ``wandb.init``
(config values, device, data presence, output folder) is checked first. After ``wandb.init`` the
final hyperparameters are re-read from ``wandb.config`` (a sweep may have changed them) and
validated again.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable

import click

from . import env
from .config import RunSettings, TrainConfig, make_config
from .data import check_val_size, get_spec, load_data, train_size
from .engine import resolve_device, train
from .errors import UserError
from .models import model_args
from .reports import TestReport, text_tables, write_plots
from .store import Heartbeat, Store
from .tracker import Tracker, make_tracker

# Set by the offline sweep agent for its trials (the W&B run id comes in WANDB_RUN_ID).
SWEEP_ID_VAR = "CNN_TRACKER_SWEEP_ID"


class Recorder:
    """Passes the engine's events to the tracker and records them in the local run store.

    It also answers the engine's "stop now?" after each epoch: for a trial of a local sweep with
    ``early_terminate``, by running W&B's hyperband over every run of the sweep (``sweeps``).
    """

    def __init__(self, tracker: Tracker, store: Store, run_id: str, sweep_id: str | None):
        self.tracker, self.store, self.run_id = tracker, store, run_id
        self.sweep = store.find_sweep(sweep_id) if sweep_id else None

    def log_metrics(self, metrics: dict[str, float], epoch: int) -> None:
        self.tracker.log_metrics(metrics, epoch)
        self.store.record_epoch(self.run_id, epoch, metrics)

    def log_checkpoint(self, path: Path, metadata: dict[str, Any]) -> None:
        self.store.set_checkpoint(self.run_id, str(Path(path).absolute()))
        self.tracker.log_checkpoint(path, metadata)

    def log_batch(self, metrics: dict[str, float]) -> None:
        self.tracker.log_batch(metrics)

    def should_stop(self, epoch: int, metrics: dict[str, float]) -> str:
        if self.sweep is None or "early_terminate" not in self.sweep.config:
            return ""
        from .sweep import should_stop

        stop, why = should_stop(self.sweep, self.store.runs(sweep_id=self.sweep.id), self.run_id)
        return f"early_terminate ({self.sweep.config['early_terminate'].get('type')}): {why}" if stop else ""


def write_json(obj: Any, path: Path) -> Path:
    """Write JSON through a temp file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def _check_writable(folder: Path, what: str) -> None:
    """Fail early if ``folder`` could not be created or written, without creating anything."""
    existing = folder.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{what} {folder} is not writable ({existing} is not a writable folder): "
                        "choose another folder.")


def _with_model_defaults(cfg: TrainConfig) -> TrainConfig:
    """Fill hidden_units / dropout left at None with the model's own defaults."""
    args = model_args(cfg.model, cfg.hidden_units, cfg.dropout)
    return dataclasses.replace(cfg, hidden_units=args["hidden_units"], dropout=args["dropout"])


def run_training(
    cfg: TrainConfig,
    settings: RunSettings,
    *,
    data_dir: Path,
    output_dir: Path | None,
    store_dir: str | os.PathLike[str] | None = None,
    quiet: bool = False,
    echo: Callable[[str], None] = click.echo,
) -> dict[str, Any]:
    """Train with tracking; return the summary (also written to ``summary.json``).

    The run is recorded in the local run store (``store_dir``; see cnn_tracker.store) as well.
    """
    mode, notice = env.resolve_mode(settings.mode)
    if mode == "online" and not env.has_api_key():
        raise UserError(
            "W&B mode is online but no API key is configured: set WANDB_API_KEY (or run "
            "`wandb login`), or use --mode offline and `wandb sync` later."
        )
    # Checks before anything is written under the W&B folder.
    resolve_device(cfg.device)
    spec = get_spec(cfg.dataset)
    check_val_size(spec, train_size(spec, data_dir), cfg.val_size)
    out_root = Path(output_dir) if output_dir else env.output_root()
    _check_writable(out_root, "output folder")
    store = Store(store_dir)
    _check_writable(store.root, "run store")
    store.open()  # a damaged store fails here, before wandb.init
    if notice and not quiet:
        echo(notice)

    tracker = make_tracker(cfg, settings, mode)
    sweep_id = os.environ.get(SWEEP_ID_VAR) or os.environ.get("WANDB_SWEEP_ID") or None
    try:
        summary = _train_tracked(tracker, store, sweep_id, settings.project, data_dir, output_dir,
                                 out_root, quiet, echo)
    except BaseException as exc:
        tracker.finish(exit_code=1)
        state = ("killed" if isinstance(exc, KeyboardInterrupt)
                 else "failed" if isinstance(exc, UserError) else "crashed")
        try:
            if store.run(tracker.run_id) is not None:
                store.end_run(tracker.run_id, state, message=f"{type(exc).__name__}: {exc}"[:500],
                              only_if_active=True)
        except Exception:  # noqa: BLE001 - never mask the original error
            pass
        raise
    finally:
        store.close()
    tracker.finish(exit_code=0)
    # Not in summary.json (written before finish): for callers that measure tracking cost.
    summary["perf/wandb_init_seconds"] = tracker.init_seconds
    summary["perf/wandb_finish_seconds"] = tracker.finish_seconds
    if tracker.sync_dir is not None and not quiet:
        echo(f"offline run saved; upload it with: wandb sync {tracker.sync_dir}")
    return summary


def _train_tracked(
    tracker: Tracker,
    store: Store,
    sweep_id: str | None,
    project: str,
    data_dir: Path,
    output_dir: Path | None,
    out_root: Path,
    quiet: bool,
    echo: Callable[[str], None],
) -> dict[str, Any]:
    # wandb.config wins: under a sweep it holds the agent's values. Validate it like any input.
    raw = make_config(tracker.config(), source="wandb.config")
    cfg = _with_model_defaults(raw)
    # Show the model's real width/dropout on the dashboard; only keys left at null (a sweep's
    # own values are locked and already concrete).
    resolved = {k: getattr(cfg, k) for k in ("hidden_units", "dropout") if getattr(raw, k) is None}
    if resolved:
        tracker.update_config(resolved)
    device = resolve_device(cfg.device)
    load_start = time.perf_counter()
    data = load_data(cfg.dataset, data_dir, val_size=cfg.val_size, seed=cfg.seed, device=device)
    load_seconds = time.perf_counter() - load_start
    out_dir = Path(output_dir) if output_dir else out_root / tracker.run_name
    out_dir.mkdir(parents=True, exist_ok=True)
    if not quiet:
        echo(f"run {tracker.run_name} ({tracker.mode}): {cfg.model} on {cfg.dataset}, "
             f"{len(data.train)} train / {len(data.val)} val / {len(data.test)} test, "
             f"device {device}, outputs in {out_dir}")

    store.start_run(tracker.run_id, sweep_id=sweep_id, project=project, name=tracker.run_name,
                    config=dataclasses.asdict(cfg), output_dir=str(out_dir.absolute()),
                    wandb_dir=str(tracker.sync_dir or tracker.files_dir or "") or None)
    recorder = Recorder(tracker, store, tracker.run_id, sweep_id)
    with Heartbeat(store, tracker.run_id):
        result = train(
            cfg, data, recorder,
            checkpoint_dir=out_dir / "checkpoints",
            progress=not quiet and sys.stderr.isatty(),
            log=(lambda line: None) if quiet else echo,
            should_stop=recorder.should_stop,
        )
    report = TestReport(
        class_names=list(data.class_names),
        labels=result.test.labels,
        probs=result.test.probs,
        images=data.test.images[:, 0].cpu().numpy(),
        loss=result.test.loss,
        accuracy=result.test.accuracy,
    )
    title = f"{cfg.model} on {cfg.dataset} ({tracker.run_name})"
    plots = write_plots(report, result.history, out_dir, cfg.batch_size, title)
    tracker.log_report(report, cfg.log_misclassified, plots)

    epochs = len(result.history)
    headline = {
        "test/loss": result.test.loss,
        "test/accuracy": result.test.accuracy,
        "best/epoch": result.best_epoch,
        "best/val_accuracy": result.best["val/accuracy"],
        "best/val_loss": result.best["val/loss"],
        "model/n_params": result.n_params,
        "perf/train_seconds": result.train_seconds,
        "perf/seconds_per_epoch": result.train_seconds / epochs,
        "perf/data_seconds": load_seconds,
    }
    if result.stopped_early:
        headline["stopped_early"] = result.stopped_early
    tracker.log_summary(headline)
    summary = {
        "run_id": tracker.run_id,
        "run_name": tracker.run_name,
        "mode": tracker.mode,
        "config": dataclasses.asdict(cfg),
        "model": {"name": result.model_name, "args": result.model_args, "n_params": result.n_params},
        "device": result.device,
        **headline,
        "history": result.history,
        **report.summary(),
        "checkpoints": {"best": str(result.best_path), "last": str(result.last_path)},
        "plots": {k: str(v) for k, v in plots.items()},
        "output_dir": str(out_dir),
        "wandb_dir": str(tracker.sync_dir or tracker.files_dir or ""),
    }
    summary_path = write_json(summary, out_dir / "summary.json")
    store.end_run(tracker.run_id, "stopped" if result.stopped_early else "finished",
                  summary={**headline, "val/accuracy": result.best["val/accuracy"],
                           "val/loss": min(h["val/loss"] for h in result.history)},
                  exitcode=0, message=result.stopped_early or None)
    if tracker.files_dir is not None:  # files in the run folder are uploaded by wandb / wandb sync
        for path in [summary_path, *plots.values()]:
            shutil.copyfile(path, tracker.files_dir / path.name)
    if not quiet:
        echo(text_tables(report))
        echo(f"best epoch {result.best_epoch} (val accuracy {result.best['val/accuracy']:.4%}); "
             f"test accuracy {result.test.accuracy:.4%}; {result.train_seconds / epochs:.1f} s/epoch; "
             f"best checkpoint {result.best_path}")
    return summary
