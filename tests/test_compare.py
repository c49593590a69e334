"""`cnn-tracker compare` over a store filled by real tiny training runs; W&B at the Api boundary."""

from __future__ import annotations

import csv
import io
import json
import shutil
import statistics
from pathlib import Path

import pytest
from click.testing import CliRunner

from cnn_tracker.cli import cli
from cnn_tracker.store.db import Store

from .conftest import TINY_ARGS, isolate

PNG = b"\x89PNG\r\n\x1a\n"


def _train(tiny_root: Path, *args: str) -> dict:
    out = Path(f"out-{len(list(Path('.').glob('out-*')))}")
    result = CliRunner().invoke(cli, ["train", "--data-dir", str(tiny_root), *TINY_ARGS, "--epochs", "1",
                                      "--mode", "disabled", "--quiet", "--output-dir", str(out), *args])
    assert result.exit_code == 0, result.output
    return json.loads((out / "summary.json").read_text())


@pytest.fixture(scope="module")
def _trained(tiny_root, tmp_path_factory):
    """Two models x two seeds, trained once for the module: (work folder, their summaries)."""
    base = tmp_path_factory.mktemp("compare-runs")
    with pytest.MonkeyPatch.context() as mp:
        work = isolate(mp, base)
        summaries = [_train(tiny_root, "--model", model, "--seed", str(seed), "--hidden_units", "16")
                     for model in ("mlp", "lenet") for seed in (0, 1)]
    return work, summaries


@pytest.fixture
def filled_store(_trained, isolated_env):
    """The four runs recorded in this test's ./.cnn-tracker (a copy: tests may add runs)."""
    work, summaries = _trained
    shutil.copytree(work / ".cnn-tracker", isolated_env / ".cnn-tracker")
    return summaries


def compare(*args: str):
    return CliRunner().invoke(cli, ["compare", *args])


def test_one_row_per_run_with_every_column(filled_store):
    result = compare("--format", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)["rows"]
    assert [r["id"] for r in rows] == [s["run_id"] for s in filled_store]
    for row, summary in zip(rows, filled_store):
        assert row["model"] == summary["config"]["model"] and row["dataset"] == "mnist"
        assert row["seed"] == summary["config"]["seed"]
        assert row["n_params"] == summary["model"]["n_params"]
        assert row["test_accuracy"] == pytest.approx(summary["test/accuracy"])
        assert row["best_val_accuracy"] == pytest.approx(summary["best/val_accuracy"])
        assert row["epochs"] == 1 and row["train_seconds"] == pytest.approx(summary["perf/train_seconds"])
        assert row["images_per_second"] == pytest.approx(summary["history"][0]["perf/images_per_second"])
    text = compare().output
    header = text.splitlines()[0].split()
    assert header[:6] == ["run", "name", "state", "model", "dataset", "seed"]
    assert len(text.splitlines()) == 2 + len(filled_store)


def test_group_by_model_gives_mean_and_std_across_seeds(filled_store):
    result = compare("--by", "model", "--format", "json")
    assert result.exit_code == 0, result.output
    groups = {g["model"]: g for g in json.loads(result.output)["rows"]}
    assert set(groups) == {"mlp", "lenet"}
    for model, group in groups.items():
        accs = [s["test/accuracy"] for s in filled_store if s["config"]["model"] == model]
        assert group["runs"] == 2
        assert group["test_accuracy"]["mean"] == pytest.approx(statistics.fmean(accs))
        assert group["test_accuracy"]["std"] == pytest.approx(statistics.stdev(accs))
    table = compare("--by", "model").output
    assert "±" in table and table.splitlines()[0].split()[:2] == ["model", "runs"]


def test_every_output_format(filled_store):
    md = compare("--by", "model", "--format", "markdown").output.strip().splitlines()
    assert md[0].startswith("| model | runs | params |") and set(md[1]) <= set("|-: ")
    assert len(md) == 2 + 2
    rows = list(csv.reader(io.StringIO(compare("--format", "csv").output)))
    assert rows[0][:3] == ["run", "name", "state"] and len(rows) == 1 + len(filled_store)
    assert {r[3] for r in rows[1:]} == {"mlp", "lenet"}


def test_out_writes_chart_and_tables(filled_store, isolated_env):
    result = compare("--by", "model", "--out", "cmp")
    assert result.exit_code == 0, result.output
    out = isolated_env / "cmp"
    assert (out / "compare.png").read_bytes()[:8] == PNG
    assert (out / "compare.md").read_text().startswith("| model |")
    assert json.loads((out / "compare.json").read_text())["by"] == ["model"]
    assert not (out / "parameters.png").exists()  # not a sweep: no per-parameter chart


def test_select_runs_and_projects(filled_store):
    ids = [s["run_id"] for s in filled_store[:2]]
    rows = json.loads(compare("--runs", ",".join(ids), "--format", "json").output)["rows"]
    assert [r["id"] for r in rows] == ids
    assert len(json.loads(compare("--project", "cnn-tracker", "--format", "json").output)["rows"]) == 4


def test_a_sweep_gets_a_per_parameter_chart(tiny_root, isolated_env, monkeypatch):
    store = Store(".cnn-tracker").open()
    sweep = store.create_sweep({"method": "grid", "metric": {"name": "val/accuracy", "goal": "maximize"},
                                "parameters": {"lr": {"values": [0.001, 0.01]},
                                               "model": {"value": "lenet"}}}, project="cnn-tracker")
    store.close()
    monkeypatch.setenv("CNN_TRACKER_SWEEP_ID", sweep.id)
    for lr in ("0.001", "0.01"):
        _train(tiny_root, "--lr", lr)
    monkeypatch.delenv("CNN_TRACKER_SWEEP_ID")
    _train(tiny_root)  # not in the sweep
    result = compare(sweep.id, "--out", "sw", "--format", "json")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["rows"]) == 2  # stderr says which files were written
    assert (isolated_env / "sw" / "parameters.png").read_bytes()[:8] == PNG


@pytest.mark.parametrize("args, message", [
    (["--by", "modle"], "'model'"),
    (["--runs", "nosuchrun"], "nosuchrun"),
    (["nosuchsweep"], "WANDB_API_KEY"),
    ([], "no finished runs"),
])
def test_bad_selections_exit_2(isolated_env, args, message):
    result = compare(*args)
    assert result.exit_code == 2 and message in result.output


class FakeRun:
    def __init__(self, run_id, model, seed, acc, state="finished"):
        self.id, self.name, self.state = run_id, f"{model}-mnist-{run_id}", state
        self.config = {"model": model, "dataset": "mnist", "seed": seed, "lr": 0.01, "_wandb": {}}
        self.summary_metrics = {"val/accuracy": acc + 0.01, "best/val_accuracy": acc + 0.01,
                                "test/accuracy": acc, "epoch": 3, "model/n_params": 1000,
                                "perf/train_seconds": 12.5, "perf/images_per_second": 4000.0}


@pytest.fixture
def fake_api(monkeypatch):
    import wandb

    calls = []

    class FakeApi:
        def __init__(self, timeout=None):
            pass

        def runs(self, path, *args, **kwargs):
            calls.append(("runs", path))
            return [FakeRun("a", "mlp", 0, 0.90), FakeRun("b", "mlp", 1, 0.92),
                    FakeRun("c", "lenet", 0, 0.98), FakeRun("d", "lenet", 1, 0.5, state="crashed")]

        def sweep(self, path):
            calls.append(("sweep", path))
            return type("S", (), {"config": {"parameters": {"lr": {"values": [0.01]}}},
                                  "runs": self.runs(path)})()

    monkeypatch.setattr(wandb, "Api", FakeApi)
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    return calls


def test_online_project_through_the_api(fake_api):
    result = compare("--project", "team/proj", "--by", "model", "--format", "json")
    assert result.exit_code == 0, result.output
    groups = {g["model"]: g for g in json.loads(result.output)["rows"]}
    assert ("runs", "team/proj") in fake_api
    assert groups["mlp"]["runs"] == 2 and groups["lenet"]["runs"] == 1  # the crashed run is left out
    assert groups["mlp"]["test_accuracy"]["mean"] == pytest.approx(0.91)
    assert groups["mlp"]["train_seconds"]["mean"] == pytest.approx(12.5)


def test_online_sweep_through_the_api(fake_api, isolated_env):
    result = compare("team/proj/abc123", "--out", "o", "--all", "--format", "json")
    assert result.exit_code == 0, result.output
    assert ("sweep", "team/proj/abc123") in fake_api
    assert len(json.loads(result.stdout)["rows"]) == 4
    assert (isolated_env / "o" / "parameters.png").exists() and (isolated_env / "o" / "compare.png").exists()
