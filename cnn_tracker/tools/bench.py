"""``cnn-tracker bench``: how fast training is, measured side by side in one process.

A benchmark harness, not a test. For one dataset it measures:

1. **throughput**: train images/s of our trainer vs a *reference loop* (how the reference projects train) written here
   (torchvision dataset + DataLoader + per-sample ToTensor/Normalize, Adam, a ``loss.item()``
   per batch; see ``tools.reference``), on the same model, alternating, median of the repeats;
2. **time to a target test accuracy**: the ``fast`` preset (median over seeds) vs the reference
   loop. Test accuracy is
   read after every epoch, outside the timed part; the time is training time only (no data
   loading, no evaluation) on both sides. The reference stops at the target or when its training
   time passes ``reference_budget``; a reference that did not get there makes the ratio a lower
   bound, and the output says so;
3. **W&B overhead**: the same ``train`` run with tracking ``offline`` vs ``disabled``, alternating;
   wall time excluding ``wandb.init`` and ``finish``, which are reported separately;
4. **memory**: peak RSS of a ``cnn-tracker train --preset fast`` process (offline tracking), and
   peak GPU memory of the time-to-target runs on CUDA.

Nothing here asserts a time: tests run ``--quick`` on tiny data and check the report's shape.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from cnn_tracker import env
from cnn_tracker.config import RunSettings, TrainConfig, make_config, preset_values
from cnn_tracker.recipes import BENCH_REFERENCES, BENCH_TARGETS, Reference
from cnn_tracker.tools.reference import reference_throughput, reference_time_to_target
from cnn_tracker.training.data import (
    Data,
    Split,
    get_spec,
    load_data,
    prepare,
)
from cnn_tracker.training.engine import TrainHooks, TrainResult, train
from cnn_tracker.training.runtime import resolve_device, resolve_precision
from cnn_tracker.training.state import CheckpointFiles


@dataclass(frozen=True)
class BenchOptions:
    dataset: str = "mnist"
    device: str = "auto"
    repeats: int = 3  # throughput and W&B overhead: median of this many alternating runs
    tta_repeats: int = 3  # time to target of the fast preset (seeds 0..n-1)
    target: float | None = None  # default: BENCH_TARGETS[dataset]
    throughput_images: int = 12_800  # train images per throughput measurement
    reference_budget: float = 900.0  # s of reference training before giving up on the target
    reference_max_epochs: int = 30
    overhead_epochs: int = 2  # epochs of the W&B overhead runs and of the peak-RSS run
    overrides: tuple[tuple[str, str], ...] = ()  # --set key=value on top of the fast preset
    reference: Reference | None = None  # None: BENCH_REFERENCES[dataset]
    quick: bool = False


def quick_options(opts: BenchOptions) -> BenchOptions:
    """The smallest run of every measurement (for tiny data and the test suite)."""
    return dataclasses.replace(
        opts, repeats=1, tta_repeats=1, throughput_images=256, reference_budget=60.0,
        reference_max_epochs=1, overhead_epochs=1, quick=True,
        overrides=(("epochs", "1"), ("val_size", "50"), ("log_misclassified", "4"),
                   *opts.overrides),
    )


def fast_config(opts: BenchOptions) -> TrainConfig:
    """The fast preset for the dataset, with the --set overrides and the device."""
    values = {**preset_values("fast", opts.dataset), **dict(opts.overrides), "device": opts.device}
    return make_config(values, source="bench --set")


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


class _ReadTest(TrainHooks):
    """Records nothing; reads test accuracy after every epoch (outside the timed part) and
    stops training once it reaches ``target``."""

    def __init__(self, test: Split, target: float):
        self.test, self.target = test, target
        self.by_epoch: list[float] = []

    def after_epoch(self, epoch: int, evaluate: Callable[[Split], Any]) -> str:
        self.by_epoch.append(evaluate(self.test).accuracy)
        return "target reached" if self.by_epoch[-1] >= self.target else ""


def _train(cfg: TrainConfig, data: Data, folder: Path, hooks: TrainHooks | None = None) -> TrainResult:
    """Our trainer, quiet; the bench resolves the config's precision itself (for the data's device)."""
    amp_dtype = resolve_precision(cfg.precision, data.train.images.device)
    return train(cfg, data, hooks or TrainHooks(), files=CheckpointFiles(folder), amp_dtype=amp_dtype)


# --- the reference loop ------------------------------------------------------------------


# --- measurements -----------------------------------------------------------------------------


def _subset(split: Split, n: int) -> Split:
    return Split(split.images[:n], split.labels[:n])


def our_throughput(cfg: TrainConfig, data: Data, n_images: int, workdir: Path) -> float:
    """Train images/s of the real trainer over one epoch of the first ``n_images`` images."""
    small = dataclasses.replace(data, train=_subset(data.train, n_images), val=_subset(data.val, 256))
    result = _train(dataclasses.replace(cfg, epochs=1), small, workdir / "throughput")
    return result.history[0]["perf/images_per_second"]


def our_time_to_target(cfg: TrainConfig, data: Data, target: float, workdir: Path) -> dict[str, Any]:
    """Train the fast config; read test accuracy after each epoch; stop once it reaches ``target``."""
    hooks = _ReadTest(data.test, target)
    result = _train(cfg, data, workdir / f"tta-{cfg.seed}", hooks)
    by_epoch = hooks.by_epoch
    seconds = [h["perf/epoch_seconds"] for h in result.history]
    reached = next((i for i, acc in enumerate(by_epoch) if acc >= target), None)
    return {
        "seed": cfg.seed,
        "reached": reached is not None,
        "epochs": (reached + 1) if reached is not None else len(by_epoch),
        "seconds": sum(seconds[: reached + 1]) if reached is not None else sum(seconds),
        "test_accuracy_by_epoch": [round(a, 4) for a in by_epoch],
        "images_per_second": median([h["perf/images_per_second"] for h in result.history]),
    }


def tracking_overhead(cfg: TrainConfig, root: Path, repeats: int, workdir: Path) -> dict[str, Any]:
    """The same ``train`` run with W&B offline vs disabled, alternating; medians."""
    from cnn_tracker.runs.runner import run_training

    runs: dict[str, list[dict[str, float]]] = {"disabled": [], "offline": []}
    wandb_dir = workdir / "wandb"
    wandb_dir.mkdir(parents=True, exist_ok=True)
    settings = lambda mode: RunSettings(project="cnn-tracker-bench", mode=mode, tags=("bench",))  # noqa: E731
    with env.overridden({env.WANDB_DIR: str(wandb_dir), env.WANDB_SILENT: "true"}):
        # Untimed warm-up: the first run in a process pays one-time imports (plots, W&B SDK).
        first = run_training(cfg, settings("offline"), data_dir=root, output_dir=workdir / "warmup",
                             store_dir=workdir / "store", quiet=True)
        for i in range(repeats):
            for mode in ("disabled", "offline"):
                start = time.perf_counter()
                summary = run_training(
                    cfg, settings(mode), data_dir=root, output_dir=workdir / f"{mode}-{i}", store_dir=workdir / "store",
                    quiet=True,
                )
                wall = time.perf_counter() - start
                init, finish = summary["perf/wandb_init_seconds"], summary["perf/wandb_finish_seconds"]
                runs[mode].append({"wall_seconds": wall, "init_seconds": init,
                                   "finish_seconds": finish,
                                   "run_seconds": wall - init - finish,
                                   "train_seconds": summary["perf/train_seconds"]})
    off = median([r["run_seconds"] for r in runs["offline"]])
    dis = median([r["run_seconds"] for r in runs["disabled"]])
    return {
        "epochs": cfg.epochs,
        "disabled_seconds": dis,
        "offline_seconds": off,
        "overhead": off / dis - 1,
        "init_seconds": median([r["init_seconds"] for r in runs["offline"]]),
        "finish_seconds": median([r["finish_seconds"] for r in runs["offline"]]),
        # The first W&B run of a process also starts the wandb-core service.
        "first_init_seconds": first["perf/wandb_init_seconds"],
        "first_finish_seconds": first["perf/wandb_finish_seconds"],
        "runs": runs,
    }


def train_process_peak_rss(opts: BenchOptions, root: Path, workdir: Path) -> float:
    """Peak RSS (MB) of a ``cnn-tracker train --preset fast`` process with offline tracking."""
    cmd = [sys.executable, "-m", "cnn_tracker", "train", "--preset", "fast", "--dataset", opts.dataset,
           "--device", opts.device, "--mode", "offline", "--quiet", "--data-dir", str(root),
           "--output-dir", str(workdir / "rss-run"), "--store", str(workdir / "store")]
    for key, value in opts.overrides:
        cmd += [f"--{key}", value]
    cmd += ["--epochs", str(opts.overhead_epochs)]  # memory does not grow with epochs
    environ = env.child_environ({env.WANDB_DIR: str(workdir / "wandb"), env.WANDB_SILENT: "true"})
    (workdir / "wandb").mkdir(parents=True, exist_ok=True)
    log = workdir / "rss-run.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=environ)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        raise RuntimeError(f"the measured train process failed ({proc.returncode}): {' | '.join(tail)}")
    return usage.ru_maxrss / 1024  # Linux reports KiB


# --- the whole bench --------------------------------------------------------------------------


def run_bench(opts: BenchOptions, root: Path, echo: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Every measurement for ``opts.dataset``; the report as a JSON-ready dict."""
    if opts.quick:
        opts = quick_options(opts)
    spec = get_spec(opts.dataset)
    device = resolve_device(opts.device)
    target = opts.target if opts.target is not None else BENCH_TARGETS[opts.dataset]
    fast = fast_config(opts)
    ref = opts.reference or BENCH_REFERENCES[opts.dataset]
    prepare(spec, root)
    workdir = Path(tempfile.mkdtemp(prefix="cnn-tracker-bench-"))
    try:
        data = load_data(opts.dataset, root, val_size=fast.val_size, seed=0, device=device)
        n_images = min(opts.throughput_images, len(data.train))
        same_model = make_config({"model": ref.model, "hidden_units": ref.hidden_units,
                                  "dropout": None, "batch_norm": False}, base=fast, source="bench")

        echo(f"throughput: {ref.model} (hidden {ref.hidden_units}), {n_images} images x {opts.repeats}")
        ours_ips, ref_ips = [], []
        for _ in range(opts.repeats):  # alternating, so drifts in machine load hit both sides
            ours_ips.append(our_throughput(same_model, data, n_images, workdir))
            ref_ips.append(reference_throughput(ref, spec, root, device, n_images))
        throughput = {
            "model": ref.model, "hidden_units": ref.hidden_units, "images": n_images,
            "ours": {"images_per_second": median(ours_ips), "batch_size": fast.batch_size,
                     "runs": ours_ips},
            "reference": {"images_per_second": median(ref_ips), "batch_size": ref.batch_size,
                          "runs": ref_ips},
        }
        throughput["ratio"] = median(ours_ips) / median(ref_ips)

        echo(f"time to {target:.2%} test accuracy: fast preset ({fast.model}) x {opts.tta_repeats}")
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        ours_runs = [our_time_to_target(dataclasses.replace(fast, seed=s), data, target, workdir)
                     for s in range(opts.tta_repeats)]
        gpu_peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
        echo(f"time to {target:.2%}: reference loop ({ref.model}, batch {ref.batch_size}), "
             f"up to {opts.reference_budget:.0f} s")
        ref_run = reference_time_to_target(ref, spec, root, device, target, opts.reference_budget,
                                           opts.reference_max_epochs)
        ours_reached = all(r["reached"] for r in ours_runs)
        ours_seconds = median([r["seconds"] for r in ours_runs])
        tta = {
            "target": target,
            "ours": {"model": fast.model, "config": dataclasses.asdict(fast), "reached": ours_reached,
                     "seconds": ours_seconds, "epochs": median([r["epochs"] for r in ours_runs]),
                     "runs": ours_runs},
            "reference": {"model": ref.model, "hidden_units": ref.hidden_units,
                          "batch_size": ref.batch_size, "optimizer": "adam", "lr": ref.lr, **ref_run},
            # ours not reached: no claim; reference not reached: its time is a lower bound.
            "ratio": ref_run["seconds"] / ours_seconds if ours_reached else None,
            "ratio_is_lower_bound": ours_reached and not ref_run["reached"],
        }

        echo(f"W&B overhead: offline vs disabled, {opts.overhead_epochs} epochs x {opts.repeats}")
        overhead = tracking_overhead(dataclasses.replace(fast, epochs=opts.overhead_epochs), root,
                                     opts.repeats, workdir)
        echo("peak RSS of a training process")
        rss = train_process_peak_rss(opts, root, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "dataset": opts.dataset,
        "device": str(device),
        "device_name": (torch.cuda.get_device_name(device) if device.type == "cuda"
                        else platform.processor() or platform.machine()),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "quick": opts.quick,
        "repeats": opts.repeats,
        "throughput": throughput,
        "time_to_accuracy": tta,
        "wandb": overhead,
        "memory": {"train_peak_rss_mb": rss, "gpu_peak_mb": gpu_peak},
    }


def _ratio(value: float | None, lower_bound: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{'>= ' if lower_bound else ''}{value:.1f}x"


def format_report(report: dict[str, Any]) -> str:
    """The bench report as a text table."""
    tp, tta, wb, mem = (report["throughput"], report["time_to_accuracy"], report["wandb"],
                        report["memory"])
    ours, ref = tta["ours"], tta["reference"]

    def reached(run: dict[str, Any]) -> str:
        epochs = f"{run['epochs']:g} epoch{'s' if run['epochs'] != 1 else ''}"
        return (f"{run['seconds']:.1f} s ({epochs})" if run["reached"]
                else f"not reached ({run['seconds']:.1f} s, {epochs})")

    rows = [
        ("measurement", "ours", "reference", "ratio"),
        (f"train images/s, {tp['model']} hidden {tp['hidden_units']}",
         f"{tp['ours']['images_per_second']:,.0f} (batch {tp['ours']['batch_size']})",
         f"{tp['reference']['images_per_second']:,.0f} (batch {tp['reference']['batch_size']})",
         _ratio(tp["ratio"])),
        (f"time to {tta['target']:.2%} test accuracy",
         f"{reached(ours)}, {ours['model']} {ours['config']['precision']}",
         f"{reached(ref)}, {ref['model']}", _ratio(tta["ratio"], tta["ratio_is_lower_bound"])),
        (f"W&B run, {wb['epochs']} epoch{'s' if wb['epochs'] != 1 else ''} (excl. init/finish)",
         f"offline {wb['offline_seconds']:.1f} s", f"disabled {wb['disabled_seconds']:.1f} s",
         f"{wb['overhead']:+.1%}"),
        ("wandb.init + finish", f"{wb['init_seconds']:.2f} + {wb['finish_seconds']:.2f} s",
         f"first run in a process: {wb['first_init_seconds']:.2f} + {wb['first_finish_seconds']:.2f} s",
         ""),
        ("peak RSS, train process", f"{mem['train_peak_rss_mb']:,.0f} MB", "", ""),
    ]
    if mem["gpu_peak_mb"] is not None:
        rows.append(("peak GPU memory, fast runs", f"{mem['gpu_peak_mb']:,.0f} MB", "", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [f"bench: {report['dataset']} on {report['device']} ({report['device_name']}, torch "
             f"{report['torch']}, {report['threads']} threads), medians of {report['repeats']}"
             f"{', QUICK (tiny budget: not a measurement)' if report['quick'] else ''}"]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.append(f"reference test accuracy by epoch: {ref['test_accuracy_by_epoch']}")
    lines.append(f"ours (seed {ours['runs'][0]['seed']}) by epoch: {ours['runs'][0]['test_accuracy_by_epoch']}")
    return "\n".join(lines)
