"""Test-set analysis (confusion matrix, per-class accuracy, most-confused pairs, misclassified
images) and the local PNG plots. Pure numpy / matplotlib; nothing here imports wandb.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np


@dataclass
class TestReport:
    """Test-set predictions of one model and everything derived from them."""

    __test__ = False  # not a pytest test class
    class_names: list[str]
    labels: np.ndarray  # int64 [N] true classes
    probs: np.ndarray  # float32 [N, C]
    images: np.ndarray  # uint8 [N, 28, 28], for the misclassified table and grids
    loss: float
    accuracy: float

    @property
    def preds(self) -> np.ndarray:
        return self.probs.argmax(1)

    def confusion(self) -> np.ndarray:
        """``[true, predicted]`` counts: rows are true classes, columns predictions."""
        from sklearn.metrics import confusion_matrix

        return confusion_matrix(self.labels, self.preds, labels=list(range(len(self.class_names))))

    def per_class(self) -> list[dict[str, Any]]:
        cm = self.confusion()
        rows = []
        for i, name in enumerate(self.class_names):
            support = int(cm[i].sum())
            right = int(cm[i, i])
            rows.append({
                "class_id": i, "class": name,
                "accuracy": right / support if support else float("nan"),
                "errors": support - right, "support": support,
            })
        return rows

    def confused_pairs(self, top: int = 5) -> list[dict[str, Any]]:
        cm = self.confusion().copy()
        np.fill_diagonal(cm, 0)
        order = sorted(
            ((int(cm[t, p]), t, p) for t in range(len(cm)) for p in range(len(cm)) if cm[t, p]),
            key=lambda item: (-item[0], item[1], item[2]),
        )[:top]
        return [
            {"rank": r + 1, "true_id": t, "true": self.class_names[t],
             "predicted_id": p, "predicted": self.class_names[p], "count": c}
            for r, (c, t, p) in enumerate(order)
        ]

    def misclassified(self, limit: int) -> list[dict[str, Any]]:
        """The ``limit`` most confident mistakes: index, true, predicted, confidence, top-3."""
        preds = self.preds
        wrong = np.flatnonzero(preds != self.labels)
        conf = self.probs[wrong, preds[wrong]]
        chosen = wrong[np.argsort(-conf, kind="stable")][:limit]
        rows = []
        for i in chosen:
            top3 = np.argsort(-self.probs[i], kind="stable")[:3]
            rows.append({
                "index": int(i),
                "true": self.class_names[int(self.labels[i])],
                "predicted": self.class_names[int(preds[i])],
                "confidence": float(self.probs[i, preds[i]]),
                "top3": [(self.class_names[int(k)], float(self.probs[i, k])) for k in top3],
            })
        return rows

    def errors_per_batch(self, batch_size: int) -> list[int]:
        wrong = (self.preds != self.labels).astype(np.int64)
        return [int(wrong[s : s + batch_size].sum()) for s in range(0, len(wrong), batch_size)]

    def summary(self, top_pairs: int = 5) -> dict[str, Any]:
        return {
            "test/loss": self.loss,
            "test/accuracy": self.accuracy,
            "per_class": self.per_class(),
            "most_confused": self.confused_pairs(top_pairs),
            "confusion_matrix": self.confusion().tolist(),
        }


def format_top3(top3: Sequence[tuple[str, float]]) -> str:
    return ", ".join(f"{name} {p:.3f}" for name, p in top3)


def text_tables(report: TestReport) -> str:
    """Per-class table and most-confused pairs, for the terminal."""
    from cnn_tracker.inputs import printable
    from cnn_tracker.table import render

    per_class = [[r["class_id"], r["class"], f"{r['accuracy']:.2%}", r["errors"], r["support"]]
                 for r in report.per_class()]
    lines = [f"test loss {report.loss:.4f}  test accuracy {report.accuracy:.2%}", "",
             render(["id", "class", "accuracy", "errors", "support"], per_class, align="><>>>"),
             "", "most confused (true -> predicted):"]
    for row in report.confused_pairs():
        lines.append(printable(f"  {row['rank']}. {row['true']} -> {row['predicted']}: {row['count']}"))
    return "\n".join(lines)


# ---------------------------------------------------------------- plots (matplotlib, Agg backend)

def pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> Path:
    """Write ``fig`` as a PNG through a temp file and a rename, then close it."""
    import io

    from cnn_tracker.files import atomic_write

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    return atomic_write(path, buffer.getvalue())


def plot_curves(history: list[dict[str, float]], path: Path, title: str = "") -> Path:
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    plt = pyplot()
    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8))
    for split, style in (("train", "-o"), ("val", "-s")):
        ax_loss.plot(epochs, [h[f"{split}/loss"] for h in history], style, label=split, ms=3)
        ax_acc.plot(epochs, [h[f"{split}/accuracy"] for h in history], style, label=split, ms=3)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    ax_acc.yaxis.set_major_formatter(PercentFormatter(xmax=1))  # accuracies read as percents
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
        if len(epochs) <= 20:  # whole epochs, each one a tick (even a single one)
            ax.set_xticks(epochs)
            ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_confusion(report: TestReport, path: Path) -> Path:
    plt = pyplot()
    cm = report.confusion()
    k = len(report.class_names)
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    im = ax.imshow(cm, cmap="Blues")
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_xticks(range(k), report.class_names, rotation=45, ha="right")
    ax.set_yticks(range(k), report.class_names)
    ax.set(xlabel="predicted", ylabel="true",
           title=f"confusion matrix (test accuracy {report.accuracy:.2%})")
    threshold = cm.max() / 2 if cm.size else 0
    for t in range(k):
        for p in range(k):
            ax.text(p, t, str(cm[t, p]), ha="center", va="center", fontsize=7,
                    color="white" if cm[t, p] > threshold else "black")
    return save_figure(fig, path)


def _grid(images, titles, colors, path: Path, suptitle: str, cols: int = 8) -> Path:
    plt = pyplot()
    n = max(len(images), 1)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.5, rows * 1.75), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, title, color in zip(axes.flat, images, titles, colors):
        ax.imshow(img, cmap="gray", vmin=0, vmax=255)
        ax.set_title(title, fontsize=7, color=color)
    if not len(images):
        axes.flat[0].text(0.5, 0.5, "none", ha="center", va="center")
    fig.suptitle(suptitle, fontsize=10)
    return save_figure(fig, path)


def plot_misclassified(report: TestReport, path: Path, limit: int = 32) -> Path:
    rows = report.misclassified(limit)
    return _grid(
        [report.images[r["index"]] for r in rows],
        [f"true {r['true']}\npred {r['predicted']} {r['confidence']:.2f}" for r in rows],
        ["red"] * len(rows), path, f"most confident mistakes ({len(rows)} shown)",
    )


def plot_predictions(report: TestReport, path: Path, n: int = 16, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(report.labels), size=min(n, len(report.labels)), replace=False)
    preds = report.preds
    names = report.class_names
    return _grid(
        [report.images[i] for i in idx],
        [f"true {names[report.labels[i]]}\npred {names[preds[i]]}" for i in idx],
        ["green" if preds[i] == report.labels[i] else "red" for i in idx],
        path, "random test predictions (green = right, red = wrong)",
    )


def plot_input(image: np.ndarray, result: dict[str, Any], path: Path) -> Path:
    """``predict --show``: the 28x28 input the model saw, next to its top-k probabilities."""
    plt = pyplot()
    top = result["top"]
    fig, (ax_img, ax_bar) = plt.subplots(1, 2, figsize=(6.4, 2.8),
                                         gridspec_kw={"width_ratios": [1, 1.4]})
    ax_img.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax_img.set_title("model input (28x28)", fontsize=9)
    ax_img.set_xticks([])
    ax_img.set_yticks([])
    names = [str(t["class"]) for t in top][::-1]
    probs = [t["probability"] for t in top][::-1]
    bars = ax_bar.barh(range(len(names)), probs, color=["tab:blue"] * (len(names) - 1) + ["tab:green"])
    ax_bar.bar_label(bars, fmt="%.3f", fontsize=8, padding=2)
    ax_bar.set_yticks(range(len(names)), names, fontsize=9)
    ax_bar.set_xlim(0, 1.15)
    ax_bar.set_xlabel("probability")
    ax_bar.set_title(f"predicted: {result['predicted']}", fontsize=10)
    fig.suptitle(Path(result["image"]).name, fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_errors_per_batch(report: TestReport, batch_size: int, path: Path) -> Path:
    """Misclassified images per evaluation batch (``batch_size``: the eval batch size used)."""
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    counts = report.errors_per_batch(batch_size)
    n = len(counts)
    fig, ax = plt.subplots(figsize=(max(8, min(16, 0.3 * n)), 3.2))
    bars = ax.bar(range(1, n + 1), counts, color="tab:red")
    if n <= 60:  # every batch readable: its number under it, its count on it
        ax.set_xticks(range(1, n + 1), [str(i) for i in range(1, n + 1)],
                      fontsize=8 if n <= 30 else 6)
        ax.bar_label(bars, fontsize=8 if n <= 30 else 6, padding=1)
    ax.set_xlim(0.4, n + 0.6)
    ax.set_ylim(0, max(counts, default=0) * 1.15 + 1)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    last = len(report.labels) - (n - 1) * batch_size
    size = f"{batch_size} images" + (f", the last {last}" if n and last != batch_size else "")
    ax.set(xlabel=f"test batch ({size})", ylabel="misclassified",
           title=f"misclassifications per test batch (total {sum(counts)} of {len(report.labels)})")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return save_figure(fig, path)


def write_plots(report: TestReport, history: list[dict[str, float]] | None, out_dir: Path,
                batch_size: int, title: str = "") -> dict[str, Path]:
    """Every PNG of a run, by W&B key. ``history`` None (evaluate) skips the curves."""
    out_dir = Path(out_dir)
    plots = {}
    if history:
        plots["plots/curves"] = plot_curves(history, out_dir / "curves.png", title)
    plots["plots/confusion_matrix"] = plot_confusion(report, out_dir / "confusion_matrix.png")
    plots["plots/misclassified"] = plot_misclassified(report, out_dir / "misclassified.png")
    plots["plots/predictions"] = plot_predictions(report, out_dir / "predictions.png")
    plots["plots/errors_per_batch"] = plot_errors_per_batch(
        report, batch_size, out_dir / "errors_per_batch.png")
    return plots
