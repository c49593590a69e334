"""The run store on both databases: same semantics on SQLite and a real PostgreSQL server.

Every test here that names ``any_store`` runs twice (a folder store, a fresh PostgreSQL
database). The PostgreSQL server is real (tests/pgserver.py: .ci/run's, or one started for the
session); the tests skip, saying why, only when no server can be started.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time

import pytest
from click.testing import CliRunner

from cnn_tracker.cli import cli
from cnn_tracker.errors import UserError
from cnn_tracker.runs import lifecycle
from cnn_tracker.store.backend import ConnectionLost
from cnn_tracker.store.db import Store
from cnn_tracker.store.location import locate, mask_urls

from .pgserver import PASSWORD

GRID = {"method": "grid", "metric": {"name": "val/accuracy", "goal": "maximize"},
        "parameters": {"lr": {"values": [0.1, 0.01]}}}


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(request, tmp_path) -> Store:
    if request.param == "sqlite":
        return Store(tmp_path / "store")
    return Store(request.getfixturevalue("pg_url"))


def _trial(store: Store, sweep, lr: float, expect_seq: int):
    return lifecycle.reserve_trial(store, sweep, {"lr": lr}, None, agent="a", expect_seq=expect_seq)


# -- same semantics on both ---------------------------------------------------------------------
def test_a_run_moves_through_its_lifecycle_the_same_on_both(any_store, tmp_path):
    store = any_store
    assert not store.exists() and store.sweeps() == [] and store.runs() == []  # a read writes nothing
    assert not store.exists()
    sweep = store.open().create_sweep(GRID, "proj")
    run = _trial(store, sweep, 0.1, 0)
    assert run.state == "pending" and _trial(store, sweep, 0.01, 0) is None  # expect_seq is stale
    assert lifecycle.launched(store, run.id, 4242, "/tmp/x.log")
    assert not lifecycle.launched(store, run.id, 4242, "/tmp/x.log")  # only once
    store.record_epoch(run.id, 1, {"val/accuracy": 0.5})
    store.record_epoch(run.id, 1, {"val/accuracy": 0.6})  # the same epoch again: replaced
    store.record_epoch(run.id, 2, {"val/accuracy": 0.7})
    ckpt = tmp_path / "best.pt"
    ckpt.write_bytes(b"weights" * 1000)
    digest = store.put_checkpoint(run.id, "best", ckpt)
    assert lifecycle.finish(store, run.id, "finished", summary={"val/accuracy": 0.7}, exitcode=0)
    assert not lifecycle.finish(store, run.id, "crashed")  # an end is written once
    got = store.run(run.id)
    assert (got.state, got.epochs, got.exitcode, got.pid) == ("finished", 2, 0, 4242)
    assert got.history == [{"val/accuracy": 0.6}, {"val/accuracy": 0.7}]
    assert got.started_at <= got.ended_at and got.duration(store.clock()) >= 0
    assert store.stored_checkpoints() == {run.id: digest}
    assert store.checkpoint_bytes(run.id) == ckpt.read_bytes()
    assert store.runs(sweep_id=sweep.id)[0].history == got.history
    lifecycle.finish_sweep(store, sweep.id, "all done")
    assert store.sweep(sweep.id).state == "finished"


def test_racing_agents_never_claim_the_same_trial(any_store):
    """Eight connections reserve trials of one sweep at once: run_cap exact, no seq reused."""
    store = any_store.open()
    sweep = store.create_sweep({**GRID, "run_cap": 30}, "proj")
    claimed: list[str] = []

    def agent(i: int) -> None:
        mine = Store(store.location.value)
        while True:
            runs = mine.runs(sweep_id=sweep.id, with_history=False)
            if len(runs) >= 30:
                return
            run = lifecycle.reserve_trial(mine, mine.sweep(sweep.id), {"i": i}, None,
                                          agent=f"a{i}", expect_seq=runs[-1].seq if runs else 0)
            if run is not None:
                claimed.append(run.id)

    threads = [threading.Thread(target=agent, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    runs = store.runs(sweep_id=sweep.id)
    assert len(runs) == 30 == len(claimed) == len(set(claimed))
    assert len({r.seq for r in runs}) == 30


def test_heartbeats_and_staleness_use_the_database_clock(any_store, monkeypatch):
    """This machine's clock an hour fast: nothing it writes or judges uses it."""
    store = any_store.open()
    sweep = store.create_sweep(GRID, "proj")
    run = _trial(store, sweep, 0.1, 0)
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 3600)
    lifecycle.launched(store, run.id, 1, "log")
    got = store.run(run.id)
    assert abs(got.heartbeat_at - store.clock()) < 30 and abs(got.started_at - real()) < 30
    assert lifecycle.reap_stale(store, 60) == []  # an agent's clock would call it an hour silent
    time.sleep(0.05)  # past the millisecond the heartbeat was written in
    assert lifecycle.reap_stale(store, 0.0) == [run.id]


def test_a_commit_whose_answer_was_lost_is_not_recorded_twice(any_store, monkeypatch):
    """The connection drops right after COMMIT reached the server: the retry finds the write
    already there (a trial claimed once, a move made once) instead of doing it again."""
    store = any_store.open()
    sweep = store.create_sweep(GRID, "proj")
    backend = store._backend
    real = type(backend).execute
    drops = {"n": 0}

    def flaky(self, conn, sql, args=()):
        result = real(self, conn, sql, args)
        if sql == "COMMIT" and drops["n"] < 1:
            drops["n"] += 1
            raise ConnectionLost("server closed the connection unexpectedly")
        return result

    monkeypatch.setattr(type(backend), "execute", flaky)
    run = _trial(store, sweep, 0.1, 0)
    assert run is not None and drops["n"] == 1
    drops["n"] = 0
    assert lifecycle.launched(store, run.id, 7, "log")  # True: the retry sees it done
    monkeypatch.setattr(type(backend), "execute", real)
    runs = store.runs(sweep_id=sweep.id)
    assert [(r.id, r.state) for r in runs] == [(run.id, "running")]


def test_a_damaged_checkpoint_is_refused_by_its_digest(any_store, tmp_path):
    store = any_store.open()
    sweep = store.create_sweep(GRID, "proj")
    run = _trial(store, sweep, 0.1, 0)
    (tmp_path / "c.pt").write_bytes(b"x" * 100)
    store.put_checkpoint(run.id, "best", tmp_path / "c.pt")
    store._call(lambda q, r: q.exec("UPDATE checkpoints SET data = ? WHERE run_id = ?",
                                    b"y" * 100, run.id), write=True)
    with pytest.raises(UserError, match="does not match its sha256"):
        store.checkpoint_bytes(run.id)


# -- moving a store -----------------------------------------------------------------------------
def _fill(store: Store, tmp_path, n: int) -> str:
    sweep = store.open().create_sweep(GRID, "proj")
    for i in range(n):
        runs = store.runs(sweep_id=sweep.id, with_history=False)
        run = _trial(store, sweep, 0.1 / (i + 1), runs[-1].seq if runs else 0)
        lifecycle.launched(store, run.id, 1, "log")
        store.record_epoch(run.id, 1, {"val/accuracy": 0.1 * i})
        (tmp_path / f"{run.id}.pt").write_bytes(bytes([i]) * 64)
        store.put_checkpoint(run.id, "best", tmp_path / f"{run.id}.pt")
        lifecycle.finish(store, run.id, "finished", summary={"val/accuracy": 0.1 * i})
    return sweep.id


def test_store_copy_moves_a_folder_store_into_postgres_and_back_idempotently(pg_url, tmp_path):
    local = tmp_path / "local"
    sweep_id = _fill(Store(local), tmp_path, 3)
    runner = CliRunner()
    first = runner.invoke(cli, ["store", "copy", str(local), pg_url])
    assert first.exit_code == 0, first.output
    assert "copied 1 sweep(s), 3 run(s), 3 epoch(s), 3 checkpoint(s)" in first.output
    assert PASSWORD not in first.output and mask_urls(pg_url) in first.output
    again = runner.invoke(cli, ["store", "copy", str(local), pg_url])
    assert "copied 0 sweep(s) (1 already there), 0 run(s) (3 already there)" in again.output
    back = tmp_path / "back"
    assert runner.invoke(cli, ["store", "copy", pg_url, str(back)]).exit_code == 0
    for store in (Store(pg_url), Store(back)):
        a, b = Store(local).runs(sweep_id=sweep_id), store.runs(sweep_id=sweep_id)
        assert [(r.id, r.state, r.history, r.summary) for r in a] == \
            [(r.id, r.state, r.history, r.summary) for r in b]
        assert store.stored_checkpoints() == Store(local).stored_checkpoints()
    status = runner.invoke(cli, ["sweep", "status", sweep_id, "--store", pg_url])
    assert status.exit_code == 0 and "finished" in status.output


# -- bad stores: one Error line, exit 2, nothing written, no password ----------------------------
def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cnn_tracker", *args], capture_output=True,
                          text=True, timeout=120)


def _bad_urls(server) -> dict[str, tuple[str, str]]:
    return {
        "wrong password": (server.url(password="not-the-password"), "check the user 'cnn' and the password"),
        "no such database": (server.url("nodb"), "createdb -h 127.0.0.1"),
        "nothing listening": (f"postgresql://cnn:{PASSWORD}@127.0.0.1:1/db", "check the host and port"),
        "port not a number": (f"postgresql://cnn:{PASSWORD}@127.0.0.1:port/db", "the port is not a number"),
        "no database named": (f"postgresql://cnn:{PASSWORD}@127.0.0.1:5432", "names no host or no database"),
    }


@pytest.mark.parametrize("case", ["wrong password", "no such database", "nothing listening",
                                  "port not a number", "no database named"])
def test_a_bad_store_url_is_one_clear_error_without_the_password(case, pg_server, tmp_path):
    url, fix = _bad_urls(pg_server)[case]
    tmp_path = tmp_path / "case"
    tmp_path.mkdir()
    for argv in (["sweep", "list", "--store", url], ["store", "check", "--store", url],
                 ["sweep", "create", str(_repo() / "sweeps" / "smoke_random.yaml"), "--offline", "--store", url]):
        proc = subprocess.run([sys.executable, "-m", "cnn_tracker", *argv], capture_output=True,
                              text=True, timeout=120, cwd=tmp_path,
                              env={**__import__("os").environ, "PYTHONPATH": str(_repo())})
        lines = [x for x in proc.stderr.splitlines() if x.strip()]
        assert proc.returncode == 2, proc.stderr
        assert len(lines) == 1 and lines[0].startswith("Error: ") and fix in lines[0], lines
        assert PASSWORD not in proc.stdout + proc.stderr
        assert list(tmp_path.iterdir()) == []  # nothing written here


def _repo():
    from .conftest import REPO

    return REPO


def test_another_programs_database_is_never_written(pg_url, tmp_path):
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE invoices (id INT)")
    with pytest.raises(UserError, match="not a cnn-tracker run store .*invoices"):
        Store(pg_url).open()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")]
    assert tables == ["invoices"]
    other = tmp_path / "app" / "store.db"  # another program's SQLite file where store.db goes
    other.parent.mkdir()
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE notes (body TEXT)")
    before = other.read_bytes()
    with pytest.raises(UserError, match="not a cnn-tracker run store .*notes"):
        Store(other.parent).open()
    assert other.read_bytes() == before


def test_a_store_db_that_is_a_folder_is_an_error_not_an_empty_store(tmp_path):
    (tmp_path / "s" / "store.db").mkdir(parents=True)
    with pytest.raises(UserError, match="is not a file"):
        Store(tmp_path / "s").sweeps()


def test_the_password_never_leaves_in_messages_or_printed_commands(pg_url):
    loc = locate(pg_url)
    assert PASSWORD not in loc.where and PASSWORD not in loc.shareable
    assert loc.scrub(f"failed for {pg_url} with {PASSWORD}").count(PASSWORD) == 0
    made = CliRunner().invoke(cli, ["sweep", "create", str(_repo() / "sweeps" / "smoke_random.yaml"),
                                    "--offline", "--store", pg_url])
    assert made.exit_code == 0, made.output
    assert PASSWORD not in made.output
    assert f"--store postgresql://cnn@127.0.0.1:{loc.port}/{loc.database}" in made.output


# -- connection faults ----------------------------------------------------------------------------
def test_a_restarted_server_is_retried_and_nothing_is_lost(pg_server, pg_url, monkeypatch):
    monkeypatch.setenv("CNN_TRACKER_STORE_RETRY_SECONDS", "60")
    said: list[str] = []
    store = Store(pg_url, say=said.append).open()
    sweep = store.create_sweep(GRID, "proj")
    run = _trial(store, sweep, 0.1, 0)
    lifecycle.launched(store, run.id, 1, "log")
    store.record_epoch(run.id, 1, {"val/accuracy": 0.1})
    pg_server.stop()  # the server goes away between two epochs
    store.record_epoch(run.id, 2, {"val/accuracy": 0.2}, wait=False)  # kept, training goes on
    store.record_epoch(run.id, 3, {"val/accuracy": 0.3}, wait=False)
    assert store.away and any("training goes on" in line for line in said)
    threading.Timer(2.0, pg_server.up).start()  # back in two seconds
    assert lifecycle.finish(store, run.id, "finished", summary={"val/accuracy": 0.3})  # waits
    assert any("connected again" in line for line in said) and not store.away
    got = Store(pg_url).run(run.id)
    assert got.state == "finished" and [h["val/accuracy"] for h in got.history] == [0.1, 0.2, 0.3]
    assert all(PASSWORD not in line for line in said)


def test_a_server_that_stays_away_ends_in_one_clear_error(pg_server, pg_url, monkeypatch):
    monkeypatch.setenv("CNN_TRACKER_STORE_RETRY_SECONDS", "1")
    store = Store(pg_url, say=lambda line: None).open()
    store.create_sweep(GRID, "proj")
    pg_server.stop()
    try:
        with pytest.raises(UserError, match=r"unreachable for \d+ s .*CNN_TRACKER_STORE_RETRY_SECONDS"):
            store.sweeps()
    finally:
        pg_server.up()
