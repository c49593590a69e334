"""The W&B dashboard view, checked at the wandb-workspaces boundary (its own objects and model)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from cnn_tracker.cli import cli
from cnn_tracker.search.spec import load_sweep_file

ws = pytest.importorskip("wandb_workspaces.workspaces")
wr = pytest.importorskip("wandb_workspaces.reports.v2")

from cnn_tracker.results.source import searched_parameters, sweep_metric  # noqa: E402
from cnn_tracker.tracking.dashboard import (  # noqa: E402
    SweepView,
    build_workspace,
    describe,
    panel_keys,
)

SWEEP_YAML = Path(__file__).resolve().parents[1] / "sweeps" / "fashion_bayes.yaml"


def panels(workspace) -> dict[str, list]:
    return {s.name: s.panels for s in workspace.sections}


def test_the_sweep_view_has_its_sections_panels_and_keys():
    config = load_sweep_file(SWEEP_YAML)
    params = searched_parameters(config)
    metric = sweep_metric(config)[0]
    view = SweepView("abc123", params, metric, "Metric('Sweep') == 'abc123'")
    workspace = build_workspace("me", "cnn-tracker", view)
    assert isinstance(workspace, ws.Workspace)
    assert (workspace.entity, workspace.project) == ("me", "cnn-tracker")
    assert workspace.name == "cnn-tracker sweep abc123"
    assert workspace.settings.x_axis == "epoch"
    assert workspace.runset_settings.filters == "Metric('Sweep') == 'abc123'"
    by_section = panels(workspace)
    assert list(by_section) == ["Sweep abc123", "Training (by epoch)", "Test results"]

    sweep = by_section["Sweep abc123"]
    assert [type(p) for p in sweep] == [wr.ParallelCoordinatesPlot, wr.ParameterImportancePlot,
                                        wr.LinePlot]
    assert panel_keys(sweep[0]) == [f"config.{p}" for p in params] + [metric]
    assert isinstance(sweep[0].columns[-1].metric, wr.SummaryMetric)
    assert all(isinstance(c.metric, wr.Config) for c in sweep[0].columns[:-1])
    assert sweep[1].with_respect_to == metric == "val/accuracy"

    training = by_section["Training (by epoch)"]
    assert all(isinstance(p, wr.LinePlot) and p.x == "epoch" for p in training)
    assert [panel_keys(p) for p in training] == [["val/accuracy"], ["train/loss", "val/loss"],
                                                 ["lr"], ["train/accuracy"]]

    test = by_section["Test results"]
    assert [type(p) for p in test] == [wr.BarPlot, wr.BarPlot, wr.CustomChart]
    assert [panel_keys(p) for p in test[:2]] == [["test/accuracy"], ["test/accuracy"]]
    assert [p.groupby.name for p in test[:2]] == ["model", "dataset"]
    chart = test[2]  # what wandb.plot.confusion_matrix logs for "test/confusion_matrix"
    assert chart.chart_name == "wandb/confusion_matrix/v1"
    assert chart.query == {"summaryTable": {"tableKey": "test/confusion_matrix_table"}}
    assert set(chart.chart_fields) == {"Actual", "Predicted", "nPredictions"}
    # The library turns it into the view it would save (validates every panel), offline.
    model = workspace._to_model()
    assert model.project == "cnn-tracker" and model.entity == "me"


def test_the_project_view_has_no_sweep_section():
    workspace = build_workspace("me", "cnn-tracker")
    assert [s.name for s in workspace.sections] == ["Training (by epoch)", "Test results"]
    assert workspace.name == "cnn-tracker" and workspace.runset_settings.filters == ""
    lines = describe(workspace)
    assert lines[0] == "workspace 'cnn-tracker' of me/cnn-tracker"
    assert any("CustomChart" in line and "test/confusion_matrix_table" in line for line in lines)


def test_dry_run_prints_the_view_and_saves_nothing(monkeypatch):
    saved = []
    monkeypatch.setattr(ws.Workspace, "save", lambda self: saved.append(self))
    result = CliRunner().invoke(cli, ["dashboard", "me/cnn-tracker", "--sweep", str(SWEEP_YAML),
                                      "--dry-run"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "section Sweep fashion_bayes" in out and "ParameterImportancePlot" in out
    assert "ParallelCoordinatesPlot" in out and "config.lr" in out
    assert "BarPlot" in out and "(by config.model)" in out and "(x=epoch)" in out
    assert "nothing saved" in out and saved == []


def test_a_local_sweep_filters_its_trials():
    from cnn_tracker.store.db import Store

    created = CliRunner().invoke(cli, ["sweep", "create", str(SWEEP_YAML.parent / "smoke_random.yaml"),
                                       "--offline"])
    assert created.exit_code == 0, created.output
    (sweep,) = [s.id for s in Store(None).sweeps()]
    result = CliRunner().invoke(cli, ["dashboard", "me/p", "--sweep", sweep, "--dry-run"])
    assert result.exit_code == 0, result.output
    assert f"runs: Config('sweep_id') == '{sweep}'" in result.output
    assert f"section Sweep {sweep}" in result.output


def test_saving_needs_w_and_b_online_and_goes_through_workspace_save(monkeypatch):
    result = CliRunner().invoke(cli, ["dashboard", "me/cnn-tracker"])
    assert result.exit_code == 2 and "needs it online" in result.output
    saved = []

    def save(self):
        saved.append(self)
        self._internal_name = "nw-abc"
        return self

    monkeypatch.setattr(ws.Workspace, "save", save)
    monkeypatch.setattr(ws.Workspace, "url", property(lambda self: f"https://wandb.ai/{self.entity}/"
                                                                    f"{self.project}?nw=abc"))
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    result = CliRunner().invoke(cli, ["dashboard", "me/cnn-tracker"])
    assert result.exit_code == 0, result.output
    assert "saved: https://wandb.ai/me/cnn-tracker?nw=abc" in result.output
    assert len(saved) == 1 and saved[0].name == "cnn-tracker"
    bad = CliRunner().invoke(cli, ["dashboard", "cnn-tracker", "--dry-run"])
    assert bad.exit_code == 2 and "ENTITY/PROJECT" in bad.output
