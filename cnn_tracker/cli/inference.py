"""``cnn-tracker evaluate``, ``predict`` and ``models``: using a trained checkpoint."""

from __future__ import annotations

from pathlib import Path

import click

from cnn_tracker import env
from cnn_tracker.cli.common import echo_json
from cnn_tracker.inputs import printable


def checkpoint_path(ref: str) -> Path:
    from cnn_tracker.tracking.artifacts import resolve_checkpoint

    return resolve_checkpoint(ref)


@click.command()
@click.argument("checkpoint")
@click.option("--dataset", type=click.Choice(["mnist", "fashion-mnist"]),
              help="Evaluate on this dataset [default: the checkpoint's].")
@click.option("--data-dir", "data_dir", help="Dataset root.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--batch-size", type=click.IntRange(1, 65536), help="Images per forward pass.")
@click.option("--output-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the plots [default: outputs/eval/<checkpoint>-<digest>].")
@click.option("--plots/--no-plots", default=True, show_default=True,
              help="Write the confusion matrix and image grids.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def evaluate(checkpoint, dataset, data_dir, device, batch_size, output_dir, plots, as_json) -> None:
    """Test loss/accuracy, per-class table, most-confused pairs and plots of CHECKPOINT.

    CHECKPOINT is a .pt file or a W&B artifact reference (entity/project/model-<id>:best).
    """
    import hashlib

    from cnn_tracker.tools.inference import eval_batch_size, evaluate_checkpoint
    from cnn_tracker.training.reports import text_tables, write_plots

    path = checkpoint_path(checkpoint)
    ckpt, report = evaluate_checkpoint(path, env.data_dir(data_dir), dataset, device, batch_size)
    written = {}
    if plots:
        if output_dir is None:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()[:8]
            output_dir = env.output_root() / "eval" / f"{path.stem}-{digest}"
        written = {k: str(v) for k, v in write_plots(
            report, None, output_dir, eval_batch_size(ckpt, batch_size)).items()}
    if as_json:
        echo_json({
            "checkpoint": str(path), "model": ckpt["model"], "dataset": dataset or ckpt["dataset"],
            "epoch": ckpt.get("epoch"), "training_metrics": ckpt.get("metrics", {}),
            **report.summary(), "plots": written,
        })
        return
    click.echo(printable(f"{path}: {ckpt['model']} trained on {ckpt['dataset']} "
                         f"(epoch {ckpt.get('epoch')})"))
    click.echo(text_tables(report))
    if written:
        click.echo(printable(f"plots written to {output_dir}"))


@click.command()
@click.argument("checkpoint")
@click.argument("images", nargs=-1, required=True,  # inference.load_image reports each problem
                type=click.Path(path_type=Path, readable=False))
@click.option("--top-k", type=click.IntRange(1, 10), default=3, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--show", "show_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write a PNG per image to this folder: the 28x28 input the model saw and "
                   "its prediction.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def predict(checkpoint, images, top_k, device, show_dir, as_json) -> None:
    """Class probabilities of IMAGES (any size or mode) under CHECKPOINT (file or W&B artifact).

    Each image is prepared as the dataset was made: a light background inverted, the object
    cropped, scaled (digits to a 20 px box, clothes to 28 px) and centred in 28x28.
    """
    from cnn_tracker.tools.inference import predict_files

    results = predict_files(checkpoint_path(checkpoint), list(images), top_k, device, show_dir)
    if as_json:
        echo_json(results)
        return
    for r in results:
        top = ", ".join(f"{t['class']} {t['probability']:.3f}" for t in r["top"])
        click.echo(printable(f"{r['image']}: {r['predicted']}  ({top})"))
    if show_dir is not None:
        click.echo(f"inputs as the model saw them written to {show_dir}", err=True)


@click.command("models")
def list_models() -> None:
    """The model registry: names, reference layouts and default parameter counts."""
    from cnn_tracker.training.models import (
        REGISTRY,
        build_model,
        count_parameters,
        model_args,
    )

    for name, info in REGISTRY.items():
        n = count_parameters(build_model(name, model_args(name)))
        click.echo(f"{name:<11} {n:>9,} params  hidden_units={info.hidden_units:<4} "
                   f"dropout={info.dropout:<4} {info.summary}")



COMMANDS = (evaluate, predict, list_models)
