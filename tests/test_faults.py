"""Faults: killed agents and trials, concurrent agents, a full disk, a damaged store.

Real agents and real `cnn-tracker train` trials (subprocesses) on the tiny generated datasets.
Heartbeats every 0.5 s and a 3 s stale limit keep the crash detection fast.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from cnn_tracker.cli import cli
from cnn_tracker.runs import lifecycle
from cnn_tracker.store.db import Store
from cnn_tracker.training.checkpoint import load_checkpoint

from .conftest import TINY_ARGS
from .test_sweeps import cnn_tracker, create, tiny_sweep

# Trials long enough to be hit mid-training: 88 batches per epoch, about a second each.
LONG = {"model": {"value": "lenet"}, "batch_size": {"value": 4}, "epochs": {"value": 3},
        "deterministic": {"value": True}}


@pytest.fixture
def fault_env(tiny_root, monkeypatch):
    monkeypatch.setenv("CNN_TRACKER_DATA_DIR", str(tiny_root))
    monkeypatch.setenv("CNN_TRACKER_HEARTBEAT_SECONDS", "0.5")
    return tiny_root


def long_sweep(tmp_path: Path, lrs: list[float], **params) -> str:
    config = tiny_sweep("grid", {"lr": {"values": lrs}})
    config["parameters"].update({**LONG, **params})
    # No W&B run: its preemption records are tested in test_resume; this file is about the agent.
    config["command"] = ["${env}", "${interpreter}", "-m", "cnn_tracker", "train", "--mode",
                         "disabled", "${args}"]
    return create(config, tmp_path)


def start_agent(sweep_id: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cnn_tracker", "agent", sweep_id, "--stale-after",
                             "3", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for(predicate, what: str, timeout: float = 90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def training_trial(store: Store, sweep_id: str):
    """The sweep's running trial once it finished an epoch (so it has a last.pt)."""
    running = [r for r in store.runs(sweep_id=sweep_id) if r.state == "running" and r.epochs >= 1]
    return running[0] if running else None


def assert_gone(pid: int) -> None:
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.mark.slow
def test_sigterm_to_an_agent_preempts_its_trial_and_a_restart_resumes_it(fault_env, tmp_path):
    sweep_id = long_sweep(tmp_path, [0.003])
    store = Store()
    agent = start_agent(sweep_id)
    trial = wait_for(lambda: training_trial(store, sweep_id), "a trial's first epoch")
    agent.send_signal(signal.SIGTERM)
    out, _ = agent.communicate(timeout=120)
    assert agent.returncode == 143, out
    stopped = store.run(trial.id)
    assert stopped.state == "preempted" and stopped.exitcode == 130, out  # the agent sent SIGINT
    assert "resumes it" in out
    assert_gone(trial.pid)
    checkpoints = Path(stopped.output_dir) / "checkpoints"
    # Mid-epoch: resume.pt; between epochs, last.pt is the resume point.
    assert (checkpoints / "resume.pt").is_file() or "batch 0/" in stopped.message, stopped.message

    again = cnn_tracker("agent", sweep_id, "--stale-after", "3", timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"resuming preempted trial {trial.id}" in again.stdout
    runs = store.runs(sweep_id=sweep_id)
    assert [r.id for r in runs] == [trial.id]  # continued, not run again
    for r in runs:
        assert r.state == "finished" and [h["epoch"] for h in r.history] == [1, 2, 3]
        assert Path(r.checkpoint).is_file() and "test/accuracy" in r.summary
    assert not (Path(stopped.output_dir) / "checkpoints" / "resume.pt").exists()


@pytest.mark.slow
def test_sigkill_of_a_trial_marks_it_crashed_and_the_agent_goes_on(fault_env, tmp_path):
    sweep_id = long_sweep(tmp_path, [0.003, 0.01])
    store = Store()
    agent = start_agent(sweep_id)
    trial = wait_for(lambda: training_trial(store, sweep_id), "a trial's first epoch")
    os.kill(trial.pid, signal.SIGKILL)
    out, _ = agent.communicate(timeout=300)
    assert agent.returncode == 0, out  # one crash is below --max-failures
    runs = {r.id: r for r in store.runs(sweep_id=sweep_id)}
    assert len(runs) == 2
    assert runs[trial.id].state == "crashed" and runs[trial.id].exitcode == -signal.SIGKILL
    finished = [r for r in runs.values() if r.id != trial.id]
    assert all(r.state == "finished" and len(r.history) == 3 for r in finished)

    # A killed run loses at most its current epoch: last.pt resumes it.
    resumed = cnn_tracker("train", "--resume", trial.id, "--mode", "disabled", timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    after = store.run(trial.id)
    assert after.state == "finished" and [h["epoch"] for h in after.history] == [1, 2, 3]


@pytest.mark.slow
def test_sigkill_of_agent_and_trial_goes_stale_and_a_restart_continues(fault_env, tmp_path):
    sweep_id = long_sweep(tmp_path, [0.003, 0.01])
    store = Store()
    agent = start_agent(sweep_id)
    trial = wait_for(lambda: training_trial(store, sweep_id), "a trial's first epoch")
    os.kill(trial.pid, signal.SIGKILL)  # the whole job is killed: no process can record anything
    os.kill(agent.pid, signal.SIGKILL)
    agent.communicate(timeout=60)
    assert store.run(trial.id).state == "running"  # nothing was recorded...
    time.sleep(3.5)  # ...and its heartbeat goes stale

    again = cnn_tracker("agent", sweep_id, "--stale-after", "3", timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"run {trial.id} stopped sending heartbeats: marked crashed" in again.stdout
    runs = {r.id: r for r in store.runs(sweep_id=sweep_id)}
    assert len(runs) == 2 and runs[trial.id].state == "crashed"
    assert "no heartbeat" in runs[trial.id].message
    (other,) = [r for r in runs.values() if r.id != trial.id]
    assert other.state == "finished" and len(other.history) == 3


@pytest.mark.slow
def test_sigkill_of_the_agent_alone_its_trial_preempts_itself(fault_env, tmp_path):
    sweep_id = long_sweep(tmp_path, [0.003])
    store = Store()
    agent = start_agent(sweep_id)
    trial = wait_for(lambda: training_trial(store, sweep_id), "a trial's first epoch")
    os.kill(agent.pid, signal.SIGKILL)
    agent.communicate(timeout=60)
    stopped = wait_for(lambda: (r := store.run(trial.id)).state != "running" and r, "the orphan to stop")
    assert stopped.state == "preempted" and stopped.exitcode == 128 + signal.SIGHUP
    again = cnn_tracker("agent", sweep_id, "--stale-after", "3", timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    after = store.run(trial.id)
    assert after.state == "finished" and [h["epoch"] for h in after.history] == [1, 2, 3]


# A trial that reports like `cnn-tracker train` (start, one epoch, summary) without torch: the
# concurrency test is about the agents and the store, so its trials cost milliseconds.
LIGHT_TRIAL = """
import json, os, sys, time
from cnn_tracker.runs import lifecycle
from cnn_tracker.store.db import Store
params = json.load(open(sys.argv[1]))
run_id = os.environ["WANDB_RUN_ID"]
store = Store()
lifecycle.start(store, run_id, sweep_id=os.environ["CNN_TRACKER_SWEEP_ID"], project="p",
                name=run_id, config=params, output_dir=".", wandb_dir=None)
time.sleep(0.05)
store.record_epoch(run_id, 1, {"epoch": 1, "val/accuracy": 1 - params["lr"]})
lifecycle.finish(store, run_id, "finished", summary={"val/accuracy": 1 - params["lr"], "lr": params["lr"]})
"""


def test_four_concurrent_agents_no_duplicate_no_lost_result_exact_run_cap(fault_env, tmp_path):
    config = tiny_sweep("random", {"lr": {"distribution": "log_uniform_values", "min": 1e-4,
                                          "max": 0.1}}, run_cap=40)
    config["command"] = ["${interpreter}", "-c", LIGHT_TRIAL, "${args_json_file}"]
    sweep_id = create(config, tmp_path)
    proc = cnn_tracker("agent", sweep_id, "--agents", "4", "--stagger", "0", timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    store = Store()
    runs = store.runs(sweep_id=sweep_id)
    assert len(runs) == 40 and len({r.id for r in runs}) == 40  # run_cap exact
    assert len({r.params["lr"] for r in runs}) == 40  # no trial ran twice
    assert {r.agent for r in runs} == {f"agent-{i}" for i in range(4)}  # all four claimed trials
    for r in runs:  # no lost result: every trial's own report is there
        assert r.state == "finished" and r.exitcode == 0 and len(r.history) == 1
        assert r.summary == {"val/accuracy": 1 - r.params["lr"], "lr": r.params["lr"]}
    assert store.sweep(sweep_id).message == "run_cap 40 reached"


def test_disk_full_while_saving_stops_cleanly_and_the_run_resumes(tiny_root, isolated_env, monkeypatch):
    """ENOSPC from the file system on the 3rd checkpoint write: epoch 2's first (best.pt or last.pt)."""
    real_fsync, calls = os.fsync, {"n": 0}

    def fsync(fd):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    args = ["train", "--data-dir", str(tiny_root), "--mode", "disabled", "--output-dir", "out",
            *TINY_ARGS, "--epochs", "3", "--lr", "0.01"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    message = str(result.exception) if result.exception else result.output
    assert "no space left on the device writing" in result.output and "--resume" in result.output, message
    folder = Path("out/checkpoints")
    assert sorted(p.name for p in folder.iterdir()) == ["best.pt", "last.pt"]  # no temp file left
    assert load_checkpoint(folder / "last.pt")["epoch"] == 1  # the last good one, whole
    (run,) = Store().runs()
    assert run.state == "failed" and "No space left" in run.message

    monkeypatch.setattr(os, "fsync", real_fsync)
    resumed = CliRunner().invoke(cli, ["train", "--resume", run.id, "--data-dir", str(tiny_root),
                                       "--mode", "disabled"])
    assert resumed.exit_code == 0, resumed.output
    assert Store().run(run.id).state == "finished" and Store().run(run.id).epochs == 3


def test_a_truncated_store_is_a_clear_error_never_a_reset_and_can_be_recovered(tiny_root, isolated_env):
    store = Store("s").open()
    sweep = store.create_sweep({"method": "random", "parameters": {}}, "p")
    for i in range(200):
        lifecycle.start(store, f"run{i:03d}", sweep_id=sweep.id, project="p", name="n" * 100,
                        config={"pad": "x" * 400}, output_dir="o", wandb_dir=None)
        store.record_epoch(f"run{i:03d}", 1, {"val/accuracy": 0.5})
        lifecycle.finish(store, f"run{i:03d}", "finished")
    store.close()
    import sqlite3

    sqlite3.connect("s/store.db").execute("PRAGMA wal_checkpoint(TRUNCATE)").close()
    db = Path("s/store.db")
    db.write_bytes(db.read_bytes()[: db.stat().st_size // 2])
    damaged = db.read_bytes()

    for args in (["sweep", "status", sweep.id], ["agent", sweep.id], ["sweep", "list"],
                 ["train", "--data-dir", str(tiny_root), *TINY_ARGS], ["store", "check"]):
        result = CliRunner().invoke(cli, [*args, "--store", "s"])
        assert result.exit_code == 2, (args, result.output)
        assert "damaged" in result.output and "cnn-tracker store recover --store" in result.output
        assert db.read_bytes() == damaged  # never reset, never rewritten

    result = CliRunner().invoke(cli, ["store", "recover", "--store", "s"])
    assert result.exit_code == 0, result.output
    kept = Store("s").runs(sweep_id=sweep.id)
    assert 50 < len(kept) < 200  # the first half survived; nothing invented
    assert all(r.state == "finished" for r in kept)
    (kept_file,) = [p for p in Path("s").glob("store.db.damaged-*") if p.name[-1].isdigit()]
    assert kept_file.read_bytes() == damaged  # the damaged file is kept as it was
    check = CliRunner().invoke(cli, ["store", "check", "--store", "s"])
    assert check.exit_code == 0 and f"{len(kept)} run(s)" in check.output
