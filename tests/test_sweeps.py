"""Sweeps: the shipped YAMLs, validation, macro expansion, the local store and the offline engine.

The engine tests run real trials (``cnn-tracker train`` subprocesses writing real offline W&B
runs) on the tiny generated datasets, with suggestions and early termination from W&B's own
``sweeps`` package.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from cnn_tracker.cli import cli
from cnn_tracker.cli.train import _extra_values
from cnn_tracker.config import KEYS, make_config
from cnn_tracker.errors import UserError
from cnn_tracker.runs import lifecycle
from cnn_tracker.search.agent import run_agent
from cnn_tracker.search.command import command_args, expand_command
from cnn_tracker.search.engine import import_sweeps, suggest
from cnn_tracker.search.scheduler import claim_trial
from cnn_tracker.search.spec import load_sweep_file, validate
from cnn_tracker.store.db import Store

from .test_catalogue import MANY_PROBLEMS

REPO = Path(__file__).resolve().parents[1]
SWEEP_FILES = sorted((REPO / "sweeps").glob("*.yaml"))
COMMAND = ["${env}", "${interpreter}", "-m", "cnn_tracker", "train", "${args}"]
# Fixed parameters that make a trial take a few seconds on the tiny datasets.
TINY = {"model": {"value": "mlp"}, "epochs": {"value": 1}, "batch_size": {"value": 32},
        "val_size": {"value": 50}, "log_misclassified": {"value": 8},
        "eval_batch_size": {"value": 64}, "device": {"value": "cpu"}}


def tiny_sweep(method: str, searched: dict, **extra) -> dict:
    return {"method": method, "metric": {"name": "val/accuracy", "goal": "maximize"},
            "program": "cnn_tracker/__main__.py", "command": COMMAND, "parameters": {**TINY, **searched}, **extra}


def create(config: dict, tmp_path: Path) -> str:
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(cli, ["sweep", "create", str(path), "--offline", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)["sweep_id"]


def cnn_tracker(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cnn_tracker", *args], capture_output=True,
                          text=True, **kw)


# -- the shipped sweep files ------------------------------------------------------------------
def test_shipped_sweeps_exist():
    names = {p.name for p in SWEEP_FILES}
    assert {"mnist_bayes.yaml", "fashion_bayes.yaml", "fashion_hyperband.yaml", "models_grid.yaml",
            "smoke_random.yaml"} <= names


@pytest.mark.parametrize("path", SWEEP_FILES, ids=lambda p: p.name)
def test_shipped_sweep_is_valid_for_wandb_and_for_train(path):
    config = load_sweep_file(path)
    sweeps = import_sweeps()
    assert sweeps.schema_violations_from_proposed_config(config) == []  # W&B's own schema
    sweeps.SweepConfig(config)  # raises on any violation
    assert set(config["parameters"]) <= set(KEYS)  # every name is a training config key
    errors, warnings = validate(config)
    assert errors == [] and warnings == []
    assert config["metric"] == {"name": "val/accuracy", "goal": "maximize"}
    if config["method"] in ("bayes", "random"):
        assert config["run_cap"] > 0
    command = config["command"]
    assert command[:2] == ["${env}", "${interpreter}"] and "${args}" in command and "train" in command
    assert sweeps.next_run(config, []) is not None  # W&B's engine accepts it


def test_models_grid_covers_every_model_and_dataset():
    config = load_sweep_file(REPO / "sweeps" / "models_grid.yaml")
    from cnn_tracker.config import DATASETS, MODELS

    assert set(config["parameters"]["model"]["values"]) == set(MODELS)
    assert set(config["parameters"]["dataset"]["values"]) == set(DATASETS)


def test_a_parameter_typo_fails_validation(tmp_path):
    config = load_sweep_file(REPO / "sweeps" / "mnist_bayes.yaml")
    config["parameters"]["learnin_rate"] = config["parameters"].pop("lr")
    errors, _ = validate(config)
    assert any("learnin_rate" in e and "Did you mean 'lr'" in e for e in errors)


def test_validate_reports_every_problem_at_once(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(MANY_PROBLEMS)  # eight problems (the error catalogue's file)
    result = CliRunner().invoke(cli, ["sweep", "validate", str(bad)])
    assert result.exit_code == 2
    out = result.output
    for needle in ("metric.goal: 'maximise'", "parameters.batch_size", "parameters.lr: min 0.1",
                   "parameters.learning_rate: unknown config key", "Did you mean 'lr'",
                   "parameters.dropout: invalid value 1.5", "'rmsprop'", "did you mean 'val/accuracy'",
                   "unknown macro '${argz}'"):
        assert needle in out, needle
    assert "8 problem(s)" in out


def test_validate_method_specific_and_file_errors(tmp_path):
    grid = tiny_sweep("grid", {"lr": {"min": 0.001, "max": 0.1}})
    errors, _ = validate(grid)
    assert any("method grid" in e and "lr" in e for e in errors)  # from W&B's engine dry run
    hb = tiny_sweep("random", {"lr": {"values": [0.01]}},
                    early_terminate={"type": "hyperband", "min_iter": 1, "eta": 2})
    hb["metric"]["name"] = "test/accuracy"
    errors, warnings = validate(hb)
    assert any("early_terminate needs a per-epoch metric" in e for e in errors)
    assert any("test set" in w for w in warnings) and any("run_cap" in w for w in warnings)
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    for path, needle in ((tmp_path / "missing.yaml", "does not exist"),
                         (tmp_path / "list.yaml", "must be a mapping")):
        result = CliRunner().invoke(cli, ["sweep", "validate", str(path)])
        assert result.exit_code == 2 and needle in result.output


def test_flow_style_command_with_macros_is_a_yaml_error_with_location(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("method: grid\ncommand: [${env}, ${args}]\nparameters: {lr: {value: 0.1}}\n")
    with pytest.raises(UserError, match="not valid YAML at line 2"):
        load_sweep_file(path)


# -- the trial command ------------------------------------------------------------------------
PARAMS = {"lr": 0.0031, "batch_size": 64, "augment": False, "batch_norm": True,
          "hidden_units": None, "optimizer": "sgd"}


def test_argument_forms_match_wandb_agent():
    """Same strings as the official agent builds (wandb.sdk.launch.sweeps.utils)."""
    from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

    theirs = create_sweep_command_args({"args": {k: {"value": v} for k, v in PARAMS.items()}})
    ours = command_args(PARAMS)
    for macro, value in ours.items():
        assert value == theirs[macro], macro


def test_expand_command_all_macros(tmp_path):
    config = {"program": "train.py", "command": [
        "${env}", "${interpreter}", "${program}", "--tag=${envvar:MY_TAG}", "${args_no_hyphens}",
        "${args_no_boolean_flags}", "${args_json}", "${args_json_file}"]}
    argv = expand_command(config, {"lr": 0.1, "augment": False, "batch_norm": True},
                          json_file=tmp_path / "c.json", environ={"MY_TAG": "x1"}, interpreter="/py")
    assert argv == ["/usr/bin/env", "/py", "train.py", "--tag=x1", "lr=0.1", "augment=False",
                    "batch_norm=True", "--lr=0.1", "--batch_norm",
                    '{"lr": 0.1, "augment": false, "batch_norm": true}', str(tmp_path / "c.json")]
    default = expand_command({"program": "p.py"}, {"lr": 0.1}, json_file=tmp_path / "c.json",
                             environ={}, interpreter="/py")
    assert default == ["/usr/bin/env", "/py", "p.py", "--lr=0.1"]


def test_train_accepts_every_agent_argument_form():
    assert _extra_values(("lr=0.1", "batch-size=64")) == {"lr": "0.1", "batch_size": "64"}
    assert _extra_values(('{"lr": 0.1, "augment": false}',)) == {"lr": 0.1, "augment": False}
    for bad, needle in (("oops", "unexpected argument 'oops'"), ("{bad json", "not a valid JSON"),
                        ("[1, 2]", "unexpected argument")):
        with pytest.raises(UserError, match=needle):
            _extra_values((bad,))
    args = command_args(PARAMS)
    for form in ("args", "args_no_hyphens", "args_no_boolean_flags", "args_json"):
        values = _extra_values(tuple(a for a in args[form] if not a.startswith("--")))
        assert all(k in KEYS for k in values), form


# -- the store --------------------------------------------------------------------------------
def test_concurrent_claims_never_duplicate_and_exhaust_a_grid(tmp_path):
    """Four agents (own connections) race for an 8-point grid with a slow suggestion step."""
    store = Store(tmp_path / "store")
    config = tiny_sweep("grid", {"lr": {"values": [0.01, 0.02, 0.03, 0.04]},
                                 "optimizer": {"values": ["adam", "sgd"]}})
    sweep_id = store.create_sweep(config, "p").id

    def slow_suggest(sweep, runs):
        time.sleep(0.02)  # a wide race window between snapshot and commit
        return suggest(sweep, runs)

    claimed, errors = [], []

    def agent(i):
        own = Store(tmp_path / "store")
        try:
            while True:
                run, why = claim_trial(own, sweep_id, slow_suggest, agent=f"a{i}")
                if run is None:
                    return
                claimed.append(run)
                lifecycle.finish(own, run.id, "finished")
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=agent, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    configs = [(r.params["lr"], r.params["optimizer"]) for r in claimed]
    assert len(configs) == 8 and set(configs) == set(itertools.product(
        [0.01, 0.02, 0.03, 0.04], ["adam", "sgd"]))
    sweep = store.sweep(sweep_id)
    assert sweep.state == "finished" and "grid" in sweep.message


def test_run_cap_is_honoured_by_racing_claims(tmp_path):
    store = Store(tmp_path / "store")
    config = tiny_sweep("random", {"lr": {"min": 0.001, "max": 0.1}}, run_cap=5)
    sweep_id = store.create_sweep(config, "p").id
    got = []

    def agent():
        own = Store(tmp_path / "store")
        while (run := claim_trial(own, sweep_id, suggest, agent="a")[0]) is not None:
            got.append(run.id)

    threads = [threading.Thread(target=agent) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 5 == len(set(got)) == len(store.runs(sweep_id=sweep_id))
    assert store.sweep(sweep_id).message == "run_cap 5 reached"


def test_bayes_suggestions_use_finished_runs(tmp_path):
    """After a few finished runs, W&B's Bayesian search proposes valid, modelled configurations."""
    store = Store(tmp_path / "store")
    config = tiny_sweep("bayes", {"lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 0.1},
                                  "batch_size": {"values": [32, 64, 128]},
                                  "dropout": {"min": 0.0, "max": 0.5}})
    sweep_id = store.create_sweep(config, "p").id
    for i in range(5):
        run, _ = claim_trial(store, sweep_id, suggest, agent="a")
        p = run.params
        make_config({k: v for k, v in p.items()})  # a valid training config
        assert 1e-4 <= p["lr"] <= 0.1 and p["batch_size"] in (32, 64, 128) and 0 <= p["dropout"] <= 0.5
        acc = 0.5 + 0.1 * i
        store.record_epoch(run.id, 1, {"epoch": 1, "val/accuracy": acc})
        lifecycle.finish(store, run.id, "finished", summary={"val/accuracy": acc})
    runs = store.runs(sweep_id=sweep_id)
    params, info = suggest(store.sweep(sweep_id), runs)
    assert info is not None and "predicted_value" in info and "expected_improvement" in info
    assert 1e-4 <= params["lr"] <= 0.1


def test_stale_runs_are_marked_crashed(tmp_path):
    store = Store(tmp_path / "store")
    lifecycle.start(store, "abc", sweep_id=None, project="p", name="n", config={},
                    output_dir="o", wandb_dir=None)
    assert lifecycle.reap_stale(store, timeout=60) == []
    time.sleep(0.05)
    assert lifecycle.reap_stale(store, timeout=0.01) == ["abc"]
    run = store.run("abc")
    assert run.state == "crashed" and "heartbeat" in run.message


def test_unknown_sweep_and_damaged_store_are_clear_errors(tmp_path):
    result = CliRunner().invoke(cli, ["sweep", "status", "nope1234"])
    assert result.exit_code == 2 and "not in the local run store" in result.output
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "store.db").write_text("not a database " * 100)
    result = CliRunner().invoke(cli, ["sweep", "list", "--store", str(tmp_path / "bad")])
    assert result.exit_code == 2 and "cannot be opened" in result.output


def test_train_with_a_damaged_store_stops_before_wandb_init(tiny_root, tmp_path, isolated_env):
    from .conftest import TINY_ARGS

    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "store.db").write_text("not a database " * 100)
    result = CliRunner().invoke(cli, ["train", "--data-dir", str(tiny_root), "--mode", "offline",
                                      "--store", str(tmp_path / "bad"), *TINY_ARGS])
    assert result.exit_code == 2 and "cannot be opened" in result.output
    assert not (isolated_env / "wandb").exists() and not (isolated_env / "outputs").exists()


# -- the offline engine, end to end -----------------------------------------------------------
@pytest.fixture
def data_env(tiny_root, monkeypatch):
    monkeypatch.setenv("CNN_TRACKER_DATA_DIR", str(tiny_root))
    return tiny_root


@pytest.mark.slow
def test_grid_sweep_end_to_end_then_best_and_evaluate(data_env, tmp_path, isolated_env):
    config = tiny_sweep("grid", {"lr": {"values": [0.003, 0.03]},
                                 "optimizer": {"values": ["adamw", "sgd"]}})
    sweep_id = create(config, tmp_path)
    store = Store()
    lines = []
    assert run_agent(store, sweep_id, echo=lines.append, stream=False) == 0
    runs = store.runs(sweep_id=sweep_id)
    assert sorted((r.params["lr"], r.params["optimizer"]) for r in runs) == sorted(
        itertools.product([0.003, 0.03], ["adamw", "sgd"]))  # exactly the grid, once each
    for r in runs:
        assert r.state == "finished" and r.exitcode == 0 and r.epochs == 1 and len(r.history) == 1
        assert r.config["lr"] == r.params["lr"]  # wandb.config carried the sweep's values
        assert Path(r.checkpoint).is_file() and r.summary["test/accuracy"] > 0
        assert Path(r.wandb_dir).name.endswith(r.id)  # a real offline W&B run, id = trial id
    assert store.sweep(sweep_id).state == "finished"
    assert any("all 4 configurations of the grid" in line for line in lines)

    status = CliRunner().invoke(cli, ["sweep", "status", sweep_id, "--json"])
    data = json.loads(status.output)
    assert data["counts"] == {"finished": 4} and data["parameters"] == ["lr", "optimizer"]
    best_run = max(runs, key=lambda r: r.best_metric("val/accuracy", "max"))
    assert data["best"] == best_run.id

    result = CliRunner().invoke(cli, ["best", sweep_id, "--download", "pulled", "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    assert found["run_id"] == best_run.id and Path(found["downloaded"]).name == "best.pt"
    assert found["metric"]["value"] == pytest.approx(best_run.best_metric("val/accuracy", "max"))
    ev = CliRunner().invoke(cli, ["evaluate", found["downloaded"], "--json", "--no-plots"])
    assert ev.exit_code == 0, ev.output
    assert json.loads(ev.output)["test/accuracy"] == pytest.approx(best_run.summary["test/accuracy"])

    by_project = CliRunner().invoke(cli, ["best", "cnn-tracker", "--json"])
    assert json.loads(by_project.output)["run_id"] == best_run.id
    text = CliRunner().invoke(cli, ["sweep", "list"]).output
    assert sweep_id in text and "finished" in text


@pytest.mark.slow
def test_two_agents_share_a_bayes_sweep(data_env, tmp_path, isolated_env):
    config = tiny_sweep("bayes", {"lr": {"distribution": "log_uniform_values", "min": 0.001, "max": 0.05},
                                  "batch_size": {"values": [16, 32, 64]}}, run_cap=4)
    sweep_id = create(config, tmp_path)
    proc = cnn_tracker("agent", sweep_id, "--agents", "2", "--stagger", "0", timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = Store().runs(sweep_id=sweep_id)
    assert len(runs) == 4  # run_cap honoured
    assert len({r.id for r in runs}) == 4
    assert len({(r.params["lr"], r.params["batch_size"]) for r in runs}) == 4  # no duplicate
    assert {r.agent for r in runs} == {"agent-0", "agent-1"}  # both agents worked
    for r in runs:  # no lost result
        assert r.state == "finished" and len(r.history) == 1 and "test/accuracy" in r.summary


@pytest.mark.slow
def test_hyperband_stops_a_trailing_trial(data_env, tmp_path, isolated_env):
    """Three finished peers at 99% after every epoch; a trial that learns nothing is stopped."""
    config = tiny_sweep("grid", {"lr": {"values": [1e-6]}},
                        early_terminate={"type": "hyperband", "min_iter": 1, "eta": 2})
    config["parameters"]["epochs"] = {"value": 4}
    sweep_id = create(config, tmp_path)
    store = Store()
    for i in range(3):
        lifecycle.start(store, f"peer{i}", sweep_id=sweep_id, project="p", name="peer",
                        config={}, output_dir="o", wandb_dir=None)
        for epoch in range(1, 5):
            store.record_epoch(f"peer{i}", epoch, {"epoch": epoch, "val/accuracy": 0.99})
        lifecycle.finish(store, f"peer{i}", "finished")
    assert run_agent(store, sweep_id, count=1, echo=lambda s: None, stream=False) == 0
    trial = [r for r in store.runs(sweep_id=sweep_id) if not r.id.startswith("peer")][0]
    assert trial.state == "stopped" and trial.epochs == 1 and trial.exitcode == 0
    assert "hyperband" in trial.message
    assert trial.summary["stopped_early"] and "test/accuracy" in trial.summary  # still evaluated


def test_agent_stops_after_consecutive_failures(tmp_path):
    config = tiny_sweep("random", {"lr": {"min": 0.001, "max": 0.1}}, run_cap=10)
    config["command"] = ["${env}", "${interpreter}", "-c", "import sys; print('boom'); sys.exit(1)"]
    sweep_id = create(config, tmp_path)
    store = Store()
    lines = []
    assert run_agent(store, sweep_id, max_failures=2, echo=lines.append, stream=False) == 1
    runs = store.runs(sweep_id=sweep_id)
    assert [r.state for r in runs] == ["crashed", "crashed"] and runs[0].exitcode == 1
    assert "boom" in runs[0].message and "boom" in Path(runs[0].log_path).read_text().splitlines()
    assert any("2 trials in a row failed" in line for line in lines)


def test_ctrl_c_stops_all_agents_and_their_trials(tmp_path, isolated_env):
    """Also when started in the background (`cmd &` makes SIGINT ignored, and children inherit it)."""
    config = tiny_sweep("random", {"lr": {"min": 0.001, "max": 0.1}}, run_cap=10)
    config["command"] = ["${env}", "${interpreter}", "-c", "import time; time.sleep(120)"]
    sweep_id = create(config, tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "cnn_tracker", "agent", sweep_id, "--agents", "2",
                             "--stagger", "0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    store = Store()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if sum(r.state == "running" for r in store.runs(sweep_id=sweep_id)) == 2:
            break
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("two trials never started: " + proc.communicate()[0])
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    runs = store.runs(sweep_id=sweep_id)
    assert len(runs) == 2 and {r.state for r in runs} == {"killed"}
    for r in runs:  # the trial processes are gone too
        with pytest.raises(ProcessLookupError):
            os.kill(r.pid, 0)


def test_plain_train_runs_are_recorded(tiny_root, isolated_env):
    from .conftest import TINY_ARGS

    result = CliRunner().invoke(cli, ["train", "--data-dir", str(tiny_root), "--mode", "disabled",
                                      "--output-dir", "out", "--quiet", *TINY_ARGS, "--project", "solo"])
    assert result.exit_code == 0, result.output
    (run,) = Store().runs()
    assert run.sweep_id is None and run.project == "solo" and run.state == "finished"
    assert [h["epoch"] for h in run.history] == [1, 2] and Path(run.checkpoint).is_file()
    assert run.summary["test/accuracy"] == json.loads(Path("out/summary.json").read_text())["test/accuracy"]
    found = json.loads(CliRunner().invoke(cli, ["best", "solo", "--json"]).output)
    assert found["run_id"] == run.id and found["checkpoint"] == run.checkpoint
