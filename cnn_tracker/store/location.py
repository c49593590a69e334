"""Where a run store lives: a local folder (SQLite, the default) or a PostgreSQL URL.

``--store`` / CNN_TRACKER_STORE take either. A URL's password is a secret: ``where`` (every
message, every printed command) shows it masked, ``scrub`` masks it in any text that came from
the driver, and the full URL only travels through the environment of our own child processes.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from cnn_tracker import env
from cnn_tracker.errors import UserError
from cnn_tracker.store.schema import DB_NAME

POSTGRES_SCHEMES = ("postgresql", "postgres")
URL_FORM = ("postgresql://USER@HOST:PORT/DATABASE (the password as USER:PASSWORD@ in it, or in "
            "PGPASSWORD / ~/.pgpass)")
MASK = "***"


@dataclass(frozen=True)
class Location:
    kind: str  # "sqlite" or "postgresql"
    value: str  # what to hand to a child process (env var): the folder, or the full URL
    root: Path  # local folder for per-sweep files (trial parameter files, logs)
    where: str  # how messages name it: the store.db path, or the URL with its password masked
    host: str = ""
    port: int | None = None
    database: str = ""
    user: str = ""
    password: str = ""

    @property
    def is_postgres(self) -> bool:
        return self.kind == "postgresql"

    @property
    def shareable(self) -> str:
        """The store as a user may retype it on another machine: the URL without its password."""
        return mask_url(self.value, drop=True) if self.is_postgres else self.value

    def scrub(self, text: str) -> str:
        """``text`` with the password (plain or URL-encoded) masked."""
        text = mask_urls(text)
        if self.password:
            text = text.replace(self.password, MASK)
        return text


_URL_PASSWORD = re.compile(r"(postgres(?:ql)?://[^:/@\s]*:)([^@\s]*)(@)")


def mask_urls(text: str) -> str:
    """Every ``postgresql://user:password@`` in ``text`` with the password masked."""
    return _URL_PASSWORD.sub(lambda m: m.group(1) + MASK + m.group(3), text)


def mask_url(url: str, *, drop: bool = False) -> str:
    """The URL with its password masked (``drop``: removed, so libpq reads PGPASSWORD/.pgpass)."""
    if drop:
        return _URL_PASSWORD.sub(lambda m: m.group(1)[:-1] + m.group(3), url)
    return mask_urls(url)


def is_url(value: str) -> bool:
    return bool(re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", value))


def locate(cli_value: str | os.PathLike[str] | None = None) -> Location:
    """``--store`` > CNN_TRACKER_STORE > ``./.cnn-tracker``, parsed (a bad URL: UserError)."""
    value = str(cli_value) if cli_value else env.store_value()
    if not is_url(value):
        root = Path(value).expanduser().absolute()
        return Location("sqlite", str(root), root, str(root / DB_NAME))
    return _postgres(value)


def _postgres(url: str) -> Location:
    shown = mask_urls(url)
    parts = urlsplit(url)
    if parts.scheme not in POSTGRES_SCHEMES:
        raise UserError(f"--store {shown!r} is not a folder or a PostgreSQL URL: give a folder, or "
                        f"{URL_FORM}.")
    try:
        port = parts.port
    except ValueError:
        raise UserError(f"--store {shown!r}: the port is not a number; give {URL_FORM}, "
                        "PORT 5432 by default.") from None
    database = unquote(parts.path.lstrip("/"))
    if not parts.hostname or not database or "/" in database:
        raise UserError(f"--store {shown!r} names no host or no database: give {URL_FORM}.")
    host = parts.hostname
    return Location("postgresql", url, env.store_files_dir(), shown, host=host, port=port or 5432,
                    database=database, user=unquote(parts.username or ""),
                    password=unquote(parts.password or ""))
