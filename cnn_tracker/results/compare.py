"""``cnn-tracker compare``: runs side by side, as a table and charts.

Rows come from a :class:`~cnn_tracker.results.source.RunSource` (the local run store, or the W&B
API for a project or sweep online); both give :class:`Row`. With ``--by KEY[,KEY]`` rows are
grouped by config values and every number becomes a mean ± sample standard deviation across the
group (e.g. seeds).
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from cnn_tracker.errors import UserError
from cnn_tracker.files import atomic_write
from cnn_tracker.results.local import DONE
from cnn_tracker.results.source import Row, RunSource, searched_parameters
from cnn_tracker.table import is_accuracy, percent
from cnn_tracker.table import render as text_table

# (key, column title) of the numbers each row carries, in display order.
NUMBERS = (
    ("n_params", "params"),
    ("best_val_accuracy", "best val acc"),
    ("test_accuracy", "test acc"),
    ("epochs", "epochs"),
    ("train_seconds", "train s"),
    ("images_per_second", "images/s"),
)


@dataclass
class Group:
    key: tuple[Any, ...]
    rows: list[Row] = field(default_factory=list)

    def stats(self, name: str) -> tuple[float | None, float | None]:
        """(mean, sample std) of a number over the group's rows that have it (std None if n < 2)."""
        values = [v for r in self.rows if (v := (r.metric if name == "metric" else r.numbers.get(name))) is not None]
        if not values:
            return None, None
        return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


@dataclass
class Comparison:
    """What ``compare`` found: the rows, their table, and the sweep's config when it was one."""

    rows: list[Row]
    table: dict[str, Any]
    sweep_config: dict[str, Any] | None
    label: str  # the sweep, the project, or "N runs"
    sweep: str | None = None


def compare_runs(source: RunSource, *, sweep: str | None, project: str | None,
                 run_ids: list[str] | None, by: list[str] | None, metric: str,
                 all_states: bool = False) -> Comparison:
    """Rows of ``source`` (finished and stopped only unless ``all_states``) and their table."""
    rows, config = source.rows(sweep=sweep, project=project, run_ids=run_ids, metric=metric)
    if not all_states:
        rows = [r for r in rows if r.state in DONE]
    if not rows:
        named = sweep or project
        raise UserError(f"no {'finished ' if not all_states else ''}runs to compare in {source.where}"
                        f"{' for ' + named if named else ''}: train some "
                        "first, or pass --all to include unfinished runs.")
    return Comparison(rows, build_table(rows, by, metric), config,
                      sweep or project or f"{len(rows)} runs", sweep)


def write_outputs(result: Comparison, out_dir: Path, by: list[str] | None, metric: str) -> list[Path]:
    """compare.md/.csv/.json and the charts (per parameter too, for a sweep) in ``out_dir``."""
    from cnn_tracker.results.charts import chart_models, chart_parameters

    out_dir.mkdir(parents=True, exist_ok=True)
    for name, form in (("compare.md", "markdown"), ("compare.csv", "csv"), ("compare.json", "json")):
        atomic_write(out_dir / name, render(result.table, form) + "\n")
    n = len(result.rows)
    charts = []
    if any(r.numbers.get(k) is not None for r in result.rows for k in ("test_accuracy", "train_seconds")):
        charts.append(chart_models(result.rows, by or ["model"], out_dir / "compare.png",
                                   f"{result.label}: {n} runs"))  # (another program's: none)
    params = searched_parameters(result.sweep_config) if result.sweep_config else []
    if params:
        charts.append(chart_parameters(result.rows, params, metric, out_dir / "parameters.png",
                                       f"sweep {result.sweep}: {metric} by parameter",
                                       result.sweep_config.get("parameters")))
    return charts


# --- grouping and output ----------------------------------------------------------------------


def group_rows(rows: Iterable[Row], by: list[str]) -> list[Group]:
    groups: dict[tuple[Any, ...], Group] = {}
    for row in rows:
        key = tuple(row.config.get(k) for k in by)
        groups.setdefault(key, Group(key)).rows.append(row)
    return sorted(groups.values(), key=lambda g: tuple(str(k) for k in g.key))


ACCURACIES = ("best_val_accuracy", "test_accuracy")


def _num(value: float | None, key: str, metric: str = "") -> str:
    """One number of the text tables; accuracies as percents with two decimals (88.85%)."""
    if value is None:
        return "-"
    if key in ACCURACIES or (key == "metric" and is_accuracy(metric)):
        return percent(value)
    if key in ("n_params", "images_per_second", "epochs"):
        return f"{value:,.0f}"
    return f"{value:.4g}" if key == "metric" else f"{value:.1f}"


def _pm(mean: float | None, std: float | None, key: str, metric: str = "") -> str:
    """``mean ± std``; just the mean for one run or a constant (std 0), never ``± 0``."""
    if mean is None:
        return "-"
    if not std:
        return _num(mean, key, metric)
    if key in ACCURACIES or (key == "metric" and is_accuracy(metric)):
        return f"{percent(mean)} ± {percent(std)}"
    return f"{_num(mean, key)} ± {_num(std, key)}"


def build_table(rows: list[Row], by: list[str] | None, metric: str) -> dict[str, Any]:
    """Header, display cells and raw records of the comparison (one row per run or group)."""
    number_keys = [k for k, _ in NUMBERS]
    show_metric = metric not in ("val/accuracy", "best/val_accuracy")
    extra = [("metric", metric)] if show_metric else []
    if by:
        header = [*by, "runs", *(t for _, t in NUMBERS), *(t for _, t in extra)]
        cells, records = [], []
        for g in group_rows(rows, by):
            stats = {k: g.stats(k) for k in [*number_keys, *(k for k, _ in extra)]}
            cells.append([*(str(v) for v in g.key), str(len(g.rows)),
                          *(_pm(*stats[k], k, metric) for k in [*number_keys, *(k for k, _ in extra)])])
            records.append({**dict(zip(by, g.key)), "runs": len(g.rows), "run_ids": [r.id for r in g.rows],
                            **{k: {"mean": m, "std": s} for k, (m, s) in stats.items()}})
        return {"header": header, "cells": cells, "records": records, "by": by, "metric": metric}
    if not any("model" in r.config for r in rows):
        return _foreign_table(rows, metric)
    header = ["run", "name", "state", "model", "dataset", "seed", *(t for _, t in NUMBERS),
              *(t for _, t in extra)]
    cells, records = [], []
    for r in rows:
        cells.append([r.id, r.name, r.state, str(r.config.get("model", "-")),
                      str(r.config.get("dataset", "-")), str(r.config.get("seed", "-")),
                      *(_num(r.numbers.get(k), k) for k in number_keys),
                      *([_num(r.metric, "metric", metric)] if show_metric else [])])
        records.append({"id": r.id, "name": r.name, "state": r.state, "sweep": r.sweep,
                        "model": r.config.get("model"), "dataset": r.config.get("dataset"),
                        "seed": r.config.get("seed"), **r.numbers, metric: r.metric,
                        "config": r.config})
    return {"header": header, "cells": cells, "records": records, "by": None, "metric": metric}


def _value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _foreign_table(rows: list[Row], metric: str) -> dict[str, Any]:
    """Runs of another program: their own parameters, the numbers they have, the metric."""
    params = list(dict.fromkeys(k for r in rows for k in r.config))
    present = [(k, t) for k, t in NUMBERS if any(r.numbers.get(k) is not None for r in rows)]
    header = ["run", "state", *params, *(t for _, t in present), metric]
    cells = [[r.id, r.state, *(_value(r.config.get(k, "-")) for k in params),
              *(_num(r.numbers.get(k), k) for k, _ in present), _num(r.metric, "metric", metric)]
             for r in rows]
    records = [{"id": r.id, "name": r.name, "state": r.state, "sweep": r.sweep, **r.numbers,
                metric: r.metric, "config": r.config} for r in rows]
    return {"header": header, "cells": cells, "records": records, "by": None, "metric": metric}


def render(table: dict[str, Any], fmt: str) -> str:
    header, cells = table["header"], table["cells"]
    if fmt == "json":
        return json.dumps({"by": table["by"], "metric": table["metric"], "rows": table["records"]},
                          indent=2, default=str)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(cells)
        return buf.getvalue().rstrip("\n")
    if fmt == "markdown":
        numeric = [i for i, h in enumerate(header) if h in {t for _, t in NUMBERS} | {"runs", table["metric"]}]
        align = ["---:" if i in numeric else "---" for i in range(len(header))]
        lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
        return "\n".join(lines)
    return text_table(header, cells)
