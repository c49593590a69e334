"""The charts of ``cnn-tracker compare --out``: accuracy and time per group, metric per parameter."""

from __future__ import annotations

from pathlib import Path

from cnn_tracker.results.compare import group_rows
from cnn_tracker.results.source import Row, number
from cnn_tracker.training.reports import pyplot, save_figure


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
