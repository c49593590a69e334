"""The weights' moving average (``ema``): its update rule, what is evaluated and saved, resume."""

from __future__ import annotations

import copy

import pytest
import torch

from cnn_tracker.config import make_config
from cnn_tracker.errors import ConfigError
from cnn_tracker.training.checkpoint import load_checkpoint, model_from_checkpoint
from cnn_tracker.training.data import load_data
from cnn_tracker.training.engine import Preempted, TrainHooks, evaluate
from cnn_tracker.training.models import build_model, model_args, with_tta
from cnn_tracker.training.runtime import make_averaged

from .test_engine import fit
from .test_resume import CFG, assert_same_run, resume_arg, stop_after

EMA_CFG = {**CFG, "ema": 0.9, "batch_norm": True}


def test_the_average_weighs_each_step_by_decay_to_its_age_from_the_first():
    model = build_model("lenet", model_args("lenet", None, None, True))
    assert make_averaged(make_config({"ema": 0.0}), model) is None
    decay = 0.75
    averaged = make_averaged(make_config({"ema": decay}), model)
    seen = []
    for step in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(float(step + 1))
            model.train()
            model(torch.randn(8, 1, 28, 28))  # moves the BatchNorm statistics
        seen.append(copy.deepcopy(model.state_dict()))
        averaged.update_parameters(model)
    got, weights = averaged.module.state_dict(), [decay ** 2, decay, 1.0]  # oldest first
    for key, now in seen[-1].items():
        if now.is_floating_point():  # weights and BatchNorm statistics alike
            expected = sum(w * s[key] for w, s in zip(weights, seen)) / sum(weights)
            assert torch.allclose(got[key], expected, atol=1e-5), key
        else:  # BatchNorm's batch count: the model's
            assert torch.equal(got[key], now), key
    assert any("running_mean" in k for k in got)
    assert not torch.equal(got["features.0.weight"], seen[-1]["features.0.weight"])


def test_an_ema_run_measures_and_saves_the_average(tiny_root, tmp_path):
    cfg = make_config(EMA_CFG)
    data = load_data(cfg.dataset, tiny_root, val_size=cfg.val_size, seed=cfg.seed)
    result = fit(cfg, data, TrainHooks(), tmp_path)
    last = load_checkpoint(tmp_path / "last.pt")
    spec, size = data.spec, cfg.eval_batch_size
    as_run = lambda ckpt: with_tta(model_from_checkpoint(ckpt), cfg.tta, cfg.augment,  # noqa: E731
                                   spec.hflip)  # test-time flips, as the run evaluates
    averaged = as_run(last)
    trained = as_run({**last, "state_dict": last["resume"]["ema"]["trained_weights"]})
    # the logged val metrics are the average's, not the trained weights'
    logged = result.history[-1]["val/loss"]
    assert evaluate(averaged, data.val, spec, size).loss == pytest.approx(logged, rel=1e-5)
    assert evaluate(trained, data.val, spec, size).loss != pytest.approx(logged, rel=1e-3)
    assert last["resume"]["ema"]["steps"] == result.history[-1]["epoch"] * 11  # one per batch
    best = as_run(load_checkpoint(tmp_path / "best.pt"))
    assert evaluate(best, data.test, spec, size).accuracy == result.test.accuracy
    plain = fit(make_config({**EMA_CFG, "ema": 0.0}), data, TrainHooks(), tmp_path / "plain")
    assert [h["val/loss"] for h in plain.history] != [h["val/loss"] for h in result.history]
    assert "ema" not in load_checkpoint(tmp_path / "plain" / "last.pt")["resume"]


# mid-epoch 2, and between epochs 1 and 2 (11 batches per epoch, one poll each plus one between)
@pytest.mark.parametrize("polls", [12, 15])
def test_a_resumed_ema_run_matches_an_uninterrupted_one(tiny_root, tmp_path, polls):
    cfg = make_config(EMA_CFG)
    data = load_data(cfg.dataset, tiny_root, val_size=cfg.val_size, seed=cfg.seed)
    full = fit(cfg, data, TrainHooks(), tmp_path / "full")
    with pytest.raises(Preempted) as stopped:
        fit(cfg, data, stop_after(polls), tmp_path / "cut")
    resumed = fit(cfg, data, TrainHooks(), tmp_path / "cut", resume=resume_arg(stopped.value.path))
    assert_same_run(full, resumed)  # history (the average's val metrics), test, final weights


def test_ema_values_are_checked():
    assert make_config({"ema": "0.999"}).ema == 0.999
    with pytest.raises(ConfigError, match=r"'ema'.*>= 0 and < 1"):
        make_config({"ema": 1})
    with pytest.raises(ConfigError, match="Did you mean 'ema'"):
        make_config({"ema_decay": 0.99})
