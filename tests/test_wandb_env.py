"""W&B's own environment variables are honoured as W&B documents them (real offline runs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # five real offline W&B runs in fresh processes

from .conftest import TINY_ARGS
from .test_e2e import leet_records, run_cli_subprocess


def offline_run(tiny_root, extra_env, *args):
    proc = run_cli_subprocess(["train", "--data-dir", str(tiny_root), "--output-dir", "out",
                               *TINY_ARGS, "--epochs", "1", "--mode", "offline", *args], extra_env)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(Path("out/summary.json").read_text())
    records = leet_records(Path(summary["wandb_dir"]))
    runs = [r["run"] for r in records if r.get("type") == "run"]
    run = {k: v for update in runs for k, v in update.items()}  # the run as last updated
    return proc, summary, run


def test_name_tags_notes_group_and_job_type_come_from_wandbs_variables(tiny_root, isolated_env):
    env = {"WANDB_NAME": "my-run", "WANDB_TAGS": "alpha,beta", "WANDB_NOTES": "my notes",
           "WANDB_RUN_GROUP": "my-group", "WANDB_JOB_TYPE": "tuning", "WANDB_RUN_ID": "envrun01"}
    proc, summary, run = offline_run(tiny_root, env, "--tags", "mine")
    assert summary["run_id"] == "envrun01" and summary["run_name"] == "my-run"
    assert run["display_name"] == "my-run" and run["notes"] == "my notes"
    assert run["run_group"] == "my-group" and run["job_type"] == "tuning"
    # ours are added to the user's, never replace them
    assert {"alpha", "beta", "mine", "mnist", "lenet"} <= set(run["tags"])


def test_our_name_and_job_type_only_when_none_was_given(tiny_root, isolated_env):
    _, summary, run = offline_run(tiny_root, {})
    assert summary["run_name"] == f"lenet-mnist-{summary['run_id']}"
    assert run["job_type"] == "train" and not run.get("run_group")


def test_options_win_over_variables(tiny_root, isolated_env):
    _, summary, run = offline_run(tiny_root, {"WANDB_NAME": "env-name", "WANDB_JOB_TYPE": "x"},
                                  "--name", "cli-name", "--job-type", "sweep-trial",
                                  "--notes", "cli notes")
    assert summary["run_name"] == "cli-name" and run["job_type"] == "sweep-trial"
    assert run["notes"] == "cli notes"


def test_a_sweep_trial_carries_its_sweep_as_a_column_and_tag_not_a_group(tiny_root, isolated_env):
    params = isolated_env / "params.yaml"
    params.write_text("epochs:\n  value: 1\n")
    _, summary, run = offline_run(tiny_root, {"WANDB_SWEEP_ID": "swp42",
                                              "WANDB_SWEEP_PARAM_PATH": str(params)})
    assert "sweep-swp42" in run["tags"] and not run.get("run_group")
    records = leet_records(Path(summary["wandb_dir"]))
    configs = [r for r in records if r.get("type") == "config"]
    assert any("sweep_id" in json.dumps(c) and "swp42" in json.dumps(c) for c in configs)
    assert "sweep_id" not in summary["config"]  # not a hyperparameter


def test_quiet_silences_wandb_too(tiny_root, isolated_env):
    proc, _, _ = offline_run(tiny_root, {}, "--quiet")
    assert proc.stdout == "" and "wandb:" not in proc.stderr, proc.stderr
