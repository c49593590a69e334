"""The one plain-text table renderer (no dependencies): a header, a dashed rule, aligned rows.

Used by ``sweep status`` / ``sweep list``, ``compare --format table`` and ``evaluate``'s
per-class table.
"""

from __future__ import annotations

from typing import Any, Sequence

from cnn_tracker.inputs import printable


def cell(value: Any) -> str:
    """How a value reads in a table: floats to 4 significant digits, None as ``-``, control
    characters escaped (names and class names come from files)."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else printable(value)


def is_accuracy(name: str) -> bool:
    """Whether a metric or column name is an accuracy (a fraction shown as a percent)."""
    return "accuracy" in str(name).lower()


def percent(value: Any) -> str:
    """An accuracy as every text output shows it: a percent with two decimals (``88.85%``)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.2%}"
    return cell(value)


def metric_cell(name: str, value: Any) -> str:
    """A metric's value: a percent for an accuracy, else as :func:`cell` shows it."""
    return percent(value) if is_accuracy(name) else cell(value)


def render(header: Sequence[str], rows: Sequence[Sequence[Any]], align: str = "") -> str:
    """Columns two spaces apart, each as wide as its widest cell; no trailing spaces.

    ``align`` gives one character per column, ``<`` (left, the default) or ``>`` (right, for
    numbers); missing characters mean left.
    """
    cells = [[printable(h) for h in header], *[[cell(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    sides = [align[i] if i < len(align) else "<" for i in range(len(header))]

    def line(row: list[str]) -> str:
        return "  ".join(c.rjust(w) if s == ">" else c.ljust(w)
                         for c, w, s in zip(row, widths, sides)).rstrip()

    lines = [line(row) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
