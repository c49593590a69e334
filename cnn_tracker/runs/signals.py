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
from typing import Any, Callable

from cnn_tracker import env


class StopSignals:
    """SIGTERM and SIGINT ask training to stop at the next batch (with a resume checkpoint).

    A second signal aborts at once (KeyboardInterrupt). A trial of the offline agent also stops
    this way when its agent vanishes (SIGKILL, OOM), reported as SIGHUP. Call the object to poll.
    """

    def __init__(self, echo: Callable[[str], None]):
        self.signum = 0
        self._echo = echo
        self._previous: dict[int, Any] = {}
        self._parent = os.getppid() if env.is_local_trial() else None

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
