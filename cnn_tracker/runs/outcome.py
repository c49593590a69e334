"""How a run ended, in words: the preemption it raises, the machine errors it reports, and the
``wandb sync`` command of its offline folders."""

from __future__ import annotations

import errno
from pathlib import Path

from cnn_tracker.errors import UserError
from cnn_tracker.runs.plan import RunPlan
from cnn_tracker.tracking.tracker import Tracker


class RunPreempted(Exception):
    """The run stopped on SIGTERM/SIGINT after saving a resume checkpoint.

    ``exit_code`` is 128 + the signal number: non-zero, so W&B's agent requeues a run marked
    preempting, and our agent records the trial as preempted.
    """

    def __init__(self, message: str, exit_code: int, run_id: str, checkpoint: Path):
        super().__init__(message)
        self.exit_code, self.run_id, self.checkpoint = exit_code, run_id, checkpoint


# Errors of the machine rather than the code: a full disk or quota, a read-only or vanished folder.
_OUTPUT_ERRNOS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
                  errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
                  errno.EFBIG: "the file is too large for this file system"}


def output_error(exc: BaseException, run_id: str) -> UserError | None:
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


def sync_parts(tracker: Tracker, plan: RunPlan) -> list[str]:
    """The offline run folders of this run, oldest first (a resumed run has one per part)."""
    earlier = list(plan.resume.info.get("sync_dirs") or []) if plan.resume is not None else []
    return list(dict.fromkeys([*earlier, str(tracker.sync_dir)]))


def sync_command(tracker: Tracker, plan: RunPlan) -> str:
    """The ``wandb sync`` command that uploads every part of this offline run: one folder, or
    ``--id RUN`` and the folders in start-time order (how the installed wandb syncs several
    folders of one run; it has no ``--append``)."""
    parts = sync_parts(tracker, plan)
    if len(parts) == 1:
        return f"wandb sync {parts[0]}"
    return f"wandb sync --id {tracker.run_id} " + " ".join(parts)
