"""Writing files whole or not at all.

Every file the toolkit writes for keeps (checkpoints, summaries, plots, tables, a trial's
parameter files) goes through :func:`atomic_write`: the bytes go to a temp file in the same
folder, are flushed to the disk (fsync), and only then renamed over the real name. A crash, a
kill or a full disk leaves either the previous file or the new one, never a torn one, and no
temp file behind.
"""

from __future__ import annotations

import os
from pathlib import Path


def atomic_write(path: str | os.PathLike[str], data: bytes | str) -> Path:
    """Write ``data`` (str as UTF-8) to ``path`` through a temp file, fsync and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    payload = data.encode("utf-8") if isinstance(data, str) else data
    try:
        with open(tmp, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename is None:  # write()/fsync() name no file
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    return path
