from __future__ import annotations

import numpy as np
import pytest
import torch

from cnn_tracker.config import make_config
from cnn_tracker.training.checkpoint import load_checkpoint, model_from_checkpoint
from cnn_tracker.training.data import load_data
from cnn_tracker.training.engine import TrainHooks, evaluate, train
from cnn_tracker.training.reports import TestReport
from cnn_tracker.training.runtime import (
    load_optimizer_state,
    make_optimizer,
    resolve_precision,
)
from cnn_tracker.training.state import CheckpointFiles


def fit(cfg, data, hooks, folder, **kwargs):
    """``train`` with checkpoints in ``folder`` and the precision resolved as a run's plan does."""
    amp_dtype = resolve_precision(cfg.precision, data.train.images.device)
    return train(cfg, data, hooks, files=CheckpointFiles(folder), amp_dtype=amp_dtype, **kwargs)


class RecordingTracker(TrainHooks):
    def __init__(self):
        self.metrics, self.checkpoints = [], []

    def log_metrics(self, metrics, epoch):
        self.metrics.append((epoch, dict(metrics)))

    def log_checkpoint(self, path, metadata):
        self.checkpoints.append((path, metadata))


@pytest.mark.parametrize("model", ["mlp", "lenet", "tinyvgg"])
def test_tiny_run_learns(tiny_root, tmp_path, model):
    cfg = make_config({"model": model, "epochs": 10, "batch_size": 32, "val_size": 50, "lr": 3e-3,
                       "hidden_units": 16 if model != "lenet" else None, "dataset": "fashion-mnist"})
    data = load_data(cfg.dataset, tiny_root, val_size=cfg.val_size, seed=cfg.seed)
    tracker = RecordingTracker()
    result = fit(cfg, data, tracker, tmp_path / "ckpt")
    assert result.test.accuracy >= 0.8  # chance is 0.1
    assert [e for e, _ in tracker.metrics] == list(range(1, 11))
    keys = {"epoch", "train/loss", "train/accuracy", "val/loss", "val/accuracy", "lr",
            "perf/epoch_seconds", "perf/images_per_second"}
    assert all(keys <= set(m) for _, m in tracker.metrics)
    # a checkpoint upload for each improvement of val accuracy, never otherwise
    best_so_far, improvements = -1.0, 0
    for _, m in tracker.metrics:
        if m["val/accuracy"] > best_so_far:
            best_so_far, improvements = m["val/accuracy"], improvements + 1
    assert len(tracker.checkpoints) == improvements
    assert result.best["val/accuracy"] == max(m["val/accuracy"] for _, m in tracker.metrics)


def test_best_checkpoint_is_self_describing_and_reproduces_test(tiny_root, tmp_path):
    cfg = make_config({"model": "lenet", "epochs": 2, "batch_size": 32, "val_size": 50})
    data = load_data(cfg.dataset, tiny_root, val_size=cfg.val_size, seed=cfg.seed)
    result = fit(cfg, data, RecordingTracker(), tmp_path / "ckpt")
    ckpt = load_checkpoint(result.best_path)
    assert ckpt["model"] == "lenet" and ckpt["dataset"] == "mnist"
    assert ckpt["epoch"] == result.best_epoch
    assert ckpt["config"]["epochs"] == 2 and ckpt["class_names"][3] == "3"
    assert set(ckpt["versions"]) >= {"torch", "torchvision", "cnn_tracker"}
    model = model_from_checkpoint(ckpt)
    again = evaluate(model, data.test, data.spec, 64)
    assert again.accuracy == pytest.approx(result.test.accuracy)
    assert again.loss == pytest.approx(result.test.loss, rel=1e-5)


def test_same_seed_same_result_deterministic(tiny_root, tmp_path):
    cfg = make_config({"model": "mlp", "epochs": 2, "batch_size": 32, "val_size": 50,
                       "deterministic": True, "seed": 7})
    data = load_data(cfg.dataset, tiny_root, val_size=cfg.val_size, seed=cfg.seed)
    a = fit(cfg, data, RecordingTracker(), tmp_path / "a")
    b = fit(cfg, data, RecordingTracker(), tmp_path / "b")
    assert [h["train/loss"] for h in a.history] == [h["train/loss"] for h in b.history]
    torch.use_deterministic_algorithms(False)


@pytest.mark.parametrize("key, value", [("rotate", 20), ("zoom", 0.2)])
def test_rotate_and_zoom_reach_the_training_batches(tiny_root, tmp_path, key, value):
    """The loop trains on rotated / zoomed images when the key is set: same seed, other losses."""
    base = {"model": "mlp", "epochs": 1, "batch_size": 32, "val_size": 50, "hidden_units": 16}
    data = load_data("mnist", tiny_root, val_size=50, seed=0)
    plain = fit(make_config(base), data, RecordingTracker(), tmp_path / "a")
    turned = fit(make_config({**base, key: value}), data, RecordingTracker(), tmp_path / "b")
    assert plain.history[0]["train/loss"] != turned.history[0]["train/loss"]
    assert np.isfinite(turned.history[0]["train/loss"])


@pytest.mark.parametrize("optimizer, scheduler", [("sgd", "cosine"), ("adam", "none"), ("adamw", "onecycle")])
def test_optimizers_and_schedulers_shape_the_lr(tiny_root, tmp_path, optimizer, scheduler):
    cfg = make_config({"model": "mlp", "epochs": 4, "batch_size": 64, "val_size": 50, "lr": 0.01,
                       "optimizer": optimizer, "scheduler": scheduler, "label_smoothing": 0.1})
    data = load_data(cfg.dataset, tiny_root, val_size=cfg.val_size, seed=cfg.seed)
    result = fit(cfg, data, RecordingTracker(), tmp_path)
    lrs = [h["lr"] for h in result.history]  # lr after each epoch's last step
    if scheduler == "none":
        assert lrs == [0.01] * 4
    elif scheduler == "cosine":
        assert lrs == sorted(lrs, reverse=True) and lrs[-1] == pytest.approx(0, abs=1e-9)
    else:  # onecycle: warm up to the peak in the first quarter, then anneal far below it
        assert max(lrs) <= 0.01 + 1e-12 and lrs[-1] < 1e-4 < lrs[0]


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_adam_uses_the_fused_kernel_and_a_resume_keeps_this_process_s_choice(optimizer):
    cfg = make_config({"optimizer": optimizer, "lr": 0.01})
    model = torch.nn.Linear(4, 3)
    opt = make_optimizer(cfg, model)
    assert opt.param_groups[0]["fused"] is True  # torch >= 2.4 has a fused CPU kernel
    model(torch.randn(8, 4)).sum().backward()
    opt.step()
    saved = opt.state_dict()
    saved["param_groups"][0]["fused"] = None  # as a machine without the kernel saves it
    other = make_optimizer(cfg, torch.nn.Linear(4, 3))
    load_optimizer_state(other, saved)
    assert other.param_groups[0]["fused"] is True
    moments = [other.state[p]["exp_avg"] for p in other.param_groups[0]["params"]]
    assert all(torch.equal(m, opt.state[p]["exp_avg"])
               for m, p in zip(moments, opt.param_groups[0]["params"]))


def test_confusion_orientation_rows_true_columns_predicted():
    probs = np.eye(3, dtype=np.float32)[[1, 1, 2, 0]]  # predictions 1, 1, 2, 0
    report = TestReport(["a", "b", "c"], np.array([0, 1, 2, 2]), probs,
                        np.zeros((4, 28, 28), np.uint8), 0.0, 0.5)
    cm = report.confusion()
    assert cm[0, 1] == 1 and cm[2, 0] == 1 and cm[1, 0] == 0 and cm[0, 2] == 0
    pairs = report.confused_pairs()
    assert {(p["true"], p["predicted"]) for p in pairs} == {("a", "b"), ("c", "a")}
    rows = {r["class"]: r for r in report.per_class()}
    assert rows["c"]["errors"] == 1 and rows["c"]["accuracy"] == 0.5 and rows["b"]["accuracy"] == 1
