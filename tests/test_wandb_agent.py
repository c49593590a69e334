"""`cnn-tracker train` under W&B's own agent: the SDK's real ``wandb.wandb_agent.Agent`` class,
with only its network calls faked (the sweep lookup, agent registration and heartbeats).

The fake server hands the agent one ``run`` command (the sweep's command with W&B's macros),
then, once the trial has trained an epoch, either a ``stop`` command (what W&B sends when
hyperband or the UI stops a run: the agent SIGTERMs the trial) or nothing while the test
forwards a Ctrl-C through the agent (a preemption). What each produces is checked in the store,
the run's files and its offline W&B records.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest
import yaml

from cnn_tracker.store.db import Store

from .test_e2e import leet_records

RUN_ID = "agentrun1"
PARAMS = {"model": "mlp", "epochs": 300, "batch_size": 32, "val_size": 50, "lr": 0.01,
          "log_misclassified": 4, "eval_batch_size": 64}
COMMAND = ["${env}", "${interpreter}", "-m", "cnn_tracker", "train", "${args}"]


@pytest.fixture
def wandb_agent_env(tiny_root, isolated_env, monkeypatch):
    """What `wandb agent` would have set, plus our data; every variable the Agent sets is
    restored afterwards, and so are the signal handlers its forwarding installs."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SWEEP_ID", "sweep123")
    monkeypatch.setenv("WANDB_PROJECT", "agent-test")
    monkeypatch.setenv("WANDB_RUN_ID", "placeholder")
    monkeypatch.setenv("WANDB_SWEEP_PARAM_PATH", "placeholder")
    monkeypatch.setenv("WANDB_AGENT_DISABLE_FLAPPING", "true")
    monkeypatch.setenv("CNN_TRACKER_DATA_DIR", str(tiny_root))
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
    handlers = {s: signal.getsignal(s) for s in signal.valid_signals()
                if s not in (signal.SIGKILL, signal.SIGSTOP)}
    yield isolated_env
    for s, h in handlers.items():
        try:
            signal.signal(s, h)
        except (OSError, ValueError, TypeError):
            pass


def run_real_agent(monkeypatch, on_epoch, *, forward_signals: bool) -> list[dict]:
    """Run W&B's Agent for one trial; ``on_epoch(heartbeats)`` decides the commands sent once
    the trial recorded an epoch. Returns the commands sent."""
    import queue

    import wandb
    from wandb import wandb_agent
    from wandb.apis.public import sweeps as sweeps_api

    config = {"method": "random", "metric": {"name": "val/accuracy", "goal": "maximize"},
              "program": "cnn_tracker/__main__.py", "command": COMMAND,
              "parameters": {k: {"value": v} for k, v in PARAMS.items()}}
    sent: list[dict] = []
    state = {"beats": 0, "launched": False}

    def heartbeat(api, agent_id, metrics, run_status):
        state["beats"] += 1
        if not state["launched"]:
            state["launched"] = True
            command = {"type": "run", "run_id": RUN_ID, "program": "unused.py",
                       "args": {k: {"value": v} for k, v in PARAMS.items()}}
        else:
            run = Store().run(RUN_ID) if Path(".cnn-tracker").exists() else None
            command = on_epoch(state) if run is not None and run.epochs >= 1 else None
        sent.extend([command] if command else [])
        return [command] if command else []

    monkeypatch.setattr(sweeps_api, "_sweep_with_runs",
                        lambda api, sweep, specs: {"config": yaml.safe_dump(config)})
    monkeypatch.setattr(sweeps_api, "_register_agent", lambda api, host, sweep_id: {"id": "a1"})
    monkeypatch.setattr(sweeps_api, "_agent_heartbeat", heartbeat)
    monkeypatch.setattr(wandb, "Api", lambda *a, **k: object())  # the agent re-creates it
    agent = wandb_agent.Agent(object(), queue.Queue(), sweep_id="sweep123", count=1,
                              forward_signals=forward_signals)
    agent.POLL_INTERVAL = 0.3
    agent.run()
    return sent


def trial_outputs() -> tuple[object, dict, list[dict]]:
    run = Store().run(RUN_ID)
    summary = json.loads((Path(run.output_dir) / "summary.json").read_text()) \
        if (Path(run.output_dir) / "summary.json").exists() else {}
    return run, summary, leet_records(Path(run.wandb_dir))


@pytest.mark.slow
def test_a_stop_from_wandbs_agent_ends_the_run_cleanly(wandb_agent_env, monkeypatch):
    sent = run_real_agent(monkeypatch, lambda s: {"type": "stop", "run_id": RUN_ID},
                          forward_signals=False)
    assert sent[0]["type"] == "run" and sent[1] == {"type": "stop", "run_id": RUN_ID}
    run, summary, records = trial_outputs()
    # stopped, exit 0, not requeued: tested best checkpoint, finished W&B run
    assert run.state == "stopped" and run.exitcode == 0, run.message
    assert "stopped by W&B's agent" in run.message
    assert summary["stopped_early"].startswith("stopped by W&B's agent")
    assert 0 <= summary["test/accuracy"] <= 1 and Path(summary["checkpoints"]["best"]).is_file()
    assert not (Path(run.output_dir) / "checkpoints" / "resume.pt").exists()
    assert [r["exit"]["exit_code"] for r in records if r.get("type") == "exit"] == [0]
    assert not any(r.get("type") == "preempting" for r in records)
    # what the trial saw: the agent's macros and environment, the values in wandb.config
    assert summary["run_id"] == RUN_ID and summary["config"]["model"] == "mlp"
    assert summary["config"]["batch_size"] == 32 and summary["config"]["epochs"] == 300
    assert len(summary["history"]) < 300
    params = Path("wandb") / "sweep-sweep123" / f"config-{RUN_ID}.yaml"
    assert yaml.safe_load(params.read_text())["lr"]["value"] == 0.01


@pytest.mark.slow
def test_a_forwarded_ctrl_c_is_a_preemption_and_stays_resumable(wandb_agent_env, monkeypatch):
    def forward(state):
        if not state.get("sent"):
            state["sent"] = True
            os.kill(os.getpid(), signal.SIGINT)  # the agent forwards it to the trial
        return None

    run_real_agent(monkeypatch, forward, forward_signals=True)
    run, summary, records = trial_outputs()
    assert run.state == "preempted" and run.exitcode == 130, run.message
    assert (Path(run.output_dir) / "checkpoints" / "resume.pt").is_file() \
        or (Path(run.output_dir) / "checkpoints" / "last.pt").is_file()
    assert any(r.get("type") == "preempting" for r in records)
    assert [r["exit"]["exit_code"] for r in records if r.get("type") == "exit"] == [130]
    assert summary == {}  # it did not finish: W&B's agent requeues it, `--resume` continues it
