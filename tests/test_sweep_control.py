"""Sweep control like W&B's: ``cnn-tracker sweep pause|resume|stop|cancel``.

Local sweeps: real store, the transition table in runs.lifecycle, agents driven in-process (in the
main thread, which owns the signal handlers; a helper thread plays the user) with tiny fake
trials. W&B sweeps: W&B's own CLI as a subprocess, faked (no network here).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from click.testing import CliRunner

from cnn_tracker.cli import cli
from cnn_tracker.cli.sweeps import wandb_sweep_command
from cnn_tracker.errors import UserError
from cnn_tracker.runs import lifecycle
from cnn_tracker.search.agent import run_agent
from cnn_tracker.search.scheduler import claim_trial
from cnn_tracker.store.db import Store

PKG = Path(__file__).resolve().parents[1] / "cnn_tracker"


@pytest.fixture(autouse=True)
def fast_heartbeat(monkeypatch):
    monkeypatch.setenv("CNN_TRACKER_HEARTBEAT_SECONDS", "0.1")


def make_sweep(tmp_path: Path, code: str = "pass", values=(0.01, 0.02, 0.03)) -> str:
    config = {"method": "grid", "metric": {"name": "val/accuracy", "goal": "maximize"},
              "program": "cnn_tracker/__main__.py", "command": ["${env}", "${interpreter}", "-c", code],
              "parameters": {"lr": {"values": list(values)}}}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(cli, ["sweep", "create", str(path), "--offline", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)["sweep_id"]


def control(action: str, sweep_id: str, *args: str):
    return CliRunner().invoke(cli, ["sweep", action, sweep_id, *args])


def user(actions, timeout: float = 30.0) -> threading.Thread:
    """A thread that, for each (condition, action), waits for condition() then does action()."""
    failures: list[str] = []

    def play():
        for condition, action in actions:
            deadline = time.monotonic() + timeout
            while not condition():
                if time.monotonic() > deadline:
                    failures.append(f"timed out waiting for {condition}")
                    return
                time.sleep(0.05)
            action()

    thread = threading.Thread(target=play, daemon=True)
    thread.failures = failures
    thread.start()
    return thread


# -- the transition table ---------------------------------------------------------------------
def test_pause_resume_stop_and_the_illegal_moves(tmp_path):
    sweep_id = make_sweep(tmp_path)
    out = control("pause", sweep_id)
    assert out.exit_code == 0 and out.output.startswith(f"sweep {sweep_id} paused: agents start "
                                                        "no new trial and wait")
    assert Store().sweep(sweep_id).state == "paused"
    assert control("pause", sweep_id).output.strip() == f"sweep {sweep_id} is already paused"
    status = json.loads(control("status", sweep_id, "--json").output)
    assert status["state"] == "paused" and "sweep pause" in status["message"]
    assert "paused" in CliRunner().invoke(cli, ["sweep", "list"]).output
    out = control("resume", sweep_id)
    assert out.exit_code == 0 and "resumed" in out.output
    sweep = Store().sweep(sweep_id)
    assert (sweep.state, sweep.message) == ("running", None)
    assert control("stop", sweep_id).exit_code == 0
    assert Store().sweep(sweep_id).state == "stopped"
    for action in ("resume", "pause"):
        out = control(action, sweep_id)
        assert out.exit_code == 2 and f"sweep {sweep_id} is stopped: it cannot become" in out.output
    assert control("cancel", sweep_id).exit_code == 2  # stopped is an end


def test_lifecycle_table_covers_every_control(tmp_path):
    store = Store(tmp_path)
    sweep = store.create_sweep({"method": "grid", "parameters": {"lr": {"value": 0.1}}}, "p")
    assert set(lifecycle.SWEEP_CONTROLS.values()) <= {"running", *lifecycle.SWEEP_TRANSITIONS[
        "running"]}
    moved = lifecycle.set_sweep_control(store, sweep.id, "paused", "why")
    assert moved[1] and moved[0].state == "paused" and moved[0].message == "why"
    assert lifecycle.set_sweep_control(store, sweep.id, "canceled")[0].state == "canceled"
    with pytest.raises(UserError, match="canceled: it cannot become running"):
        lifecycle.set_sweep_control(store, sweep.id, "running")
    lifecycle.finish_sweep(store, sweep.id, "grid done")  # only from running: no effect here
    assert store.sweep(sweep.id).state == "canceled"


def test_only_the_lifecycle_moves_a_sweep():
    offenders = []
    for path in PKG.rglob("*.py"):
        if path.name in ("lifecycle.py", "db.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr in ("move_sweep", "set_sweep_state"):
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []


def test_paused_and_canceled_sweeps_hand_out_nothing_not_even_a_preempted_trial(tmp_path):
    store = Store(tmp_path)
    sweep = store.create_sweep({"method": "grid", "parameters": {"lr": {"values": [0.1, 0.2]}}},
                               "p")
    run, _ = claim_trial(store, sweep.id, agent="a")
    lifecycle.launched(store, run.id, 1, "log")
    lifecycle.finish(store, run.id, "preempted")
    for state in ("paused", "canceled"):
        store.move_sweep(sweep.id, state, store.sweep(sweep.id).state, None)
        got, why = claim_trial(store, sweep.id, agent="a")
        assert got is None and why == f"sweep {sweep.id} is {state}"
        assert store.run(run.id).state == "preempted"
    store.move_sweep(sweep.id, "stopped", "canceled", None)  # a stopped sweep resumes its own
    got, _ = claim_trial(store, sweep.id, agent="a")
    assert got.id == run.id and got.state == "pending"


# -- agents obey ------------------------------------------------------------------------------
def test_an_agent_waits_while_paused_then_runs_its_count(tmp_path):
    sweep_id = make_sweep(tmp_path)
    assert control("pause", sweep_id).exit_code == 0
    lines: list[str] = []
    waiting = f"[agent] sweep {sweep_id} is paused; waiting"
    player = user([(lambda: any(line.startswith(waiting) for line in lines),
                    lambda: time.sleep(0.5) or control("resume", sweep_id))])
    assert run_agent(Store(), sweep_id, count=1, echo=lines.append, stream=False) == 0
    player.join(5)
    assert player.failures == []
    assert sum(line.startswith(waiting) for line in lines) == 1  # said once, polled quietly
    runs = Store().runs(sweep_id=sweep_id)
    assert len(runs) == 1 and runs[0].state == "finished"  # --count 1: waiting did not count
    assert lines[-1] == "[agent] ran 1 trial(s) (--count 1); agent done"


@pytest.mark.parametrize("action, state", [("stop", "stopped"), ("cancel", "canceled")])
def test_a_waiting_agent_exits_when_the_paused_sweep_ends(tmp_path, action, state):
    sweep_id = make_sweep(tmp_path)
    control("pause", sweep_id)
    lines: list[str] = []
    player = user([(lambda: any("is paused; waiting" in line for line in lines),
                    lambda: control(action, sweep_id))])
    assert run_agent(Store(), sweep_id, echo=lines.append, stream=False) == 0
    player.join(5)
    assert lines[-1].startswith(f"[agent] sweep {sweep_id} is {state}: by `cnn-tracker sweep "
                                f"{action}`")
    assert Store().runs(sweep_id=sweep_id) == []


def test_stop_lets_the_running_trial_finish_and_starts_no_other(tmp_path):
    sweep_id = make_sweep(tmp_path, "import time; time.sleep(1.5)")
    store = Store()
    player = user([(lambda: any(r.state == "running" for r in store.runs(sweep_id=sweep_id)),
                    lambda: control("stop", sweep_id))])
    lines: list[str] = []
    assert run_agent(Store(), sweep_id, echo=lines.append, stream=False) == 0
    player.join(5)
    (run,) = store.runs(sweep_id=sweep_id)
    assert run.state == "finished" and run.exitcode == 0
    assert lines[-1].startswith(f"[agent] sweep {sweep_id} is stopped")


# A trial that, like `cnn-tracker train`, records itself preempted when it gets SIGINT.
PREEMPTIBLE = """
import os, signal, sys, time
from cnn_tracker import env
from cnn_tracker.runs import lifecycle
from cnn_tracker.store.db import Store
store, run_id = Store(os.environ[env.STORE_VAR]), os.environ[env.WANDB_RUN_ID]
def on_int(signum, frame):
    lifecycle.finish(store, run_id, "preempted", exitcode=130, message="saved a checkpoint")
    sys.exit(130)
signal.signal(signal.SIGINT, on_int)
time.sleep(60)
"""


def test_cancel_kills_the_running_trial_within_a_heartbeat(tmp_path):
    sweep_id = make_sweep(tmp_path, PREEMPTIBLE)
    store = Store()
    canceled_at = []

    def cancel():
        canceled_at.append(time.monotonic())
        assert control("cancel", sweep_id).exit_code == 0

    player = user([(lambda: any(r.state == "running" for r in store.runs(sweep_id=sweep_id)),
                    lambda: time.sleep(0.3) or cancel())])
    lines: list[str] = []
    assert run_agent(Store(), sweep_id, echo=lines.append, stream=False) == 0
    elapsed = time.monotonic() - canceled_at[0]
    player.join(5)
    (run,) = store.runs(sweep_id=sweep_id)  # no new trial
    assert run.state == "killed" and run.message == f"sweep {sweep_id} canceled"  # not preempted
    assert run.exitcode == 130  # it got SIGINT and exited through its handler
    assert elapsed < 10
    with pytest.raises(ProcessLookupError):
        os.kill(run.pid, 0)
    assert f"[agent] sweep {sweep_id} canceled: killing trial {run.id}" in lines
    assert lines[-1].startswith(f"[agent] sweep {sweep_id} is canceled")
    assert claim_trial(store, sweep_id, agent="b")[0] is None  # and it is never resumed


# -- W&B sweeps: W&B's own CLI ----------------------------------------------------------------
@pytest.fixture
def fake_wandb_cli(monkeypatch):
    calls = []

    def fake_run(argv, **kwargs):
        calls.append(list(argv))
        return SimpleNamespace(returncode=getattr(fake_run, "rc", 0),
                               stdout="wandb: Pausing sweep me/proj/abc123\nwandb: Done.\n")

    monkeypatch.setattr(subprocess, "run", fake_run)
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    fake_run.calls = calls
    return fake_run


@pytest.mark.parametrize("action", ["pause", "resume", "stop", "cancel"])
def test_a_wandb_sweep_is_controlled_by_wandb_sweep(fake_wandb_cli, action):
    result = CliRunner().invoke(cli, ["sweep", action, "me/proj/abc123"])
    assert result.exit_code == 0, result.output
    assert fake_wandb_cli.calls == [[sys.executable, "-m", "wandb", "sweep", f"--{action}",
                                     "me/proj/abc123"]]
    assert "wandb: Done." in result.output  # its output is shown


def test_a_bare_wandb_sweep_id_takes_entity_and_project(fake_wandb_cli):
    result = CliRunner().invoke(cli, ["sweep", "stop", "abc123", "--entity", "me",
                                      "--project", "proj"])
    assert result.exit_code == 0, result.output
    assert fake_wandb_cli.calls[0][-2:] == ["--stop", "me/proj/abc123"]
    fake_wandb_cli.rc = 1
    result = CliRunner().invoke(cli, ["sweep", "pause", "me/proj/abc123"])
    assert result.exit_code == 2 and "`wandb sweep --pause me/proj/abc123` failed (exit 1" \
        in result.output


def test_without_an_api_key_an_unknown_sweep_is_not_sent_to_wandb(monkeypatch):
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: calls.append(a))
    result = CliRunner().invoke(cli, ["sweep", "pause", "nope1234"])
    assert result.exit_code == 2 and "not in the local run store" in result.output
    assert calls == []


def test_wandbs_cli_has_these_flags():
    from wandb.cli.cli import sweep

    names = {p.name for p in sweep.params}
    assert {"pause", "resume", "stop", "cancel"} <= names
    assert wandb_sweep_command("cancel", "e/p/s")[1:] == ["-m", "wandb", "sweep", "--cancel",
                                                          "e/p/s"]
