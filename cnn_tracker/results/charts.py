"""The charts of ``cnn-tracker compare --out``: accuracy and time per group, metric per parameter."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from cnn_tracker.results.compare import group_rows
from cnn_tracker.results.source import Row, number
from cnn_tracker.table import is_accuracy
from cnn_tracker.training.reports import pyplot, save_figure


def chart_models(rows: list[Row], by: list[str], path: Path, title: str) -> Path:
    """The MLP-vs-TinyVGG reference's chart: test accuracy per group (bars, std error bars) next to training time.

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
                errs.append(float("nan") if std is None else scale * std)  # one run: no bar
            if key == "test_accuracy":
                low = min([low, *means])
            spread = errs if any(e == e for e in errs) else None  # NaN != NaN: no std at all
            bars = ax.bar(pos, means, width * 0.95, yerr=spread, capsize=3, color=colors[h % 10],
                          label=hue or None)
            for bar, mean, err in zip(bars, means, errs):  # above the error bar, not under it
                top = mean + (err if err == err else 0)
                ax.annotate(f"{mean:.2f}" if key == "test_accuracy" else f"{mean:.3g}",
                            (bar.get_x() + bar.get_width() / 2, top), xytext=(0, 3),
                            textcoords="offset points", ha="center", va="bottom", fontsize=7)
    ax1.set_ylim(max(0, low - 8), 100.5)
    ax2.margins(y=0.15)  # room for the labels above the bars
    ax1.set_ylabel("test accuracy (%)")
    ax2.set_ylabel("training time (s, epochs only)")
    for ax in (ax1, ax2):
        ax.set_xticks(range(len(xs)), xs)
        ax.set_xlabel(by[0])
        if len(hues) > 1:
            ax.legend(fontsize=8, title=" / ".join(by[1:]), title_fontsize=8)
    over = " (mean ± std over runs)" if any(len(g.rows) > 1 for g in groups) else " (one run each)"
    ax1.set_title("test accuracy" + over)
    ax2.set_title("training time" + over)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


# W&B distributions whose values spread over decades: a log axis.
LOG_DISTRIBUTIONS = frozenset({
    "log_uniform", "log_uniform_values", "q_log_uniform", "q_log_uniform_values",
    "inv_log_uniform", "inv_log_uniform_values", "log_normal", "q_log_normal",
})


def axis_kind(spec: Any, values: list[Any]) -> str:
    """``"categorical"``, ``"log"`` or ``"linear"``: from the sweep's parameter spec (``values:``
    choices, the distribution), else from the data (non-numbers; positive over > 50x)."""
    if isinstance(spec, dict) and "values" in spec:
        return "categorical"
    if isinstance(spec, dict) and spec.get("distribution"):
        return "log" if spec["distribution"] in LOG_DISTRIBUTIONS else "linear"
    if not all(number(v) is not None for v in values):
        return "categorical"
    xs = [float(v) for v in values]
    if xs and min(xs) > 0 and max(xs) / min(xs) > 50:
        return "log"
    return "linear"


def searched_range(spec: Any) -> tuple[float, float] | None:
    """(low, high) of the values a distribution can draw, or None (no bounds, e.g. normal)."""
    if not isinstance(spec, dict) or number(spec.get("min")) is None or number(spec.get("max")) is None:
        return None
    low, high = float(spec["min"]), float(spec["max"])
    dist = str(spec.get("distribution", ""))
    if dist in ("log_uniform", "q_log_uniform"):  # min/max are natural logs of the values
        return math.exp(low), math.exp(high)
    if dist == "inv_log_uniform":  # the value is exp(-u), u in [min, max]
        return math.exp(-high), math.exp(-low)
    return (low, high) if low < high else None


def log_ticks(low: float, high: float) -> list[float]:
    """Plain 1-2-5 ticks in [low, high]; only the powers of ten over more than 2 decades (the
    labels of a 1-2-5 axis over 0.001..0.5 overlap in a third of a figure)."""
    steps = (1,) if math.log10(high / low) > 2 else (1, 2, 5)
    ticks = [m * 10.0 ** e for e in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
             for m in steps]
    inside = [t for t in ticks if low * (1 - 1e-9) <= t <= high * (1 + 1e-9)]
    return inside if len(inside) >= 2 else [low, high]


def _tick_label(value: float) -> str:
    return f"{value:g}" if 1e-4 <= abs(value) < 1e6 or value == 0 else f"{value:.0e}"


def _parameter_axis(ax, name: str, spec: Any, values: list[Any]) -> list[float]:
    """Set up ``ax``'s x axis for one parameter; the x position of each value."""
    from matplotlib.ticker import (
        FixedLocator,
        FuncFormatter,
        NullFormatter,
        NullLocator,
    )

    kind = axis_kind(spec, values)
    if kind == "categorical":  # the choices in the order given, evenly spaced
        cats = [str(v) for v in spec["values"]] if isinstance(spec, dict) and "values" in spec else []
        cats += sorted({str(v) for v in values} - set(cats))
        ax.set_xticks(range(len(cats)), cats, fontsize=8, rotation=30 if len(cats) > 6 else 0)
        ax.set_xlim(-0.5, len(cats) - 0.5)
        return [cats.index(str(v)) for v in values]
    xs = [float(v) for v in values]
    low, high = searched_range(spec) or (min(xs, default=0.0), max(xs, default=1.0))
    if kind == "log":
        low, high = (low, high) if low > 0 else (min(xs), max(xs))
        ax.set_xscale("log")
        pad = (high / low) ** 0.04 if high > low else 2.0
        ax.set_xlim(low / pad, high * pad)
        ax.xaxis.set_major_locator(FixedLocator(log_ticks(low, high)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _tick_label(v)))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_minor_formatter(NullFormatter())
    else:
        pad = 0.04 * (high - low) if high > low else 0.5
        ax.set_xlim(low - pad, high + pad)
        ax.locator_params(axis="x", nbins=5)
    return xs


def chart_parameters(rows: list[Row], params: list[str], metric: str, path: Path, title: str,
                     space: dict[str, Any] | None = None) -> Path:
    """The metric against each swept parameter (one scatter per parameter).

    ``space`` is the sweep's ``parameters:``: its distributions choose log or linear axes and
    their range, its ``values:`` lists categorical axes; without it the data decide.
    """
    plt = pyplot()
    rows = [r for r in rows if r.metric is not None]
    n = max(1, len(params))
    cols = min(3, n)
    nrows = (n + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(4 * cols, 3.2 * nrows), squeeze=False)
    for ax, name in zip(axes.flat, params):
        values = [r.config.get(name) for r in rows]
        xs = _parameter_axis(ax, name, (space or {}).get(name), values)
        ax.scatter(xs, [r.metric for r in rows], s=18, alpha=0.8)
        ax.set_xlabel(name)
        ax.set_ylabel(metric)
        if is_accuracy(metric):  # accuracies read as percents, as in every text output
            from matplotlib.ticker import PercentFormatter

            ax.yaxis.set_major_formatter(PercentFormatter(xmax=1))
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(params):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)
