"""Offline sweeps from Python: the counterparts of ``wandb.sweep`` and ``wandb.agent``.

W&B's function-style examples work offline by changing where ``sweep`` and ``agent`` come from::

    import wandb
    from cnn_tracker import offline

    def train():
        run = wandb.init()                      # wandb.config holds the trial's values
        ...
        wandb.log({"val_loss": loss})

    sweep_id = offline.sweep(sweep_config, project="my-project")   # was: wandb.sweep(...)
    offline.agent(sweep_id, function=train, count=10)               # was: wandb.agent(...)

Each trial runs ``function`` in a child process (forked, so a function defined in a script or a
notebook works) with ``wandb.config`` filled through ``WANDB_SWEEP_PARAM_PATH`` and an offline
W&B run of its own; its metrics are read from that run (as for any program's trials). The sweep
lives in the run store (``store``: a folder or a PostgreSQL URL; default as for the CLI), so
``cnn-tracker sweep status``, ``best``, ``compare`` and more agents (``cnn-tracker agent``) work
on it too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import traceback
from typing import Any, Callable

__all__ = ["agent", "sweep"]


def sweep(sweep: dict[str, Any], *, project: str | None = None, store: str | None = None) -> str:
    """Create a sweep from a config dict (checked by W&B's rules, as ``wandb.sweep`` does and,
    for ``cnn-tracker train``, ours); its id."""
    from cnn_tracker import env
    from cnn_tracker.search.spec import check
    from cnn_tracker.store.db import Store

    for warning in check(dict(sweep), "config", needs_program=False):
        print(f"warning: {warning}", file=sys.stderr)
    project = project or sweep.get("project") or env.wandb_project() or "cnn-tracker"
    return Store(store).open().create_sweep(dict(sweep), project).id


def agent(sweep_id: str, function: Callable[[], Any] | None = None, count: int | None = None,
          *, store: str | None = None, max_failures: int = 3, verbose: bool = False) -> int:
    """Run trials of ``sweep_id``: ``function`` in a child process each (without it, the sweep's
    ``command``, as ``cnn-tracker agent``); until the sweep is done or ``count`` trials ran.
    Returns the agent's exit code (0, or 1 after ``max_failures`` failed trials in a row)."""
    from cnn_tracker.search import agent as offline_agent
    from cnn_tracker.store.db import Store

    start = None
    if function is not None:
        shown = f"{getattr(function, '__module__', '?')}.{getattr(function, '__qualname__', function)}()"
        start = (lambda environ: FunctionProcess(function, environ), shown)
    return offline_agent.run_agent(Store(store), sweep_id, count=count, max_failures=max_failures,
                                   stream=verbose, start=start)


class FunctionProcess:
    """A forked child running ``function()`` with ``environ``; the handle an agent needs of a
    trial's process (pid, stdout, poll, wait, returncode), like ``subprocess.Popen``'s."""

    def __init__(self, function: Callable[[], Any], environ: dict[str, str]):
        read, write = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the trial
            os.close(read)
            self._child(function, environ, write)
        os.close(write)
        self.pid, self.returncode, self.args = pid, None, [repr(function)]
        self.stdout = os.fdopen(read, "r", encoding="utf-8", errors="replace")

    @staticmethod
    def _child(function: Callable[[], Any], environ: dict[str, str], write: int) -> None:
        code = 1
        try:
            os.setsid()  # its own process group: the agent's Ctrl-C is forwarded, not shared
            os.dup2(write, 1)
            os.dup2(write, 2)
            for stream in (sys.stdout, sys.stderr):
                stream.reconfigure(line_buffering=True)
            from cnn_tracker import env

            env.replace_environ(environ)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            function()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:  # noqa: BLE001 - the trial's traceback goes to its log
            traceback.print_exc()
        finally:
            try:
                from cnn_tracker.tracking.runfile import finish_open_run

                finish_open_run(code)
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(self.args, timeout)
            time.sleep(0.02)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        os.kill(self.pid, sig)
