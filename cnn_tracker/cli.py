"""The ``cnn-tracker`` command line (click).

``train`` takes every TrainConfig key as ``--key value`` or ``--key=value`` (the form W&B agents
pass with ``${args}``); dashes and underscores are both accepted, and booleans take
``--augment``, ``--augment=false`` or ``--augment True``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import click

from . import __version__, env
from .config import KEYS, TrainConfig, RunSettings, WANDB_MODES, config_from_sources, unknown_key_error
from .errors import UserError, closest

_HELP = {  # one line per key for --help; units and ranges live in config.py comments too
    "dataset": "mnist or fashion-mnist",
    "model": "mlp, tinyvgg, fashioncnn, deepcnn or lenet",
    "epochs": "passes over the training split",
    "batch_size": "images per optimizer step",
    "lr": "peak learning rate",
    "optimizer": "adam, adamw or sgd",
    "momentum": "SGD momentum",
    "weight_decay": "weight decay",
    "hidden_units": "width of the model (null = model default)",
    "dropout": "dropout before the classifier (null = model default)",
    "batch_norm": "BatchNorm after each conv",
    "scheduler": "none, onecycle or cosine (per batch)",
    "label_smoothing": "cross-entropy label smoothing",
    "augment": "random shifts (+ flips on fashion-mnist)",
    "val_size": "validation images held out of train",
    "seed": "seed of split, init and shuffling",
    "device": "auto, cpu or cuda",
    "log_misclassified": "misclassified images in the W&B table",
    "log_every": "log the batch loss every N batches (0 = per epoch only)",
    "eval_batch_size": "images per evaluation forward pass",
    "deterministic": "deterministic torch algorithms",
}


def _hyperparameter_options() -> list[click.Option]:
    defaults = TrainConfig()
    options = []
    for f in fields(TrainConfig):
        names = [f"--{f.name}"]
        if "_" in f.name:
            names.append(f"--{f.name.replace('_', '-')}")
        default = getattr(defaults, f.name)
        extra: dict[str, Any] = {}
        if "bool" in str(f.type):
            extra = {"is_flag": False, "flag_value": "true"}  # --augment alone means true
        options.append(click.Option(
            names + [f.name], type=str, default=None, show_default=False, metavar="VALUE",
            help=f"{_HELP.get(f.name, '')} [default: {default}]", **extra,
        ))
    return options


class TrainCommand(click.Command):
    """Reports an unknown ``--option`` with the closest config key and the list of valid keys."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.NoSuchOption as exc:
            name = exc.option_name.lstrip("-").split("=")[0]
            key = name.replace("-", "_")
            others = [o.lstrip("-") for p in self.params for o in p.opts if o.startswith("--")]
            if key in KEYS or closest(key, KEYS) or not closest(name, others):
                raise unknown_key_error(key, "command line") from None
            raise UserError(f"unknown option '--{name}'. Did you mean '--{closest(name, others)}'? "
                            "See `cnn-tracker train --help`.") from None


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="cnn-tracker")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Train, track, evaluate and compare small CNNs on MNIST and Fashion-MNIST with W&B."""
    env.load_dotenv_file()
    ctx.obj = {"debug": debug}


def _train(config_file, project, entity, group, name, tags, notes, mode, data_dir, output_dir,
           quiet, **hyper):
    from .runner import run_training

    cli_values = {k: v for k, v in hyper.items() if v is not None}
    cfg = config_from_sources(config_file, cli_values)
    settings = RunSettings(
        project=project or "cnn-tracker",
        entity=entity, group=group, name=name,
        tags=tuple(t.strip() for chunk in tags for t in chunk.split(",") if t.strip()),
        notes=notes, mode=mode,
    )
    run_training(cfg, settings, data_dir=env.data_dir(data_dir), output_dir=output_dir, quiet=quiet)


train = TrainCommand(
    "train",
    callback=_train,
    help=(
        "Train one model with W&B tracking (offline unless an API key is configured).\n\n"
        "Hyperparameters: defaults < --config FILE.yaml < --key value options < a W&B sweep's "
        "values in wandb.config. Example:\n\n"
        "\b\n  cnn-tracker train --dataset fashion-mnist --model tinyvgg --epochs 10 --lr=0.002"
    ),
    params=[
        click.Option(["--config", "config_file"], type=click.Path(dir_okay=False),
                     help="YAML file of hyperparameters (key: value, or W&B's key: {value: x})."),
        click.Option(["--project"], envvar="WANDB_PROJECT", help="W&B project [default: cnn-tracker]."),
        click.Option(["--entity"], envvar="WANDB_ENTITY", help="W&B entity (user or team)."),
        click.Option(["--group"], envvar="WANDB_RUN_GROUP", help="W&B run group."),
        click.Option(["--name"], help="W&B run name [default: <model>-<dataset>-<run id>]."),
        click.Option(["--tags"], multiple=True, help="Extra W&B tags, comma-separated or repeated."),
        click.Option(["--notes"], help="W&B run notes."),
        click.Option(["--mode"], type=click.Choice(WANDB_MODES, case_sensitive=False),
                     help="W&B mode [default: WANDB_MODE, else online with an API key, else offline]."),
        click.Option(["--data-dir", "data_dir"], help=f"Dataset root [default: {env.DATA_DIR_VAR} or ~/.cache/cnn-tracker/data]."),
        click.Option(["--output-dir", "output_dir"], type=click.Path(file_okay=False, path_type=Path),
                     help="Folder for checkpoints, plots and summary.json [default: outputs/<run name>]."),
        click.Option(["--quiet", "-q"], is_flag=True, help="Print nothing but errors."),
        # `cnn-tracker train ... --debug` works too; main() reads it from argv.
        click.Option(["--debug"], is_flag=True, hidden=True, expose_value=False),
        *_hyperparameter_options(),
    ],
)
cli.add_command(train)


@cli.group()
def data() -> None:
    """Dataset files: copy from an offline mirror and verify."""


@data.command("prepare")
@click.option("--dataset", type=click.Choice(["mnist", "fashion-mnist", "all"]), default="all",
              show_default=True)
@click.option("--from", "mirror", type=click.Path(file_okay=False, path_type=Path),
              help=f"Read-only folder laid out as <Name>/raw/*.gz [default: {env.MIRROR_VAR}].")
@click.option("--data-dir", "data_dir", help="Dataset root to fill.")
def data_prepare(dataset: str, mirror: Path | None, data_dir: str | None) -> None:
    """Copy raw .gz files into the data root; torchvision verifies md5s and extracts them."""
    from .data import SPECS, load_split, prepare

    root = env.data_dir(data_dir)
    if mirror is not None and not mirror.is_dir():
        raise UserError(f"--from {mirror} is not a folder: give the folder that holds "
                        "MNIST/raw and FashionMNIST/raw.")
    names = list(SPECS) if dataset == "all" else [dataset]
    for name in names:
        spec = SPECS[name]
        prepare(spec, root, mirror)
        n_train = len(load_split(spec, root, train=True)[1])
        n_test = len(load_split(spec, root, train=False)[1])
        click.echo(f"{name}: ready in {root / spec.folder} ({n_train} train, {n_test} test images)")


def _checkpoint_path(ref: str) -> Path:
    from .artifacts import resolve_checkpoint

    return resolve_checkpoint(ref)


@cli.command()
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

    from .inference import evaluate_checkpoint
    from .reports import text_tables, write_plots

    path = _checkpoint_path(checkpoint)
    ckpt, report = evaluate_checkpoint(path, env.data_dir(data_dir), dataset, device, batch_size)
    written = {}
    if plots:
        if output_dir is None:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()[:8]
            output_dir = env.output_root() / "eval" / f"{path.stem}-{digest}"
        written = {k: str(v) for k, v in write_plots(
            report, None, output_dir, int(ckpt["config"]["batch_size"])).items()}
    if as_json:
        click.echo(json.dumps({
            "checkpoint": str(path), "model": ckpt["model"], "dataset": dataset or ckpt["dataset"],
            "epoch": ckpt.get("epoch"), "training_metrics": ckpt.get("metrics", {}),
            **report.summary(), "plots": written,
        }, indent=2))
        return
    click.echo(f"{path}: {ckpt['model']} trained on {ckpt['dataset']} (epoch {ckpt.get('epoch')})")
    click.echo(text_tables(report))
    if written:
        click.echo(f"plots written to {output_dir}")


@cli.command()
@click.argument("checkpoint")
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--top-k", type=click.IntRange(1, 10), default=3, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def predict(checkpoint, images, top_k, device, as_json) -> None:
    """Class probabilities of IMAGES (any size or mode) under CHECKPOINT (file or W&B artifact)."""
    from .inference import predict_files

    results = predict_files(_checkpoint_path(checkpoint), list(images), top_k, device)
    if as_json:
        click.echo(json.dumps(results, indent=2))
        return
    for r in results:
        top = ", ".join(f"{t['class']} {t['probability']:.3f}" for t in r["top"])
        click.echo(f"{r['image']}: {r['predicted']}  ({top})")


@cli.command("models")
def list_models() -> None:
    """The model registry: names, seed layouts and default parameter counts."""
    from .models import REGISTRY, build_model, count_parameters, model_args

    for name, info in REGISTRY.items():
        n = count_parameters(build_model(name, model_args(name)))
        click.echo(f"{name:<11} {n:>9,} params  hidden_units={info.hidden_units:<4} "
                   f"dropout={info.dropout:<4} {info.summary}")


def main() -> None:
    """Entry point: user errors print one line and exit 2; --debug shows the traceback."""
    debug = "--debug" in sys.argv[1:]
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # one line per epoch, also in agent logs
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        if debug:
            raise
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
