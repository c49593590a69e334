from __future__ import annotations

import pytest
import torch

from cnn_tracker.config import make_config
from cnn_tracker.training.models import (
    REGISTRY,
    _flat_size,
    build_model,
    count_parameters,
    model_args,
    with_model_defaults,
)

NAMES = list(REGISTRY)


def _linear(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def _conv3(c_in: int, c_out: int, kernel: int = 3) -> int:
    return c_in * c_out * kernel * kernel + c_out


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("batch_norm", [False, True])
def test_output_shape(name, batch_norm):
    model = build_model(name, model_args(name, batch_norm=batch_norm)).eval()
    assert model(torch.zeros(5, 1, 28, 28)).shape == (5, 10)


def test_parameter_counts_match_the_seed_layouts():
    expected = {
        # Flatten -> Linear(784 -> 10) -> ReLU -> Linear(10 -> 10)
        "mlp": _linear(784, 10) + _linear(10, 10),
        # 4 convs of 32 channels; 28 -> 14 -> 7, then Linear(32*7*7 -> 10)
        "tinyvgg": _conv3(1, 32) + 3 * _conv3(32, 32) + _linear(32 * 7 * 7, 10),
        # conv 1->32, 32->64 (padding 1), 28 -> 14 -> 7, Linear(3136 -> 128) -> Linear(128 -> 10)
        "fashioncnn": _conv3(1, 32) + _conv3(32, 64) + _linear(64 * 7 * 7, 128) + _linear(128, 10),
        # convs 32-64-128, 28 -> 14 -> 7 -> 3, dense 1152 -> 128 -> 64 -> 10
        "deepcnn": _conv3(1, 32) + _conv3(32, 64) + _conv3(64, 128)
        + _linear(128 * 3 * 3, 128) + _linear(128, 64) + _linear(64, 10),
        # conv 1->6, 6->36 without padding: 28 -> 26 -> 13 -> 11 -> 5, dense 900 -> 120 -> 84 -> 10
        "lenet": _conv3(1, 6) + _conv3(6, 36) + _linear(36 * 5 * 5, 120) + _linear(120, 84)
        + _linear(84, 10),
        # 32C3-32C3-32C5S2-64C3-64C3-64C5S2-128C4: 28 -> 26 -> 24 -> 12 -> 10 -> 8 -> 4 -> 1,
        # then Linear(128 -> 10)
        "stridedcnn": _conv3(1, 32) + _conv3(32, 32) + _conv3(32, 32, 5) + _conv3(32, 64)
        + _conv3(64, 64) + _conv3(64, 64, 5) + _conv3(64, 128, 4) + _linear(128, 10),
    }
    for name, n in expected.items():
        assert count_parameters(build_model(name, model_args(name))) == n, name


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("hidden", [7, 48])
def test_hidden_units_changes_width_and_still_runs(name, hidden):
    base = count_parameters(build_model(name, model_args(name)))
    model = build_model(name, model_args(name, hidden_units=hidden)).eval()
    assert count_parameters(model) != base
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_flattened_size_follows_the_input_shape():
    model = build_model("tinyvgg", model_args("tinyvgg", hidden_units=8, in_shape=(1, 32, 32)))
    assert model(torch.zeros(1, 1, 32, 32)).shape == (1, 10)
    assert model.head[-1].in_features == 8 * 8 * 8


def test_dropout_default_and_override():
    assert model_args("fashioncnn")["dropout"] == 0.5
    assert model_args("fashioncnn", dropout=0.1)["dropout"] == 0.1


def test_with_model_defaults_fills_only_what_is_left_at_none():
    cfg = with_model_defaults(make_config({"model": "fashioncnn", "hidden_units": None,
                                           "dropout": None}))
    assert (cfg.hidden_units, cfg.dropout) == (128, 0.5)
    cfg = with_model_defaults(make_config({"model": "deepcnn"}))  # not the recipe's model
    assert (cfg.hidden_units, cfg.dropout) == (128, 0.0)
    cfg = with_model_defaults(make_config({"model": "lenet", "hidden_units": 64, "dropout": 0.2}))
    assert (cfg.hidden_units, cfg.dropout) == (64, 0.2)


@pytest.mark.parametrize("name", ["fastcnn", "fashioncnn"])
@pytest.mark.parametrize("batch_norm", [False, True])
def test_pool_first_blocks_compute_conv_relu_pool(name, batch_norm):
    # Max-pooling commutes with ReLU: the pool-first blocks are the Conv -> ReLU -> Pool function
    # (values and gradients), with the parameters where a Conv -> ReLU -> Pool net has them.
    torch.manual_seed(0)
    model = build_model(name, model_args(name, batch_norm=batch_norm)).eval()
    layers = list(model.features)
    kinds = [type(m).__name__ for m in layers]
    pools = [i for i, k in enumerate(kinds) if k == "MaxPool2d"]
    assert all(kinds[i + 1] == "ReLU" for i in pools) and len(pools) == 2
    conv_relu_pool = layers[:]
    for i in pools:  # swap each pool with the ReLU after it
        conv_relu_pool[i], conv_relu_pool[i + 1] = conv_relu_pool[i + 1], conv_relu_pool[i]
    reference = torch.nn.Sequential(*conv_relu_pool)
    x = torch.randn(6, 1, 28, 28, requires_grad=True)
    ours = model.features(x)
    (g_ours,) = torch.autograd.grad(ours.square().sum(), x)
    theirs = reference(x)
    (g_theirs,) = torch.autograd.grad(theirs.square().sum(), x)
    assert torch.equal(ours, theirs) and torch.equal(g_ours, g_theirs)
    conv_keys = [k for k in model.state_dict() if k.startswith("features.")]
    assert conv_keys[0] == "features.0.weight"
    assert any(k.startswith("features.4." if batch_norm else "features.3.") for k in conv_keys)


def test_stridedcnn_downsamples_by_strided_convs_to_a_1x1_map():
    model = build_model("stridedcnn", model_args("stridedcnn", batch_norm=True)).eval()
    kinds = {type(m).__name__ for m in model.modules()}
    assert "MaxPool2d" not in kinds
    strides = [m.stride for m in model.features if isinstance(m, torch.nn.Conv2d)]
    assert strides == [(1, 1), (1, 1), (2, 2), (1, 1), (1, 1), (2, 2), (1, 1)]
    assert model.features(torch.zeros(3, 1, 28, 28)).shape == (3, 128, 1, 1)
    assert model_args("stridedcnn")["dropout"] == 0.4


def test_sizing_pass_draws_nothing_from_the_seeded_generator():
    # The dummy forward pass that sizes the head runs the features in training mode: a Dropout in
    # them (StridedCNN's) must not shift the seeded initialization of the layers built after it.
    features = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Dropout(0.5))
    torch.manual_seed(0)
    before = torch.get_rng_state()
    assert _flat_size(features, (1, 28, 28)) == 4 * 26 * 26
    assert torch.equal(torch.get_rng_state(), before)


def test_config_lists_exactly_the_registered_models_in_order():
    # config.MODELS (the names a config may use; config cannot import this module) and the
    # registry must not drift apart: a name in one and not the other is an unbuildable config.
    from cnn_tracker.config import MODELS

    assert MODELS == tuple(REGISTRY)
