"""Signals, one regime for runs and agents.

A training run (:class:`StopSignals`): SIGTERM or SIGINT asks it to stop at the next batch with a
resumable checkpoint; a second signal aborts at once. An agent (:func:`catch_stop_signals`):
SIGTERM and SIGINT raise :class:`Interrupted` in its main loop, which forwards SIGINT to its
trial and waits for the checkpoint.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any, Callable

from cnn_tracker import env

# Under W&B's agent a SIGTERM is either the agent's "stop" command (the sweep's early
# termination, "Stop" in the UI) or a forwarded preemption. Online, W&B's server knows which: a
# SIGTERM it does not confirm as a stop (the SDK's stop_fn) within this long is a preemption.
STOP_VERDICT_SECONDS = 20.0
PREEMPTION_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)  # USR1: Slurm's --signal


class StopSignals:
    """Why training should end early: a preemption (a signal number; resumable) or a stop (a
    reason; a clean end: the best checkpoint is tested, the run finishes with exit 0).

    The rule (README, "Stop or preemption"):

    - W&B stopped the run (its server's stop status, delivered by the SDK as ``stop_fn``) → stop.
    - Under W&B's agent (WANDB_SWEEP_ID, not our offline agent), SIGTERM is what the agent's stop
      command sends: offline it is a stop; online a stop only once W&B confirms it (within
      STOP_VERDICT_SECONDS), else a preemption (a forwarded SIGTERM of a scheduler).
    - SIGINT (Ctrl-C, forwarded by either agent) and SIGUSR1 (a scheduler's warning, e.g. Slurm
      ``--signal=USR1``) are always preemptions; so is SIGTERM outside W&B's agent.

    A second signal aborts at once (KeyboardInterrupt). A trial of the offline agent also stops
    when its agent vanishes (SIGKILL, OOM), reported as SIGHUP. Call the object to poll for a
    preemption; :meth:`stop_reason` for a stop.
    """

    def __init__(self, echo: Callable[[str], None], *, under_wandb_agent: bool = False,
                 online: bool = False, clock: Callable[[], float] = time.monotonic):
        self.signum = 0
        self._echo = echo
        self._previous: dict[int, Any] = {}
        self._parent = os.getppid() if env.is_local_trial() else None
        self._under_wandb_agent, self._online, self._clock = under_wandb_agent, online, clock
        self._term_at: float | None = None  # a SIGTERM awaiting W&B's verdict (online)
        self._stop = ""

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum or self._stop or self._term_at is not None:
            raise KeyboardInterrupt
        name = signal.Signals(signum).name
        if signum == signal.SIGTERM and self._under_wandb_agent:
            if not self._online:
                self._stop = "stopped by W&B's agent (SIGTERM)"
                self._echo(f"{name} from W&B's agent: stopping cleanly after this batch "
                           "(the best checkpoint is tested; send it again to abort)")
                return
            self._term_at = self._clock()
            self._echo(f"{name} received under W&B's agent: a stop if W&B confirms it within "
                       f"{STOP_VERDICT_SECONDS:g} s, else a preemption (training goes on meanwhile)")
            return
        self.signum = signum
        self._echo(f"{name} received: saving a resumable checkpoint at the next batch (send it "
                   "again to abort without one)")

    def request_stop(self, reason: str = "stopped from W&B (the UI or the sweep)") -> None:
        """W&B's server says the run should stop (called by the SDK's stop checker thread)."""
        if not self.signum:
            self._stop = self._stop or reason

    def stop_reason(self) -> str:
        """Non-empty when training should end cleanly now."""
        return self._stop

    def __call__(self) -> int:
        if self._term_at is not None and not self._stop and not self.signum \
                and self._clock() - self._term_at >= STOP_VERDICT_SECONDS:
            self.signum = signal.SIGTERM  # W&B did not confirm a stop: a preemption
        if not self.signum and self._parent is not None and os.getppid() != self._parent:
            self.signum = signal.SIGHUP
            # Our stdout/stderr were a pipe to the vanished agent: writing would fail.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
        return 0 if self._stop else self.signum

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in PREEMPTION_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class Interrupted(Exception):
    """The agent was asked to stop (Ctrl-C or SIGTERM)."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_interrupted(signum, frame):  # pragma: no cover - exercised through subprocess tests
    raise Interrupted(signum)


def catch_stop_signals():
    """Handle SIGTERM, and SIGINT even when started in the background (where the shell made it
    ignored, and children would inherit that); returns the previous handlers."""
    return (signal.signal(signal.SIGTERM, _raise_interrupted),
            signal.signal(signal.SIGINT, signal.default_int_handler))


def restore_signals(previous) -> None:
    signal.signal(signal.SIGTERM, previous[0])
    signal.signal(signal.SIGINT, previous[1])
