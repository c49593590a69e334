"""Several agents on one machine: one per GPU (each sees only its GPU through CUDA_VISIBLE_DEVICES)
or N on CPU, staggered; Ctrl-C stops them all. Online, the agents started are W&B's own
(``wandb agent``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from cnn_tracker import env
from cnn_tracker.runs.signals import Interrupted, catch_stop_signals, restore_signals
from cnn_tracker.search.agent import STOP_GRACE_SECONDS
from cnn_tracker.store.db import STALE_SECONDS, Store


def agent_slots(gpus: Sequence[str] | None, agents: int) -> list[dict[str, str]]:
    """Environment overrides of each agent: one per GPU, or ``agents`` on CPU sharing the cores."""
    if gpus:
        return [env.agent_slot(g, None) for g in gpus]
    # N agents x all cores would oversubscribe the CPU: each gets its share of threads.
    threads = max(1, (os.cpu_count() or 1) // agents) if agents > 1 else None
    return [env.agent_slot(None, threads) for _ in range(agents)]


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
    previous = catch_stop_signals()
    try:
        for i, (argv, extra) in enumerate(zip(commands, envs)):
            if i:
                sleep(stagger)  # never two agents asking for their first trial at the same moment
            shown = " ".join(f"{k}={v}" for k, v in extra.items() if k not in env.UNSHOWN_VARS)
            echo(f"starting agent {i + 1}/{len(commands)}{' with ' + shown if shown else ''}")
            procs.append(spawn(argv, env=env.child_environ(extra), start_new_session=True))
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
        restore_signals(previous)


def local_agent_command(sweep_id: str, *, count: int | None, max_failures: int,
                        name: str, stale_after: float = STALE_SECONDS) -> list[str]:
    """A local agent's argv; its store reaches it through the environment
    (:func:`store_environ`), so a database password never shows in a process list."""
    argv = [sys.executable, "-m", "cnn_tracker", "agent", sweep_id, "--max-failures", str(max_failures), "--name", name,
            "--stale-after", f"{stale_after:g}"]
    if count:
        argv += ["--count", str(count)]
    return argv


def store_environ(store: Store) -> dict[str, str]:
    """What a child agent needs to open ``store`` (the full URL: never printed)."""
    return {env.STORE_VAR: store.location.value}


def wandb_agent_command(sweep_path: str, *, count: int | None, max_failures: int) -> list[str]:
    """W&B's own agent for a cloud sweep, forwarding Ctrl-C to its runs."""
    argv = [sys.executable, "-m", "wandb", "agent", "--forward-signals",
            "--max-consecutive-failed-runs", str(max_failures)]
    if count:
        argv += ["--count", str(count)]
    return [*argv, sweep_path]


def wandb_agent_env() -> dict[str, str]:
    """``wandb agent`` runs ``${interpreter}`` as plain ``python``: make that this environment's."""
    return env.with_path_first(str(Path(sys.executable).parent))
