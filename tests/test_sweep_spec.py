"""Sweep specs as W&B reads them: every distribution of its schema range-checked against our train
config, nested parameters refused, and ``metric.target`` ending a local sweep.

Real ``sweeps`` engine (its JSON schema, its quantile functions, ``next_run``), real store; the
agent runs in-process with tiny fake trials that report to the store like a training run does.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from cnn_tracker.cli import cli
from cnn_tracker.config import make_config
from cnn_tracker.runs import lifecycle
from cnn_tracker.search import draws
from cnn_tracker.search.agent import run_agent
from cnn_tracker.search.engine import import_sweeps
from cnn_tracker.search.scheduler import claim_trial, target_reached
from cnn_tracker.search.spec import validate
from cnn_tracker.store.db import Store

# Judged as a sweep of `cnn-tracker train` (its words name `-m cnn_tracker train`), and a trial
# of it does nothing at once (`python -c pass` ignores the rest).
FAST = ["${env}", "${interpreter}", "-c", "pass", "-m", "cnn_tracker", "train"]


def sweep_of(parameters: dict, **extra) -> dict:
    return {"method": "random", "run_cap": 5, "command": FAST, "program": "cnn_tracker/__main__.py",
            "metric": {"name": "val/accuracy", "goal": "maximize"}, "parameters": parameters,
            **extra}


def schema_distributions() -> set[str]:
    """Every ``distribution`` W&B's JSON schema names (sweeps/config/schema.json)."""
    import_sweeps()
    from sweeps.config.schema import sweep_config_jsonschema as schema

    names = set()

    def walk(node):
        if isinstance(node, dict):
            dist = node.get("properties", {}).get("distribution", {})
            names.update(dist.get("enum", []))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema["definitions"])
    return names


# distribution -> (a key and a spec whose every draw is valid, a key and a spec that is not)
CASES = {
    "constant": (("lr", {"value": 0.01}), ("lr", {"value": -1})),
    "categorical": (("lr", {"values": [0.01, 0.1]}), ("lr", {"values": [0.01, -1]})),
    "categorical_w_probabilities": (
        ("lr", {"distribution": "categorical_w_probabilities", "values": [0.01, 0.1],
                "probabilities": [0.3, 0.7]}),
        ("lr", {"distribution": "categorical_w_probabilities", "values": [0.01, 20],
                "probabilities": [0.3, 0.7]})),
    "int_uniform": (("batch_size", {"min": 16, "max": 128}), ("batch_size", {"min": 0, "max": 128})),
    "uniform": (("dropout", {"min": 0.0, "max": 0.5}), ("dropout", {"min": 0.0, "max": 1.5})),
    "q_uniform": (("batch_size", {"distribution": "q_uniform", "min": 16, "max": 128, "q": 16}),
                  ("dropout", {"distribution": "q_uniform", "min": 0, "max": 0.96, "q": 0.5})),
    "log_uniform_values": (("lr", {"distribution": "log_uniform_values", "min": 1e-4, "max": 0.1}),
                           ("lr", {"distribution": "log_uniform_values", "min": 1e-4, "max": 20})),
    "inv_log_uniform_values": (
        ("lr", {"distribution": "inv_log_uniform_values", "min": 1e-4, "max": 0.1}),
        ("lr", {"distribution": "inv_log_uniform_values", "min": 1e-4, "max": 20})),
    "q_log_uniform_values": (
        ("lr", {"distribution": "q_log_uniform_values", "min": 0.001, "max": 0.1, "q": 0.001}),
        ("lr", {"distribution": "q_log_uniform_values", "min": 0.0001, "max": 0.1, "q": 0.001})),
    # the legacy forms take base-e exponents: e^-9.2 = 1e-4 .. e^-2.3 = 0.1
    "log_uniform": (("lr", {"distribution": "log_uniform", "min": -9.2, "max": -2.3}),
                    ("lr", {"distribution": "log_uniform", "min": -9.2, "max": 3})),
    "inv_log_uniform": (("lr", {"distribution": "inv_log_uniform", "min": 2.3, "max": 9.2}),
                        ("lr", {"distribution": "inv_log_uniform", "min": -3, "max": 9.2})),
    "q_log_uniform": (("batch_size", {"distribution": "q_log_uniform", "min": 2.8, "max": 5.5,
                                      "q": 1}),
                      ("lr", {"distribution": "q_log_uniform", "min": -9, "max": -2})),  # q=1: 0
    "normal": (("momentum", {"distribution": "normal", "mu": 0.9, "sigma": 0.01}),
               ("lr", {"distribution": "normal", "mu": 0.01, "sigma": 0.1})),
    "q_normal": (("epochs", {"distribution": "q_normal", "mu": 10, "sigma": 1, "q": 1}),
                 ("epochs", {"distribution": "q_normal", "mu": 2, "sigma": 2, "q": 1})),
    "log_normal": (("lr", {"distribution": "log_normal", "mu": -4.6, "sigma": 0.5}),
                   ("lr", {"distribution": "log_normal", "mu": 2, "sigma": 1})),
    "q_log_normal": (("batch_size", {"distribution": "q_log_normal", "mu": 4.16, "sigma": 0.3,
                                     "q": 1}),
                     ("lr", {"distribution": "q_log_normal", "mu": -4.6, "sigma": 1, "q": 0.001})),
    "beta": (("dropout", {"distribution": "beta", "a": 2, "b": 5}),
             ("epochs", {"distribution": "beta", "a": 2, "b": 5})),
    "q_beta": (("dropout", {"distribution": "q_beta", "a": 2, "b": 5, "q": 0.01}),
               ("dropout", {"distribution": "q_beta"})),  # q = 1 rounds to 0 or 1
}


def test_every_schema_distribution_is_covered():
    assert schema_distributions() == set(draws.DISTRIBUTIONS) == set(CASES)


@pytest.mark.parametrize("dist", sorted(CASES))
def test_each_distribution_is_accepted_and_range_checked(dist, tmp_path):
    (key, good), (bad_key, bad) = CASES[dist]
    errors, warns = validate(sweep_of({key: good}))
    assert errors == [], errors
    assert all("takes base-e exponents" in w for w in warns), warns  # only W&B's legacy notes
    store = Store(tmp_path)
    sweep = store.create_sweep(sweep_of({key: good}, run_cap=20), "p")
    for _ in range(20):  # what W&B's engine draws, as stored for a trial, is a valid config
        run, _ = claim_trial(store, sweep.id, agent="a")
        make_config(run.params)
        assert not isinstance(run.params[key], str)  # JSON numbers, as W&B's server keeps them
    errors, _ = validate(sweep_of({bad_key: bad}))
    assert errors and all(e.startswith(f"parameters.{bad_key}") for e in errors), errors
    assert "invalid value" in errors[0]


def test_the_cli_accepts_the_legacy_exponent_forms(tmp_path):
    """q_log_uniform / inv_log_uniform were rejected (exponents checked as values)."""
    for dist, lo, hi in (("q_log_uniform", -9.2, -2.3), ("inv_log_uniform", 2.3, 9.2),
                         ("log_uniform", -9.2, -2.3)):
        path = tmp_path / f"{dist}.yaml"
        extra = {"q": 0.0001} if dist.startswith("q_") else {}
        path.write_text(yaml.safe_dump(sweep_of({"lr": {"distribution": dist, "min": lo,
                                                        "max": hi, **extra}})))
        result = CliRunner().invoke(cli, ["sweep", "validate", str(path)])
        assert result.exit_code == 0, result.output
        assert f"warning: parameters.lr: {dist} takes base-e exponents" in result.output
        assert f"{dist}_values takes the values themselves" in result.output


def test_an_unbounded_distribution_names_the_parameter_and_the_fix():
    errors, _ = validate(sweep_of({"lr": {"distribution": "normal", "mu": 0.01, "sigma": 0.1}}))
    (error,) = errors
    assert error.startswith("parameters.lr: normal(mu=0.01, sigma=0.1) draws -0.299")
    assert "must be a number > 0" in error and "use log_normal (always > 0)" in error
    # log_normal is always > 0: fine for lr, whose only other bound (10) is far away
    assert validate(sweep_of({"lr": {"distribution": "log_normal", "mu": -4.6, "sigma": 1}})) \
        == ([], [])
    # a failure only in the far tails is a warning, not an error
    errors, warns = validate(sweep_of({"epochs": {"distribution": "q_normal", "mu": 10,
                                                  "sigma": 2, "q": 1}}))
    assert errors == [] and len(warns) == 1
    assert warns[0].startswith("parameters.epochs: q_normal") and "rare trials" in warns[0]


def test_bounded_ends_whole_numbers_and_rounding():
    errors, _ = validate(sweep_of({"batch_size": {"distribution": "uniform", "min": 16.0,
                                                  "max": 128.0}}))
    assert "expected an integer" in errors[0] and "Use int_uniform" in errors[0]
    errors, _ = validate(sweep_of({"lr": {"distribution": "q_log_uniform", "min": -9, "max": -2}}))
    assert errors[0].startswith("parameters.lr: q_log_uniform draws 0.0 at its min end")
    assert "rounded to a multiple of q" in errors[0] and "or q" in errors[0]
    errors, _ = validate(sweep_of({"lr": {"distribution": "inv_log_uniform", "min": -9,
                                          "max": -2}}))
    assert "e^-max..e^-min" in errors[0]  # e^9 is far above lr's 10


def test_the_error_catalogue_messages_are_unchanged():
    errors, _ = validate(sweep_of({"dropout": {"min": 0.5, "max": 1.5}}))
    assert errors == ["parameters.dropout: invalid value 1.5 for 'dropout' (from sweep parameter "
                      "'dropout'): must be a number >= 0 and < 1, or null."]


def test_nested_parameters_are_rejected_naming_the_parameter(tmp_path):
    config = sweep_of({"optimizer": {"parameters": {"lr": {"values": [0.01]},
                                                    "momentum": {"value": 0.9}}}})
    errors, _ = validate(config)
    assert errors == ["parameters.optimizer: nested parameters are not supported by `cnn-tracker "
                      "train` (its config is flat): flatten them into top-level parameters (lr, "
                      "momentum), each a train config key."]
    path = tmp_path / "nested.yaml"
    path.write_text(yaml.safe_dump(config))
    for argv in (["sweep", "validate", str(path)], ["sweep", "create", str(path), "--offline"]):
        result = CliRunner().invoke(cli, argv)
        assert result.exit_code == 2 and "nested parameters are not supported" in result.output
    assert Store().sweeps() == []  # nothing was created


# -- metric.target ----------------------------------------------------------------------------
def finished_run(store: Store, sweep_id: str, run_id: str, metrics: dict, state="finished"):
    lifecycle.start(store, run_id, sweep_id=sweep_id, project="p", name=run_id, config={},
                    output_dir="o", wandb_dir=None)
    store.record_epoch(run_id, 1, {"epoch": 1, **metrics})
    if state != "running":
        lifecycle.finish(store, run_id, state, summary=metrics)


@pytest.mark.parametrize("metric, value, reached", [
    ({"name": "val/accuracy", "goal": "maximize", "target": 0.9}, 0.95, True),
    ({"name": "val/accuracy", "goal": "maximize", "target": 0.9}, 0.85, False),
    ({"name": "val/loss", "target": 0.1}, 0.05, True),  # no goal: minimized
    ({"name": "val/loss", "target": 0.1}, 0.2, False),
    ({"name": "val/loss", "goal": "minimize"}, 0.0, False),  # no target
])
def test_target_is_goal_aware(tmp_path, metric, value, reached):
    store = Store(tmp_path)
    config = {**sweep_of({"lr": {"values": [0.01, 0.02, 0.03]}}), "method": "grid",
              "metric": metric}
    sweep = store.create_sweep(config, "p")
    finished_run(store, sweep.id, "r1", {metric["name"]: value})
    run, why = claim_trial(store, sweep.id, agent="a")
    after = store.sweep(sweep.id)
    if reached:
        assert run is None and after.state == "finished"
        sign = "<=" if metric.get("goal") != "maximize" else ">="
        assert after.message == f"run r1 reached the target: {metric['name']} {value:g} {sign} " \
                                f"{metric['target']:g}"
        assert why == f"sweep {sweep.id} is finished: {after.message}"
    else:
        assert run is not None and after.state == "running"


def test_only_ended_runs_count_for_the_target(tmp_path):
    store = Store(tmp_path)
    config = sweep_of({"lr": {"values": [0.01]}}, metric={"name": "val/accuracy",
                                                          "goal": "maximize", "target": 0.9})
    sweep = store.create_sweep(config, "p")
    finished_run(store, sweep.id, "live", {"val/accuracy": 0.99}, state="running")
    finished_run(store, sweep.id, "dead", {"val/accuracy": 0.99}, state="crashed")
    assert target_reached(store.sweep(sweep.id), store.runs(sweep_id=sweep.id)) is None
    finished_run(store, sweep.id, "early", {"val/accuracy": 0.93}, state="stopped")
    assert "run early reached the target" in target_reached(store.sweep(sweep.id),
                                                             store.runs(sweep_id=sweep.id))


# A trial that reports like `cnn-tracker train`: val/accuracy = its lr, then finished.
REPORTING_TRIAL = """
import os, sys
from cnn_tracker import env
from cnn_tracker.runs import lifecycle
from cnn_tracker.store.db import Store
store, run_id = Store(os.environ[env.STORE_VAR]), os.environ[env.WANDB_RUN_ID]
acc = float(sys.argv[1].split("=")[1])
store.record_epoch(run_id, 1, {"epoch": 1, "val/accuracy": acc})
lifecycle.finish(store, run_id, "finished", summary={"val/accuracy": acc})
"""


def test_an_agent_finishes_the_sweep_when_a_run_reaches_the_target(tmp_path):
    config = {"method": "grid", "program": "cnn_tracker/__main__.py", "command": ["${env}", "${interpreter}", "-c", REPORTING_TRIAL,
                                            "${args}"],
              "metric": {"name": "val/accuracy", "goal": "maximize", "target": 0.9},
              "parameters": {"lr": {"values": [0.5, 0.95, 0.2, 0.3]}}}
    path = tmp_path / "target.yaml"
    path.write_text(yaml.safe_dump(config))
    created = CliRunner().invoke(cli, ["sweep", "create", str(path), "--offline", "--json"])
    sweep_id = json.loads(created.output)["sweep_id"]
    store, lines = Store(), []
    assert run_agent(store, sweep_id, echo=lines.append, stream=False) == 0
    runs = store.runs(sweep_id=sweep_id)
    assert [r.params["lr"] for r in runs] == [0.5, 0.95]  # the grid stopped at the target
    sweep = store.sweep(sweep_id)
    assert sweep.state == "finished"
    assert sweep.message == f"run {runs[1].id} reached the target: val/accuracy 0.95 >= 0.9"
    assert lines[-1] == f"[agent] sweep {sweep_id} is finished: {sweep.message}; agent done " \
                        "after 2 trial(s)"
    status = json.loads(CliRunner().invoke(cli, ["sweep", "status", sweep_id, "--json"]).output)
    assert status["state"] == "finished" and status["message"] == sweep.message
    assert Path(runs[0].log_path).is_file()
