"""The one typed training config, and how it is built from every source.

Precedence, lowest first: ``TrainConfig`` defaults < the dataset's recipe (``DATASET_DEFAULTS``) <
``--preset`` < ``--config FILE.yaml`` < CLI options < values a W&B sweep put into ``wandb.config``. Every source goes through :func:`make_config`, so a
typo or a bad value is reported the same way wherever it came from: the key, the value, the
allowed range and, for an unknown key, the closest valid key and the full list.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

from cnn_tracker.errors import ConfigError, closest
from cnn_tracker.inputs import clip, load_config_file
from cnn_tracker.recipes import DATASET_DEFAULTS, MODEL_BOUND, PRESETS

DATASETS = ("mnist", "fashion-mnist")
MODELS = ("mlp", "tinyvgg", "fashioncnn", "deepcnn", "lenet", "fastcnn", "stridedcnn")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("none", "onecycle", "cosine")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
WANDB_MODES = ("online", "offline", "disabled")

# What a training run logs: once per epoch (history; the x-axis is `epoch`) and once at the end
# (summary). Sweep configs may only name these as their metric.
EPOCH_METRICS = ("val/accuracy", "val/loss", "train/loss", "train/accuracy", "lr",
                 "perf/epoch_seconds", "perf/images_per_second")
SUMMARY_METRICS = ("test/accuracy", "test/loss", "best/val_accuracy", "best/val_loss",
                   "best/epoch", "model/n_params", "perf/train_seconds", "perf/seconds_per_epoch",
                   "perf/data_seconds")


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one training run. Everything here is logged as the W&B run config."""

    dataset: str = "mnist"  # one of DATASETS
    model: str = "fashioncnn"  # one of MODELS
    epochs: int = 15  # full passes over the training split (60k - val_size images)
    batch_size: int = 128  # images per optimizer step
    lr: float = 3e-3  # peak learning rate (the OneCycle maximum; constant when scheduler=none)
    optimizer: str = "adamw"  # one of OPTIMIZERS
    momentum: float = 0.9  # SGD momentum (Nesterov); ignored by adam/adamw
    weight_decay: float = 5e-4  # decoupled for adamw, L2 for adam/sgd
    hidden_units: int | None = None  # width knob of the model, 1-4096; None = the model's default
    dropout: float | None = None  # dropout before the classifier; None = the model's default
    batch_norm: bool = True  # BatchNorm after every conv (not in the reference layouts)
    scheduler: str = "onecycle"  # one of SCHEDULERS, stepped per batch
    label_smoothing: float = 0.1  # cross-entropy label smoothing, 0 <= x < 1
    augment: bool = True  # random shifts of up to 2 px (+ horizontal flips on fashion-mnist)
    rotate: float = 0.0  # random rotations of up to +-rotate degrees in training (0 = none)
    zoom: float = 0.0  # random scaling of each training image by 1-zoom to 1+zoom (0 = none)
    tta: bool | None = None  # evaluate each image and its mirror, average the logits (fashion-
    # mnist only); None = as augment, whose flips teach the model the mirrored view
    ema: float = 0.0  # decay of a (bias-corrected) exponential moving average of the weights and
    # BatchNorm statistics, updated every step; validation, test and checkpoints use it. 0 = off
    val_size: int = 5000  # images held out of the training set for model selection
    seed: int = 0  # seeds the split, init, shuffling and augmentation
    device: str = "auto"  # one of DEVICES; auto = cuda when available
    log_misclassified: int = 64  # misclassified test images logged in the W&B table (0 = none)
    log_every: int = 0  # batches between per-batch loss logs (0 = per epoch only, the default)
    eval_batch_size: int = 1000  # images per forward pass when evaluating (no gradients)
    deterministic: bool = False  # torch deterministic algorithms (slower; exact re-runs)
    precision: str = "auto"  # one of PRECISIONS; auto = bf16 autocast on a CUDA GPU, fp32 on CPU
    channels_last: bool = True  # NHWC memory format for conv nets (faster convs on CPU and GPU)
    compile: bool = False  # torch.compile the model (pays off only for long runs; slow first epoch)


@dataclass(frozen=True)
class RunSettings:
    """W&B run settings: where and how a run is tracked, never hyperparameters."""

    project: str = "cnn-tracker"
    entity: str | None = None
    group: str | None = None
    name: str | None = None
    tags: tuple[str, ...] = ()
    notes: str | None = None
    job_type: str | None = None  # None = WANDB_JOB_TYPE, else "train"
    mode: str | None = None  # None = resolve from the environment (see cnn_tracker.env)


KEYS: tuple[str, ...] = tuple(f.name for f in fields(TrainConfig))
_FIELDS = {f.name: f for f in fields(TrainConfig)}

# Allowed values and ranges, each as (check, human description).
_CHOICES: dict[str, tuple[str, ...]] = {
    "dataset": DATASETS,
    "model": MODELS,
    "optimizer": OPTIMIZERS,
    "scheduler": SCHEDULERS,
    "device": DEVICES,
    "precision": PRECISIONS,
}
_RANGES: dict[str, tuple[Any, str]] = {
    "epochs": (lambda v: 1 <= v <= 10_000, "an integer from 1 to 10000"),
    "batch_size": (lambda v: 1 <= v <= 65_536, "an integer from 1 to 65536"),
    "lr": (lambda v: 0 < v <= 10, "a number > 0 and <= 10"),
    "momentum": (lambda v: 0 <= v < 1, "a number >= 0 and < 1"),
    "weight_decay": (lambda v: 0 <= v < 1, "a number >= 0 and < 1"),
    "hidden_units": (lambda v: v is None or 1 <= v <= 4096, "an integer from 1 to 4096, or null"),
    "dropout": (lambda v: v is None or 0 <= v < 1, "a number >= 0 and < 1, or null"),
    "label_smoothing": (lambda v: 0 <= v < 1, "a number >= 0 and < 1"),
    "rotate": (lambda v: 0 <= v <= 180, "a number of degrees from 0 to 180 (0 = no rotation)"),
    "zoom": (lambda v: 0 <= v <= 0.5, "a number from 0 to 0.5 (0.1 = 0.9x to 1.1x; 0 = none)"),
    "ema": (lambda v: 0 <= v < 1, "a number >= 0 and < 1 (a decay such as 0.999; 0 = off)"),
    "val_size": (lambda v: 1 <= v, "an integer >= 1 (and smaller than the training set)"),
    "seed": (lambda v: 0 <= v < 2**63, "an integer >= 0"),
    "log_misclassified": (lambda v: 0 <= v <= 10_000, "an integer from 0 to 10000"),
    "log_every": (lambda v: 0 <= v <= 1_000_000, "an integer >= 0 (0 = never per batch)"),
    "eval_batch_size": (lambda v: 1 <= v <= 65_536, "an integer from 1 to 65536"),
}

# Common spellings from other codebases, mapped to our key; used only to suggest the fix.
ALIASES = {
    "learning_rate": "lr", "lr_rate": "lr", "learningrate": "lr",
    "num_epochs": "epochs", "n_epochs": "epochs", "max_epochs": "epochs",
    "bs": "batch_size", "batchsize": "batch_size", "train_batch_size": "batch_size",
    "hidden": "hidden_units", "hidden_size": "hidden_units", "hidden_dim": "hidden_units",
    "width": "hidden_units", "wd": "weight_decay", "l2": "weight_decay",
    "dropout_rate": "dropout", "drop_rate": "dropout", "smoothing": "label_smoothing",
    "optim": "optimizer", "opt": "optimizer", "lr_scheduler": "scheduler",
    "schedule": "scheduler", "arch": "model", "architecture": "model", "data": "dataset",
    "random_seed": "seed", "augmentation": "augment", "data_augmentation": "augment",
    "rotation": "rotate", "max_rotation": "rotate", "degrees": "rotate",
    "zoom_range": "zoom", "scale": "zoom", "random_scale": "zoom", "random_zoom": "zoom",
    "batchnorm": "batch_norm", "bn": "batch_norm",
    "test_time_augmentation": "tta", "flip_tta": "tta", "tta_flip": "tta",
    "ema_decay": "ema", "model_ema": "ema", "weight_ema": "ema", "ema_rate": "ema",
}

_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off"}
_NULL = {"none", "null", "~", ""}


def unknown_key_error(key: str, source: str) -> ConfigError:
    """The message for a key that is not a training-config key."""
    hint = ALIASES.get(key.lower())
    if hint is None:
        match = closest(key.lower(), [*KEYS, *ALIASES])
        hint = ALIASES.get(match, match) if match else None
    did_you_mean = f" Did you mean '{hint}'?" if hint else ""
    return ConfigError(
        f"unknown config key '{key}' (from {source}).{did_you_mean} "
        f"Valid keys: {', '.join(KEYS)}."
    )


def parse_bool(value: Any) -> bool | None:
    """True/False from the forms users and W&B agents use ('True', 'false', 1, 'yes'), else None."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        low = value.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
    return None


def _coerce(key: str, value: Any, source: str) -> Any:
    """Convert ``value`` to the type of field ``key``; raise ConfigError naming both if it can't."""
    f = _FIELDS[key]
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    optional = "None" in kind
    base = kind.replace(" | None", "").strip()

    def bad(expected: str) -> ConfigError:
        return ConfigError(
            f"invalid value {clip(value)} for '{key}' (from {source}): expected {expected}."
        )

    if optional and (value is None or (isinstance(value, str) and value.strip().lower() in _NULL)):
        return None
    if base == "bool":
        parsed = parse_bool(value)
        if parsed is None:
            raise bad("true or false")
        return parsed
    if base == "int":
        if isinstance(value, bool):
            raise bad("an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):  # exact: "7" and "1e3" are integers, "2.5" is not
            try:
                return int(value.strip())
            except ValueError:
                pass
            try:
                as_float = float(value)
            except ValueError:
                raise bad("an integer") from None
            if as_float.is_integer() and abs(as_float) < 2**53:
                return int(as_float)
        raise bad("an integer")
    if base == "float":
        if isinstance(value, bool):
            raise bad("a number")
        try:
            number = float(value) if isinstance(value, (int, float, str)) else None
        except OverflowError:  # an int too large for a float
            raise bad("a finite number") from None
        except ValueError:
            raise bad("a number") from None
        if number is None:
            raise bad("a number")
        if not math.isfinite(number):
            raise bad("a finite number")
        return number
    # str
    if not isinstance(value, str):
        raise bad(f"one of {', '.join(_CHOICES.get(key, ()))}" if key in _CHOICES else "a string")
    return value.strip().lower()


def _check(key: str, value: Any, source: str) -> None:
    if key in _CHOICES and value not in _CHOICES[key]:
        hint = closest(value, _CHOICES[key])
        did_you_mean = f" Did you mean '{hint}'?" if hint else ""
        raise ConfigError(
            f"invalid value {clip(value)} for '{key}' (from {source}).{did_you_mean} "
            f"Choose one of: {', '.join(_CHOICES[key])}."
        )
    if key in _RANGES:
        ok, description = _RANGES[key]
        if not ok(value):
            raise ConfigError(
                f"invalid value {clip(value)} for '{key}' (from {source}): must be {description}."
            )


def make_config(
    overrides: Mapping[str, Any] | None = None,
    *,
    base: TrainConfig | None = None,
    source: str = "config",
) -> TrainConfig:
    """A validated TrainConfig: ``base`` updated with ``overrides``.

    Without ``base``, the base is the defaults of the dataset (and model) ``overrides`` names,
    MNIST's when it names none: see :func:`dataset_defaults`.
    """
    if base is None:
        base = _defaults_for(overrides or {}, source)
    values = asdict(base)
    for key, raw in (overrides or {}).items():
        if key not in _FIELDS:
            raise unknown_key_error(str(key), source)
        values[key] = _coerce(key, raw, source)
    for key, value in values.items():
        _check(key, value, source)
    return TrainConfig(**values)


@functools.lru_cache(maxsize=None)  # a frozen TrainConfig per (dataset, model): built once
def dataset_defaults(dataset: str, model: str | None = None) -> TrainConfig:
    """The config a run on ``dataset`` gets when nothing else sets a key; for another ``model``
    than the recipe's, without the recipe's MODEL_BOUND keys."""
    recipe = dict(DATASET_DEFAULTS[dataset])
    if model is not None and model != recipe.get("model", TrainConfig.model):
        recipe = {k: v for k, v in recipe.items() if k not in MODEL_BOUND}
    return make_config({"dataset": dataset, **recipe}, base=TrainConfig(),
                       source=f"the {dataset} defaults")


def _defaults_for(values: Mapping[str, Any], source: str, preset: str | None = None) -> TrainConfig:
    """The defaults for the dataset and model ``values`` (or else the preset) name."""
    given = {k: v for k, v in values.items() if k in ("dataset", "model")}
    chosen = make_config(given, base=TrainConfig(), source=source)
    model = chosen.model if "model" in given else PRESETS.get(preset or "", {}).get(
        chosen.dataset, {}).get("model")
    return dataset_defaults(chosen.dataset, model)


def redefault(cfg: TrainConfig, dataset: str) -> TrainConfig:
    """``cfg`` moved to ``dataset``: keys at their defaults take ``dataset``'s, others are kept
    (for a sweep that sets the dataset only in ``wandb.config``, without ``${args}``)."""
    if dataset == cfg.dataset:
        return cfg
    old = asdict(dataset_defaults(cfg.dataset))
    kept = {k: v for k, v in asdict(cfg).items() if v != old[k]}
    return make_config({**kept, "dataset": dataset}, base=dataset_defaults(dataset),
                       source="wandb.config")


def preset_values(preset: str, dataset: str) -> dict[str, Any]:
    """The hyperparameters of ``preset`` for ``dataset``."""
    if preset not in PRESETS:
        hint = closest(preset, list(PRESETS))
        did_you_mean = f" Did you mean '{hint}'?" if hint else ""
        raise ConfigError(f"unknown preset {preset!r}.{did_you_mean} "
                          f"Choose one of: {', '.join(PRESETS)}.")
    return {"dataset": dataset, **PRESETS[preset][dataset]}


def config_from_sources(
    config_file: str | os.PathLike[str] | None,
    cli: Mapping[str, Any],
    preset: str | None = None,
) -> TrainConfig:
    """The dataset's defaults < preset < config file < CLI options, each validated with its own
    source name.

    Defaults and presets are per dataset, so the dataset is read from the config file and CLI first.
    """
    file_values = load_config_file(config_file) if config_file is not None else {}
    cfg = _defaults_for({**file_values, **cli}, "command line", preset)
    if preset is not None:
        cfg = make_config(preset_values(preset, cfg.dataset), base=cfg, source=f"preset {preset}")
    if config_file is not None:
        cfg = make_config(file_values, base=cfg, source=f"config file {config_file}")
    return make_config(cli, base=cfg, source="command line")


