"""The ``cnn-tracker`` command line (click).

``train`` takes every TrainConfig key as ``--key value`` or ``--key=value`` (the form W&B agents
pass with ``${args}``); dashes and underscores are both accepted, and booleans take
``--augment``, ``--augment=false`` or ``--augment True``.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import click

from cnn_tracker import __version__, env
from cnn_tracker.config import (
    DATASETS,
    KEYS,
    MODELS,
    PRESETS,
    WANDB_MODES,
    RunSettings,
    TrainConfig,
    config_from_sources,
    unknown_key_error,
)
from cnn_tracker.errors import UserError, closest
from cnn_tracker.store.db import (
    DEFAULT_STORE,
    HEARTBEAT_VAR,
    STALE_SECONDS,
    STORE_VAR,
    heartbeat_seconds,
)

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
    "precision": "auto, fp32, bf16 or fp16 (auto = bf16 on CUDA, fp32 on CPU)",
    "channels_last": "NHWC memory format for conv nets",
    "compile": "torch.compile the model (slow first epoch)",
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


def _extra_values(extra: tuple[str, ...]) -> dict[str, Any]:
    """Positional ``key=value`` pairs (W&B's ``${args_no_hyphens}``) and JSON objects (``${args_json}``)."""
    values: dict[str, Any] = {}
    for token in extra:
        if token.lstrip().startswith("{"):
            try:
                obj = json.loads(token)
            except json.JSONDecodeError as exc:
                raise UserError(f"argument {token!r} is not a valid JSON object ({exc.msg}): pass "
                                "hyperparameters as '{\"lr\": 0.01}', key=value or --key value.") from None
            if not isinstance(obj, dict):
                raise UserError(f"argument {token!r} must be a JSON object of hyperparameters.")
            values.update(obj)
        elif "=" in token and not token.startswith("-"):
            key, value = token.split("=", 1)
            values[key.strip().replace("-", "_")] = value
        else:
            raise UserError(f"unexpected argument {token!r}: `cnn-tracker train` takes --key value "
                            "options, key=value pairs or a JSON object. See `cnn-tracker train --help`.")
    return values


def _train(config_file, preset, project, entity, group, name, tags, notes, mode, data_dir, output_dir,
           store, quiet, resume, extra, **hyper):
    from cnn_tracker.runs.runner import RunPreempted, run_training

    cli_values = {**_extra_values(extra), **{k: v for k, v in hyper.items() if v is not None}}
    cfg = config_from_sources(config_file, cli_values, preset)
    settings = RunSettings(
        project=project or "cnn-tracker",
        entity=entity, group=group, name=name,
        tags=tuple(t.strip() for chunk in tags for t in chunk.split(",") if t.strip()),
        notes=notes, mode=mode,
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
        click.Option(["--store"], help=f"Local run store folder [default: {STORE_VAR} or ./{DEFAULT_STORE}]."),
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
    from cnn_tracker.training.data import SPECS, load_split, prepare

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
    from cnn_tracker.tracking.artifacts import resolve_checkpoint

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

    from cnn_tracker.tools.inference import evaluate_checkpoint
    from cnn_tracker.training.reports import text_tables, write_plots

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
@click.argument("images", nargs=-1, required=True,  # inference.load_image reports each problem
                type=click.Path(path_type=Path, readable=False))
@click.option("--top-k", type=click.IntRange(1, 10), default=3, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def predict(checkpoint, images, top_k, device, as_json) -> None:
    """Class probabilities of IMAGES (any size or mode) under CHECKPOINT (file or W&B artifact)."""
    from cnn_tracker.tools.inference import predict_files

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

# -- sweeps -----------------------------------------------------------------------------------
_STORE_OPTION = click.option(
    "--store", "store_dir", metavar="DIR",
    help=f"Local run store folder [default: {STORE_VAR} or ./{DEFAULT_STORE}].")


def _store(store_dir: str | None):
    from cnn_tracker.store.db import Store

    return Store(store_dir)


def _echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


def _cloud_or_fail(what: str, store) -> None:
    if not env.has_api_key():
        raise UserError(f"{what} is not in the local run store {store.root}, and no W&B API key is "
                        f"configured to look it up on W&B: check the id, pass --store / set "
                        f"{STORE_VAR} to the store that holds it, or set WANDB_API_KEY.")


@cli.group()
def sweep() -> None:
    """W&B sweep configs: validate, create (W&B or the local store), status, list."""


@sweep.command("validate")
@click.argument("file", type=click.Path(dir_okay=False))
def sweep_validate(file: str) -> None:
    """Check FILE against W&B's sweep schema and our train config keys and values (exit 0 or 2)."""
    from cnn_tracker.search.spec import check, load_sweep_file

    config = load_sweep_file(file)
    for warning in check(config, f"file '{file}'"):
        click.echo(f"warning: {warning}", err=True)
    n = len(config.get("parameters") or {})
    click.echo(f"{file}: valid ({config.get('method')} over {n} parameter(s), "
               f"metric {(config.get('metric') or {}).get('name', 'none')})")


@sweep.command("create")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--offline", is_flag=True, help="Create it in the local store (no W&B server needed).")
@click.option("--project", help="W&B project [default: the file's project:, WANDB_PROJECT, cnn-tracker].")
@click.option("--entity", envvar="WANDB_ENTITY", help="W&B entity (online only).")
@_STORE_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def sweep_create(file, offline, project, entity, store_dir, as_json) -> None:
    """Create a sweep from FILE: on W&B (wandb.sweep) or, with --offline, in the local store.

    Without --offline the W&B mode decides as for train: online with an API key, else offline.
    Prints the sweep id and the agent command to run next.
    """
    import os

    from cnn_tracker.search.spec import check, load_sweep_file

    config = load_sweep_file(file)
    for warning in check(config, f"file '{file}'"):
        click.echo(f"warning: {warning}", err=True)
    project = project or config.get("project") or os.environ.get("WANDB_PROJECT") or "cnn-tracker"
    mode = "offline"
    if not offline:
        mode, notice = env.resolve_mode(None)
        if notice:
            click.echo("W&B: no API key found, creating the sweep in the local store "
                       "(pass --offline to say so; set WANDB_API_KEY for a W&B sweep).", err=True)
        if mode == "online" and not env.has_api_key():
            raise UserError("WANDB_MODE is online but no API key is configured: set WANDB_API_KEY, "
                            "or pass --offline.")
        mode = "offline" if mode == "disabled" else mode
    if mode == "offline":
        store = _store(store_dir)
        created = store.create_sweep(config, project)
        sweep_id, where = created.id, str(store.root)
        agent_cmd = f"cnn-tracker agent {sweep_id}"
        if store_dir:
            agent_cmd += f" --store {store.root}"
    else:
        from cnn_tracker.results.remote import create_sweep, sweep_path

        raw_id = create_sweep(config, project, entity)
        sweep_id = sweep_path(raw_id, project, entity)
        where, agent_cmd = "wandb", f"cnn-tracker agent {sweep_id}"
    if as_json:
        _echo_json({"sweep_id": sweep_id, "mode": mode, "project": project, "store": where,
                    "method": config.get("method"), "agent_command": agent_cmd})
        return
    click.echo(f"created {mode} sweep {sweep_id} ({config.get('method')}, project {project}"
               + (f", store {where}" if mode == "offline" else "") + ")")
    click.echo(f"run agents with:  {agent_cmd}  [--agents N | --gpus 0,1,...] [--count N]")


@sweep.command("status")
@click.argument("sweep_id")
@_STORE_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def sweep_status(sweep_id, store_dir, as_json) -> None:
    """Runs of SWEEP_ID with state, parameters, metric and epochs done; the best run."""
    from cnn_tracker.results.local import format_status
    from cnn_tracker.results.local import sweep_status as local_status

    store = _store(store_dir)
    if "/" not in sweep_id and store.find_sweep(sweep_id) is not None:
        status = local_status(store, sweep_id)
    else:
        _cloud_or_fail(f"sweep '{sweep_id}'", store)
        from cnn_tracker.results.remote import sweep_path
        from cnn_tracker.results.remote import sweep_status as cloud_status

        status = cloud_status(sweep_path(sweep_id, os.environ.get("WANDB_PROJECT"),
                                         os.environ.get("WANDB_ENTITY")))
    if as_json:
        _echo_json(status)
    else:
        click.echo(format_status(status))


@sweep.command("list")
@_STORE_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def sweep_list(store_dir, as_json) -> None:
    """Sweeps in the local run store, with run counts and the best metric."""
    from cnn_tracker.results.local import format_list
    from cnn_tracker.results.local import sweep_list as local_list

    store = _store(store_dir)
    items = local_list(store)
    if as_json:
        _echo_json(items)
    elif not items:
        click.echo(f"no sweeps in {store.root} yet; create one with "
                   "`cnn-tracker sweep create sweeps/smoke_random.yaml --offline`")
    else:
        click.echo(format_list(items))


@cli.group("store")
def store_group() -> None:
    """The local run store (SQLite): check it, recover a damaged one."""


@store_group.command("check")
@_STORE_OPTION
def store_check(store_dir) -> None:
    """Open the store and verify its integrity (exit 0, or 2 with a recovery hint)."""
    store = _store(store_dir)
    if not store.exists():
        raise UserError(f"there is no run store at {store.path} yet: pass --store / set {STORE_VAR}.")
    store.open()
    runs, sweeps = store.runs(with_history=False), store.sweeps()
    click.echo(f"{store.path}: ok ({len(sweeps)} sweep(s), {len(runs)} run(s))")


@store_group.command("recover")
@_STORE_OPTION
def store_recover(store_dir) -> None:
    """Copy every readable sweep, run and epoch of a damaged store into a fresh one.

    The damaged file is kept beside it as store.db.damaged-<time>; nothing is deleted.
    """
    from cnn_tracker.store.db import recover

    result = recover(store_dir)
    counts = ", ".join(f"{n} {table}" for table, n in result["tables"].items())
    click.echo(f"recovered {counts} into {result['store']}; the damaged file is {result['damaged']}")


def _parse_gpus(value: str | None) -> list[str] | None:
    if value is None:
        return None
    if value.strip().lower() == "all":
        import torch

        n = torch.cuda.device_count()
        if n == 0:
            raise UserError("--gpus all: no CUDA GPU is visible here. Use --agents N on CPU.")
        return [str(i) for i in range(n)]
    gpus = [g.strip() for g in value.split(",") if g.strip()]
    if not gpus or not all(g.isdigit() for g in gpus) or len(set(gpus)) != len(gpus):
        raise UserError(f"invalid --gpus {value!r}: give distinct GPU indices like 0,1,2 (or 'all').")
    return gpus


@cli.command()
@click.argument("sweep_id")
@click.option("--count", type=click.IntRange(min=1), help="Trials per agent [default: until the sweep is done].")
@click.option("--gpus", help="One agent per listed GPU, e.g. 0,1,2,3 (or 'all'); each sees only its GPU.")
@click.option("--agents", type=click.IntRange(min=1), default=1, show_default=True,
              help="Agents on this machine when no --gpus (CPU threads are split between them).")
@click.option("--max-failures", type=click.IntRange(min=1), default=3, show_default=True,
              help="Stop an agent after this many failed trials in a row.")
@click.option("--stagger", type=click.FloatRange(min=0), help="Seconds between agent starts "
              "[default: 1 for local sweeps, 5 for W&B].")
@click.option("--project", envvar="WANDB_PROJECT", help="W&B project of a W&B sweep id.")
@click.option("--entity", envvar="WANDB_ENTITY", help="W&B entity of a W&B sweep id.")
@_STORE_OPTION
@click.option("--stale-after", type=click.FloatRange(min=1), default=STALE_SECONDS, show_default=True,
              metavar="SECONDS", help="Mark a running trial of a local sweep crashed when its "
              "heartbeat is this old (its process was killed).")
@click.option("--name", default="agent", hidden=True)
@click.option("--quiet-trials", is_flag=True, help="Do not echo the trials' output (it is always "
              "in the store's sweep folder).")
def agent(sweep_id, count, gpus, agents, max_failures, stagger, project, entity, store_dir,
          stale_after, name, quiet_trials) -> None:
    """Run trials of SWEEP_ID: a local sweep (offline engine) or a W&B sweep (wandb agent).

    \b
    cnn-tracker agent abc123xy                 one agent on this machine
    cnn-tracker agent abc123xy --agents 2      two CPU agents, cores split between them
    cnn-tracker agent me/proj/abc123xy --gpus 0,1,2,3   one W&B agent per GPU

    Ctrl-C stops all agents and their trials cleanly.
    """
    from cnn_tracker.search.agent import (
        agent_slots,
        launch,
        local_agent_command,
        run_agent,
        wandb_agent_command,
        wandb_agent_env,
    )

    stale_floor = 3 * heartbeat_seconds()
    if stale_after < stale_floor:
        raise UserError(f"--stale-after {stale_after:g} is shorter than three heartbeats "
                        f"({stale_floor:g} s): live trials would be marked crashed. Give at least "
                        f"{stale_floor:g}, or lower {HEARTBEAT_VAR}.")
    gpu_list = _parse_gpus(gpus)
    if gpu_list and agents != 1:
        raise UserError("give either --gpus (one agent per GPU) or --agents N (CPU), not both.")
    slots = agent_slots(gpu_list, agents)
    store = _store(store_dir)
    local = store.find_sweep(sweep_id) if "/" not in sweep_id else None
    if local is not None:
        if len(slots) == 1:
            os.environ.update(slots[0])
            sys.exit(run_agent(store, sweep_id, count=count, max_failures=max_failures, name=name,
                               echo=click.echo, stream=not quiet_trials, stale_seconds=stale_after))
        commands = [local_agent_command(sweep_id, store=store, count=count,
                                        max_failures=max_failures, name=f"agent-{i}",
                                        stale_after=stale_after)
                    for i in range(len(slots))]
        sys.exit(launch(commands, slots, stagger=1.0 if stagger is None else stagger, echo=click.echo))
    _cloud_or_fail(f"sweep '{sweep_id}'", store)
    from cnn_tracker.results.remote import sweep_path

    path = sweep_path(sweep_id, project, entity)
    command = wandb_agent_command(path, count=count, max_failures=max_failures)
    click.echo(f"W&B sweep {path}: starting {len(slots)} `wandb agent` process(es)")
    sys.exit(launch([command] * len(slots), [{**wandb_agent_env(), **slot} for slot in slots],
                    stagger=5.0 if stagger is None else stagger, echo=click.echo))


@cli.command()
@click.argument("target")
@click.option("--metric", help="Rank by this metric [default: the sweep's, else val/accuracy].")
@click.option("--goal", type=click.Choice(["maximize", "minimize"]),
              help="[default: the sweep's; for other metrics minimize losses, maximize the rest]")
@click.option("--download", type=click.Path(file_okay=False, path_type=Path),
              help="Put the best checkpoint in this folder as best.pt.")
@click.option("--entity", envvar="WANDB_ENTITY", help="W&B entity for a W&B project or sweep.")
@_STORE_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def best(target, metric, goal, download, entity, store_dir, as_json) -> None:
    """The best run of a sweep or project, its config, metrics and best checkpoint.

    TARGET is a local sweep id or project name (from the local run store), or a W&B sweep
    (entity/project/sweep_id) or project ([entity/]project). For W&B it pulls the run's
    model-<run>:best artifact, the best-by-validation checkpoint. The file works directly with
    `cnn-tracker evaluate` and `cnn-tracker predict`.
    """
    from cnn_tracker.results.local import best_local, copy_checkpoint

    store = _store(store_dir)
    found = best_local(store, target, metric, goal) if "/" not in target else None
    if found is not None:
        if download:
            found["downloaded"] = str(copy_checkpoint(found["checkpoint"], download))
    else:
        _cloud_or_fail(f"'{target}' (neither a sweep nor a project with runs)", store)
        from cnn_tracker.results.remote import best_run, download_checkpoint

        found = best_run(target, metric, goal, entity)
        if download:
            found["downloaded"] = str(download_checkpoint(found["checkpoint"], download))
    if as_json:
        _echo_json(found)
        return
    m = found["metric"]
    value = f"{m['value']:.4f}" if isinstance(m["value"], float) else m["value"]
    click.echo(f"best run of {target}: {found['run_id']} ({found.get('run_name')}, {found['state']}), "
               f"{m['name']} {value} ({m['goal']})")
    test = found["metrics"].get("test/accuracy")
    if test is not None:
        click.echo(f"test accuracy {test:.4%}")
    click.echo("config:")
    for key, val in found["config"].items():
        click.echo(f"  {key}: {val}")
    ckpt = found.get("downloaded") or found["checkpoint"]
    click.echo(f"checkpoint: {ckpt}")
    if found.get("downloaded") or found["source"] == "local":
        click.echo(f"next: cnn-tracker evaluate {ckpt}")


@cli.command()
@click.argument("target", required=False)
@click.option("--project", help="Every run of this project (local, or [entity/]project on W&B).")
@click.option("--runs", "run_ids", help="These runs, comma-separated (local ids, or W&B entity/project/id).")
@click.option("--by", help="Group by config keys, comma-separated (e.g. model or model,dataset): "
              "mean ± std across each group's runs (seeds).")
@click.option("--metric", default="val/accuracy", show_default=True,
              help="The metric of the sweep chart (and a column, when not val/accuracy).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write the table (compare.md/.csv/.json) and the PNG charts into this folder.")
@click.option("--format", "fmt", type=click.Choice(["table", "markdown", "csv", "json"]),
              default="table", show_default=True)
@click.option("--all", "all_states", is_flag=True, help="Include runs that did not finish "
              "(running, crashed, failed, killed); by default only finished and stopped runs.")
@click.option("--entity", envvar="WANDB_ENTITY", help="W&B entity for a W&B project or sweep.")
@_STORE_OPTION
def compare(target, project, run_ids, by, metric, out_dir, fmt, all_states, entity, store_dir) -> None:
    """Compare runs: one row per run (or per group with --by), and charts with --out.

    TARGET is a sweep id (local, or entity/project/sweep_id on W&B). Without TARGET, --project or
    --runs, every run in the local store is compared. Rows: model, dataset, parameter count, best
    validation accuracy, test accuracy, epochs, training time (epochs only) and train images/s.
    Charts: test accuracy and training time per group (seed 001's accuracy-vs-model chart), and
    for a sweep the metric against each swept parameter.
    """
    from cnn_tracker.files import atomic_write
    from cnn_tracker.results.compare import (
        DONE,
        build_table,
        chart_models,
        chart_parameters,
        local_rows,
        render,
        wandb_rows,
    )
    from cnn_tracker.results.local import searched_parameters

    ids = [r.strip() for r in run_ids.split(",") if r.strip()] if run_ids else None
    keys = [k.strip() for k in by.split(",") if k.strip()] if by else None
    for key in keys or []:
        if key not in KEYS:
            raise unknown_key_error(key, "--by")
    store = _store(store_dir)
    remote = any("/" in x for x in [target or "", project or "", *(ids or [])])
    rows, sweep_config, where = [], None, ""
    if not remote:
        local_sweep = store.find_sweep(target) if target is not None else None
        if target is None or local_sweep is not None:
            rows = local_rows(store, sweep=target, project=project, run_ids=ids, metric=metric)
            sweep_config = local_sweep.config if local_sweep is not None else None
        where = f"local store {store.root}"
        if not rows and (target or project):
            _cloud_or_fail(f"'{target or project}' (no runs)", store)
            remote = True
    if remote:
        rows, sweep_config = wandb_rows(sweep=target, project=project, run_ids=ids, entity=entity,
                                        metric=metric)
        where = "W&B"
    if not all_states:
        rows = [r for r in rows if r.state in DONE]
    if not rows:
        raise UserError(f"no {'finished ' if not all_states else ''}runs to compare in {where}"
                        f"{' for ' + (target or project) if target or project else ''}: train some "
                        "first, or pass --all to include unfinished runs.")
    table = build_table(rows, keys, metric)
    click.echo(render(table, fmt))
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, form in (("compare.md", "markdown"), ("compare.csv", "csv"), ("compare.json", "json")):
            atomic_write(out_dir / name, render(table, form) + "\n")
        label = target or project or f"{len(rows)} runs"
        charts = [chart_models(rows, keys or ["model"], out_dir / "compare.png",
                               f"{label}: {len(rows)} runs")]
        params = searched_parameters(sweep_config) if sweep_config else []
        if params:
            charts.append(chart_parameters(rows, params, metric, out_dir / "parameters.png",
                                           f"sweep {target}: {metric} by parameter"))
        click.echo(f"wrote {', '.join(str(p) for p in charts)} and compare.md/.csv/.json in {out_dir}",
                   err=True)


@cli.command()
@click.option("--dataset", type=click.Choice(DATASETS), default="mnist",
              show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--repeats", type=click.IntRange(1, 100), default=3, show_default=True,
              help="Throughput and W&B overhead: median of N alternating runs.")
@click.option("--tta-repeats", type=click.IntRange(1, 100), default=1, show_default=True,
              help="Time to target of the fast preset: median over seeds 0..N-1.")
@click.option("--target", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="Test accuracy to reach [default: 0.99 mnist, 0.9264 fashion-mnist].")
@click.option("--reference-budget", type=click.FloatRange(min=1), default=900, show_default=True,
              help="Seconds of reference-loop training before it gives up on the target.")
@click.option("--reference-model", type=click.Choice(MODELS),
              default="tinyvgg", show_default=True, help="Model of the seed-style reference loop.")
@click.option("--reference-hidden", type=click.IntRange(1, 4096), default=10, show_default=True,
              help="hidden_units of the reference model (the throughput comparison uses it too).")
@click.option("--overhead-epochs", type=click.IntRange(1, 100), default=2, show_default=True,
              help="Epochs of the W&B overhead runs and of the peak-RSS run.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a hyperparameter of the fast preset (repeatable), e.g. --set batch_size=512.")
@click.option("--data-dir", "data_dir", help="Dataset root.")
@click.option("--quick", is_flag=True, help="Smallest budget of every measurement (checks the harness; "
              "not a measurement).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench(dataset, device, repeats, tta_repeats, target, reference_budget, reference_model,
          reference_hidden, overhead_epochs, overrides, data_dir, quick, as_json) -> None:
    """Measure training speed: our trainer vs a seed-style loop, side by side in one process.

    Throughput on the same model; time to a target test accuracy (fast preset vs the seed-style
    loop); W&B offline vs disabled overhead and init/finish time; peak RSS of a train process.
    A benchmark, not a test: run it on a quiet machine and compare ratios, not absolute times.
    """
    from cnn_tracker.tools.bench import (
        BenchOptions,
        Reference,
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
        reference=Reference(model=reference_model, hidden_units=reference_hidden),
    )
    fast_config(opts)  # a bad --set fails here, before any measurement
    report = run_bench(opts, env.data_dir(data_dir), echo=(lambda s: None) if as_json else
                       (lambda s: click.echo(f"... {s}", err=True)))
    if as_json:
        _echo_json(report)
    else:
        click.echo(format_report(report))


def main() -> None:
    """Entry point: user errors print one line and exit 2; --debug shows the traceback."""
    debug = "--debug" in sys.argv[1:]
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # one line per epoch, also in agent logs
    try:
        code = cli.main(standalone_mode=False)
        if isinstance(code, int) and code:  # click returns the code of an Exit it caught
            sys.exit(code)
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
