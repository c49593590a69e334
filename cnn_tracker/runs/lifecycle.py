"""A run's states and the moves between them: the ONLY module that writes a run's state.

    new ──reserve_trial──▶ pending ──launched (its agent)──▶ running ──finish──▶ finished
     │                        ▲                                  ▲          stopped | preempted
     └──start (a run started by hand)────────────────────────────┘          failed | crashed
                              └──requeue_preempted── preempted                      | killed
    an end state ──start (train --resume)──▶ running;   reap_stale: pending | running ──▶ crashed
    crashed (reaped) ──finish (the run's own report, late)──▶ its end state

Agents (one process), trials (another) and readers all call these functions; a read
(``sweep status``) never writes. Each move is one conditional UPDATE (``store.transition``), so
two processes racing for the same run cannot both win: the loser gets False and leaves the row
alone. A run that is started again with ``train --resume`` moves from its end state back to
running. ``should_stop`` records that the sweep's early termination stopped the run.
"""

from __future__ import annotations

import os
import socket
import threading
from typing import Any

from cnn_tracker import env
from cnn_tracker.errors import UserError
from cnn_tracker.store.db import (
    ACTIVE_STATES,
    NOW,
    STALE_SECONDS,
    TERMINAL_STATES,
    Store,
)
from cnn_tracker.store.records import Run, Sweep, new_id

# state -> the states it may move to. "new" = no row yet.
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "new": ("pending", "running"),
    "pending": ("running", *TERMINAL_STATES),
    "running": TERMINAL_STATES,
    "preempted": ("pending", "running"),
    **{s: ("running",) for s in TERMINAL_STATES if s != "preempted"},  # train --resume
    # a run reaped as crashed (silent: e.g. its database was away) that reports its own end
    "crashed": ("running", *(s for s in TERMINAL_STATES if s != "crashed")),
}


class IllegalTransition(ValueError):
    """A move the lifecycle does not allow (a bug in the caller, never a user's input)."""


def check(from_state: str, to_state: str) -> None:
    if to_state not in TRANSITIONS.get(from_state, ()):
        raise IllegalTransition(f"a run cannot go from {from_state} to {to_state}")


def _sources(to_state: str) -> tuple[str, ...]:
    """Every state from which ``to_state`` may be reached."""
    return tuple(s for s, targets in TRANSITIONS.items() if to_state in targets and s != "new")


# -- trials of a local sweep (the agent's side) -----------------------------------------------
def reserve_trial(store: Store, sweep: Sweep, params: dict[str, Any], info: dict[str, Any] | None,
                  *, agent: str, expect_seq: int) -> Run | None:
    """new -> pending: a trial of ``sweep`` with ``params``, for ``agent``; None when another
    agent added a run since ``expect_seq`` (suggest again)."""
    run_id = new_id()
    fields = {"id": run_id, "project": sweep.project, "state": "pending", "params": params,
              "search_info": info, "agent": agent, "heartbeat_at": NOW}
    if not store.insert_trial(sweep.id, fields, expect_seq=expect_seq, cap=sweep.run_cap):
        return None
    return store.run(run_id)


def requeue_preempted(store: Store, sweep_id: str, agent: str) -> Run | None:
    """preempted -> pending: the sweep's oldest preempted trial, reserved for ``agent`` to
    resume; None when there is none. Preempted trials are continued even when the sweep is
    already finished (its run_cap counted them) or stopped: their results are part of it."""
    for run_id in store.ids_where(("preempted",), sweep_id=sweep_id):
        if store.transition(run_id, "pending", ("preempted",),
                            {"agent": agent, "host": socket.gethostname(), "heartbeat_at": NOW}):
            return store.run(run_id)
    return None


def launched(store: Store, run_id: str, pid: int, log_path: str) -> bool:
    """pending -> running: the agent started the trial's process (whatever program it runs)."""
    run = store.run(run_id)
    return store.transition(run_id, "running", ("pending",),
                            {"pid": pid, "log_path": log_path, "heartbeat_at": NOW,
                             "started_at": (run.started_at if run else None) or NOW})


def end_by_agent(store: Store, run_id: str, state: str, *, exitcode: int | None,
                 message: str | None = None, summary: dict[str, Any] | None = None) -> bool:
    """The trial's process ended: record ``state`` unless the trial recorded its own end.

    ``exitcode`` is recorded either way: the process's exit code is known only to its agent.
    ``summary``: what the agent read from a foreign program's own W&B run.
    """
    ended = _end(store, run_id, state, ACTIVE_STATES, message=message, summary=summary)
    if exitcode is not None:
        store.update_run(run_id, {"exitcode": exitcode})
    return ended


def reap_stale(store: Store, timeout: float = STALE_SECONDS) -> list[str]:
    """running/pending -> crashed for runs whose process stopped sending heartbeats (silent
    for ``timeout`` seconds of the database's clock: hosts' own clocks may disagree)."""
    reaped = []
    for run_id in store.ids_where(ACTIVE_STATES, silent_for=timeout):
        if store.transition(run_id, "crashed", ACTIVE_STATES,
                            {"ended_at": NOW,
                             "message": f"no heartbeat for {timeout:.0f} s: the process vanished"},
                            silent_for=timeout):
            reaped.append(run_id)
    return reaped


def finish_sweep(store: Store, sweep_id: str, message: str) -> None:
    """A sweep whose engine has nothing left to suggest (grid done, run_cap reached)."""
    store.set_sweep_state(sweep_id, "finished", message)


# -- a local sweep's own state (W&B's sweep controls) -----------------------------------------
# sweep state -> the states it may move to: pause and resume go back and forth; stop (no new
# trials, running ones finish), cancel (running trials are killed too) and finish are ends.
SWEEP_TRANSITIONS: dict[str, tuple[str, ...]] = {
    "running": ("paused", "stopped", "canceled", "finished"),
    "paused": ("running", "stopped", "canceled", "finished"),
}
# `cnn-tracker sweep ACTION` -> the state it sets (W&B: PAUSED, RUNNING, FINISHED, CANCELED)
SWEEP_CONTROLS = {"pause": "paused", "resume": "running", "stop": "stopped", "cancel": "canceled"}


def set_sweep_control(store: Store, sweep_id: str, state: str,
                      message: str | None = None) -> tuple[Sweep, bool]:
    """Move a local sweep to ``state`` (paused / running / stopped / canceled / finished):
    (the sweep as stored, whether it moved). Already in ``state`` = no move; a move the table
    does not allow (a finished sweep paused, a canceled one resumed) is a UserError."""
    for _ in range(10):
        sweep = store.sweep(sweep_id)
        if sweep.state == state:
            return sweep, False
        if state not in SWEEP_TRANSITIONS.get(sweep.state, ()):
            allowed = [s for s, targets in SWEEP_TRANSITIONS.items() if state in targets]
            raise UserError(f"sweep {sweep_id} is {sweep.state}: it cannot become {state} (only a "
                            f"{' or '.join(allowed)} sweep can). Create a new sweep to search again.")
        if store.move_sweep(sweep_id, state, sweep.state, message):
            return store.sweep(sweep_id), True
    raise UserError(f"sweep {sweep_id} keeps changing state: run the command again.")


# -- a training run (the trial's side) --------------------------------------------------------
def start(store: Store, run_id: str, *, sweep_id: str | None, project: str | None, name: str,
          config: dict[str, Any], output_dir: str, wandb_dir: str | None,
          params: dict[str, Any] | None = None) -> None:
    """-> running: the run trains now. Whoever starts the process moves the state: the agent for
    its trials (:func:`launched`), the run itself when it was started by hand (a new run, or a
    resumed one, which keeps its first start time and its history; its end is reset).

    ``params`` (the swept values) only matter for a run inserted here, e.g. an imported one.
    """
    fields = {"name": name, "config": config, "output_dir": output_dir, "wandb_dir": wandb_dir,
              "pid": os.getpid(), "host": socket.gethostname(), "heartbeat_at": NOW,
              "ended_at": None, "exitcode": None, "message": None}
    existing = store.run(run_id)
    if existing is None:
        store.insert_run({**fields, "id": run_id, "sweep_id": sweep_id, "project": project,
                          "state": "running", "params": params or {}, "created_at": NOW,
                          "started_at": NOW})
        return
    fields["started_at"] = existing.started_at or NOW
    fields["project"] = existing.project or project
    if existing.state == "running":  # its agent launched it: the state is the agent's
        store.update_run(run_id, fields)
        return
    check(existing.state, "running")
    if not store.transition(run_id, "running", (existing.state,), fields):
        raise UserError(f"run {run_id} changed state while starting (now "
                        f"{store.run(run_id).state}): is another process running it?")


def request_stop(store: Store, run_id: str, reason: str) -> None:
    """The sweep's early termination decided to stop the run (it then finishes as stopped)."""
    store.update_run(run_id, {"should_stop": 1, "message": reason})


def finish(store: Store, run_id: str, state: str, *, summary: dict[str, Any] | None = None,
           exitcode: int | None = None, message: str | None = None) -> bool:
    """running -> an end state, recorded by the run itself. A run an agent reaped as crashed
    (no heartbeat: its host or its database was away) that ends after all gets its own end:
    the process knows, the reaper guessed."""
    ended = _end(store, run_id, state, ("running", "pending", "crashed"), message=message,
                 summary=summary)
    if exitcode is not None:
        store.update_run(run_id, {"exitcode": exitcode})
    return ended


def _end(store: Store, run_id: str, state: str, from_states: tuple[str, ...], *,
         message: str | None, summary: dict[str, Any] | None = None) -> bool:
    if state not in TERMINAL_STATES:
        raise IllegalTransition(f"{state} is not an end state: {', '.join(TERMINAL_STATES)}")
    run = store.run(run_id)
    if run is None or run.state not in from_states:
        return False
    fields: dict[str, Any] = {"ended_at": run.ended_at or NOW}
    if message is not None:
        fields["message"] = message
    if summary is not None:
        fields["summary"] = summary
    return store.transition(run_id, state, from_states, fields)


class Heartbeat:
    """Touches a run's heartbeat from a daemon thread until stopped."""

    def __init__(self, store: Store, run_id: str, every: float | None = None):
        self._store, self._run_id = store, run_id
        self._every = env.heartbeat_seconds() if every is None else every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cnn-tracker-heartbeat", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self._every):
            try:
                self._store.heartbeat(self._run_id, wait=False)
            except Exception:  # noqa: BLE001 - a busy or vanished store must not kill training
                pass  # (StoreUnavailable, a locked SQLite file, ...): the next beat retries

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
