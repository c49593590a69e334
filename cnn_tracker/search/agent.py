"""The offline sweep agent: processes only (scheduling is search.scheduler, states runs.lifecycle).

One agent runs trials one after another: claim the next trial (search.scheduler), run the
sweep's ``command`` as a subprocess (macros expanded as ``wandb agent`` does, no shell), keep the
trial's heartbeat while it runs, and record how its process ended (runs.lifecycle). Like W&B's
agent it waits while its sweep is paused, ends when it is stopped, finished or canceled, and
kills its running trial within one heartbeat of a cancel.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections import deque
from pathlib import Path
from typing import Callable

import yaml

from cnn_tracker import env
from cnn_tracker.files import atomic_write
from cnn_tracker.runs import lifecycle
from cnn_tracker.runs.signals import Interrupted, catch_stop_signals, restore_signals
from cnn_tracker.search.command import expand_command, runs_our_train
from cnn_tracker.search.engine import suggest
from cnn_tracker.search.foreign import Relay
from cnn_tracker.search.scheduler import claim_trial
from cnn_tracker.store.db import STALE_SECONDS, Store
from cnn_tracker.store.records import Run, Sweep
from cnn_tracker.table import metric_cell

PAUSE_POLL_SECONDS = 5.0  # an agent of a paused sweep looks this often whether it may go on
STOP_GRACE_SECONDS = 30.0  # after forwarding Ctrl-C, how long a trial may take to end cleanly


def _write_param_files(store: Store, sweep: Sweep, run: Run) -> tuple[Path, Path]:
    """The files ``wandb agent`` writes: config-<run>.yaml (WANDB_SWEEP_PARAM_PATH) and .json."""
    import json

    folder = store.sweep_files(sweep.id)
    yaml_path = folder / f"config-{run.id}.yaml"
    values = {"wandb_version": 1, **{k: {"value": v} for k, v in run.params.items()}}
    atomic_write(yaml_path, yaml.safe_dump(values, sort_keys=False))
    json_path = folder / f"config-{run.id}.json"
    atomic_write(json_path, json.dumps(run.params))
    return yaml_path, json_path


def trial_env(store: Store, sweep: Sweep, run: Run, param_path: Path,
              wandb_dir: Path | None = None) -> dict[str, str]:
    """The trial's environment (see :func:`cnn_tracker.env.trial_environ`)."""
    return env.trial_environ(run_id=run.id, project=sweep.project,
                             param_path=str(param_path), store_root=store.location.value,
                             sweep=sweep.id, resume=is_requeued(run), wandb_dir=wandb_dir)


# A trial's process: started from the environment it gets; what the log's first line says it is.
Start = Callable[[dict], subprocess.Popen]


def command_start(sweep: Sweep, run: Run, json_path: Path) -> tuple[Start, str]:
    """The sweep's ``command``, macros expanded as ``wandb agent`` does (no shell)."""
    argv = expand_command(sweep.config, run.params, json_file=json_path, environ=env.current())

    def start(environ: dict) -> subprocess.Popen:
        return subprocess.Popen(
            argv, env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, text=True, errors="replace", bufsize=1,
            start_new_session=True,  # Ctrl-C reaches the agent, which forwards it
        )

    return start, " ".join(argv)


def is_requeued(run: Run) -> bool:
    """A claimed trial that already ran: a preempted one, to be resumed."""
    return run.started_at is not None


def _outcome(returncode: int) -> str:
    if returncode == 0:
        return "finished"
    if returncode == 2:
        return "failed"  # our exit code for bad input: the trial's config or data was rejected
    if returncode in (129, 130, 143, -signal.SIGINT, -signal.SIGTERM, -signal.SIGHUP):
        return "killed"  # unless the trial recorded itself as preempted (it saved a checkpoint)
    return "crashed"


def _params_text(params: dict) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


# Lines of a trial's output shown in the agent's console by default (the rest stays in its log).
PROGRESS_LINE = re.compile(r"^(epoch \d+/\d+ |stopped (after|during) epoch |resuming )")


def _trial_end_line(name: str, sweep: Sweep, run: Run) -> str:
    """One line per trial end: state, the sweep's metric, epochs and time; the log on failure."""
    metric = sweep.metric
    value = run.best_metric(*metric) if metric else None
    shown = f"{metric[0]} {metric_cell(metric[0], value)}, " if value is not None else ""
    line = f"[{name}] trial {run.id} {run.state}: {shown}{run.epochs} epoch(s), {run.seconds or 0:.0f} s"
    if run.message and run.state != "finished":
        line += f" ({run.message})"
    if run.state in ("crashed", "failed") and run.log_path:
        line += f"; log: {run.log_path}"
    return line


def run_trial(store: Store, sweep: Sweep, run: Run, *, name: str, echo: Callable[[str], None],
              stream: bool, progress: bool = True,
              start: tuple[Start, str] | None = None) -> Run:
    """Run one claimed trial to its end and return it as recorded.

    Its whole output goes to its log file in the store's sweep folder; the console gets every
    line with ``stream`` (``--verbose``), else its epoch lines with ``progress``. ``start``
    replaces the sweep's command (the Python form: a function in a child process). A trial that
    is not our ``train`` gets its own W&B folder, whose run file the agent relays to the store.
    """
    param_path, json_path = _write_param_files(store, sweep, run)
    foreign = start is not None or not runs_our_train(sweep.config)
    launch, shown = start or command_start(sweep, run, json_path)
    wandb_dir = store.sweep_files(sweep.id) / "runs" / run.id if foreign else None
    log_path = store.sweep_files(sweep.id) / f"{run.id}.log"
    tail: deque[str] = deque(maxlen=8)
    with open(log_path, "w", encoding="utf-8") as log:
        log.write("$ " + shown + "\n")
        log.flush()
        try:
            proc = launch(trial_env(store, sweep, run, param_path, wandb_dir))
        except OSError as exc:
            lifecycle.end_by_agent(store, run.id, "failed", exitcode=127,
                                   message=f"cannot start {shown[:80]!r}: {exc.strerror}")
            echo(f"[{name}] trial {run.id} failed: cannot start {shown[:80]!r} ({exc.strerror}); "
                 "fix the sweep's command")
            return store.run(run.id)
        lifecycle.launched(store, run.id, proc.pid, str(log_path))
        relay = None
        if wandb_dir is not None:
            store.update_run(run.id, {"wandb_dir": str(wandb_dir)})
            relay = Relay(store, sweep, run, wandb_dir, proc.pid, echo, name)
        reader = _pump(proc, log, tail, lambda line: stream or (progress and PROGRESS_LINE.match(line)),
                       lambda line: echo(f"[{name} {run.id}] {line}"))
        try:
            _wait(store, sweep, run, proc, name=name, echo=echo)
        except (KeyboardInterrupt, Interrupted) as exc:
            echo(f"[{name}] stopping trial {run.id} (it saves a resumable checkpoint) ...")
            _stop_process(proc)
            reader.join(timeout=5)
            if relay is not None:
                relay.finish("killed")
            lifecycle.end_by_agent(store, run.id, "killed", exitcode=proc.returncode,
                                   message="agent interrupted")
            if store.run(run.id).state == "preempted":
                echo(f"[{name}] trial {run.id} preempted; `cnn-tracker agent {sweep.id}` resumes it")
            raise Interrupted(getattr(exc, "signum", signal.SIGINT)) from None
        reader.join(timeout=5)
    return _record_end(store, run, proc.returncode, tail, relay)


def _pump(proc, log, tail: deque, shown: Callable[[str], object],
          echo: Callable[[str], None]) -> threading.Thread:
    """Copy the trial's output to its log (and the lines ``shown`` picks to ``echo``)."""
    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            log.flush()
            tail.append(line.rstrip())
            if shown(line):
                echo(line.rstrip())

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    return reader


def _wait(store: Store, sweep: Sweep, run: Run, proc, *, name: str,
          echo: Callable[[str], None]) -> None:
    """Until the trial's process ends: its heartbeat, and a cancel of the sweep."""
    while True:
        try:
            proc.wait(timeout=env.heartbeat_seconds())
            return
        except subprocess.TimeoutExpired:
            store.heartbeat(run.id)
            if store.sweep(sweep.id).state == "canceled":
                _cancel_trial(store, sweep, run, proc, name=name, echo=echo)


def _record_end(store: Store, run: Run, rc: int, tail: deque, relay: Relay | None) -> Run:
    state = _outcome(rc)
    message = None if state == "finished" else " | ".join(t for t in tail if t)[-500:]
    summary = None
    if relay is not None:  # a foreign program: its metrics are in its own W&B run
        state, summary, note = relay.finish(state)
        if state in ("finished", "stopped") or not message:  # else the log's tail says more
            message = note or message
    lifecycle.end_by_agent(store, run.id, state, exitcode=rc, message=message, summary=summary)
    return store.run(run.id)


def _sync_hint(store: Store, sweep: Sweep, done: int, echo: Callable[[str], None]) -> None:
    """How to upload a foreign program's trials (each has its own W&B folder)."""
    runs = store.sweep_files(sweep.id) / "runs"
    if done and not runs_our_train(sweep.config) and any(runs.glob("*/wandb/offline-run-*")):
        echo(f"its trials' W&B runs are offline: upload them with `wandb sync "
             f"{runs}/*/wandb/offline-run-*`")


def _cancel_trial(store: Store, sweep: Sweep, run: Run, proc: subprocess.Popen, *, name: str,
                  echo: Callable[[str], None]) -> None:
    """The sweep was canceled: record the trial killed *first* (so it cannot record itself as
    preempted and be resumed), then stop it with SIGINT (SIGKILL after the grace period)."""
    lifecycle.end_by_agent(store, run.id, "killed", exitcode=None,
                           message=f"sweep {sweep.id} canceled")
    echo(f"[{name}] sweep {sweep.id} canceled: killing trial {run.id}")
    _stop_process(proc)


def _wait_if_paused(store: Store, sweep_id: str, *, name: str, echo: Callable[[str], None],
                    announce: bool) -> bool:
    """True, after one poll, while the sweep is paused (W&B's agents stay alive too)."""
    if store.sweep(sweep_id).state != "paused":
        return False
    if announce:
        echo(f"[{name}] sweep {sweep_id} is paused; waiting (`cnn-tracker sweep resume "
             f"{sweep_id}` continues it, stop or cancel ends it)")
    time.sleep(min(PAUSE_POLL_SECONDS, env.heartbeat_seconds()))
    return True


def _stop_process(proc: subprocess.Popen) -> None:
    """SIGINT to the trial's process group, then SIGKILL after a grace period."""
    for sig, wait in ((signal.SIGINT, STOP_GRACE_SECONDS), (signal.SIGKILL, 10.0)):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue


def run_agent(
    store: Store,
    sweep_id: str,
    *,
    count: int | None = None,
    max_failures: int = 3,
    name: str = "agent",
    echo: Callable[[str], None] = print,
    stream: bool = False,
    progress: bool = True,
    stale_seconds: float = STALE_SECONDS,
    start: tuple[Start, str] | None = None,
) -> int:
    """Run trials of a local sweep until it is done, ``count`` trials ran, or too many failed.

    The console gets one line per trial start and end and, with ``progress``, its epoch lines;
    ``stream`` shows everything a trial prints (it always goes to the trial's log file).

    Returns the exit code: 0, 1 after ``max_failures`` consecutive failed trials, 128 + the
    signal number when interrupted (130 Ctrl-C, 143 SIGTERM).

    Preempted trials of the sweep (stopped by a signal, with a resume checkpoint) are claimed
    first and continued where they stopped; runs whose heartbeat went stale (their process was
    killed) are marked crashed. ``start`` replaces the sweep's command (see :func:`run_trial`).
    """
    sweep = store.sweep(sweep_id)
    previous = catch_stop_signals()
    done = failures = 0
    waiting = False  # told the user the sweep is paused
    try:
        while count is None or done < count:
            for run_id in lifecycle.reap_stale(store, stale_seconds):
                echo(f"[{name}] run {run_id} stopped sending heartbeats: marked crashed")
            run, why = claim_trial(store, sweep_id, suggest, agent=name)
            if run is None and _wait_if_paused(store, sweep_id, name=name, echo=echo,
                                               announce=not waiting):
                waiting = True
                continue
            waiting = False
            if run is None:
                echo(f"[{name}] {why}; agent done after {done} trial(s)")
                _sync_hint(store, sweep, done, echo)
                return 0
            done += 1
            total = f"/{count}" if count else ""
            verb = "resuming preempted trial" if is_requeued(run) else "trial"
            echo(f"[{name}] {verb} {run.id} ({done}{total}): {_params_text(run.params)}")
            run = run_trial(store, sweep, run, name=name, echo=echo, stream=stream,
                            progress=progress, start=start)
            echo(_trial_end_line(name, sweep, run))
            if run.state == "preempted":  # stopped from outside (the agent carries on)
                continue
            if run.state in ("crashed", "failed"):
                failures += 1
                if failures >= max_failures:
                    echo(f"[{name}] {failures} trials in a row failed; stopping this agent so it "
                         f"does not burn the sweep. Last log: {run.log_path}. Fix the cause, then "
                         f"start the agent again (--max-failures sets the limit).")
                    return 1
            else:
                failures = 0
        echo(f"[{name}] ran {done} trial(s) (--count {count}); agent done")
        _sync_hint(store, sweep, done, echo)
        return 0
    except (KeyboardInterrupt, Interrupted) as exc:
        echo(f"[{name}] interrupted; agent stopped")
        return 128 + getattr(exc, "signum", signal.SIGINT)
    finally:
        restore_signals(previous)
        store.close()
