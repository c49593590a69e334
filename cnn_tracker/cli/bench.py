"""``cnn-tracker bench``: training speed, measured side by side."""

from __future__ import annotations

import dataclasses

import click

from cnn_tracker import env
from cnn_tracker.cli.common import echo_json
from cnn_tracker.config import (
    DATASETS,
    MODELS,
)
from cnn_tracker.errors import UserError
from cnn_tracker.recipes import BENCH_REFERENCES, BENCH_TARGETS


def _per_dataset(value) -> str:
    """'mnist X, fashion-mnist Y' for a --help default that differs by dataset."""
    return ", ".join(f"{d} {value(d)}" for d in DATASETS)


@click.command()
@click.option("--dataset", type=click.Choice(DATASETS), default="mnist",
              show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--repeats", type=click.IntRange(1, 100), default=3, show_default=True,
              help="Throughput and W&B overhead: median of N alternating runs.")
@click.option("--tta-repeats", type=click.IntRange(1, 100), default=3, show_default=True,
              help="Time to target of the fast preset: median over seeds 0..N-1.")
@click.option("--target", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help=f"Test accuracy to reach [default: {_per_dataset(BENCH_TARGETS.get)}].")
@click.option("--reference-budget", type=click.FloatRange(min=1), default=900, show_default=True,
              help="Seconds of reference-loop training before it gives up on the target.")
@click.option("--reference-model", type=click.Choice(MODELS),
              help="Model of the reference loop [default: "
                   f"{_per_dataset(lambda d: BENCH_REFERENCES[d].model)}].")
@click.option("--reference-hidden", type=click.IntRange(1, 4096),
              help="hidden_units of the reference model (the throughput comparison uses it too) "
                   f"[default: {_per_dataset(lambda d: BENCH_REFERENCES[d].hidden_units)}].")
@click.option("--reference-batch-size", type=click.IntRange(1, 65536),
              help="Batch size of the reference loop [default: "
                   f"{_per_dataset(lambda d: BENCH_REFERENCES[d].batch_size)}].")
@click.option("--overhead-epochs", type=click.IntRange(1, 100), default=2, show_default=True,
              help="Epochs of the W&B overhead runs and of the peak-RSS run.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a hyperparameter of the fast preset (repeatable), e.g. --set batch_size=512.")
@click.option("--data-dir", "data_dir", help="Dataset root.")
@click.option("--quick", is_flag=True, help="Smallest budget of every measurement (checks the harness; "
              "not a measurement).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench(dataset, device, repeats, tta_repeats, target, reference_budget, reference_model,
          reference_hidden, reference_batch_size, overhead_epochs, overrides, data_dir, quick,
          as_json) -> None:
    """Measure training speed: our trainer vs a reference loop (DataLoader, Adam), side by side in one process.

    Throughput on the same model; time to a target test accuracy (fast preset vs the reference
    loop); W&B offline vs disabled overhead and init/finish time; peak RSS of a train process.
    A benchmark, not a test: run it on a quiet machine and compare ratios, not absolute times.
    """
    from cnn_tracker.tools.bench import (
        BenchOptions,
        fast_config,
        format_report,
        run_bench,
    )
    pairs = []
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {item!r} is not KEY=VALUE: write e.g. --set batch_size=512.")
        pairs.append((key.strip().replace("-", "_"), value))
    opts = BenchOptions(
        dataset=dataset, device=device, repeats=repeats, tta_repeats=tta_repeats, target=target,
        reference_budget=reference_budget, overhead_epochs=overhead_epochs,
        overrides=tuple(pairs), quick=quick,
        reference=dataclasses.replace(BENCH_REFERENCES[dataset], **{k: v for k, v in {
            "model": reference_model, "hidden_units": reference_hidden,
            "batch_size": reference_batch_size}.items() if v is not None}),
    )
    fast_config(opts)  # a bad --set fails here, before any measurement
    report = run_bench(opts, env.data_dir(data_dir), echo=(lambda s: None) if as_json else
                       (lambda s: click.echo(f"... {s}", err=True)))
    if as_json:
        echo_json(report)
    else:
        click.echo(format_report(report))




COMMANDS = (bench,)
