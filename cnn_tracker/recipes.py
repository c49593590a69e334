"""What a run trains when nothing else says: each dataset's default recipe and the presets; and
what ``cnn-tracker bench`` measures them against (its targets and reference loops).

Data only (the one place these numbers live); :mod:`cnn_tracker.config` layers them:
TrainConfig's defaults < ``DATASET_DEFAULTS[dataset]`` < ``PRESETS[name][dataset]`` < config file
< CLI options < a sweep's values. The measurements behind each recipe are in the README
(Results, Performance); ``configs/*.yaml`` hold the longer recipes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# The recipe a run gets for its dataset, on top of TrainConfig's defaults, when nothing else sets
# a key. Measured (3 seeds, 2-core CPU): see README, Results. MODEL_BOUND keys are the recipe
# model's: a run that picks another model gets that model's own width and dropout.
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "mnist": {"model": "fashioncnn", "hidden_units": 256, "dropout": 0.3, "rotate": 10.0},
    "fashion-mnist": {"model": "fashioncnn", "hidden_units": 256, "dropout": 0.3, "epochs": 20},
}
# tta is left at null (TrainConfig): it then follows augment, so a recipe with flips tests with
# them and one without does not (see training.models.flips_at_test).
MODEL_BOUND = ("hidden_units", "dropout")

# Named starting points, per dataset: defaults < preset < config file < CLI < sweep values.
# "fast" is the shortest CPU recipe measured for the bench targets (`cnn-tracker bench`): 99.0%
# MNIST test accuracy after one epoch, and the 92.64% Fashion-MNIST reference. See README, Performance.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # bf16 autocast on the CPU too (auto picks it on a GPU): 1.5-1.7x the images/s of fp32 on a
    # CPU with native bf16 (AVX512-BF16 / AMX); a CPU without it should take --precision fp32.
    "fast": {
        # Batch 192 at lr 0.018: 99.08-99.15% for seeds 0-4 after the epoch, in 3.4-4.2 s
        # (batch 64 at 0.006: 5.5-6.4 s). Batch 256 is faster still but left seeds at 98.8-99.0%.
        # rotate 0: no augmentation of any kind (the MNIST recipe's rotations cost ~1.4 s here).
        "mnist": {"model": "fastcnn", "epochs": 1, "batch_size": 192, "lr": 0.018,
                  "label_smoothing": 0.1, "augment": False, "rotate": 0.0, "batch_norm": False,
                  "hidden_units": 128, "dropout": 0.0, "precision": "bf16"},
        # FashionCNN without BatchNorm at width 256, the bench's Fashion-MNIST reference model
        # (at width 128 neither side reached 92.64% reliably). Dropout 0.1, 6 epochs: seeds 0/1/2
        # pass 92.64% at epoch 5 (92.75 / 92.87 / 92.70%); the 6th is the margin. Dropout 0.25
        # over 7 epochs needed epochs 6/6/7. No augment, so no tta: the model never sees a
        # mirrored image, and averaging with the mirror cost it 7-11 points once.
        "fashion-mnist": {"model": "fashioncnn", "epochs": 6, "batch_size": 128, "lr": 0.004,
                          "label_smoothing": 0.1, "augment": False,
                          "batch_norm": False, "hidden_units": 256, "dropout": 0.1,
                          "precision": "bf16"},
    },
}


# `cnn-tracker bench`: the test accuracy each dataset's time to target is measured to, and the
# reference loop it is measured against (tools.reference runs it). 0.9264 is the TinyVGG
# reference project's Fashion-MNIST result.
BENCH_TARGETS = {"mnist": 0.99, "fashion-mnist": 0.9264}


@dataclass(frozen=True)
class Reference:
    """The reference loop's setup: the reference projects' model, batch size and optimizer."""

    model: str = "tinyvgg"
    hidden_units: int = 10  # TinyVGG as the reference projects' tutorial trains it
    batch_size: int = 32
    lr: float = 1e-3  # Adam


# Per dataset, the reference loop that reaches the bench's target.
BENCH_REFERENCES = {
    "mnist": Reference(),
    # width 256: at 128 this loop levelled off at 92.62-92.68% (it missed 92.64% in two bench runs
    # of three); at 256 it reaches 92.66% at epoch 12 (seeded, so every run on one machine alike)
    "fashion-mnist": Reference(model="fashioncnn", hidden_units=256, batch_size=128),
}
