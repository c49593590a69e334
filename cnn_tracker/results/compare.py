"""``cnn-tracker compare``: runs side by side, as a table and charts.

Rows come from the local run store (offline runs and sweeps) or from the W&B API (a project or a
sweep online); both become :class:`Row`. With ``--by KEY[,KEY]`` rows are grouped by config values
and every number becomes a mean ± sample standard deviation across the group (e.g. seeds).
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
from cnn_tracker.results.local import default_goal
from cnn_tracker.results.remote import number
from cnn_tracker.store.db import Run, Store
from cnn_tracker.training.reports import pyplot, save_figure

# (key, column title) of the numbers each row carries, in display order.
NUMBERS = (
    ("n_params", "params"),
    ("best_val_accuracy", "best val acc"),
    ("test_accuracy", "test acc"),
    ("epochs", "epochs"),
    ("train_seconds", "train s"),
    ("images_per_second", "images/s"),
)
DONE = ("finished", "stopped")


@dataclass
class Row:
    """One run, whichever source it came from."""

    id: str
    name: str
    state: str
    config: dict[str, Any]
    numbers: dict[str, float | None]
    metric: float | None = None  # the value of --metric (best of the run when it is per epoch)
    sweep: str | None = None


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


# --- sources ----------------------------------------------------------------------------------


def row_from_store(run: Run, metric: str) -> Row:
    s = run.summary
    per_epoch = [h["perf/images_per_second"] for h in run.history if "perf/images_per_second" in h]
    train_seconds = number(s.get("perf/train_seconds"))
    if train_seconds is None and run.history:
        train_seconds = sum(h.get("perf/epoch_seconds", 0.0) for h in run.history)
    return Row(
        id=run.id, name=run.name or run.id, state=run.state, config=dict(run.config),
        sweep=run.sweep_id, metric=run.best_metric(metric, default_goal(metric)),
        numbers={
            "n_params": number(s.get("model/n_params")),
            "best_val_accuracy": number(s.get("best/val_accuracy")) or run.best_metric("val/accuracy", "maximize"),
            "test_accuracy": number(s.get("test/accuracy")),
            "epochs": float(run.epochs) if run.epochs else None,
            "train_seconds": train_seconds,
            "images_per_second": statistics.median(per_epoch) if per_epoch else None,
        },
    )


def local_rows(store: Store, *, sweep: str | None, project: str | None,
               run_ids: list[str] | None, metric: str) -> list[Row]:
    """Rows from the local store; raises UserError for an unknown sweep or run id."""
    if run_ids:
        runs = []
        for run_id in run_ids:
            run = store.run(run_id)
            if run is None:
                raise UserError(f"run '{run_id}' is not in the local run store {store.root}: check the "
                                "id (`cnn-tracker sweep status SWEEP_ID` lists run ids) or pass --store.")
            runs.append(run)
    else:
        if sweep is not None:
            store.sweep(sweep)  # UserError with the known sweep ids when unknown
        runs = store.runs(sweep_id=sweep, project=project)
    return [row_from_store(r, metric) for r in runs]


def row_from_wandb(run: Any, metric: str) -> Row:
    """A row from a ``wandb.apis.public.Run`` (config and summary as W&B holds them)."""
    s = dict(run.summary_metrics or {})
    config = {k: v for k, v in dict(run.config or {}).items() if not str(k).startswith("_")}
    sweep = getattr(run, "sweep", None)
    return Row(
        id=run.id, name=run.name or run.id, state=run.state, config=config,
        sweep=getattr(sweep, "id", None), metric=number(s.get(metric)),
        numbers={
            "n_params": number(s.get("model/n_params")),
            "best_val_accuracy": number(s.get("best/val_accuracy")) or number(s.get("val/accuracy")),
            "test_accuracy": number(s.get("test/accuracy")),
            "epochs": number(s.get("epoch")),
            "train_seconds": number(s.get("perf/train_seconds")),
            "images_per_second": number(s.get("perf/images_per_second")),  # the last epoch's
        },
    )


def wandb_rows(*, sweep: str | None, project: str | None, run_ids: list[str] | None,
               entity: str | None, metric: str) -> tuple[list[Row], dict[str, Any] | None]:
    """(rows, the sweep's config or None) through ``wandb.Api()``: a sweep, a project or run paths."""
    from cnn_tracker.results.remote import _api, sweep_path

    api = _api()
    config = None
    try:
        if run_ids:
            runs = [api.run(r) for r in run_ids]
        elif sweep is not None:
            found = api.sweep(sweep_path(sweep, project, entity))
            config = dict(found.config or {})
            runs = list(found.runs)
        else:
            path = project if project is None or "/" in project or not entity else f"{entity}/{project}"
            runs = list(api.runs(path))
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - the SDK raises several types (CommError, ValueError)
        what = run_ids or sweep or project
        raise UserError(f"W&B could not list the runs of {what} ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}): "
                        "check the path (entity/project[/sweep]) and WANDB_API_KEY.") from None
    return [row_from_wandb(r, metric) for r in runs], config


# --- grouping and output ----------------------------------------------------------------------


def group_rows(rows: Iterable[Row], by: list[str]) -> list[Group]:
    groups: dict[tuple[Any, ...], Group] = {}
    for row in rows:
        key = tuple(row.config.get(k) for k in by)
        groups.setdefault(key, Group(key)).rows.append(row)
    return sorted(groups.values(), key=lambda g: tuple(str(k) for k in g.key))


def _num(value: float | None, key: str) -> str:
    if value is None:
        return "-"
    if key in ("best_val_accuracy", "test_accuracy", "metric") and value <= 1:
        return f"{value:.2%}"
    if key in ("n_params", "images_per_second", "epochs"):
        return f"{value:,.0f}"
    return f"{value:.4g}" if key == "metric" else f"{value:.1f}"


def _pm(mean: float | None, std: float | None, key: str) -> str:
    if mean is None:
        return "-"
    if std is None:
        return _num(mean, key)
    if key in ("best_val_accuracy", "test_accuracy", "metric") and mean <= 1:
        return f"{mean:.2%} ± {std:.2%}"
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
                          *(_pm(*stats[k], k) for k in [*number_keys, *(k for k, _ in extra)])])
            records.append({**dict(zip(by, g.key)), "runs": len(g.rows), "run_ids": [r.id for r in g.rows],
                            **{k: {"mean": m, "std": s} for k, (m, s) in stats.items()}})
        return {"header": header, "cells": cells, "records": records, "by": by, "metric": metric}
    header = ["run", "name", "state", "model", "dataset", "seed", *(t for _, t in NUMBERS),
              *(t for _, t in extra)]
    cells, records = [], []
    for r in rows:
        cells.append([r.id, r.name, r.state, str(r.config.get("model", "-")),
                      str(r.config.get("dataset", "-")), str(r.config.get("seed", "-")),
                      *(_num(r.numbers.get(k), k) for k in number_keys),
                      *([_num(r.metric, "metric")] if show_metric else [])])
        records.append({"id": r.id, "name": r.name, "state": r.state, "sweep": r.sweep,
                        "model": r.config.get("model"), "dataset": r.config.get("dataset"),
                        "seed": r.config.get("seed"), **r.numbers, metric: r.metric,
                        "config": r.config})
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
    widths = [max(len(str(x)) for x in col) for col in zip(header, *cells)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


# --- charts -----------------------------------------------------------------------------------


def chart_models(rows: list[Row], by: list[str], path: Path, title: str) -> Path:
    """Seed 001's chart: test accuracy per group (bars, std error bars) next to training time.

    Bars are placed by the first ``by`` key; a second key (e.g. dataset) gets side-by-side bars
    in its own colour; further keys are folded into the bar labels.
    """
    plt = pyplot()
    groups = group_rows([r for r in rows if r.numbers.get("test_accuracy") is not None], by)
    xs = list(dict.fromkeys(str(g.key[0]) for g in groups))
    hues = list(dict.fromkeys(" / ".join(str(k) for k in g.key[1:]) for g in groups))
    width = 0.8 / max(1, len(hues))
    colors = plt.get_cmap("tab10").colors
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(max(9, 1.6 * len(xs) * 2), 4.2))
    low = 100.0
    for h, hue in enumerate(hues):
        for ax, key, scale in ((ax1, "test_accuracy", 100), (ax2, "train_seconds", 1)):
            pos, means, errs = [], [], []
            for g in groups:
                if " / ".join(str(k) for k in g.key[1:]) != hue:
                    continue
                mean, std = g.stats(key)
                if mean is None:
                    continue
                pos.append(xs.index(str(g.key[0])) + (h - (len(hues) - 1) / 2) * width)
                means.append(scale * mean)
                errs.append(scale * (std or 0))
            if key == "test_accuracy":
                low = min([low, *means])
            bars = ax.bar(pos, means, width * 0.95, yerr=errs, capsize=3, color=colors[h % 10],
                          label=hue or None)
            ax.bar_label(bars, fmt="%.2f" if key == "test_accuracy" else "%.0f", fontsize=7,
                         padding=2)
    ax1.set_ylim(max(0, low - 8), 100.5)
    ax1.set_ylabel("test accuracy (%)")
    ax2.set_ylabel("training time (s, epochs only)")
    for ax in (ax1, ax2):
        ax.set_xticks(range(len(xs)), xs)
        ax.set_xlabel(by[0])
        if len(hues) > 1:
            ax.legend(fontsize=8, title=" / ".join(by[1:]), title_fontsize=8)
    ax1.set_title("test accuracy (mean ± std over runs)")
    ax2.set_title("training time (mean ± std over runs)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def chart_parameters(rows: list[Row], params: list[str], metric: str, path: Path, title: str) -> Path:
    """The metric against each swept parameter (one scatter per parameter)."""
    plt = pyplot()
    rows = [r for r in rows if r.metric is not None]
    n = max(1, len(params))
    cols = min(3, n)
    fig, axes = plt.subplots((n + cols - 1) // cols, cols, figsize=(4 * cols, 3.2 * ((n + cols - 1) // cols)),
                             squeeze=False)
    for ax, name in zip(axes.flat, params):
        values = [r.config.get(name) for r in rows]
        numeric = all(number(v) is not None for v in values)
        if numeric:
            xs = [float(v) for v in values]
            if min(xs, default=0) > 0 and max(xs, default=0) / max(min(xs, default=1), 1e-300) > 50:
                ax.set_xscale("log")
        else:
            cats = sorted({str(v) for v in values})
            xs = [cats.index(str(v)) for v in values]
            ax.set_xticks(range(len(cats)), cats, fontsize=8)
        ax.scatter(xs, [r.metric for r in rows], s=18, alpha=0.8)
        ax.set_xlabel(name)
        ax.set_ylabel(metric)
    for ax in list(axes.flat)[len(params):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)
