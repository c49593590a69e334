"""Offline sweeps of programs that are not ours: plain ``wandb.init`` / ``wandb.log`` scripts.

Real agents (subprocesses) run real scripts that import nothing of ours; their metrics reach the
store from their own offline W&B runs, read by W&B's reader (``wandb leet``). No network.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from cnn_tracker.store.db import Store

from .conftest import REPO

EXAMPLE = REPO / "examples" / "own-script"
SCRIPT = textwrap.dedent("""
    import os, sys, time
    import wandb

    run = wandb.init(config={"lr": 0.1, "epochs": 6, "mode": "ok"})
    cfg = run.config
    wandb.define_metric("epoch")
    wandb.define_metric("val_loss", step_metric="epoch")
    for epoch in range(1, cfg.epochs + 1):
        time.sleep(float(os.environ.get("EPOCH_SECONDS", "0")))
        wandb.log({"train/loss": 1.0 / epoch})                      # a row without the metric
        if cfg.mode == "crash" and epoch == 2:
            raise RuntimeError("boom in epoch 2")
        if cfg.mode != "silent":
            wandb.log({"epoch": epoch, "val_loss": cfg.lr * 10 / epoch})  # under its own step
    run.finish()
""")


def _env(extra: dict | None = None) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "WANDB_SILENT": "true",
            "CNN_TRACKER_HEARTBEAT_SECONDS": "0.3", **(extra or {})}


def _cli(*args: str, cwd: Path, env: dict | None = None, timeout: float = 300):
    return subprocess.run([sys.executable, "-m", "cnn_tracker", *args], cwd=cwd, env=_env(env),
                          capture_output=True, text=True, timeout=timeout)


def _sweep(tmp_path: Path, config: dict) -> str:
    (tmp_path / "train.py").write_text(SCRIPT)
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump({"program": "train.py", **config}))
    made = _cli("sweep", "create", "sweep.yaml", "--offline", "--json", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    return json.loads(made.stdout)["sweep_id"]


def _runs(tmp_path: Path, sweep_id: str):
    return Store(tmp_path / ".cnn-tracker").runs(sweep_id=sweep_id)


@pytest.mark.slow
def test_the_example_script_runs_a_bayes_sweep_offline_unchanged(tmp_path):
    for name in ("train.py", "sweep.yaml"):
        (tmp_path / name).write_text((EXAMPLE / name).read_text())
    config = yaml.safe_load((EXAMPLE / "sweep.yaml").read_text())
    config["run_cap"] = 3
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(config))
    made = _cli("sweep", "create", "sweep.yaml", "--offline", "--json", cwd=tmp_path)
    sweep_id = json.loads(made.stdout)["sweep_id"]
    agent = _cli("agent", sweep_id, cwd=tmp_path)
    assert agent.returncode == 0, agent.stdout + agent.stderr
    runs = _runs(tmp_path, sweep_id)
    assert len(runs) == 3 and len({json.dumps(r.params, sort_keys=True) for r in runs}) == 3
    for run in runs:
        assert run.state in ("finished", "stopped") and run.exitcode in (0, -15, 143)
        assert run.best_metric("val_loss", "minimize") is not None and run.history
        assert Path(run.wandb_dir, "wandb").is_dir()  # its own W&B folder
    status = _cli("sweep", "status", sweep_id, cwd=tmp_path)
    assert status.returncode == 0 and "val_loss" in status.stdout
    best = _cli("best", sweep_id, "--json", cwd=tmp_path)
    assert best.returncode == 0, best.stderr
    found = json.loads(best.stdout)
    assert found["run_id"] == min(runs, key=lambda r: r.best_metric("val_loss", "minimize")).id
    assert Path(found["wandb_dir"]).is_dir()
    compared = _cli("compare", sweep_id, "--out", "cmp", cwd=tmp_path)
    assert compared.returncode == 0, compared.stderr
    header = compared.stdout.splitlines()[0].split()
    assert header[:2] == ["run", "state"] and {"lr", "batch_size", "optimizer", "val_loss"} <= set(header)
    assert (tmp_path / "cmp" / "parameters.png").is_file()  # val_loss against each parameter
    assert not (tmp_path / "cmp" / "compare.png").exists()  # no test accuracy to chart
    download = _cli("best", sweep_id, "--download", "got", cwd=tmp_path)
    assert download.returncode == 0, download.stderr
    got = next((tmp_path / "got").glob("offline-run-*"))
    assert (got / f"run-{found['run_id']}.wandb").is_file()  # the trial's own W&B run
    # the agent's own upload hint, run as printed (glob expanded) through W&B's dry run
    hint = agent.stdout.split("upload them with `", 1)[1].split("`", 1)[0].split()
    assert hint[:2] == ["wandb", "sync"]
    paths = sorted(glob.glob(hint[2]))
    assert len(paths) == 3
    sync = subprocess.run([str(Path(sys.executable).with_name("wandb")), "sync", "--dry-run", *paths],
                          capture_output=True, text=True, cwd=tmp_path, env=_env(), timeout=120)
    assert sync.returncode == 0, sync.stderr


@pytest.mark.slow
def test_hyperband_stops_a_trailing_trial_with_sigterm(tmp_path):
    sweep_id = _sweep(tmp_path, {
        "method": "grid", "metric": {"name": "val_loss", "goal": "minimize"},
        "early_terminate": {"type": "hyperband", "min_iter": 2, "eta": 2},
        "parameters": {"lr": {"values": [0.01, 0.02, 0.9]}, "epochs": {"value": 10}}})
    # the last trails at step 2 (about 1 s in); a verdict takes up to W&B's 1 s flush + a read
    agent = _cli("agent", sweep_id, cwd=tmp_path, env={"EPOCH_SECONDS": "0.5"})
    assert agent.returncode == 0, agent.stdout + agent.stderr
    *good, bad = _runs(tmp_path, sweep_id)
    for run in good:
        assert run.state == "finished" and len([h for h in run.history if "val_loss" in h]) == 10
    assert bad.state == "stopped" and bad.should_stop and "hyperband" in bad.message
    assert bad.exitcode in (-15, 143)  # SIGTERM, as from wandb agent
    assert len([h for h in bad.history if "val_loss" in h]) < 10
    assert "stopping trial" in agent.stdout
    # the stopped trial's run has no exit record: its follower (and the wandb-core process the
    # `wandb` script starts for it) must still be gone, not follow the file forever
    assert not [p for p in Path("/proc").glob("[0-9]*/cmdline") if _reads(p, str(tmp_path))]


def _reads(cmdline: Path, text: str) -> bool:
    try:
        return b"leet" in (raw := cmdline.read_bytes()) and text.encode() in raw
    except OSError:  # the process ended meanwhile
        return False


def test_a_crash_a_missing_metric_and_a_custom_step(tmp_path):
    sweep_id = _sweep(tmp_path, {
        "method": "grid", "metric": {"name": "val_loss", "goal": "minimize"},
        "parameters": {"mode": {"values": ["ok", "crash", "silent"]}, "epochs": {"value": 3}}})
    agent = _cli("agent", sweep_id, "--max-failures", "5", cwd=tmp_path)
    assert agent.returncode == 0, agent.stdout + agent.stderr
    ok, crash, silent = _runs(tmp_path, sweep_id)
    assert ok.state == "finished" and ok.best_metric("val_loss", "minimize") == pytest.approx(1 / 3)
    assert [h.get("epoch") for h in ok.history if "val_loss" in h] == [1, 2, 3]  # its own step
    assert crash.state == "crashed" and "boom in epoch 2" in crash.message
    assert silent.state == "finished" and "never logged the sweep's metric 'val_loss'" in silent.message
    assert "train/loss" in silent.message  # what it did log


@pytest.mark.slow
def test_two_agents_share_a_foreign_sweep_without_duplicates(tmp_path):
    sweep_id = _sweep(tmp_path, {
        "method": "random", "run_cap": 6, "metric": {"name": "val_loss", "goal": "minimize"},
        "parameters": {"lr": {"distribution": "log_uniform_values", "min": 1e-3, "max": 1.0},
                       "epochs": {"value": 2}}})
    agent = _cli("agent", sweep_id, "--agents", "2", "--stagger", "0", cwd=tmp_path)
    assert agent.returncode == 0, agent.stdout + agent.stderr
    runs = _runs(tmp_path, sweep_id)
    assert len(runs) == 6 and len({r.params["lr"] for r in runs}) == 6
    assert {r.agent for r in runs} == {"agent-0", "agent-1"}
    assert all(r.state == "finished" and r.summary.get("val_loss") is not None for r in runs)


FUNCTION_FORM = textwrap.dedent("""
    import sys, wandb
    from cnn_tracker import offline

    def train():
        run = wandb.init()
        for epoch in range(3):
            wandb.log({"epoch": epoch, "val_loss": run.config.lr * (3 - epoch)})

    config = {"method": "random", "run_cap": 3, "metric": {"name": "val_loss", "goal": "minimize"},
              "parameters": {"lr": {"min": 0.001, "max": 0.1}}}
    sweep_id = offline.sweep(config, project="fn")          # was: wandb.sweep(config, ...)
    print("SWEEP", sweep_id)
    sys.exit(offline.agent(sweep_id, function=train, count=3))  # was: wandb.agent(...)
""")


def test_the_function_form_fills_wandb_config_in_a_child_process(tmp_path):
    (tmp_path / "fn.py").write_text(FUNCTION_FORM)
    proc = subprocess.run([sys.executable, "fn.py"], cwd=tmp_path, env=_env(), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    sweep_id = proc.stdout.split("SWEEP ", 1)[1].split()[0]
    runs = _runs(tmp_path, sweep_id)
    assert len(runs) == 3 and all(r.state == "finished" for r in runs)
    for run in runs:  # the function saw the trial's own values in wandb.config
        assert [h["val_loss"] for h in run.history] == pytest.approx(
            [run.params["lr"] * k for k in (3, 2, 1)])
