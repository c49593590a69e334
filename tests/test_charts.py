"""The compare charts and run plots: axis scale per sweep parameter kind, error bars, labels."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from cnn_tracker.results import charts
from cnn_tracker.results.source import Row
from cnn_tracker.training import reports

SPACE = {
    "lr": {"distribution": "log_uniform_values", "min": 0.001, "max": 0.03},
    "weight_decay": {"distribution": "log_uniform", "min": math.log(1e-5), "max": math.log(1e-2)},
    "batch_size": {"values": [128, 256]},
    "optimizer": {"values": ["adam", "sgd", "adamw"]},
    "dropout": {"distribution": "uniform", "min": 0.0, "max": 0.5},
    "momentum": {"distribution": "q_log_uniform_values", "min": 0.5, "max": 0.99, "q": 0.01},
}


@pytest.mark.parametrize("spec, values, kind", [
    ({"values": [128, 256]}, [128, 256], "categorical"),
    ({"values": ["adam", "sgd"]}, ["adam"], "categorical"),
    *[({"distribution": d, "min": 1, "max": 2}, [1.5], "log") for d in (
        "log_uniform", "log_uniform_values", "q_log_uniform", "q_log_uniform_values",
        "inv_log_uniform", "inv_log_uniform_values")],
    ({"distribution": "log_normal", "mu": 0, "sigma": 1}, [1.0], "log"),
    ({"distribution": "uniform", "min": 0, "max": 1}, [0.5], "linear"),
    ({"distribution": "int_uniform", "min": 1, "max": 9}, [3], "linear"),
    (None, [0.0001, 0.1], "log"),  # no sweep config: the data's spread decides
    (None, [0.1, 0.3], "linear"),
    (None, ["a", "b"], "categorical"),
])
def test_axis_kind_per_parameter_kind(spec, values, kind):
    assert charts.axis_kind(spec, values) == kind


def test_searched_range_undoes_wandbs_log_bounds():
    assert charts.searched_range(SPACE["lr"]) == (0.001, 0.03)
    low, high = charts.searched_range(SPACE["weight_decay"])
    assert low == pytest.approx(1e-5) and high == pytest.approx(1e-2)
    inv = charts.searched_range({"distribution": "inv_log_uniform", "min": 0, "max": math.log(10)})
    assert inv == pytest.approx((0.1, 1.0))
    assert charts.searched_range({"distribution": "normal", "mu": 0, "sigma": 1}) is None


def test_log_ticks_are_plain_1_2_5():
    assert charts.log_ticks(0.001, 0.03) == pytest.approx([0.001, 0.002, 0.005, 0.01, 0.02])
    assert charts.log_ticks(1e-6, 1e-1) == pytest.approx([1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1])


@pytest.fixture
def saved(monkeypatch):
    """The figures the charts would write, kept open for inspection instead."""
    figures = []
    monkeypatch.setattr(charts, "save_figure", lambda fig, path: figures.append(fig) or path)
    monkeypatch.setattr(reports, "save_figure", lambda fig, path: figures.append(fig) or path)
    yield figures
    reports.pyplot().close("all")


def _rows() -> list[Row]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(6):
        config = {"lr": float(10 ** rng.uniform(-3, math.log10(0.03))),
                  "weight_decay": float(10 ** rng.uniform(-5, -2)), "batch_size": [128, 256][i % 2],
                  "optimizer": ["adam", "sgd", "adamw"][i % 3], "dropout": float(rng.uniform(0, 0.5)),
                  "momentum": float(rng.uniform(0.5, 0.99)), "model": ["mlp", "lenet"][i % 2]}
        out.append(Row(f"r{i}", f"run{i}", "finished", config,
                       {"test_accuracy": 0.9 + i / 100, "train_seconds": 10.0 + i}, 0.9 + i / 100))
    return out


def test_parameters_chart_axes(saved, tmp_path):
    charts.chart_parameters(_rows(), list(SPACE), "val/accuracy", tmp_path / "p.png", "t", SPACE)
    axes = {ax.get_xlabel(): ax for ax in saved[0].axes if ax.get_xlabel()}
    lr = axes["lr"]
    assert lr.get_xscale() == "log"
    low, high = lr.get_xlim()
    assert 0.0008 < low < 0.001 and 0.03 < high < 0.036  # the searched range, a little padded
    assert [t.get_text() for t in lr.get_xticklabels()] == ["0.001", "0.002", "0.005", "0.01", "0.02"]
    wd = axes["weight_decay"]
    assert wd.get_xscale() == "log" and wd.get_xlim()[0] < 1e-5 < 1e-2 < wd.get_xlim()[1]
    assert [t.get_text() for t in wd.get_xticklabels()][0] == "1e-05"
    for name, labels in (("batch_size", ["128", "256"]), ("optimizer", ["adam", "sgd", "adamw"])):
        ax = axes[name]
        assert ax.get_xscale() == "linear"
        assert list(ax.get_xticks()) == list(range(len(labels)))  # evenly spaced choices
        assert [t.get_text() for t in ax.get_xticklabels()] == labels
    dropout = axes["dropout"]
    assert dropout.get_xscale() == "linear" and dropout.get_xlim()[0] < 0 and dropout.get_xlim()[1] > 0.5
    assert axes["momentum"].get_xscale() == "log"


def test_parameters_chart_without_sweep_config_uses_the_data(saved, tmp_path):
    charts.chart_parameters(_rows(), ["weight_decay", "model"], "m", tmp_path / "p.png", "t")
    axes = {ax.get_xlabel(): ax for ax in saved[0].axes if ax.get_xlabel()}
    assert axes["weight_decay"].get_xscale() == "log"
    assert [t.get_text() for t in axes["model"].get_xticklabels()] == ["lenet", "mlp"]


def _errorbars(ax) -> int:
    return sum(1 for c in ax.containers if getattr(c, "errorbar", None) is not None)


def test_models_chart_has_no_error_bars_for_single_runs(saved, tmp_path):
    rows = _rows()
    charts.chart_models(rows[:2], ["model"], tmp_path / "c.png", "t")  # one run per model
    assert all(_errorbars(ax) == 0 for ax in saved[0].axes)
    assert "one run each" in saved[0].axes[0].get_title()
    charts.chart_models(rows, ["model"], tmp_path / "c.png", "t")  # three runs per model
    assert all(_errorbars(ax) == 1 for ax in saved[1].axes)


def test_errors_per_batch_names_the_batch_size_used(saved, tmp_path):
    labels = np.arange(2500) % 10
    probs = np.eye(10, dtype=np.float32)[(labels + (np.arange(2500) % 7 == 0)) % 10]
    report = reports.TestReport([str(i) for i in range(10)], labels, probs,
                                np.zeros((2500, 28, 28), np.uint8), 0.1, 0.9)
    reports.plot_errors_per_batch(report, 1000, Path(tmp_path / "e.png"))
    ax = saved[0].axes[0]
    assert ax.get_xlabel() == "test batch (1000 images, the last 500)"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "3"]
    counts = report.errors_per_batch(1000)
    assert [t.get_text() for t in ax.texts] == [str(c) for c in counts]  # each batch's count
