"""Several machines on one box: agents as separate processes that share only a PostgreSQL store.

Each "host" has its own working folder, HOME, data folder and W&B folder; nothing on disk is
shared between hosts, only the database (tests/pgserver.py's real server). Real agents and real
`cnn-tracker train` trials (offline W&B runs) on the tiny generated datasets.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cnn_tracker.store.db import Store

from .conftest import REPO
from .pgserver import PASSWORD
from .test_faults import wait_for

TRIAL = {"model": {"value": "lenet"}, "epochs": {"value": 2}, "batch_size": {"value": 32},
         "val_size": {"value": 50}, "log_misclassified": {"value": 4},
         "eval_batch_size": {"value": 64}, "device": {"value": "cpu"}}
COMMAND = ["${env}", "${interpreter}", "-m", "cnn_tracker", "train", "${args}"]


class Host:
    """One "machine": its own folders and environment; the store URL is the only thing shared."""

    def __init__(self, base: Path, name: str, url: str, tiny_root: Path):
        self.name, self.root = name, base / name
        self.work = self.root / "work"
        self.work.mkdir(parents=True)
        self.data = self.root / "data"
        shutil.copytree(tiny_root, self.data)
        keep = {k: v for k, v in os.environ.items()
                if not k.startswith(("WANDB_", "CNN_TRACKER_")) and k not in ("HOME", "PWD")}
        self.env = {**keep, "HOME": str(self.root / "home"), "PYTHONPATH": str(REPO),
                    "XDG_CACHE_HOME": str(self.root / "cache"), "WANDB_DIR": str(self.work),
                    "WANDB_CONFIG_DIR": str(self.root / "wandb-config"),
                    "WANDB_CACHE_DIR": str(self.root / "wandb-cache"),
                    "WANDB_DATA_DIR": str(self.root / "wandb-data"), "WANDB_SILENT": "true",
                    "CNN_TRACKER_DOWNLOAD": "0", "CNN_TRACKER_DATA_DIR": str(self.data),
                    "CNN_TRACKER_STORE": url, "CNN_TRACKER_HEARTBEAT_SECONDS": "0.5",
                    "CNN_TRACKER_STORE_RETRY_SECONDS": "120"}

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "cnn_tracker", *args], cwd=self.work,
                              env=self.env, capture_output=True, text=True, timeout=timeout)

    def agent(self, sweep_id: str, *args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "cnn_tracker", "agent", sweep_id, "--name",
                                 self.name, *args],
                                cwd=self.work, env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _create(host: Host, config: dict) -> str:
    path = host.work / "sweep.yaml"
    path.write_text(yaml.safe_dump(config))
    made = host.run("sweep", "create", str(path), "--offline", "--json")
    assert made.returncode == 0, made.stderr
    return json.loads(made.stdout)["sweep_id"]


@pytest.fixture
def hosts(pg_url, tiny_root, tmp_path):
    return [Host(tmp_path, name, pg_url, tiny_root) for name in ("host-a", "host-b", "host-c")]


@pytest.mark.slow
def test_two_hosts_run_one_grid_the_database_restarts_and_a_third_host_gets_the_best(
        hosts, pg_url, pg_server):
    a, b, c = hosts
    config = {"method": "grid", "metric": {"name": "val/accuracy", "goal": "maximize"},
              "program": "cnn_tracker/__main__.py", "command": COMMAND, "parameters": {**TRIAL, "lr": {"values": [0.03, 0.01, 0.003, 0.001]}}}
    sweep_id = _create(a, config)
    agents = [a.agent(sweep_id, "--stale-after", "60"), b.agent(sweep_id, "--stale-after", "60")]
    store = Store(pg_url, say=lambda line: None)
    wait_for(lambda: any(r.state == "finished" for r in store.runs(sweep_id=sweep_id)), "a first trial")
    pg_server.restart(down_seconds=1.0)  # every connection of every host is cut
    outputs = [p.communicate(timeout=300)[0] for p in agents]
    assert [p.returncode for p in agents] == [0, 0], outputs
    assert any("connected again" in out for out in outputs), outputs  # someone saw it and went on
    assert all(PASSWORD not in out for out in outputs)

    runs = store.runs(sweep_id=sweep_id)
    assert len(runs) == 4 and {r.state for r in runs} == {"finished"}  # nothing lost
    assert sorted(r.params["lr"] for r in runs) == [0.001, 0.003, 0.01, 0.03]  # none twice
    assert {r.agent for r in runs} == {"host-a", "host-b"}  # both hosts ran trials
    assert all(len(r.history) == 2 and r.summary.get("test/accuracy") is not None for r in runs)
    assert store.sweep(sweep_id).state == "finished"
    assert "all 4 configurations" in store.sweep(sweep_id).message

    for host in (a, b):  # no file the hosts wrote (logs, W&B runs, outputs) holds the password
        for path in host.root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                assert PASSWORD.encode() not in path.read_bytes(), path
    for host in (a, b):  # the machines that ran the trials are gone, disks and all
        shutil.rmtree(host.root)
    best = c.run("best", sweep_id, "--download", "got", "--json")
    assert best.returncode == 0, best.stderr
    found = json.loads(best.stdout)
    winner = max(runs, key=lambda r: r.best_metric("val/accuracy", "maximize"))
    assert found["run_id"] == winner.id
    data = (c.work / "got" / "best.pt").read_bytes()
    assert hashlib.sha256(data).hexdigest() == store.stored_checkpoints()[winner.id]
    evaluated = c.run("evaluate", "got/best.pt", "--no-plots", "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["test/accuracy"] == pytest.approx(
        winner.summary["test/accuracy"], abs=1e-9)


@pytest.mark.slow
def test_a_killed_host_leaves_a_crashed_trial_and_the_sweep_goes_on(hosts, pg_url):
    a, b, _ = hosts
    slow = {**TRIAL, "batch_size": {"value": 4}, "epochs": {"value": 3}}  # long enough to be hit
    config = {"method": "random", "run_cap": 3, "metric": {"name": "val/accuracy", "goal": "maximize"},
              "program": "cnn_tracker/__main__.py", "command": COMMAND, "parameters": {**slow, "lr": {"distribution": "log_uniform_values",
                                                                "min": 1e-3, "max": 0.05}}}
    sweep_id = _create(a, config)
    store = Store(pg_url, say=lambda line: None)
    doomed = a.agent(sweep_id, "--stale-after", "3")
    victim = wait_for(lambda: next((r for r in store.runs(sweep_id=sweep_id)
                                 if r.state == "running" and r.epochs >= 1 and r.pid), None),
                   "host A's trial to train")
    os.killpg(doomed.pid, signal.SIGKILL)  # the whole host: its agent ...
    os.killpg(os.getpgid(victim.pid), signal.SIGKILL)  # ... and its trial (own session)
    doomed.wait(timeout=30)
    survivor = b.agent(sweep_id, "--stale-after", "3")
    out = survivor.communicate(timeout=600)[0]
    assert survivor.returncode == 0, out
    runs = store.runs(sweep_id=sweep_id)
    states = {r.id: r.state for r in runs}
    assert states[victim.id] == "crashed" and "no heartbeat" in store.run(victim.id).message
    assert len(runs) == 3 and sorted(states.values()) == ["crashed", "finished", "finished"]
    assert store.sweep(sweep_id).message == "run_cap 3 reached"


@pytest.mark.slow
def test_a_trial_preempted_on_one_host_is_resumed_on_another(hosts, pg_url):
    """Host A's agent is stopped (SIGTERM): its trial saves resume.pt and ends preempted. Host A
    is then gone; host B's agent resumes the trial from the checkpoint the store keeps."""
    a, b, _ = hosts
    slow = {**TRIAL, "batch_size": {"value": 4}, "epochs": {"value": 4}}  # SIGTERM lands mid-run
    config = {"method": "grid", "metric": {"name": "val/accuracy", "goal": "maximize"},
              "program": "cnn_tracker/__main__.py", "command": COMMAND,
              "parameters": {**slow, "lr": {"values": [0.01]}}}
    sweep_id = _create(a, config)
    store = Store(pg_url, say=lambda line: None)
    first = a.agent(sweep_id)
    trial = wait_for(lambda: next((r for r in store.runs(sweep_id=sweep_id)
                                if r.state == "running" and r.epochs >= 1), None), "A's trial")
    first.send_signal(signal.SIGTERM)
    out = first.communicate(timeout=120)[0]
    assert store.run(trial.id).state == "preempted", out
    done_on_a = store.run(trial.id).epochs
    assert 1 <= done_on_a < 4
    assert "resume" in store._call(lambda q, r: [x["name"] for x in q.rows(
        "SELECT name FROM checkpoints WHERE run_id = ?", trial.id)], write=False)
    shutil.rmtree(a.root)
    resumed = b.agent(sweep_id)
    out = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, out
    runs = store.runs(sweep_id=sweep_id)
    assert [(r.id, r.state, r.agent) for r in runs] == [(trial.id, "finished", "host-b")], out
    assert [h["epoch"] for h in runs[0].history] == [1, 2, 3, 4]  # A's epochs, then B's
    assert runs[0].output_dir.startswith(str(b.root))
