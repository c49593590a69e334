"""One number format for accuracies in the text outputs: a percent with two decimals (88.85%)."""

from __future__ import annotations

import json

import pytest

from cnn_tracker.results.compare import build_table, render
from cnn_tracker.results.source import Row
from cnn_tracker.results.text import format_best, format_list, format_status
from cnn_tracker.table import metric_cell, percent


def test_percent_and_metric_cells():
    assert percent(0.88849) == "88.85%" and percent(1.0) == "100.00%" and percent(None) == "-"
    assert metric_cell("val/accuracy", 0.9) == "90.00%"
    assert metric_cell("val/loss", 0.1234567) == "0.1235"  # not an accuracy: 4 significant digits


def _row(i: int, acc: float, epochs: float = 3.0) -> Row:
    return Row(f"r{i}", f"run{i}", "finished", {"model": "mlp", "seed": i},
               {"n_params": 7960.0, "best_val_accuracy": acc, "test_accuracy": acc, "epochs": epochs,
                "train_seconds": 10.0, "images_per_second": 5000.0}, acc)


def test_compare_tables_use_percent_and_no_plus_minus_zero():
    rows = [_row(0, 0.8885), _row(1, 0.8915)]
    plain = render(build_table(rows, None, "val/accuracy"), "table")
    assert "88.85%" in plain and "89.15%" in plain
    grouped = build_table(rows, ["model"], "val/loss")
    cells = dict(zip(grouped["header"], grouped["cells"][0]))
    assert cells["test acc"] == "89.00% ± 0.21%"
    assert cells["params"] == "7,960" and cells["epochs"] == "3" and cells["train s"] == "10.0"
    assert cells["val/loss"] == "0.89 ± 0.002121"  # a loss keeps its plain number
    raw = json.loads(render(grouped, "json"))["rows"][0]
    assert raw["test_accuracy"]["mean"] == pytest.approx(0.89) and raw["epochs"] == {"mean": 3.0, "std": 0.0}


def test_status_list_and_best_use_percent():
    status = {"sweep": "s1", "method": "random", "state": "finished", "counts": {"finished": 1},
              "metric": {"name": "val/accuracy"}, "parameters": ["lr"], "best": "r1",
              "runs": [{"id": "r1", "state": "finished", "params": {"lr": 0.01}, "metric": 0.98765,
                        "epochs": 2, "test/accuracy": 0.8885, "seconds": 12.5}]}
    text = format_status(status)
    assert "98.77%" in text and "88.85%" in text and "best: r1  val/accuracy 98.77%" in text
    listed = format_list([{"sweep": "s1", "name": "n", "method": "random", "project": "p",
                           "state": "finished", "runs": 1, "metric": {"name": "val/accuracy"},
                           "best_value": 0.98765, "best": "r1", "created": "today"}])
    assert "98.77%" in listed
    best = format_best("s1", {"run_id": "r1", "run_name": "n", "state": "finished",
                              "metric": {"name": "val/accuracy", "value": 0.98765, "goal": "maximize"},
                              "metrics": {"test/accuracy": 0.8885}, "config": {}, "checkpoint": "x.pt",
                              "source": "local"})
    assert "val/accuracy 98.77% (maximize)" in best and "test accuracy 88.85%" in best
