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
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable

from cnn_tracker import env
from cnn_tracker.config import RunSettings, TrainConfig
from cnn_tracker.errors import UserError
from cnn_tracker.files import atomic_write
from cnn_tracker.runs import lifecycle
from cnn_tracker.runs.lifecycle import Heartbeat
from cnn_tracker.runs.lock import FolderLock
from cnn_tracker.runs.outcome import (
    RunPreempted,
    output_error,
    sync_command,
    sync_parts,
)
from cnn_tracker.runs.plan import RunPlan, plan_run, replan
from cnn_tracker.runs.signals import StopSignals
from cnn_tracker.store.db import STORED_BEST, STORED_RESUME, STORED_RESUME_BEST, Store
from cnn_tracker.tracking.tracker import Tracker, make_tracker
from cnn_tracker.training.data import load_data
from cnn_tracker.training.engine import (
    Preempted,
    TrainHooks,
    train,
)
from cnn_tracker.training.reports import TestReport, text_tables, write_plots
from cnn_tracker.training.state import (
    CheckpointFiles,
)


class Recorder(TrainHooks):
    """The engine's hooks for a tracked run: passes its events to the tracker and records them
    in the local run store.

    It also answers the engine's "stop now?" after each epoch: for a trial of a local sweep with
    ``early_terminate``, by running W&B's hyperband over every run of the sweep (``sweeps``).
    ``stop`` is polled for a stop signal; ``info`` (the run's identity) goes into resume
    checkpoints with the W&B step; ``echo`` prints progress lines (None: quiet).
    """

    def __init__(self, tracker: Tracker, store: Store, run_id: str, sweep_id: str | None, *,
                 stop: StopSignals | None = None, info: dict[str, Any] | None = None,
                 echo: Callable[[str], None] | None = None):
        self.tracker, self.store, self.run_id = tracker, store, run_id
        self.sweep = store.find_sweep(sweep_id) if sweep_id else None
        self._stop, self._info, self._echo = stop, dict(info or {}), echo

    def log(self, line: str) -> None:
        if self._echo is None:
            return
        try:
            self._echo(line)
        except BrokenPipeError:
            # A local trial whose agent was killed between two polls (e.g. during validation):
            # its output pipe is gone. The poll sees the agent gone, silences the output and
            # preempts the run (SIGHUP) at the next check instead of letting it crash.
            if self._stop is None or not self._stop():
                raise

    def stop_signal(self) -> int:
        return self._stop() if self._stop is not None else 0

    def stop_requested(self) -> str:
        return self._stop.stop_reason() if self._stop is not None else ""

    def run_info(self, logs_ahead: int) -> dict[str, Any]:  # kept in resume checkpoints
        return {**self._info, "wandb_step": self.tracker.step + logs_ahead}

    def log_metrics(self, metrics: dict[str, float], epoch: int) -> None:
        self.tracker.log_metrics(metrics, epoch)
        self.store.record_epoch(self.run_id, epoch, metrics, wait=False)  # never blocks training

    def log_checkpoint(self, path: Path, metadata: dict[str, Any]) -> None:
        self.store.set_checkpoint(self.run_id, str(Path(path).absolute()))
        self.tracker.log_checkpoint(path, metadata)

    def log_batch(self, metrics: dict[str, float]) -> None:
        self.tracker.log_batch(metrics)

    def should_stop(self, epoch: int, metrics: dict[str, float]) -> str:
        if self.sweep is None or "early_terminate" not in self.sweep.config or self.store.away:
            return ""  # (a store that is away cannot tell: train on, judged when it is back)
        from cnn_tracker.search.engine import should_stop

        stop, why = should_stop(self.sweep, self.store.runs(sweep_id=self.sweep.id), self.run_id)
        if not stop:
            return ""
        reason = f"early_terminate ({self.sweep.config['early_terminate'].get('type')}): {why}"
        lifecycle.request_stop(self.store, self.run_id, reason)
        return reason


def write_json(obj: Any, path: Path) -> Path:
    """Write JSON through a temp file and a rename."""
    return atomic_write(path, json.dumps(obj, indent=2, default=str) + "\n")


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
    plan = plan_run(cfg, settings, data_dir=data_dir, output_dir=output_dir, store_dir=store_dir,
                    resume=resume, options_given=options_given)
    if plan.notice and not quiet:
        echo(plan.notice)
    under_wandb_agent = env.wandb_sweep_id() is not None and not env.is_local_trial()
    lock = FolderLock()  # one output folder, one run: held until this returns or the process ends
    try:
        if plan.known_folder() is not None:  # refused before wandb.init writes anything
            lock.acquire(plan.known_folder())
        with StopSignals(lambda line: print(line, file=sys.stderr, flush=True),
                         under_wandb_agent=under_wandb_agent, online=plan.mode == "online") as stop:
            tracker = _start_tracker(plan, quiet, echo, stop)
            lock.label(tracker.run_id)
            return _run_tracked(tracker, plan, quiet, echo, stop, lock)
    finally:
        lock.release()


def _start_tracker(plan: RunPlan, quiet: bool, echo: Callable[[str], None],
                   stop: StopSignals) -> Tracker:
    """``wandb.init`` (or the no-op tracker): a resumed run continues its W&B run and step, and
    its best-so-far summaries. W&B's "stop this run" reaches ``stop``."""
    if plan.resume is None:
        return make_tracker(plan.requested, plan.settings, plan.mode, on_stop=stop.request_stop,
                            quiet=quiet)
    info, state = plan.resume.info, plan.resume.state
    tracker = make_tracker(plan.requested, plan.settings, plan.mode, resume_id=info.get("run_id"),
                           resume_step=int(info.get("wandb_step", 0)), on_stop=stop.request_stop,
                           quiet=quiet)
    tracker.seed_best(state.history)
    if not quiet:
        echo(f"resuming run {tracker.run_id} at epoch {state.epoch}, batch "
             f"{state.batch}/{state.steps_per_epoch or '?'} from {plan.resume.path}")
    return tracker


def _run_tracked(tracker: Tracker, plan: RunPlan, quiet: bool, echo: Callable[[str], None],
                 stop: StopSignals, lock: FolderLock) -> dict[str, Any]:
    """Train, and record how the run ended: in W&B (exit code) and in the store (lifecycle)."""
    store = plan.store
    try:
        summary = _train_tracked(tracker, plan, quiet, echo, stop, lock)
    except Preempted as exc:
        code = 128 + exc.signum
        name = signal.Signals(exc.signum).name
        where = f"epoch {exc.epoch}, batch {exc.batch}/{exc.steps_per_epoch}"
        tracker.mark_preempting()
        tracker.finish(exit_code=code)
        store.put_checkpoint(tracker.run_id, STORED_RESUME, exc.path)  # any agent may resume it
        best = CheckpointFiles(Path(exc.path).parent).best  # tested if no later epoch is better
        if best.exists():
            store.put_checkpoint(tracker.run_id, STORED_RESUME_BEST, best)
        lifecycle.finish(store, tracker.run_id, "preempted", exitcode=code,
                         message=f"{name} at {where}; resume checkpoint {exc.path}")
        store.close()
        sync = ""
        if tracker.sync_dir is not None:
            sync = (f" Upload what ran so far with `{sync_command(tracker, plan)}`; the resumed "
                    "run prints the command for all its parts.")
        raise RunPreempted(
            f"run {tracker.run_id} preempted by {name} at {where}: resumable checkpoint "
            f"{exc.path}. Continue it with `cnn-tracker train --resume {tracker.run_id}` "
            f"(or --resume {exc.path}).{sync}", code, tracker.run_id, exc.path) from None
    except BaseException as exc:
        error = output_error(exc, tracker.run_id)
        try:
            tracker.finish(exit_code=1)
        except Exception:  # noqa: BLE001 - never mask the original error (e.g. a full disk)
            pass
        state = ("killed" if isinstance(exc, KeyboardInterrupt)
                 else "failed" if isinstance(error or exc, UserError) else "crashed")
        try:
            lifecycle.finish(store, tracker.run_id, state,
                             message=f"{type(exc).__name__}: {exc}"[:500])
        except Exception:  # noqa: BLE001 - never mask the original error
            pass
        if error is not None:
            raise error from None
        raise
    finally:
        store.close()
    tracker.finish(exit_code=0)
    # Not in summary.json (written before finish): for callers that measure tracking cost.
    summary["perf/wandb_init_seconds"] = tracker.init_seconds
    summary["perf/wandb_finish_seconds"] = tracker.finish_seconds
    if tracker.sync_dir is not None and not quiet:
        if len(sync_parts(tracker, plan)) > 1:
            echo(f"offline run saved; upload its parts, in order, with: "
                 f"{sync_command(tracker, plan)}")
        else:
            echo(f"offline run saved; upload it with: {sync_command(tracker, plan)}")
    return summary


def _train_tracked(tracker: Tracker, plan: RunPlan, quiet: bool, echo: Callable[[str], None],
                   stop: StopSignals, lock: FolderLock) -> dict[str, Any]:
    # wandb.config wins: under a sweep it holds the agent's values (validated like any input).
    plan, shown = replan(plan, tracker.config())
    if shown:  # show the model's real width/dropout on the dashboard
        tracker.update_config(shown)
    cfg, store, settings, sweep_id = plan.cfg, plan.store, plan.settings, plan.sweep_id
    device, amp_dtype = plan.device, plan.amp_dtype
    load_start = time.perf_counter()
    data = load_data(cfg.dataset, plan.data_dir, val_size=cfg.val_size, seed=cfg.seed,
                     device=device)
    load_seconds = time.perf_counter() - load_start
    out_dir = plan.run_folder(tracker.run_name)
    out_dir.mkdir(parents=True, exist_ok=True)
    lock.acquire(out_dir)  # a no-op when it was known (and locked) before wandb.init
    lock.label(tracker.run_id)
    if not quiet:
        echo(f"run {tracker.run_name} ({tracker.mode}): {cfg.model} on {cfg.dataset}, "
             f"{len(data.train)} train / {len(data.val)} val / {len(data.test)} test, "
             f"device {device}, outputs in {out_dir}")
    lifecycle.start(store, tracker.run_id, sweep_id=sweep_id, project=settings.project,
                    name=tracker.run_name, config=dataclasses.asdict(cfg),
                    output_dir=str(out_dir.absolute()),
                    wandb_dir=str(tracker.sync_dir or tracker.files_dir or "") or None)
    info = {"run_id": tracker.run_id, "run_name": tracker.run_name, "project": settings.project,
            "entity": settings.entity, "group": settings.group, "name": settings.name,
            "tags": list(settings.tags), "notes": settings.notes, "sweep_id": sweep_id,
            "output_dir": str(out_dir.absolute()),
            "sync_dirs": sync_parts(tracker, plan) if tracker.sync_dir is not None else []}
    # (kept in resume checkpoints for --resume)
    recorder = Recorder(tracker, store, tracker.run_id, sweep_id, stop=stop, info=info,
                        echo=None if quiet else echo)
    files = CheckpointFiles(out_dir / "checkpoints")
    with Heartbeat(store, tracker.run_id):
        result = train(cfg, data, recorder, files=files, amp_dtype=amp_dtype,
                       progress=not quiet and sys.stderr.isatty(),
                       resume=plan.resume.state if plan.resume is not None else None)
    files.resume.unlink(missing_ok=True)  # used up: last.pt is newer
    return _report(tracker, plan, data, result, out_dir, load_seconds, quiet, echo)


def _report(tracker: Tracker, plan: RunPlan, data, result, out_dir: Path, load_seconds: float,
            quiet: bool, echo: Callable[[str], None]) -> dict[str, Any]:
    """The test report, plots, W&B summary, summary.json and the store's end of the run."""
    cfg = plan.cfg
    report = TestReport(
        class_names=list(data.class_names),
        labels=result.test.labels,
        probs=result.test.probs,
        images=data.test.images[:, 0].cpu().numpy(),
        loss=result.test.loss,
        accuracy=result.test.accuracy,
    )
    title = f"{cfg.model} on {cfg.dataset} ({tracker.run_name})"
    plots = write_plots(report, result.history, out_dir, cfg.eval_batch_size, title)
    tracker.log_report(report, cfg.log_misclassified, plots)
    tracker.log_last_checkpoint(result.last_path, {**result.history[-1], "model": cfg.model, "dataset": cfg.dataset})

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
    plan.store.put_checkpoint(tracker.run_id, STORED_BEST, result.best_path)  # for any machine
    lifecycle.finish(plan.store, tracker.run_id, "stopped" if result.stopped_early else "finished",
                     summary={**headline, "val/accuracy": result.best["val/accuracy"],
                              "val/loss": min(h["val/loss"] for h in result.history)},
                     exitcode=0, message=result.stopped_early or None)
    if tracker.files_dir is not None:  # files in the run folder are uploaded by wandb / wandb sync
        for path in [summary_path, *plots.values()]:
            shutil.copyfile(path, tracker.files_dir / path.name)
    if not quiet:
        echo(text_tables(report))
        echo(f"best epoch {result.best_epoch} (val accuracy {result.best['val/accuracy']:.2%}); "
             f"test accuracy {result.test.accuracy:.2%}; {result.train_seconds / epochs:.1f} s/epoch; "
             f"best checkpoint {result.best_path}")
    return summary
