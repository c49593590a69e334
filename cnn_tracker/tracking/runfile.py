"""A trial's offline W&B run, read with W&B's own reader of the run file (``wandb leet inspect``).

For programs that are not ours (any script using plain ``wandb.init`` / ``wandb.log``), the
offline agent learns a trial's metrics from the trial's own ``run-<id>.wandb`` file: its history
rows while it runs (``--follow --json``: one JSON record per line, as the SDK writes them) and its
summary at the end (``--summary --json``). The program needs no change and no import of ours.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Iterator


def wandb_exe() -> str:
    """The ``wandb`` console script of this environment (else the one on PATH)."""
    here = Path(sys.executable).with_name("wandb")
    return str(here) if here.exists() else (shutil.which("wandb") or "wandb")


def find_run_file(wandb_dir: Path, run_id: str) -> Path | None:
    """The newest ``wandb/offline-run-*-<id>/run-<id>.wandb`` (or ``run-*``) under ``wandb_dir``."""
    found = sorted(Path(wandb_dir).glob(f"wandb/*run-*-{run_id}/run-{run_id}.wandb"),
                   key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def numbers(item: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of a history row or summary (images, tables and text left out)."""
    return {k: float(v) for k, v in item.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def read_summary(run_file: Path, timeout: float = 120) -> dict[str, Any]:
    """``wandb leet inspect --summary --json``: state, exit_code, summary, config."""
    out = subprocess.run([wandb_exe(), "leet", "inspect", "--summary", "--json", str(run_file)],
                         capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"wandb leet inspect --summary failed: {out.stderr.strip()[-300:]}")
    return json.loads(out.stdout)


def _history_rows(lines) -> Iterator[tuple[dict[str, float], dict[str, Any]]]:
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("type") == "history":
            item = (record.get("history") or {}).get("item") or {}
            yield numbers(item), record


class Follower:
    """Streams a live run file's history rows to ``on_row`` from a thread, until the run exits
    or :meth:`stop` is called (``wandb leet inspect --follow --json``)."""

    def __init__(self, run_file: Path, on_row: Callable[[dict[str, float]], None]):
        self._proc = subprocess.Popen(
            [wandb_exe(), "leet", "inspect", "--follow", "--json", "--idle-timeout", "0",
             str(run_file)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            start_new_session=True)  # its own group: stop() signals wandb-core with its wrapper
        self._on_row = on_row
        self._thread = threading.Thread(target=self._pump, name="cnn-tracker-follow", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        assert self._proc.stdout is not None
        for row, _ in _history_rows(self._proc.stdout):
            self._on_row(row)

    def stop(self, wait: float = 10.0) -> None:
        """Read what is left (the run has ended), then stop the reader."""
        try:
            self._proc.wait(timeout=wait)  # it exits by itself after the run's exit record
        except subprocess.TimeoutExpired:
            # A run without one (its process was killed) is followed forever. The `wandb` script
            # runs wandb-core as a child that outlives a signal to the script alone, so the
            # whole group is signalled.
            self._signal_group(signal.SIGTERM)
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self._proc.wait(timeout=5)
        self._thread.join(timeout=wait)

    def _signal_group(self, signum: int) -> None:
        """Signal the follower's process group (only while its leader is not yet reaped, so the
        id cannot belong to another group)."""
        try:
            os.killpg(self._proc.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


def finish_open_run(exit_code: int) -> None:
    """Finish the W&B run a trial's function left open (as ``wandb.agent`` does after it)."""
    import sys as _sys

    wandb = _sys.modules.get("wandb")  # a function that never imported wandb opened no run
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish(exit_code=exit_code)
