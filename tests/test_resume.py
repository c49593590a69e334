"""Preemption and resume: SIGTERM/SIGINT save a resumable checkpoint; --resume continues exactly."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from cnn_tracker.cli import cli
from cnn_tracker.config import make_config
from cnn_tracker.store.db import Store
from cnn_tracker.training.checkpoint import load_checkpoint
from cnn_tracker.training.data import load_data
from cnn_tracker.training.engine import Preempted, TrainHooks
from cnn_tracker.training.state import load_resume

from .conftest import isolate
from .test_e2e import leet_records
from .test_engine import fit

# Deterministic, with augmentation and dropout: every RNG stream matters for an exact match.
CFG = {"model": "fashioncnn", "dataset": "fashion-mnist", "epochs": 3, "batch_size": 32,
       "val_size": 50, "deterministic": True, "augment": True, "dropout": 0.3, "lr": 3e-3}


class StopAfter(TrainHooks):
    """Hooks whose stop_signal answers ``signum`` from its ``polls``-th call on (one call per batch)."""

    def __init__(self, polls: int, signum: int):
        self.polls, self.signum, self.n = polls, signum, 0

    def stop_signal(self) -> int:
        self.n += 1
        return self.signum if self.n >= self.polls else 0


def stop_after(polls: int, signum: int = signal.SIGTERM) -> TrainHooks:
    return StopAfter(polls, signum)


def resume_arg(path: Path):
    return load_resume(path)[1]


@pytest.fixture(scope="module")
def uninterrupted(tiny_root, tmp_path_factory):
    cfg = make_config(CFG)
    data = load_data(cfg.dataset, tiny_root, val_size=cfg.val_size, seed=cfg.seed)
    return cfg, data, fit(cfg, data, TrainHooks(), tmp_path_factory.mktemp("full"))


def assert_same_run(a, b) -> None:
    keys = ("train/loss", "train/accuracy", "val/loss", "val/accuracy", "lr")
    assert [{k: h[k] for k in keys} for h in a.history] == [{k: h[k] for k in keys} for h in b.history]
    assert (a.test.loss, a.test.accuracy, a.best_epoch) == (b.test.loss, b.test.accuracy, b.best_epoch)
    for (k, v), (k2, v2) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert k == k2 and torch.equal(v, v2), k


# 11 batches per epoch, one poll per batch plus one between epochs: mid-epoch 1, its last batch,
# between epochs 1 and 2, mid-epoch 2.
@pytest.mark.parametrize("polls", [5, 11, 12, 15])
def test_resume_after_a_signal_matches_an_uninterrupted_run(uninterrupted, tmp_path, polls):
    cfg, data, full = uninterrupted
    with pytest.raises(Preempted) as stopped:
        fit(cfg, data, stop_after(polls), tmp_path)
    assert stopped.value.signum == signal.SIGTERM
    state = load_checkpoint(stopped.value.path)["resume"]
    assert (state["epoch"], state["batch"]) == (stopped.value.epoch, stopped.value.batch)
    assert {"optimizer", "scheduler", "scaler", "rng", "history", "best", "global_step"} <= set(state)
    assert state["global_step"] == (state["epoch"] - 1) * 11 + state["batch"]
    assert (state["epoch"], state["batch"]) == {5: (1, 5), 11: (1, 11), 12: (2, 0), 15: (2, 3)}[polls]
    resumed = fit(cfg, data, TrainHooks(), tmp_path, resume=resume_arg(stopped.value.path))
    assert resumed.resumed_from == f"epoch {state['epoch']}, batch {state['batch']}"
    assert_same_run(full, resumed)


def test_last_checkpoint_of_every_epoch_resumes_a_killed_run(uninterrupted, tmp_path):
    """A SIGKILLed run has no resume.pt, but last.pt (written at every epoch end) resumes it."""
    cfg, data, full = uninterrupted
    with pytest.raises(Preempted):  # stands in for a kill during epoch 3: only last.pt counts
        fit(cfg, data, stop_after(25), tmp_path)
    last = load_checkpoint(tmp_path / "last.pt")
    assert (last["resume"]["epoch"], last["resume"]["batch"], last["epoch"]) == (3, 0, 2)
    resumed = fit(cfg, data, TrainHooks(), tmp_path, resume=resume_arg(tmp_path / "last.pt"))
    assert_same_run(full, resumed)


def test_best_checkpoint_stays_weights_only(uninterrupted, tmp_path):
    cfg, data, _ = uninterrupted
    fit(cfg, data, TrainHooks(), tmp_path)
    assert "resume" not in load_checkpoint(tmp_path / "best.pt")  # the uploaded artifact stays lean
    assert "optimizer" in load_checkpoint(tmp_path / "last.pt")["resume"]


# -- the CLI, as a real process that receives a real signal ------------------------------------
def train_argv(tiny_root: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "cnn_tracker", "train", "--data-dir", str(tiny_root), "--mode",
            "offline", "--model", "lenet", "--epochs", "4", "--batch_size", "8", "--val_size", "50",
            "--deterministic", "--log_misclassified", "4", *extra]


def signal_during_training(argv: list[str], signum: int) -> tuple[int, str]:
    """Start ``argv``, send ``signum`` once the first epoch is reported, return (code, output)."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("epoch 1/"):
            proc.send_signal(signum)
            break
    lines += proc.stdout.readlines()
    return proc.wait(timeout=120), "".join(lines)


def sync_commands(output: str) -> list[str]:
    """The ``wandb sync ...`` commands a run printed (in backticks, or after "with: ")."""
    found = re.findall(r"`(wandb sync [^`]+)`", output)
    found += [line.split("with: ", 1)[1].strip() for line in output.splitlines()
              if "with: wandb sync" in line]
    return found


def dry_run_sync(command: str) -> subprocess.CompletedProcess:
    """A printed sync command through the real wandb CLI, with --dry-run (no server needed)."""
    args = shlex.split(command)
    assert args[:2] == ["wandb", "sync"], command
    wandb_cli = Path(sys.executable).with_name("wandb")
    return subprocess.run([str(wandb_cli), "sync", "--dry-run", *args[2:]], capture_output=True,
                          text=True, timeout=120)


@pytest.fixture(scope="module")
def reference_summary(tiny_root, tmp_path_factory) -> dict:
    """summary.json of the same run, never interrupted."""
    mp = pytest.MonkeyPatch()
    work = isolate(mp, tmp_path_factory.mktemp("reference"))
    try:
        full = subprocess.run(train_argv(tiny_root, "--output-dir", "full"), capture_output=True,
                              text=True, timeout=300)
        assert full.returncode == 0, full.stderr
        return json.loads((work / "full" / "summary.json").read_text())
    finally:
        mp.undo()


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_preempts_the_run_and_resume_matches(tiny_root, isolated_env, reference_summary, signum):
    code, out = signal_during_training(train_argv(tiny_root), signum)
    assert code == 128 + signum, out  # 143 / 130: W&B's agent requeues a run marked preempting
    assert f"{signal.Signals(signum).name} received" in out and "Traceback" not in out
    run = Store().runs()[0]
    assert run.state == "preempted" and run.exitcode == 128 + signum
    assert f"--resume {run.id}" in out
    part1 = leet_records(Path(run.wandb_dir))
    assert any(r.get("type") == "preempting" for r in part1)
    assert [r["exit"]["exit_code"] for r in part1 if r.get("type") == "exit"] == [128 + signum]
    if signum == signal.SIGINT:
        return  # the same code path from here on

    resumed = subprocess.run([sys.executable, "-m", "cnn_tracker", "train", "--resume", run.id,
                              "--data-dir", str(tiny_root), "--mode", "offline"],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming run {run.id} at epoch" in resumed.stdout
    after = Store().run(run.id)
    assert after.state == "finished" and after.epochs == 4 and len(Store().runs()) == 1
    out_dir = Path(after.output_dir)
    assert not (out_dir / "checkpoints" / "resume.pt").exists()  # used up
    summary = json.loads((out_dir / "summary.json").read_text())

    reference = reference_summary
    keys = ("train/loss", "val/loss", "val/accuracy")
    assert [[h[k] for k in keys] for h in summary["history"]] == \
        [[h[k] for k in keys] for h in reference["history"]]
    assert summary["test/loss"] == reference["test/loss"]
    assert summary["test/accuracy"] == reference["test/accuracy"]

    # The resumed offline part continues the W&B step count, for `wandb sync --id RUN DIR1 DIR2`.
    part2 = leet_records(Path(summary["wandb_dir"]))
    steps1 = [r["history"]["step"]["num"] for r in part1 if r.get("type") == "history"]
    steps2 = [r["history"]["step"]["num"] for r in part2 if r.get("type") == "history"]
    assert steps2 and min(steps2) == (max(steps1) + 1 if steps1 else 0)
    # Every printed sync command works with the installed wandb (checked with --dry-run).
    first = sync_commands(out)
    assert first == [f"wandb sync {run.wandb_dir}"]
    both = sync_commands(resumed.stdout)
    assert both == [f"wandb sync --id {run.id} {run.wandb_dir} {summary['wandb_dir']}"]
    for command in first + both:
        dry = dry_run_sync(command)
        assert dry.returncode == 0, dry.stdout + dry.stderr
        assert "Would sync" in dry.stdout + dry.stderr


def test_second_signal_aborts_without_waiting(tiny_root, isolated_env):
    proc = subprocess.Popen(train_argv(tiny_root, "--epochs", "50"), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    for line in proc.stdout:
        if line.startswith("run "):
            break
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    out = proc.stdout.read()
    assert proc.wait(timeout=120) == 130, out
    run = Store().runs()[0]
    assert run.state in ("killed", "preempted")  # killed unless the first batch boundary came first


def test_resume_errors_are_clear(tiny_root, isolated_env):
    runner = CliRunner()
    args = ["train", "--data-dir", str(tiny_root), "--mode", "disabled", "--model", "lenet",
            "--epochs", "1", "--batch_size", "64", "--val_size", "50", "--output-dir", "out"]
    assert runner.invoke(cli, args).exit_code == 0
    cases = [
        (["--resume", "out/checkpoints/best.pt"], "holds weights only"),
        (["--resume", "nosuchrun"], "not a checkpoint file, a run folder or a run id"),
        (["--resume", "out", "--lr", "0.1"], "lr 0.1 (saved 0.003)"),
        (["--resume", "out"], "already trained all its 1 epochs"),
    ]
    for extra, message in cases:
        result = runner.invoke(cli, ["train", "--data-dir", str(tiny_root), "--mode", "disabled", *extra])
        assert result.exit_code == 2 and message in result.output, (extra, result.output)
