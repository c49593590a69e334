"""What the store holds, as plain dataclasses: a sweep and a run (with its per-epoch history).

Nothing here touches the database or the file system.
"""

from __future__ import annotations

import math
import secrets
import string
import time
from dataclasses import dataclass, field
from typing import Any


def new_id(length: int = 8) -> str:
    """A W&B-style id: lowercase letters and digits."""
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


def _finite_numbers(mapping: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, v in mapping.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def declared_metric(config: dict[str, Any]) -> tuple[str, str] | None:
    """(name, goal) of a sweep config's ``metric``, read the way W&B reads it, or None.

    A metric without ``goal`` is minimized: W&B's documented default, and what its engine (and
    ours, the same ``sweeps`` package) optimizes. The one place this rule is written.
    """
    metric = config.get("metric")
    if not isinstance(metric, dict) or not metric.get("name"):
        return None
    return str(metric["name"]), str(metric.get("goal") or "minimize")


@dataclass
class Sweep:
    id: str
    name: str | None
    project: str
    method: str
    config: dict[str, Any]
    state: str
    message: str | None
    created_at: float

    @property
    def metric(self) -> tuple[str, str] | None:
        """(name, goal) of the sweep's metric, if it has one (see :func:`declared_metric`)."""
        return declared_metric(self.config)

    @property
    def run_cap(self) -> int | None:
        cap = self.config.get("run_cap")
        return int(cap) if isinstance(cap, int) and cap > 0 else None


@dataclass
class Run:
    seq: int
    id: str
    sweep_id: str | None
    project: str | None
    name: str | None
    state: str
    params: dict[str, Any]
    config: dict[str, Any]
    summary: dict[str, Any]
    agent: str | None
    host: str | None
    pid: int | None
    exitcode: int | None
    should_stop: bool
    epochs: int
    checkpoint: str | None
    output_dir: str | None
    wandb_dir: str | None
    log_path: str | None
    message: str | None
    created_at: float
    started_at: float | None
    ended_at: float | None
    heartbeat_at: float | None
    history: list[dict[str, Any]] = field(default_factory=list)

    def metric_values(self, name: str) -> list[float]:
        """Every finite value of ``name``: per-epoch history, then the summary."""
        values = [h[name] for h in self.history if name in h]
        if name in self.summary:
            values.append(self.summary[name])
        return list(_finite_numbers(dict(enumerate(values))).values())

    def best_metric(self, name: str, goal: str) -> float | None:
        values = self.metric_values(name)
        if not values:
            return None
        return max(values) if goal.startswith("max") else min(values)

    @property
    def seconds(self) -> float | None:
        return self.duration(time.time())

    def duration(self, now: float) -> float | None:
        """Seconds from start to end (to ``now``, the store's clock, while it runs)."""
        if self.started_at is None:
            return None
        return (self.ended_at or now) - self.started_at


def numeric_summary(summary: dict[str, Any]) -> dict[str, float]:
    """The finite numeric entries of a summary (what sweep algorithms and tables compare)."""
    return _finite_numbers(summary)
