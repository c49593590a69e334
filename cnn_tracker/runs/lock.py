"""One output folder, one run: an exclusive ``flock`` on a lock file in the run's folder.

The lock is held for the run's life and released by the OS when the process ends, however it
ends (a crash or a kill included), so a stale lock never blocks a later run or ``train
--resume``. The file holds the owner's run id and process id, for the message a second run
gets. A refused run has written nothing: the holder's file is only opened and read.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from cnn_tracker import env
from cnn_tracker.errors import UserError
from cnn_tracker.inputs import clip, load_json


class FolderLock:
    """The lock of at most one output folder, taken once and released once."""

    def __init__(self) -> None:
        self.folder: Path | None = None
        self._fd: int | None = None

    def acquire(self, folder: Path) -> None:
        """Lock ``folder`` (created if missing); a UserError when another run holds it."""
        folder = Path(folder).absolute()
        if self.folder == folder:
            return
        path = folder / env.LOCK_FILE
        fd = _open_existing(path)
        if fd is None:
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise _in_use(folder, holder) from None
        self.release()
        self.folder, self._fd = folder, fd
        self.label("")

    def label(self, run_id: str) -> None:
        """Record the owner (this process and, once known, its run id) in the lock file."""
        if self._fd is None:
            return
        data = json.dumps({"run_id": run_id or None, "pid": os.getpid()}).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
        self.folder, self._fd = None, None


def check_free(folder: Path) -> None:
    """A UserError when another run holds ``folder``'s lock; writes nothing (a plan's check,
    before the run store is opened; the run takes the lock itself with :class:`FolderLock`)."""
    fd = _open_existing(Path(folder).absolute() / env.LOCK_FILE)
    if fd is None:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _in_use(Path(folder).absolute(), _holder(fd)) from None
    finally:
        os.close(fd)


def _in_use(folder: Path, holder: str) -> UserError:
    return UserError(f"output folder {folder} is in use by {holder}: one folder holds one run. "
                     "Wait for it to end, or give another --output-dir.")


def _open_existing(path: Path) -> int | None:
    try:
        return os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UserError(f"cannot open the lock file {path} ({exc.strerror}): choose another "
                        "--output-dir.") from None


def _holder(fd: int) -> str:
    """Who holds a lock, as its file says: 'run abc123 (process 42)'."""
    try:
        info = load_json(os.pread(fd, 4096, 0).decode("utf-8", "replace"))
        run, pid = info.get("run_id"), info.get("pid")
    except (ValueError, AttributeError, OSError):
        return "another run"
    who = f"run {clip(run, 40, quote=False)}" if run else "a run that is starting"
    return f"{who} (process {pid})" if isinstance(pid, int) else who
