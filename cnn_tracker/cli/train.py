"""``cnn-tracker train``: every TrainConfig key as an option.

``train`` takes every TrainConfig key as ``--key value`` or ``--key=value`` (the form W&B agents
pass with ``${args}``); dashes and underscores are both accepted, and booleans take
``--augment``, ``--augment=false`` or ``--augment True``. Positional ``key=value`` pairs and JSON
objects (W&B's ``${args_no_hyphens}`` and ``${args_json}``) work too.
"""

from __future__ import annotations

import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import click

from cnn_tracker import env
from cnn_tracker.config import (
    DATASETS,
    KEYS,
    PRESETS,
    WANDB_MODES,
    RunSettings,
    TrainConfig,
    config_from_sources,
    dataset_defaults,
    unknown_key_error,
)
from cnn_tracker.errors import UserError, closest
from cnn_tracker.inputs import clip, load_json
from cnn_tracker.recipes import MODEL_BOUND

_HELP = {  # one line per key for --help; units and ranges live in config.py comments too
    "dataset": "mnist or fashion-mnist",
    "model": "mlp, tinyvgg, fashioncnn, deepcnn, lenet or fastcnn",
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
    "rotate": "random rotations up to +-N degrees in training (0 = none)",
    "zoom": "random scaling by 1-N to 1+N in training (0 = none)",
    "tta": "test-time flips on fashion-mnist (null = as augment)",
    "ema": "decay of the weights' moving average that is evaluated and saved (0 = off)",
    "val_size": "validation images held out of train",
    "seed": "seed of split, init and shuffling",
    "device": "auto, cpu or cuda",
    "log_misclassified": "misclassified images in the W&B table",
    "log_every": "log the batch loss every N batches (0 = per epoch only)",
    "eval_batch_size": "images per evaluation forward pass",
    "deterministic": "deterministic torch algorithms",
    "precision": "auto, fp32, bf16 or fp16 (auto = bf16 on CUDA, fp32 on CPU)",
    "channels_last": "NHWC memory format for conv nets",
    "compile": "torch.compile the model (slow first epoch)",
}


def _text(value: Any) -> str:
    return "null" if value is None else str(value)  # as YAML, sweeps and --key null spell it


def _default_text(key: str) -> str:
    """The key's default, per dataset where the datasets' recipes differ."""
    values = {d: _text(getattr(dataset_defaults(d), key)) for d in DATASETS}
    if key in MODEL_BOUND:  # the recipe model's; another model keeps its own
        return f"[default: {values[DATASETS[0]]} for the recipe's {TrainConfig.model}, else null]"
    if key == "dataset" or len(set(values.values())) == 1:
        return f"[default: {values[DATASETS[0]]}]"
    return "[default: " + "; ".join(f"{d} {v}" for d, v in values.items()) + "]"


def _hyperparameter_options() -> list[click.Option]:
    options = []
    for f in fields(TrainConfig):
        names = [f"--{f.name}"]
        if "_" in f.name:
            names.append(f"--{f.name.replace('_', '-')}")
        extra: dict[str, Any] = {}
        if "bool" in str(f.type):
            extra = {"is_flag": False, "flag_value": "true"}  # --augment alone means true
        options.append(click.Option(
            names + [f.name], type=str, default=None, show_default=False, metavar="VALUE",
            help=f"{_HELP.get(f.name, '')} {_default_text(f.name)}", **extra,
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


def _extra_values(extra: tuple[str, ...]) -> dict[str, Any]:
    """Positional ``key=value`` pairs (W&B's ``${args_no_hyphens}``) and JSON objects (``${args_json}``)."""
    values: dict[str, Any] = {}
    for token in extra:
        if token.lstrip().startswith("{"):
            try:
                obj = load_json(token)
            except ValueError as exc:
                raise UserError(f"argument {clip(token)} is not a valid JSON object ({exc}): pass "
                                "hyperparameters as '{\"lr\": 0.01}', key=value or --key value.") from None
            if not isinstance(obj, dict):
                raise UserError(f"argument {clip(token)} must be a JSON object of hyperparameters.")
            values.update(obj)
        elif "=" in token and not token.startswith("-"):
            key, value = token.split("=", 1)
            values[key.strip().replace("-", "_")] = value
        else:
            raise UserError(f"unexpected argument {clip(token)}: `cnn-tracker train` takes --key value "
                            "options, key=value pairs or a JSON object. See `cnn-tracker train --help`.")
    return values


def _train(config_file, preset, project, entity, group, name, tags, notes, job_type, mode, data_dir,
           output_dir,
           store, quiet, resume, extra, **hyper):
    from cnn_tracker.runs.outcome import RunPreempted
    from cnn_tracker.runs.runner import run_training

    cli_values = {**_extra_values(extra), **{k: v for k, v in hyper.items() if v is not None}}
    cfg = config_from_sources(config_file, cli_values, preset)
    settings = RunSettings(
        project=project or "cnn-tracker",
        entity=entity, group=group, name=name,
        tags=tuple(t.strip() for chunk in tags for t in chunk.split(",") if t.strip()),
        notes=notes, job_type=job_type, mode=mode,
    )
    try:
        run_training(cfg, settings, data_dir=env.data_dir(data_dir), output_dir=output_dir,
                     store_dir=store, quiet=quiet, resume=resume,
                     options_given=bool(config_file or preset or cli_values))
    except RunPreempted as exc:
        click.echo(str(exc), err=True)
        sys.exit(exc.exit_code)


train = TrainCommand(
    "train",
    callback=_train,
    help=(
        "Train one model with W&B tracking (offline unless an API key is configured).\n\n"
        "Hyperparameters: defaults < --preset < --config FILE.yaml < --key value options (or key=value / a "
        "JSON object as arguments) < a W&B sweep's values in wandb.config. Every run is also "
        "recorded in the local run store.\n\n"
        "SIGTERM or Ctrl-C stops at the next batch with a resumable checkpoint (exit 128+signal, "
        "the W&B run marked preempting); `--resume RUN_ID` continues it. Example:\n\n"
        "\b\n  cnn-tracker train --dataset fashion-mnist --model tinyvgg --epochs 10 --lr=0.002"
    ),
    params=[
        click.Option(["--config", "config_file"], type=click.Path(dir_okay=False),
                     help="YAML file of hyperparameters (key: value, or W&B's key: {value: x})."),
        click.Option(["--preset"], type=click.Choice(list(PRESETS)),
                     help="Start from a named recipe for the dataset (below the config file and "
                          "options): fast = the measured fastest CPU recipe (README, Performance)."),
        click.Option(["--project"], envvar=env.WANDB_PROJECT, help="W&B project [default: cnn-tracker]."),
        click.Option(["--entity"], envvar=env.WANDB_ENTITY, help="W&B entity (user or team)."),
        click.Option(["--group"], envvar=env.WANDB_RUN_GROUP, help="W&B run group."),
        click.Option(["--name"], help="W&B run name [default: WANDB_NAME, else <model>-<dataset>-<run id>]."),
        click.Option(["--tags"], multiple=True, help="Extra W&B tags, comma-separated or repeated "
                     "(added to WANDB_TAGS and ours: dataset, model, sweep)."),
        click.Option(["--notes"], help="W&B run notes [default: WANDB_NOTES]."),
        click.Option(["--job-type", "job_type"], help="W&B job type [default: WANDB_JOB_TYPE, else train]."),
        click.Option(["--mode"], type=click.Choice(WANDB_MODES, case_sensitive=False),
                     help="W&B mode [default: WANDB_MODE, else online with an API key, else offline]."),
        click.Option(["--data-dir", "data_dir"], help=f"Dataset root [default: {env.DATA_DIR_VAR} or ~/.cache/cnn-tracker/data]."),
        click.Option(["--output-dir", "output_dir"], type=click.Path(file_okay=False, path_type=Path),
                     help="Folder for checkpoints, plots and summary.json [default: outputs/<run name>]."),
        click.Option(["--store"], help=f"Local run store folder [default: {env.STORE_VAR} or ./{env.DEFAULT_STORE}]."),
        click.Option(["--quiet", "-q"], is_flag=True, help="Print nothing but errors."),
        click.Option(["--resume"], metavar="PATH_OR_RUN",
                     help="Continue a stopped run: its run id, output folder, or resume.pt/last.pt. "
                          "It keeps its saved config (only device, log_every, log_misclassified "
                          "and eval_batch_size may change)."),
        click.Argument(["extra"], nargs=-1),
        # `cnn-tracker train ... --debug` works too; main() reads it from argv.
        click.Option(["--debug"], is_flag=True, hidden=True, expose_value=False),
        *_hyperparameter_options(),
    ],
)




COMMANDS = (train,)
