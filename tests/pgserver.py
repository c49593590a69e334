"""A throwaway PostgreSQL server on the loopback interface, for tests, CI and the fault drill.

``PgServer.start(folder)`` runs ``initdb`` into ``folder`` (as the ``postgres`` user when we are
root: initdb refuses root), with password authentication for one user, and ``pg_ctl start`` on a
free loopback port. ``restart()`` and ``stop()`` drive the same server (the connection-fault
tests restart it mid-sweep).

``python -m tests.pgserver start DIR`` starts one and prints ``export`` lines for its URL and
folder (``.ci/run`` does this); ``python -m tests.pgserver stop DIR`` stops it. The test suite
uses that server when CNN_TRACKER_TEST_PG is set, and otherwise starts its own.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

USER, PASSWORD = "cnn", "s3cret-pw"
URL_VAR, DIR_VAR = "CNN_TRACKER_TEST_PG", "CNN_TRACKER_TEST_PG_DIR"  # set by .ci/run


class Unavailable(RuntimeError):
    """No PostgreSQL server can be started here (the message says why)."""


def bindir() -> Path:
    try:
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True)
        path = Path(out.stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        path = Path("/nonexistent")
    if not (path / "initdb").exists():
        candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        found = shutil.which("initdb")
        if found:
            return Path(found).parent
        if not candidates:
            raise Unavailable("no PostgreSQL server binaries (initdb, pg_ctl) on this machine: "
                              "install them with `apt-get install postgresql`")
        path = candidates[-1].parent
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PgServer:
    folder: Path
    port: int

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def url(self, database: str = "postgres", password: str = PASSWORD) -> str:
        return f"postgresql://{USER}:{password}@127.0.0.1:{self.port}/{database}"

    # -- control ------------------------------------------------------------------------------
    def _as_owner(self, argv: list[str], check: bool = True) -> subprocess.CompletedProcess:
        if os.geteuid() == 0:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=120)

    @classmethod
    def start(cls, folder: str | os.PathLike[str], port: int | None = None) -> "PgServer":
        folder = Path(folder).absolute()
        folder.mkdir(parents=True, exist_ok=True)
        server = cls(folder, port or free_port())
        bins = bindir()
        pwfile = folder / "pwfile"
        pwfile.write_text(PASSWORD + "\n")
        if os.geteuid() == 0:
            shutil.chown(folder, "postgres")
            shutil.chown(pwfile, "postgres")
        try:
            server._as_owner([str(bins / "initdb"), "-D", str(server.data), "-U", USER,
                              "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8",
                              "--no-sync", "--locale=C"])
        except (OSError, subprocess.CalledProcessError) as exc:
            raise Unavailable(f"initdb failed: {getattr(exc, 'stderr', exc)}") from None
        finally:
            pwfile.unlink(missing_ok=True)
        conf = server.data / "postgresql.conf"
        with conf.open("a") as f:  # loopback only; fast and small: a test server
            f.write(f"\nlisten_addresses = '127.0.0.1'\nport = {server.port}\n"
                    f"unix_socket_directories = '{folder}'\nfsync = off\n"
                    "synchronous_commit = off\nfull_page_writes = off\nmax_connections = 100\n"
                    "shared_buffers = 32MB\n")
        server.up()
        return server

    @classmethod
    def attach(cls, folder: str | os.PathLike[str], url: str) -> "PgServer":
        """The server .ci/run started (its folder and URL from the environment)."""
        return cls(Path(folder), int(url.rsplit(":", 1)[1].split("/")[0]))

    def up(self) -> None:
        log = self.folder / "server.log"
        try:
            self._as_owner([str(bindir() / "pg_ctl"), "-D", str(self.data), "-l", str(log),
                            "-w", "-t", "60", "start"])
        except subprocess.CalledProcessError as exc:
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise Unavailable(f"pg_ctl start failed: {exc.stderr} {tail}") from None

    def stop(self, mode: str = "fast") -> None:
        self._as_owner([str(bindir() / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w",
                        "stop"], check=False)

    def restart(self, down_seconds: float = 0.0) -> None:
        """Stop the server (every client connection is cut), wait, start it again."""
        self.stop()
        time.sleep(down_seconds)
        self.up()

    def create_database(self, name: str) -> str:
        """A fresh empty database; its URL."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("start", "stop"):
        print("usage: python -m tests.pgserver start|stop DIR", file=sys.stderr)
        return 2
    action, folder = argv
    if action == "stop":
        url = os.environ.get(URL_VAR, "")
        if url:
            PgServer.attach(folder, url).stop()
        return 0
    try:
        server = PgServer.start(folder)
    except Unavailable as exc:
        print(f"# no PostgreSQL test server: {exc}", file=sys.stderr)
        return 1
    print(f"export {URL_VAR}={server.url()}")
    print(f"export {DIR_VAR}={server.folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
