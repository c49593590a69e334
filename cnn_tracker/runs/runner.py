"""One tracked training run, from the CLI's config to a finished W&B run and local outputs.

Order matters for "nothing half-written": everything that can be checked before ``wandb.init``
(config values, device, data presence, output folder) is checked first. After ``wandb.init`` the
final hyperparameters are re-read from ``wandb.config`` (a sweep may have changed them) and
validated again.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from cnn_tracker import env
from cnn_tracker.config import KEYS, RunSettings, TrainConfig, make_config
from cnn_tracker.errors import CheckpointError, ConfigError, UserError
from cnn_tracker.files import atomic_write
from cnn_tracker.store.db import Heartbeat, Store
from cnn_tracker.tracking.tracker import Tracker, make_tracker
from cnn_tracker.training.checkpoint import load_checkpoint
from cnn_tracker.training.data import check_val_size, get_spec, load_data, train_size
from cnn_tracker.training.engine import (
    Preempted,
    resolve_device,
    resolve_precision,
    train,
)
from cnn_tracker.training.models import model_args
from cnn_tracker.training.reports import TestReport, text_tables, write_plots

# Set by the offline sweep agent for its trials (the W&B run id comes in WANDB_RUN_ID).
SWEEP_ID_VAR = "CNN_TRACKER_SWEEP_ID"
# Set by the offline sweep agent when it requeues a preempted trial: the run id to resume.
RESUME_VAR = "CNN_TRACKER_RESUME"
# Keys a resumed run may change: they do not affect what is trained.
RESUME_MAY_CHANGE = ("device", "log_every", "log_misclassified", "eval_batch_size")


class RunPreempted(Exception):
    """The run stopped on SIGTERM/SIGINT after saving a resume checkpoint.

    ``exit_code`` is 128 + the signal number: non-zero, so W&B's agent requeues a run marked
    preempting, and our agent records the trial as preempted.
    """

    def __init__(self, message: str, exit_code: int, run_id: str, checkpoint: Path):
        super().__init__(message)
        self.exit_code, self.run_id, self.checkpoint = exit_code, run_id, checkpoint


class StopSignals:
    """SIGTERM and SIGINT ask training to stop at the next batch (with a resume checkpoint).

    A second signal aborts at once (KeyboardInterrupt). A trial of the offline agent also stops
    this way when its agent vanishes (SIGKILL, OOM), reported as SIGHUP. Call the object to poll.
    """

    def __init__(self, echo: Callable[[str], None]):
        self.signum = 0
        self._echo = echo
        self._previous: dict[int, Any] = {}
        self._parent = os.getppid() if os.environ.get(SWEEP_ID_VAR) else None

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum:
            raise KeyboardInterrupt
        self.signum = signum
        self._echo(f"{signal.Signals(signum).name} received: saving a resumable checkpoint at the "
                   "next batch (send it again to abort without one)")

    def __call__(self) -> int:
        if not self.signum and self._parent is not None and os.getppid() != self._parent:
            self.signum = signal.SIGHUP
            # Our stdout/stderr were a pipe to the vanished agent: writing would fail.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
        return self.signum

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


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
        from cnn_tracker.search.spec import should_stop

        stop, why = should_stop(self.sweep, self.store.runs(sweep_id=self.sweep.id), self.run_id)
        return f"early_terminate ({self.sweep.config['early_terminate'].get('type')}): {why}" if stop else ""


def write_json(obj: Any, path: Path) -> Path:
    """Write JSON through a temp file and a rename."""
    return atomic_write(path, json.dumps(obj, indent=2, default=str) + "\n")


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


def _progress(ckpt: dict[str, Any]) -> tuple[int, int]:
    return int(ckpt["resume"]["epoch"]), int(ckpt["resume"]["batch"])


def find_resume_checkpoint(ref: str, store: Store) -> tuple[Path, dict[str, Any]]:
    """The resumable checkpoint for ``ref`` (path, loaded): a ``.pt`` file, a run's output folder
    (or its ``checkpoints/``), or a run id of the run store. Of ``resume.pt`` (written on a
    signal) and ``last.pt`` (every epoch end), the one further along."""
    path = Path(ref).expanduser()
    if path.is_file():
        return path, load_resume_checkpoint(path)
    if path.is_dir():
        folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    else:
        run = store.run(ref)
        if run is None:
            raise UserError(
                f"--resume {ref!r} is not a checkpoint file, a run folder or a run id in the run "
                f"store {store.root}: pass the run's checkpoints/resume.pt (or last.pt), its output "
                "folder, or its run id (as printed when it stopped)."
            )
        if not run.output_dir:
            raise UserError(f"run {ref} never started training (no output folder): start it again.")
        folder = Path(run.output_dir) / "checkpoints"
    found = [folder / n for n in ("resume.pt", "last.pt") if (folder / n).is_file()]
    if not found:
        raise CheckpointError(
            f"no resume.pt or last.pt in {folder}: the run stopped before it saved a resumable "
            "checkpoint (before its first epoch ended), so start it again instead."
        )
    ckpts = {p: load_resume_checkpoint(p) for p in found}
    chosen = max(found, key=lambda p: _progress(ckpts[p]))
    return chosen, ckpts[chosen]


def load_resume_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint with a resume section (weights-only load), or a clear error."""
    ckpt = load_checkpoint(path)
    state = ckpt.get("resume")
    needed = ("epoch", "batch", "optimizer", "scaler", "rng", "partial", "history", "best",
              "best_epoch", "global_step", "train_seconds", "run")
    if not isinstance(state, dict):
        raise CheckpointError(
            f"checkpoint '{path}' holds weights only, no training state to resume: pass last.pt or "
            "resume.pt of the run (same folder), or its run id."
        )
    missing = [k for k in needed if k not in state]
    if missing:
        raise CheckpointError(f"the resume state in '{path}' lacks {', '.join(missing)}: it is "
                              "incomplete; resume from the run's last.pt instead.")
    return ckpt


def _resume_config(ckpt: dict[str, Any], path: Path, requested: TrainConfig | None) -> TrainConfig:
    """The saved config; ``requested`` (options given with --resume) may only change
    RESUME_MAY_CHANGE keys."""
    saved = _with_model_defaults(make_config(ckpt["config"], source=f"checkpoint '{path}'"))
    if requested is None:
        return saved
    requested = _with_model_defaults(requested)
    differ = [f"{k} {getattr(requested, k)!r} (saved {getattr(saved, k)!r})" for k in KEYS
              if k not in RESUME_MAY_CHANGE and getattr(requested, k) != getattr(saved, k)]
    if differ:
        raise ConfigError(
            f"--resume continues a run with its saved config, but these values differ: "
            f"{'; '.join(differ)}. Drop those options (only {', '.join(RESUME_MAY_CHANGE)} may "
            "change), or start a new run."
        )
    return dataclasses.replace(saved, **{k: getattr(requested, k) for k in RESUME_MAY_CHANGE})


def run_training(
    cfg: TrainConfig,
    settings: RunSettings,
    *,
    data_dir: Path,
    output_dir: Path | None,
    store_dir: str | os.PathLike[str] | None = None,
    quiet: bool = False,
    echo: Callable[[str], None] = print,
    resume: str | None = None,
    options_given: bool = True,
) -> dict[str, Any]:
    """Train with tracking; return the summary (also written to ``summary.json``).

    The run is recorded in the local run store (``store_dir``; see cnn_tracker.store) as well.
    ``resume`` (a checkpoint, run folder or run id; also CNN_TRACKER_RESUME, or WANDB_RUN_ID
    naming a preempted run of the store, as when W&B's agent requeues one) continues a run; then
    ``cfg`` may only differ from the saved config in RESUME_MAY_CHANGE keys (checked when
    ``options_given``). SIGTERM/SIGINT stop training with a resume checkpoint and raise
    :class:`RunPreempted`.
    """
    mode, notice = env.resolve_mode(settings.mode)
    if mode == "online" and not env.has_api_key():
        raise UserError(
            "W&B mode is online but no API key is configured: set WANDB_API_KEY (or run "
            "`wandb login`), or use --mode offline and `wandb sync` later."
        )
    store = Store(store_dir)
    ckpt = resume_path = None
    resume = resume or os.environ.get(RESUME_VAR) or _requeued_run(store)
    if resume:
        resume_path, ckpt = find_resume_checkpoint(resume, store)
        cfg = _resume_config(ckpt, resume_path, cfg if options_given else None)
        info = ckpt["resume"]["run"]
        if int(ckpt["resume"]["epoch"]) > cfg.epochs:
            raise UserError(f"run {info.get('run_id', '?')} already trained all its {cfg.epochs} "
                            f"epochs ('{resume_path}'): there is nothing to resume.")
        settings = dataclasses.replace(
            settings, **{k: info[k] for k in ("project", "entity", "group", "name", "notes")
                         if info.get(k) is not None},
            tags=tuple(info.get("tags") or settings.tags))
        if output_dir is None and info.get("output_dir"):
            output_dir = Path(info["output_dir"])
    # Checks before anything is written under the W&B folder.
    resolve_precision(cfg.precision, resolve_device(cfg.device))
    spec = get_spec(cfg.dataset)
    check_val_size(spec, train_size(spec, data_dir), cfg.val_size)
    out_root = Path(output_dir) if output_dir else env.output_root()
    _check_writable(out_root, "output folder")
    _check_writable(store.root, "run store")
    store.open()  # a damaged store fails here, before wandb.init
    if notice and not quiet:
        echo(notice)

    sweep_id = (os.environ.get(SWEEP_ID_VAR) or os.environ.get("WANDB_SWEEP_ID")
                or (info.get("sweep_id") if ckpt else None) or None)
    with StopSignals(lambda line: print(line, file=sys.stderr, flush=True)) as stop:
        if ckpt is None:
            tracker = make_tracker(cfg, settings, mode)
        else:
            tracker = make_tracker(cfg, settings, mode, resume_id=info.get("run_id"),
                                   resume_step=int(info.get("wandb_step", 0)))
            if not quiet:
                echo(f"resuming run {tracker.run_id} at epoch {ckpt['resume']['epoch']}, batch "
                     f"{ckpt['resume']['batch']}/{ckpt['resume'].get('steps_per_epoch', '?')} "
                     f"from {resume_path}")
        return _run_tracked(tracker, store, settings, sweep_id, data_dir, output_dir, out_root,
                            quiet, echo, stop, ckpt)


# Errors of the machine rather than the code: a full disk or quota, a read-only or vanished folder.
_OUTPUT_ERRNOS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
                  errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
                  errno.EFBIG: "the file is too large for this file system"}


def _output_error(exc: BaseException, run_id: str) -> UserError | None:
    """A clear error for a run stopped by its output folder (disk full, ...), or None.

    Checkpoints and summaries are written to a temp file and renamed, so the files already
    there are whole: the run can continue from its last epoch once the cause is fixed.
    """
    if not isinstance(exc, OSError) or exc.errno not in _OUTPUT_ERRNOS:
        return None
    where = f" writing '{exc.filename}'" if exc.filename else ""
    return UserError(
        f"the run stopped: {_OUTPUT_ERRNOS[exc.errno]}{where}. Nothing was half-written (each "
        f"file is written whole or not at all). Free space (or fix the folder), then continue "
        f"from the last epoch with `cnn-tracker train --resume {run_id}`."
    )


def _requeued_run(store: Store) -> str | None:
    """WANDB_RUN_ID when it names a preempted run of the store (W&B's agent requeued it)."""
    run_id = os.environ.get("WANDB_RUN_ID")
    if run_id and store.exists():
        store.open()
        run = store.run(run_id)
        if run is not None and run.state == "preempted":
            return run_id
    return None


def _run_tracked(tracker: Tracker, store: Store, settings: RunSettings,
                 sweep_id: str | None, data_dir: Path, output_dir: Path | None, out_root: Path,
                 quiet: bool, echo: Callable[[str], None], stop: StopSignals,
                 ckpt: dict[str, Any] | None) -> dict[str, Any]:
    try:
        summary = _train_tracked(tracker, store, settings, sweep_id, data_dir, output_dir,
                                 out_root, quiet, echo, stop, ckpt)
    except Preempted as exc:
        code = 128 + exc.signum
        name = signal.Signals(exc.signum).name
        where = f"epoch {exc.epoch}, batch {exc.batch}/{exc.steps_per_epoch}"
        tracker.mark_preempting()
        tracker.finish(exit_code=code)
        store.end_run(tracker.run_id, "preempted", exitcode=code, only_if_active=True,
                      message=f"{name} at {where}; resume checkpoint {exc.path}")
        store.close()
        sync = ""
        if tracker.sync_dir is not None:
            sync = (f" Upload this part with `wandb sync {tracker.sync_dir}` (a resumed part "
                    "after it with `wandb sync --append`).")
        raise RunPreempted(
            f"run {tracker.run_id} preempted by {name} at {where}: resumable checkpoint "
            f"{exc.path}. Continue it with `cnn-tracker train --resume {tracker.run_id}` "
            f"(or --resume {exc.path}).{sync}", code, tracker.run_id, exc.path) from None
    except BaseException as exc:
        error = _output_error(exc, tracker.run_id)
        try:
            tracker.finish(exit_code=1)
        except Exception:  # noqa: BLE001 - never mask the original error (e.g. a full disk)
            pass
        state = ("killed" if isinstance(exc, KeyboardInterrupt)
                 else "failed" if isinstance(error or exc, UserError) else "crashed")
        try:
            if store.run(tracker.run_id) is not None:
                store.end_run(tracker.run_id, state, message=f"{type(exc).__name__}: {exc}"[:500],
                              only_if_active=True)
        except Exception:  # noqa: BLE001 - never mask the original error
            pass
        if error is not None:
            raise error from None
        raise
    finally:
        store.close()
    tracker.finish(exit_code=0)
    if tracker.sync_dir is not None and ckpt is not None and not quiet:
        echo("this run was resumed: upload its first part with `wandb sync`, then this one with "
             f"`wandb sync --append {tracker.sync_dir}`")
    # Not in summary.json (written before finish): for callers that measure tracking cost.
    summary["perf/wandb_init_seconds"] = tracker.init_seconds
    summary["perf/wandb_finish_seconds"] = tracker.finish_seconds
    if tracker.sync_dir is not None and not quiet:
        echo(f"offline run saved; upload it with: wandb sync {tracker.sync_dir}")
    return summary


def _train_tracked(
    tracker: Tracker,
    store: Store,
    settings: RunSettings,
    sweep_id: str | None,
    data_dir: Path,
    output_dir: Path | None,
    out_root: Path,
    quiet: bool,
    echo: Callable[[str], None],
    stop: StopSignals,
    ckpt: dict[str, Any] | None,
) -> dict[str, Any]:
    # wandb.config wins: under a sweep it holds the agent's values. Validate it like any input.
    raw = make_config(tracker.config(), source="wandb.config")
    cfg = _with_model_defaults(raw)
    if ckpt is not None:  # a resumed run trains its saved config (a sweep's values included)
        cfg = _resume_config(ckpt, Path("resume checkpoint"), cfg)
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

    store.start_run(tracker.run_id, sweep_id=sweep_id, project=settings.project, name=tracker.run_name,
                    config=dataclasses.asdict(cfg), output_dir=str(out_dir.absolute()),
                    wandb_dir=str(tracker.sync_dir or tracker.files_dir or "") or None)
    recorder = Recorder(tracker, store, tracker.run_id, sweep_id)

    def run_info(logs_ahead: int) -> dict[str, Any]:  # kept in resume checkpoints for --resume
        return {"run_id": tracker.run_id, "run_name": tracker.run_name, "project": settings.project,
                "entity": settings.entity, "group": settings.group, "name": settings.name,
                "tags": list(settings.tags), "notes": settings.notes, "sweep_id": sweep_id,
                "output_dir": str(out_dir.absolute()),
                "wandb_step": tracker.step + logs_ahead}

    resume = {**ckpt["resume"], "state_dict": ckpt["state_dict"]} if ckpt is not None else None
    with Heartbeat(store, tracker.run_id):
        result = train(
            cfg, data, recorder,
            checkpoint_dir=out_dir / "checkpoints",
            progress=not quiet and sys.stderr.isatty(),
            log=(lambda line: None) if quiet else echo,
            should_stop=recorder.should_stop,
            stop_signal=stop,
            resume=resume,
            run_info=run_info,
        )
    (out_dir / "checkpoints" / "resume.pt").unlink(missing_ok=True)  # used up: last.pt is newer
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
