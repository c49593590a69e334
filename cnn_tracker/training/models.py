"""The models, by name: the five reference architectures, FastCNN and StridedCNN.

Constructors take explicit arguments and never read global config. Every flattened size is
derived from ``in_shape`` by a dummy forward pass, so sweeps can change widths freely.
``batch_norm=True`` puts BatchNorm after every conv (not part of the reference layouts, which stay the
default).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from cnn_tracker.config import TrainConfig
from cnn_tracker.errors import ConfigError
from cnn_tracker.training.data import get_spec

InShape = tuple[int, int, int]


def _conv(cin: int, cout: int, batch_norm: bool, padding: int = 1, kernel: int = 3,
          stride: int = 1) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding,
                                         bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.ReLU(inplace=True))
    return layers


def _pooled_conv(cin: int, cout: int, batch_norm: bool, padding: int = 1,
                 kernel: int = 3) -> list[nn.Module]:
    """Conv (-> BatchNorm) -> MaxPool2 -> ReLU: :func:`_conv` + MaxPool2 with the pool moved
    before the ReLU. Max-pooling commutes with ReLU, so values and gradients are Conv -> ReLU ->
    Pool's, with the ReLU on a quarter of the values; the parameters sit at the same indices, so
    checkpoints load either way."""
    *conv, relu = _conv(cin, cout, batch_norm, padding=padding, kernel=kernel)
    return [*conv, nn.MaxPool2d(2), relu]


def _flat_size(features: nn.Module, in_shape: InShape) -> int:
    # Two images: BatchNorm in training mode needs more than one value per channel, and
    # StridedCNN's last map is 1x1 (zeros give every BatchNorm the statistics one image gave).
    # The forked generator keeps a Dropout inside ``features`` from shifting the layers'
    # seeded initialization that follows.
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        return int(features(torch.zeros(2, *in_shape))[0].numel())


def _linear_head(features: nn.Module, in_shape: InShape, dropout: float,
                 num_classes: int) -> nn.Sequential:
    """Dropout -> Linear(flattened ``features`` -> classes)."""
    return nn.Sequential(nn.Dropout(dropout),
                         nn.Linear(_flat_size(features, in_shape), num_classes))


def _strided_stage(cin: int, cout: int, batch_norm: bool, dropout: float) -> list[nn.Module]:
    """StridedCNN's stage: Conv3x3 -> Conv3x3 (unpadded) -> Conv5x5 stride 2 -> Dropout."""
    return [*_conv(cin, cout, batch_norm, padding=0), *_conv(cout, cout, batch_norm, padding=0),
            *_conv(cout, cout, batch_norm, padding=2, kernel=5, stride=2), nn.Dropout(dropout)]


def _dense_head(n_in: int, hidden: int, dropout: float, num_classes: int) -> nn.Sequential:
    """Linear(n_in -> hidden) -> ReLU -> Dropout -> Linear(hidden -> classes)."""
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
                         nn.Linear(hidden, num_classes))


class Classifier(nn.Module):
    """``features`` (convs) then ``head`` (dense layers); subclasses build both."""

    features: nn.Module
    head: nn.Module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.features(x), 1))


class MLP(Classifier):
    """The MLP-vs-TinyVGG reference's MLP: Flatten -> Linear(784 -> hidden) -> ReLU -> Linear(hidden -> 10)."""

    def __init__(self, in_shape: InShape, num_classes: int, hidden_units: int, dropout: float,
                 batch_norm: bool = False):
        super().__init__()
        self.features = nn.Identity()
        n_in = in_shape[0] * in_shape[1] * in_shape[2]
        self.head = nn.Sequential(
            nn.Linear(n_in, hidden_units), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(hidden_units, num_classes),
        )


class TinyVGG(Classifier):
    """The TinyVGG references (CNN Explainer's layout): 2 x [Conv3x3 -> ReLU -> Conv3x3 -> ReLU -> MaxPool2]."""

    def __init__(self, in_shape: InShape, num_classes: int, hidden_units: int, dropout: float,
                 batch_norm: bool = False):
        super().__init__()
        c, h = in_shape[0], hidden_units
        self.features = nn.Sequential(
            *_conv(c, h, batch_norm), *_conv(h, h, batch_norm), nn.MaxPool2d(2),
            *_conv(h, h, batch_norm), *_conv(h, h, batch_norm), nn.MaxPool2d(2),
        )
        self.head = _linear_head(self.features, in_shape, dropout, num_classes)


class FashionCNN(Classifier):
    """The 92.69% Fashion-MNIST reference: Conv(1->32) -> Pool -> Conv(32->64) -> Pool -> Linear(->hidden) -> Dropout -> 10.

    Its Conv -> ReLU -> Pool blocks pool first (:func:`_pooled_conv`: the same function, about
    1.2x the training images/s under bf16 on a 2-core CPU).
    """

    def __init__(self, in_shape: InShape, num_classes: int, hidden_units: int, dropout: float,
                 batch_norm: bool = False):
        super().__init__()
        self.features = nn.Sequential(
            *_pooled_conv(in_shape[0], 32, batch_norm), *_pooled_conv(32, 64, batch_norm),
        )
        self.head = _dense_head(_flat_size(self.features, in_shape), hidden_units, dropout,
                                num_classes)


class DeepCNN(Classifier):
    """The Typer-CLI MNIST reference: 3 x [Conv -> ReLU -> MaxPool] (32, 64, 128 channels), then 3 dense layers."""

    def __init__(self, in_shape: InShape, num_classes: int, hidden_units: int, dropout: float,
                 batch_norm: bool = False):
        super().__init__()
        self.features = nn.Sequential(
            *_conv(in_shape[0], 32, batch_norm), nn.MaxPool2d(2),
            *_conv(32, 64, batch_norm), nn.MaxPool2d(2),
            *_conv(64, 128, batch_norm), nn.MaxPool2d(2),
        )
        half = max(1, hidden_units // 2)
        self.head = nn.Sequential(
            nn.Linear(_flat_size(self.features, in_shape), hidden_units), nn.ReLU(inplace=True),
            nn.Linear(hidden_units, half), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(half, num_classes),
        )


class LeNet(Classifier):
    """The LeNet-style MNIST reference: Conv(1->6, 3x3) -> Pool -> Conv(6->36, 3x3) -> Pool -> dense(hidden, 84) -> 10."""

    def __init__(self, in_shape: InShape, num_classes: int, hidden_units: int, dropout: float,
                 batch_norm: bool = False):
        super().__init__()
        self.features = nn.Sequential(
            *_conv(in_shape[0], 6, batch_norm, padding=0), nn.MaxPool2d(2),
            *_conv(6, 36, batch_norm, padding=0), nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(
            nn.Linear(_flat_size(self.features, in_shape), hidden_units), nn.ReLU(inplace=True),
            nn.Linear(hidden_units, 84), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(84, num_classes),
        )


class FastCNN(Classifier):
    """A CPU-fast CNN (the fast preset's): Conv5x5(1->16) -> Pool -> Conv5x5(16->32) -> Pool -> dense(hidden) -> 10.

    Unpadded 5x5 convs shrink the maps early (24 -> 12 -> 8 -> 4 px), so a training step costs
    about 1.1M multiply-adds per image: LeNet's speed, with 99% MNIST after one epoch. Each block
    pools before its ReLU (:func:`_pooled_conv`).
    """

    def __init__(self, in_shape: InShape, num_classes: int, hidden_units: int, dropout: float,
                 batch_norm: bool = False):
        super().__init__()
        self.features = nn.Sequential(
            *_pooled_conv(in_shape[0], 16, batch_norm, padding=0, kernel=5),
            *_pooled_conv(16, 32, batch_norm, padding=0, kernel=5),
        )
        self.head = _dense_head(_flat_size(self.features, in_shape), hidden_units, dropout,
                                num_classes)


class StridedCNN(Classifier):
    """An all-convolutional MNIST net, the 32C3-32C3-32C5S2-64C3-64C3-64C5S2-128C4 layout of
    Kaggle's MNIST notebooks: 2 stages of [Conv3x3 -> Conv3x3 -> Conv5x5 stride 2 -> Dropout]
    (w, then 2w channels; 28 -> 24 -> 12 and 12 -> 8 -> 4 px), Conv4x4 (4w) -> Dropout -> Linear.

    Unpadded 3x3 convs and learned stride-2 downsampling in place of pooling; ``hidden_units``
    is the base width w (32: about 15M multiply-adds per image, 3.3x FashionCNN-256's). The one
    ``dropout`` value is used after each stage and before the classifier.
    """

    def __init__(self, in_shape: InShape, num_classes: int, hidden_units: int, dropout: float,
                 batch_norm: bool = False):
        super().__init__()
        w, bn = hidden_units, batch_norm
        self.features = nn.Sequential(
            *_strided_stage(in_shape[0], w, bn, dropout), *_strided_stage(w, 2 * w, bn, dropout),
            *_conv(2 * w, 4 * w, bn, padding=0, kernel=4),
        )
        self.head = _linear_head(self.features, in_shape, dropout, num_classes)


class FlipAveraged(nn.Module):
    """Test-time augmentation: in eval mode, the mean of the logits of each image and its
    mirror.

    Only for datasets whose labels survive a horizontal flip (clothes, not digits). The mode is
    the wrapped model's (the loop toggles only that one): in train mode this is the wrapped
    model itself. Checkpoints hold the wrapped model; the config's ``tta`` rebuilds the wrapper.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.model.training:
            return self.model(x)
        return (self.model(x) + self.model(torch.flip(x, dims=(3,)))) * 0.5


def flips_at_test(tta: bool | None, augment: bool, hflip: bool) -> bool:
    """Whether evaluation averages each image with its mirror: ``tta`` where it is set, else as
    ``augment`` (a model trained on mirrored images is tested with them, one that never saw a
    mirror is not); never on a dataset whose mirror is another image (``hflip`` False: digits)."""
    return hflip and (augment if tta is None else tta)


def with_tta(model: nn.Module, tta: bool | None, augment: bool, hflip: bool) -> nn.Module:
    """``model`` wrapped in :class:`FlipAveraged` where :func:`flips_at_test` says so."""
    return FlipAveraged(model) if flips_at_test(tta, augment, hflip) else model


@dataclass(frozen=True)
class ModelInfo:
    cls: Callable[..., nn.Module]
    hidden_units: int  # default of the width knob (the reference layout's)
    dropout: float  # default dropout before the last layer
    summary: str


REGISTRY: dict[str, ModelInfo] = {
    "mlp": ModelInfo(MLP, 10, 0.0, "MLP (as in the MLP-vs-TinyVGG reference): 784 -> hidden -> 10"),
    "tinyvgg": ModelInfo(TinyVGG, 32, 0.0, "TinyVGG (the 99.42% MNIST / 92.64% Fashion-MNIST reference): 2 double-conv blocks"),
    "fashioncnn": ModelInfo(FashionCNN, 128, 0.5, "FashionCNN (the 92.69% Fashion-MNIST reference): conv 32-64, dense hidden, dropout"),
    "deepcnn": ModelInfo(DeepCNN, 128, 0.0, "DeepCNN (a Typer-CLI MNIST reference): 3 conv stages (32-64-128), 3 dense layers"),
    "lenet": ModelInfo(LeNet, 120, 0.0, "LeNet-style (an MNIST reference): conv 6-36 (3x3, no padding), dense hidden-84-10"),
    "fastcnn": ModelInfo(FastCNN, 128, 0.0, "FastCNN (the fast preset's): conv 16-32 (5x5, no padding), dense hidden-10"),
    "stridedcnn": ModelInfo(StridedCNN, 32, 0.4, "StridedCNN (the long MNIST recipe's): all-conv, 3x3 convs and 5x5 stride-2 downsampling, widths w-2w-4w"),
}


def model_args(
    name: str,
    hidden_units: int | None = None,
    dropout: float | None = None,
    batch_norm: bool = False,
    in_shape: InShape = (1, 28, 28),
    num_classes: int = 10,
) -> dict[str, Any]:
    """The explicit constructor arguments of ``name``, with the model's defaults filled in."""
    info = get_info(name)
    return {
        "in_shape": list(in_shape),
        "num_classes": num_classes,
        "hidden_units": info.hidden_units if hidden_units is None else hidden_units,
        "dropout": info.dropout if dropout is None else dropout,
        "batch_norm": batch_norm,
    }


def with_model_defaults(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with hidden_units / dropout left at None filled in with the model's defaults, and
    tta left at None with what :func:`flips_at_test` makes of it."""
    args = model_args(cfg.model, cfg.hidden_units, cfg.dropout)
    tta = cfg.tta if cfg.tta is not None else flips_at_test(None, cfg.augment,
                                                             get_spec(cfg.dataset).hflip)
    return dataclasses.replace(cfg, hidden_units=args["hidden_units"], dropout=args["dropout"],
                               tta=tta)


def get_info(name: str) -> ModelInfo:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}: choose one of {', '.join(REGISTRY)}.") from None


def build_model(name: str, args: dict[str, Any]) -> nn.Module:
    """Build ``name`` from constructor ``args`` (as returned by :func:`model_args`)."""
    kwargs = dict(args)
    kwargs["in_shape"] = tuple(kwargs["in_shape"])
    return get_info(name).cls(**kwargs)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
