"""Sweep agents: the offline one (our store + W&B's ``sweeps`` engine) and launching several.

One agent runs trials one after another: claim the next suggestion from the store, run the
sweep's ``command`` as a subprocess (macros expanded as ``wandb agent`` does, no shell), keep the
trial's heartbeat, and record how it ended. ``launch`` starts one agent process per GPU (each
sees only its GPU through CUDA_VISIBLE_DEVICES) or N on CPU, staggered, and stops them all on
Ctrl-C. Online, the agents it starts are W&B's own (``wandb agent``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Callable, Sequence

import yaml

from cnn_tracker.files import atomic_write
from cnn_tracker.search.spec import expand_command, suggest
from cnn_tracker.store.db import (
    STALE_SECONDS,
    STORE_VAR,
    Run,
    Store,
    Sweep,
    heartbeat_seconds,
)

STOP_GRACE_SECONDS = 30.0  # after forwarding Ctrl-C, how long a trial may take to end cleanly


class Interrupted(Exception):
    """The agent was asked to stop (Ctrl-C or SIGTERM)."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_interrupted(signum, frame):  # pragma: no cover - exercised through subprocess tests
    raise Interrupted(signum)


def _catch_stop_signals():
    """Handle SIGTERM, and SIGINT even when started in the background (where the shell made it
    ignored, and children would inherit that); returns the previous handlers."""
    return (signal.signal(signal.SIGTERM, _raise_interrupted),
            signal.signal(signal.SIGINT, signal.default_int_handler))


def _restore_signals(previous) -> None:
    signal.signal(signal.SIGTERM, previous[0])
    signal.signal(signal.SIGINT, previous[1])


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


def trial_env(store: Store, sweep: Sweep, run: Run, param_path: Path) -> dict[str, str]:
    """The trial's environment: an offline W&B run in the sweep's group, reporting to the store.

    WANDB_SWEEP_ID is *not* set: the cloud does not know local sweeps, and ``wandb sync`` of a
    run naming an unknown sweep would fail. The run group (= the local sweep id) keeps the
    trials together on the dashboard after syncing. A requeued (preempted) trial also gets
    CNN_TRACKER_RESUME, so `train` continues it from its resume checkpoint.
    """
    from cnn_tracker.runs.runner import RESUME_VAR

    env = dict(os.environ)
    env.pop("WANDB_SWEEP_ID", None)
    env.pop("WANDB_API_KEY", None)  # trials of a local sweep run offline: they need no key
    env.pop(RESUME_VAR, None)
    if is_requeued(run):
        env[RESUME_VAR] = run.id
    env.update({
        "WANDB_MODE": "offline",
        "WANDB_RUN_ID": run.id,
        "WANDB_RUN_GROUP": sweep.id,
        "WANDB_PROJECT": sweep.project,
        "WANDB_SWEEP_PARAM_PATH": str(param_path),
        STORE_VAR: str(store.root),
        "CNN_TRACKER_SWEEP_ID": sweep.id,
        "PYTHONUNBUFFERED": "1",
    })
    return env


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


def run_trial(store: Store, sweep: Sweep, run: Run, *, name: str, echo: Callable[[str], None],
              stream: bool) -> Run:
    """Run one claimed trial to its end and return it as recorded."""
    param_path, json_path = _write_param_files(store, sweep, run)
    argv = expand_command(sweep.config, run.params, json_file=json_path, environ=os.environ)
    log_path = store.sweep_files(sweep.id) / f"{run.id}.log"
    tail: deque[str] = deque(maxlen=8)
    with open(log_path, "w", encoding="utf-8") as log:
        log.write("$ " + " ".join(argv) + "\n")
        log.flush()
        try:
            proc = subprocess.Popen(
                argv, env=trial_env(store, sweep, run, param_path), stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, errors="replace",
                bufsize=1, start_new_session=True,  # Ctrl-C reaches the agent, which forwards it
            )
        except OSError as exc:
            store.end_run(run.id, "failed", message=f"cannot start {argv[0]!r}: {exc.strerror}",
                          exitcode=127)
            echo(f"[{name}] trial {run.id} failed: cannot start {argv[0]!r} ({exc.strerror}); "
                 "fix the sweep's command")
            return store.run(run.id)
        store.mark_running(run.id, proc.pid, str(log_path))

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                log.flush()
                tail.append(line.rstrip())
                if stream:
                    echo(f"[{name} {run.id}] {line.rstrip()}")

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            while True:
                try:
                    proc.wait(timeout=heartbeat_seconds())
                    break
                except subprocess.TimeoutExpired:
                    store.heartbeat(run.id)
        except (KeyboardInterrupt, Interrupted) as exc:
            echo(f"[{name}] stopping trial {run.id} (it saves a resumable checkpoint) ...")
            _stop_process(proc)
            reader.join(timeout=5)
            store.end_run(run.id, "killed", exitcode=proc.returncode, message="agent interrupted",
                          only_if_active=True)
            if store.run(run.id).state == "preempted":
                echo(f"[{name}] trial {run.id} preempted; `cnn-tracker agent {sweep.id}` resumes it")
            raise Interrupted(getattr(exc, "signum", signal.SIGINT)) from None
        reader.join(timeout=5)
    rc = proc.returncode
    state = _outcome(rc)
    message = None if state == "finished" else " | ".join(t for t in tail if t)[-500:]
    store.end_run(run.id, state, exitcode=rc, message=message, only_if_active=True)
    return store.run(run.id)


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
    stream: bool = True,
    stale_seconds: float = STALE_SECONDS,
) -> int:
    """Run trials of a local sweep until it is done, ``count`` trials ran, or too many failed.

    Returns the exit code: 0, 1 after ``max_failures`` consecutive failed trials, 128 + the
    signal number when interrupted (130 Ctrl-C, 143 SIGTERM).

    Preempted trials of the sweep (stopped by a signal, with a resume checkpoint) are claimed
    first and continued where they stopped; runs whose heartbeat went stale (their process was
    killed) are marked crashed.
    """
    sweep = store.sweep(sweep_id)
    previous = _catch_stop_signals()
    done = failures = 0
    try:
        while count is None or done < count:
            for run_id in store.reap_stale(stale_seconds):
                echo(f"[{name}] run {run_id} stopped sending heartbeats: marked crashed")
            run, why = store.claim_trial(sweep_id, suggest, agent=name)
            if run is None:
                echo(f"[{name}] {why}; agent done after {done} trial(s)")
                return 0
            done += 1
            total = f"/{count}" if count else ""
            verb = "resuming preempted trial" if is_requeued(run) else "trial"
            echo(f"[{name}] {verb} {run.id} ({done}{total}): {_params_text(run.params)}")
            run = run_trial(store, sweep, run, name=name, echo=echo, stream=stream)
            metric = sweep.metric
            value = run.best_metric(*metric) if metric else None
            shown = f"{metric[0]} {value:.4f}, " if value is not None else ""
            echo(f"[{name}] trial {run.id} {run.state}: {shown}{run.epochs} epoch(s), "
                 f"{run.seconds or 0:.0f} s" + (f" ({run.message})" if run.message and run.state != "finished" else ""))
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
        return 0
    except (KeyboardInterrupt, Interrupted) as exc:
        echo(f"[{name}] interrupted; agent stopped")
        return 128 + getattr(exc, "signum", signal.SIGINT)
    finally:
        _restore_signals(previous)
        store.close()


# -- several agents ---------------------------------------------------------------------------
def agent_slots(gpus: Sequence[str] | None, agents: int) -> list[dict[str, str]]:
    """Environment overrides of each agent: one per GPU, or ``agents`` on CPU sharing the cores."""
    if gpus:
        return [{"CUDA_VISIBLE_DEVICES": g} for g in gpus]
    slots = [{} for _ in range(agents)]
    if agents > 1 and "OMP_NUM_THREADS" not in os.environ:
        threads = str(max(1, (os.cpu_count() or 1) // agents))
        for slot in slots:
            slot["OMP_NUM_THREADS"] = threads  # N agents x all cores would oversubscribe the CPU
    return slots


def launch(
    commands: Sequence[list[str]],
    envs: Sequence[dict[str, str]],
    *,
    stagger: float,
    echo: Callable[[str], None] = print,
    spawn: Callable[..., subprocess.Popen] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Start one agent process per command (staggered); wait for all; Ctrl-C stops them all."""
    spawn = spawn or subprocess.Popen
    procs: list[subprocess.Popen] = []
    previous = _catch_stop_signals()
    try:
        for i, (argv, extra) in enumerate(zip(commands, envs)):
            if i:
                sleep(stagger)  # never two agents asking for their first trial at the same moment
            env = {**os.environ, **extra}
            shown = " ".join(f"{k}={v}" for k, v in extra.items() if k != "PATH")
            echo(f"starting agent {i + 1}/{len(commands)}{' with ' + shown if shown else ''}")
            procs.append(spawn(argv, env=env, start_new_session=True))
        return max((p.wait() for p in procs), default=0)
    except (KeyboardInterrupt, Interrupted):
        echo(f"stopping {len(procs)} agent(s) ...")
        for p in procs:
            if p.poll() is None:
                try:
                    p.send_signal(signal.SIGINT)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + STOP_GRACE_SECONDS + 15
        for p in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
        return 130
    finally:
        _restore_signals(previous)


def local_agent_command(sweep_id: str, *, store: Store, count: int | None, max_failures: int,
                        name: str, stale_after: float = STALE_SECONDS) -> list[str]:
    argv = [sys.executable, "-m", "cnn_tracker", "agent", sweep_id, "--store", str(store.root),
            "--max-failures", str(max_failures), "--name", name, "--quiet-trials",
            "--stale-after", f"{stale_after:g}"]
    if count:
        argv += ["--count", str(count)]
    return argv


def wandb_agent_command(sweep_path: str, *, count: int | None, max_failures: int) -> list[str]:
    """W&B's own agent for a cloud sweep, forwarding Ctrl-C to its runs."""
    argv = [sys.executable, "-m", "wandb", "agent", "--forward-signals",
            "--max-consecutive-failed-runs", str(max_failures)]
    if count:
        argv += ["--count", str(count)]
    return [*argv, sweep_path]


def wandb_agent_env() -> dict[str, str]:
    """``wandb agent`` runs ``${interpreter}`` as plain ``python``: make that this environment's."""
    bindir = str(Path(sys.executable).parent)
    return {"PATH": bindir + os.pathsep + os.environ.get("PATH", "")}
