"""Per-dataset default recipes, the fast preset, FastCNN and test-time flips (``tta``)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from click.testing import CliRunner

from cnn_tracker.cli import cli
from cnn_tracker.config import (
    DATASET_DEFAULTS,
    PRESETS,
    RunSettings,
    TrainConfig,
    config_from_sources,
    dataset_defaults,
    make_config,
    redefault,
)
from cnn_tracker.recipes import BENCH_REFERENCES
from cnn_tracker.runs.plan import plan_run, replan
from cnn_tracker.tools.inference import evaluate_checkpoint, load_for_inference
from cnn_tracker.training.data import get_spec, load_data
from cnn_tracker.training.models import (
    FlipAveraged,
    build_model,
    count_parameters,
    model_args,
    with_model_defaults,
    with_tta,
)

from .test_engine import RecordingTracker, fit


def test_each_dataset_gets_its_own_recipe():
    mnist = config_from_sources(None, {})
    fashion = config_from_sources(None, {"dataset": "fashion-mnist"})
    assert mnist == dataset_defaults("mnist") and fashion == dataset_defaults("fashion-mnist")
    for dataset, cfg in (("mnist", mnist), ("fashion-mnist", fashion)):
        for key, value in DATASET_DEFAULTS[dataset].items():
            assert getattr(cfg, key) == value, (dataset, key)
    assert mnist.epochs != fashion.epochs
    # tta is left at null, and so follows augment: on for Fashion-MNIST, off for digits.
    assert fashion.tta is None and with_model_defaults(fashion).tta is True
    assert with_model_defaults(mnist).tta is False


def test_another_model_keeps_its_own_width_and_dropout():
    """The recipe's width and dropout belong to its model: a reference layout picked by name keeps
    the reference settings (model default = null), on both datasets, from CLI, file or preset."""
    for dataset in ("mnist", "fashion-mnist"):
        cfg = config_from_sources(None, {"dataset": dataset, "model": "lenet"})
        assert cfg.hidden_units is None and cfg.dropout is None
        assert make_config({"dataset": dataset, "model": "lenet"}).hidden_units is None
        same = config_from_sources(None, {"dataset": dataset, "model": "fashioncnn"})
        assert same.hidden_units == DATASET_DEFAULTS[dataset]["hidden_units"]


def test_explicit_values_beat_the_recipe(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("dataset: fashion-mnist\ntta: false\nepochs: 2\n")
    cfg = config_from_sources(f, {"hidden_units": "64"})
    assert (cfg.tta, cfg.epochs, cfg.hidden_units) == (False, 2, 64)
    assert cfg.dropout == DATASET_DEFAULTS["fashion-mnist"]["dropout"]


def test_the_fast_preset_overrides_the_recipe_on_both_datasets():
    for dataset, values in PRESETS["fast"].items():
        cfg = config_from_sources(None, {"dataset": dataset}, "fast")
        for key, value in values.items():
            assert getattr(cfg, key) == value, (dataset, key)
    assert config_from_sources(None, {}, "fast").epochs == 1  # 99% MNIST after one epoch


def test_the_fast_preset_trains_without_any_augmentation():
    # The preset's one epoch is timed by the bench: the MNIST recipe's rotations (added after the
    # preset) once leaked into it and cost ~1.4 s of a 5 s epoch.
    for dataset in PRESETS["fast"]:
        cfg = with_model_defaults(config_from_sources(None, {"dataset": dataset}, "fast"))
        assert (cfg.augment, cfg.rotate, cfg.tta) == (False, 0.0, False), dataset


def test_no_recipe_uses_test_time_flips_without_training_flips():
    # tta averages each image with its mirror: a model trained without augment's flips has never
    # seen one (the fast Fashion-MNIST preset once inherited tta and lost 7-11 points to it).
    for dataset in DATASET_DEFAULTS:
        for preset in (None, *PRESETS):
            cfg = with_model_defaults(config_from_sources(None, {"dataset": dataset}, preset))
            assert cfg.augment or not cfg.tta, (dataset, preset)


def test_tta_follows_augment_from_every_source_unless_set(tmp_path):
    """Turning augment off (CLI, config file, preset or a sweep's value) turns the default
    test-time flips off with it; a tta that some source sets is kept as set."""
    def tta(cfg):
        return with_model_defaults(cfg).tta

    fashion = {"dataset": "fashion-mnist"}
    assert tta(config_from_sources(None, {**fashion, "augment": "false"})) is False
    assert tta(config_from_sources(None, {**fashion, "augment": "false", "tta": "true"})) is True
    off = tmp_path / "off.yaml"
    off.write_text("dataset: fashion-mnist\naugment: false\n")
    assert tta(config_from_sources(off, {})) is False
    assert tta(config_from_sources(off, {"augment": "true"})) is True
    explicit = tmp_path / "explicit.yaml"
    explicit.write_text("dataset: fashion-mnist\ntta: true\n")
    assert tta(config_from_sources(explicit, {"augment": "false"})) is True  # set in the file
    assert tta(config_from_sources(None, fashion, "fast")) is False  # the preset has no augment
    assert tta(redefault(config_from_sources(None, {"augment": "false"}), "fashion-mnist")) is False
    assert tta(config_from_sources(None, {"tta": "true"})) is True  # kept; ignored on digits


def test_a_sweeps_augment_value_sets_the_runs_tta(tiny_root, tmp_path):
    """Through the real plan_run + replan (what a run does with wandb.config after wandb.init):
    the sweep's augment=false gives a model tested without flips, and the dashboard is shown
    the tta the run uses (W&B holds null for it)."""
    cfg = config_from_sources(None, {"dataset": "fashion-mnist", "val_size": "50"})
    plan = plan_run(cfg, RunSettings(mode="disabled"), data_dir=tiny_root, output_dir=None,
                    store_dir=tmp_path / "store", resume=None, options_given=True)
    assert plan.cfg.tta is True and plan.requested.tta is None
    swept, shown = replan(plan, {**dataclasses.asdict(plan.requested), "augment": False})
    assert (swept.cfg.augment, swept.cfg.tta, shown["tta"]) == (False, False, False)
    kept, shown = replan(plan, {**dataclasses.asdict(plan.requested), "augment": False,
                                "tta": True})
    assert kept.cfg.tta is True and "tta" not in shown


def test_a_dataset_chosen_through_wandb_config_gets_its_recipe(tiny_root, tmp_path):
    """A sweep whose command has no ${args} sets the dataset only in wandb.config: the run then
    trains that dataset's recipe, with the values the user and the sweep set kept."""
    mnist = config_from_sources(None, {"lr": "0.01", "val_size": "50", "batch_size": "32"})
    moved = redefault(mnist, "fashion-mnist")
    assert with_model_defaults(moved).tta and moved.epochs == dataset_defaults("fashion-mnist").epochs
    assert moved.lr == 0.01  # a value the user set is kept
    assert redefault(mnist, "mnist") is mnist

    plan = plan_run(mnist, RunSettings(mode="disabled"), data_dir=tiny_root, output_dir=None,
                    store_dir=tmp_path / "store", resume=None, options_given=True)
    wandb_config = {**dataclasses.asdict(plan.requested), "dataset": "fashion-mnist",
                    "batch_size": 32, "val_size": 50}
    swept, _ = replan(plan, wandb_config)
    expected = dataclasses.replace(dataset_defaults("fashion-mnist"), lr=0.01, batch_size=32,
                                   val_size=50)
    assert swept.cfg == dataclasses.replace(expected, **{
        k: getattr(swept.cfg, k) for k in ("hidden_units", "dropout", "tta")})
    assert swept.cfg.hidden_units == 256 and swept.cfg.tta
    # The same dataset in wandb.config: the plan is kept as it is.
    same, _ = replan(plan, dataclasses.asdict(plan.requested))
    assert same is plan


def test_help_shows_the_per_dataset_defaults():
    out = CliRunner().invoke(cli, ["train", "--help"]).output
    assert "[default: mnist 15; fashion-mnist 20]" in " ".join(out.split())
    assert "fastcnn" in out and "--tta" in out


def test_fastcnn_is_small_and_shaped_for_both_datasets():
    model = build_model("fastcnn", model_args("fastcnn"))
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert count_parameters(model) < 100_000
    wide = build_model("fastcnn", model_args("fastcnn", hidden_units=16, batch_norm=True))
    assert wide(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_flip_averaging_is_the_mean_of_both_views_in_eval_only():
    torch.manual_seed(0)
    inner = build_model("lenet", model_args("lenet"))
    x = torch.randn(4, 1, 28, 28)
    tta = FlipAveraged(inner)
    inner.eval()
    expected = (inner(x) + inner(torch.flip(x, dims=(3,)))) / 2
    assert torch.allclose(tta(x), expected)
    inner.train()  # the wrapped model's mode decides (the loop toggles only the model)
    torch.manual_seed(1)
    a = tta(x)
    torch.manual_seed(1)
    assert torch.equal(a, inner(x))
    assert with_tta(inner, True, augment=True, hflip=False) is inner  # digits are never mirrored
    assert with_tta(inner, False, augment=True, hflip=True) is inner
    assert with_tta(inner, None, augment=False, hflip=True) is inner  # never saw a mirror
    assert isinstance(with_tta(inner, None, augment=True, hflip=True), FlipAveraged)


def test_tta_run_and_its_checkpoint_evaluate_alike(tiny_root, tmp_path):
    """A run with tta=true selects and tests with flips; `evaluate` on its checkpoint rebuilds
    the flips from the saved config and reproduces the test accuracy exactly."""
    cfg = make_config({"dataset": "fashion-mnist", "model": "fastcnn", "epochs": 2,
                       "batch_size": 32, "val_size": 50, "tta": True, "eval_batch_size": 64})
    data = load_data(cfg.dataset, tiny_root, val_size=cfg.val_size, seed=cfg.seed)
    result = fit(cfg, data, RecordingTracker(), tmp_path / "ckpt")
    _, model, _ = load_for_inference(result.best_path, "cpu")
    assert isinstance(model, FlipAveraged) and not model.model.training
    _, report = evaluate_checkpoint(result.best_path, tiny_root)
    assert report.accuracy == pytest.approx(result.test.accuracy)
    plain = dataclasses.replace(cfg, tta=False)
    assert plain != cfg and get_spec("fashion-mnist").hflip


def test_tta_is_a_sweepable_key():
    assert make_config({"tta": "True"}).tta is True
    assert TrainConfig().tta is None  # null: as augment
    assert make_config({"tta": "null"}).tta is None
    with pytest.raises(Exception, match="Did you mean 'tta'"):
        make_config({"test_time_augmentation": True})


def test_the_fashion_reference_is_the_fashioncnn_loop():
    """Fashion-MNIST's bench reference is the 92.69% project's loop (FashionCNN, batch 128, Adam
    1e-3), which reaches the 92.64% target: the same model, at the same width, as the fast preset."""
    ref = BENCH_REFERENCES["fashion-mnist"]
    assert (ref.model, ref.hidden_units, ref.batch_size, ref.lr) == ("fashioncnn", 256, 128, 1e-3)
    fast = PRESETS["fast"]["fashion-mnist"]
    assert (fast["model"], fast["hidden_units"]) == (ref.model, ref.hidden_units)
    assert BENCH_REFERENCES["mnist"].model == "tinyvgg" and BENCH_REFERENCES["mnist"].batch_size == 32


@pytest.mark.slow
def test_quick_fashion_bench_uses_its_reference(tiny_root):
    from .test_e2e import run_cli_subprocess

    proc = run_cli_subprocess(["bench", "--quick", "--json", "--data-dir", str(tiny_root),
                               "--dataset", "fashion-mnist", "--set", "batch_size=32",
                               "--reference-batch-size", "32"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    import json

    report = json.loads(proc.stdout)
    tp, tta = report["throughput"], report["time_to_accuracy"]
    width = BENCH_REFERENCES["fashion-mnist"].hidden_units
    assert (tp["model"], tp["hidden_units"], tp["reference"]["batch_size"]) == ("fashioncnn", width, 32)
    assert tta["reference"]["model"] == "fashioncnn" and tta["ours"]["model"] == "fashioncnn"
    assert tta["target"] == 0.9264
