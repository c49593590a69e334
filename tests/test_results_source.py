"""Reading runs back behind one interface: open_source's choice (local store or W&B, decided
once), one owner for metric goals, and a status read that never writes. W&B is faked at the
``wandb.Api`` boundary, as in test_compare.py."""

from __future__ import annotations

import ast
import sqlite3
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from cnn_tracker.cli import cli
from cnn_tracker.errors import UserError
from cnn_tracker.results.local import LocalSource
from cnn_tracker.results.local import sweep_status as local_status
from cnn_tracker.results.remote import WandbSource
from cnn_tracker.results.source import default_goal, open_source, sweep_metric
from cnn_tracker.results.text import format_status
from cnn_tracker.runs import lifecycle
from cnn_tracker.store.db import STALE_SECONDS, Store
from cnn_tracker.table import render

PACKAGE = Path(__file__).resolve().parents[1] / "cnn_tracker"
NO_GOAL = {"method": "random", "metric": {"name": "val/loss"},
           "parameters": {"lr": {"values": [0.01, 0.1]}, "model": {"value": "lenet"}}}


def start_run(store: Store, run_id: str, *, sweep_id: str | None = None, project: str = "p") -> None:
    lifecycle.start(store, run_id, sweep_id=sweep_id, project=project, name=f"n-{run_id}",
                    config={"lr": 0.01}, output_dir="o", wandb_dir=None, params={"lr": 0.01})


def age_heartbeat(store: Store, run_id: str, seconds: float) -> None:
    with sqlite3.connect(store.root / "store.db") as db:
        db.execute("UPDATE runs SET heartbeat_at = ? WHERE id = ?", (time.time() - seconds, run_id))


class FakeRun:
    def __init__(self, run_id: str, loss: float):
        self.id, self.name, self.state = run_id, f"run-{run_id}", "finished"
        self.entity, self.project = "team", "proj"
        self.config = {"lr": 0.01, "model": "lenet", "_wandb": {}}
        self.summary_metrics = {"val/loss": loss, "val/accuracy": 1 - loss, "epoch": 2}


class FakeSweep:
    def __init__(self, config):
        self.config, self.state = config, "FINISHED"
        self.runs = [FakeRun("w1", 0.3), FakeRun("w2", 0.1)]

    def best_run(self, order=None):
        return min(self.runs, key=lambda r: r.summary_metrics["val/loss"])


@pytest.fixture
def fake_api(monkeypatch):
    import wandb

    calls = []

    class FakeApi:
        def __init__(self, timeout=None):
            pass

        def sweep(self, path):
            calls.append(("sweep", path))
            return FakeSweep(dict(NO_GOAL))

        def runs(self, path, *args, **kwargs):
            calls.append(("runs", path))
            return FakeSweep(NO_GOAL).runs

    monkeypatch.setattr(wandb, "Api", FakeApi)
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    return calls


# -- open_source: the one place that decides -----------------------------------------------------
def test_a_local_sweep_id_opens_the_local_store(fake_api):
    store = Store("s").open()
    sweep = store.create_sweep(NO_GOAL, "p")
    source = open_source(sweep.id, store)
    assert isinstance(source, LocalSource) and source.kind == "local"
    assert source.sweep_status(sweep.id)["source"] == "local"
    assert fake_api == []  # W&B was never asked, although a key is configured


def test_a_local_project_opens_the_local_store():
    store = Store("s").open()
    start_run(store, "r1", project="solo")
    assert isinstance(open_source("solo", store), LocalSource)
    assert isinstance(open_source(None, store, project="solo"), LocalSource)
    assert isinstance(open_source(None, store, run_ids=["r1"]), LocalSource)
    assert isinstance(open_source(None, store), LocalSource)  # nothing named: every local run


def test_an_unknown_id_without_a_key_is_the_store_error():
    store = Store("s").open()
    with pytest.raises(UserError) as err:
        open_source("nope1234", store, what="sweep 'nope1234'")
    assert str(err.value) == (
        f"sweep 'nope1234' is not in the local run store {store.where}, and no W&B API key is "
        "configured to look it up on W&B: check the id, pass --store / set CNN_TRACKER_STORE to "
        "the store that holds it, or set WANDB_API_KEY.")
    with pytest.raises(UserError, match="run 'ghost' is not in the local run store"):
        open_source(None, store, run_ids=["ghost"])
    from cnn_tracker.cli.common import cloud_or_fail

    with pytest.raises(UserError) as again:  # the older entry point says the same
        cloud_or_fail("sweep 'nope1234'", store)
    assert str(again.value) == str(err.value)


def test_an_unknown_id_with_a_key_opens_wandb(fake_api, monkeypatch):
    monkeypatch.setenv("WANDB_ENTITY", "team")
    monkeypatch.setenv("WANDB_PROJECT", "proj")
    store = Store("s").open()
    source = open_source("abc123", store)
    assert isinstance(source, WandbSource) and source.kind == "wandb"
    status = source.sweep_status("abc123")
    assert ("sweep", "team/proj/abc123") in fake_api  # bare id completed from WANDB_*
    assert status["source"] == "wandb" and status["best"] == "w2"
    rows, config = source.rows(sweep="abc123", project=None, run_ids=None, metric="val/loss")
    assert [r.id for r in rows] == ["w1", "w2"] and config["metric"] == {"name": "val/loss"}


# -- one owner for metric goals ------------------------------------------------------------------
def test_a_sweep_metric_without_goal_is_minimized_on_both_sides(fake_api):
    assert sweep_metric(NO_GOAL) == ("val/loss", "minimize")  # W&B's documented default
    assert sweep_metric({"method": "grid"}) == ("val/accuracy", "maximize")
    assert default_goal("train/loss") == default_goal("perf/train_seconds") == "minimize"
    assert default_goal("test/accuracy") == "maximize"
    store = Store("s").open()
    sweep = store.create_sweep(NO_GOAL, "p")
    here = local_status(store, sweep.id)["metric"]
    there = WandbSource("team", "proj").sweep_status("team/proj/abc")["metric"]
    assert here == there == {"name": "val/loss", "goal": "minimize"}
    best = WandbSource("team", "proj").best("team/proj/abc", None, None)
    assert best["run_id"] == "w2" and best["metric"]["goal"] == "minimize"


# -- a status read never writes ------------------------------------------------------------------
def test_sweep_status_shows_a_stale_run_and_leaves_it_running():
    store = Store("s").open()
    sweep = store.create_sweep(NO_GOAL, "p")
    start_run(store, "stale1", sweep_id=sweep.id)
    start_run(store, "live1", sweep_id=sweep.id)
    age_heartbeat(store, "stale1", STALE_SECONDS + 10)
    status = LocalSource(store).sweep_status(sweep.id)
    rows = {r["id"]: r for r in status["runs"]}
    assert rows["stale1"]["state"] == "running" and rows["stale1"]["stale"] is True
    assert rows["live1"]["stale"] is False
    text = format_status(status)
    assert "running (no heartbeat for 13" in text  # STALE_SECONDS + 10 = 130 s
    LocalSource(store).sweep_list()
    assert store.run("stale1").state == "running"  # agents reap; readers only show
    result = CliRunner().invoke(cli, ["sweep", "status", sweep.id, "--store", "s"])
    assert result.exit_code == 0, result.output
    assert "no heartbeat for" in result.output and Store("s").run("stale1").state == "running"


# -- shared pieces -------------------------------------------------------------------------------
def test_one_text_table_renderer():
    assert render(["a", "bb"], [[1.23456, None], ["xyz", 7]]).splitlines() == [
        "a      bb", "-----  --", "1.235  -", "xyz    7"]
    assert render(["n", "name"], [[10, "x"]], align="><").splitlines()[2] == "10  x"


def test_only_wandb_api_calls_wandb_api_and_sweep():
    """``wandb.Api(...)`` / ``wandb.sweep(...)`` are called in tracking/wandb_api.py alone, and
    nothing under results/ imports wandb."""
    callers = set()
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("Api", "sweep") and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == "wandb"):
                callers.add(path.relative_to(PACKAGE).as_posix())
            if path.parent.name == "results" and isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                assert not any(n.split(".")[0] == "wandb" for n in names), path
    assert callers == {"tracking/wandb_api.py"}
