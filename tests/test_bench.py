"""The bench harness (no timing assertions), the fast preset, and the engine's speed options."""

from __future__ import annotations

import json
import math

import pytest
import torch
from click.testing import CliRunner

from cnn_tracker.cli import cli
from cnn_tracker.config import PRESETS, ConfigError, config_from_sources, make_config
from cnn_tracker.recipes import Reference
from cnn_tracker.tools.bench import format_report, our_time_to_target
from cnn_tracker.tools.reference import reference_time_to_target
from cnn_tracker.training.data import get_spec, load_data
from cnn_tracker.training.engine import evaluate
from cnn_tracker.training.runtime import resolve_precision

from .conftest import TINY_ARGS
from .test_e2e import run_cli_subprocess
from .test_engine import RecordingTracker, fit


def _finite_positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


@pytest.mark.slow
def test_quick_bench_json_has_every_field(tiny_root, isolated_env):
    """The whole harness on tiny data, as a user runs it: a fresh process, --quick --json."""
    proc = run_cli_subprocess(["bench", "--quick", "--json", "--data-dir", str(tiny_root),
                               "--dataset", "mnist", "--set", "batch_size=32"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert set(report) == {"dataset", "device", "device_name", "torch", "threads", "quick",
                           "repeats", "throughput", "time_to_accuracy", "wandb", "memory"}
    assert report["quick"] is True and report["dataset"] == "mnist" and report["device"] == "cpu"

    tp = report["throughput"]
    assert tp["model"] == "tinyvgg" and tp["hidden_units"] == 10
    assert tp["ours"]["batch_size"] == 32 and tp["reference"]["batch_size"] == 32
    assert _finite_positive(tp["ours"]["images_per_second"])
    assert _finite_positive(tp["reference"]["images_per_second"])
    assert tp["ratio"] == pytest.approx(tp["ours"]["images_per_second"]
                                        / tp["reference"]["images_per_second"])

    tta = report["time_to_accuracy"]
    assert tta["target"] == 0.99
    ours, ref = tta["ours"], tta["reference"]
    assert ours["model"] == PRESETS["fast"]["mnist"]["model"] and ours["config"]["epochs"] == 1
    assert len(ours["runs"]) == 1 and len(ours["runs"][0]["test_accuracy_by_epoch"]) == 1
    assert isinstance(ours["reached"], bool) and _finite_positive(ours["seconds"])
    assert ref["epochs"] == 1 and len(ref["test_accuracy_by_epoch"]) == 1
    assert {"reached", "seconds", "budget_seconds", "images_per_second"} <= set(ref)
    if ours["reached"]:
        assert tta["ratio"] == pytest.approx(ref["seconds"] / ours["seconds"])
        assert tta["ratio_is_lower_bound"] == (not ref["reached"])
    else:
        assert tta["ratio"] is None and tta["ratio_is_lower_bound"] is False

    wb = report["wandb"]
    assert wb["epochs"] == 1
    assert len(wb["runs"]["offline"]) == len(wb["runs"]["disabled"]) == 1
    assert wb["runs"]["disabled"][0]["init_seconds"] == 0  # disabled never calls wandb.init
    assert _finite_positive(wb["runs"]["offline"][0]["init_seconds"])
    assert _finite_positive(wb["first_init_seconds"])
    for key in ("disabled_seconds", "offline_seconds"):
        assert _finite_positive(wb[key])
    assert wb["overhead"] == pytest.approx(wb["offline_seconds"] / wb["disabled_seconds"] - 1)

    assert report["memory"]["train_peak_rss_mb"] > 100  # torch alone is more than that
    assert report["memory"]["gpu_peak_mb"] is None

    text = format_report(report)
    assert "QUICK" in text and "time to 99.00% test accuracy" in text
    assert "peak RSS" in text and "wandb.init + finish" in text
    # the bench cleans up after itself: no run folders or stores left in the working folder
    assert not (isolated_env / "wandb").exists() and not (isolated_env / ".cnn-tracker").exists()


def test_bad_bench_override_fails_before_measuring(tiny_root):
    result = CliRunner().invoke(cli, ["bench", "--quick", "--data-dir", str(tiny_root),
                                      "--set", "learnin_rate=0.1"])
    assert result.exit_code == 2
    assert "learnin_rate" in result.output and "'lr'" in result.output
    result = CliRunner().invoke(cli, ["bench", "--quick", "--set", "lr"])
    assert result.exit_code == 2 and "KEY=VALUE" in result.output


def test_time_to_target_stops_at_the_first_epoch_that_reaches_it(tiny_root, tmp_path):
    cfg = make_config({"model": "lenet", "epochs": 6, "batch_size": 32, "val_size": 50})
    data = load_data(cfg.dataset, tiny_root, val_size=cfg.val_size, seed=0)
    run = our_time_to_target(cfg, data, target=0.5, workdir=tmp_path)
    accs = run["test_accuracy_by_epoch"]
    assert run["reached"] and accs[-1] >= 0.5 and all(a < 0.5 for a in accs[:-1])
    assert run["epochs"] == len(accs) < 6  # stopped there instead of training all 6 epochs
    unreachable = our_time_to_target(cfg, data, target=0.9999, workdir=tmp_path)
    assert not unreachable["reached"] and unreachable["epochs"] == 6


def test_reference_loop_learns_and_respects_its_epoch_cap(tiny_root):
    spec = get_spec("mnist")
    run = reference_time_to_target(Reference(model="lenet", hidden_units=32), spec, tiny_root,
                                   torch.device("cpu"), target=0.9999, budget=600, max_epochs=5)
    assert run["epochs"] == 5 and not run["reached"] and len(run["test_accuracy_by_epoch"]) == 5
    assert run["test_accuracy_by_epoch"][-1] >= 0.5  # it trains (chance is 0.1)
    easy = reference_time_to_target(Reference(model="lenet", hidden_units=32), spec, tiny_root,
                                    torch.device("cpu"), target=0.05, budget=600, max_epochs=3)
    assert easy["reached"] and easy["epochs"] == 1


def test_fast_preset_sits_between_defaults_and_file_and_options(tmp_path):
    cfg = config_from_sources(None, {"dataset": "fashion-mnist"}, "fast")
    for key, value in PRESETS["fast"]["fashion-mnist"].items():
        assert getattr(cfg, key) == value
    cfg = config_from_sources(None, {"epochs": "2"}, "fast")  # dataset from the defaults: mnist
    assert cfg.model == PRESETS["fast"]["mnist"]["model"] and cfg.epochs == 2
    file = tmp_path / "c.yaml"
    file.write_text("dataset: fashion-mnist\nlr: 0.001\n")
    cfg = config_from_sources(file, {"batch_size": "64"}, "fast")
    assert (cfg.model, cfg.lr, cfg.batch_size) == ("fashioncnn", 0.001, 64)
    assert config_from_sources(None, {}, None).model == "fashioncnn"  # no preset: the defaults


def test_train_cli_rejects_an_unknown_preset(tiny_root):
    result = CliRunner().invoke(cli, ["train", "--preset", "fastest", "--data-dir", str(tiny_root)])
    assert result.exit_code == 2 and "fastest" in result.output and "fast" in result.output


def test_train_with_the_fast_preset_end_to_end(tiny_root, isolated_env):
    result = CliRunner().invoke(cli, ["train", "--preset", "fast", "--data-dir", str(tiny_root),
                                      "--mode", "disabled", *TINY_ARGS[:2], "--val_size", "50",
                                      "--output-dir", "out"])
    assert result.exit_code == 0, result.output
    config = json.loads((isolated_env / "out" / "summary.json").read_text())["config"]
    assert config["epochs"] == 2  # the command line wins over the preset; the rest is the preset's
    for key in ("model", "batch_size", "lr", "augment", "label_smoothing", "hidden_units"):
        assert config[key] == PRESETS["fast"]["mnist"][key], key


def test_precision_choices():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) is None and resolve_precision("fp32", cpu) is None
    assert resolve_precision("bf16", cpu) is torch.bfloat16
    with pytest.raises(ConfigError, match="fp16.*CUDA"):
        resolve_precision("fp16", cpu)
    with pytest.raises(ConfigError, match="precision"):
        make_config({"precision": "fp8"})


def test_bf16_and_memory_formats_train_the_same_model(tiny_root, tmp_path):
    """channels_last and bf16 autocast change speed, not what is learned (up to rounding)."""
    results = {}
    for name, extra in {"plain": {"channels_last": False}, "nhwc": {"channels_last": True},
                        "bf16": {"precision": "bf16"}}.items():
        cfg = make_config({"model": "lenet", "epochs": 6, "batch_size": 32, "val_size": 50,
                           "augment": False, **extra})
        data = load_data(cfg.dataset, tiny_root, val_size=cfg.val_size, seed=0)
        results[name] = fit(cfg, data, RecordingTracker(), tmp_path / name)
    plain, nhwc, bf16 = results["plain"], results["nhwc"], results["bf16"]
    assert nhwc.history[-1]["train/loss"] == pytest.approx(plain.history[-1]["train/loss"], rel=1e-3)
    assert nhwc.test.accuracy == pytest.approx(plain.test.accuracy, abs=0.02)
    assert bf16.test.accuracy >= 0.8 and plain.test.accuracy >= 0.8
    conv = next(m for m in nhwc.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    # a channels_last checkpoint loads into a plain model and gives the same predictions
    data = load_data("mnist", tiny_root, val_size=50, seed=0)
    from cnn_tracker.training.checkpoint import load_checkpoint, model_from_checkpoint

    again = evaluate(model_from_checkpoint(load_checkpoint(nhwc.best_path)), data.test, data.spec, 64)
    assert again.accuracy == pytest.approx(nhwc.test.accuracy)


def test_compiled_model_trains_like_the_eager_one_and_saves_plain_weights(tiny_root, tmp_path):
    results = {}
    for compiled in (False, True):
        cfg = make_config({"model": "mlp", "epochs": 3, "batch_size": 32, "val_size": 50,
                           "hidden_units": 32, "compile": compiled})
        data = load_data(cfg.dataset, tiny_root, val_size=cfg.val_size, seed=0)
        results[compiled] = fit(cfg, data, RecordingTracker(), tmp_path / str(compiled))
    eager, compiled = results[False], results[True]
    for a, b in zip(eager.history, compiled.history):
        assert b["train/loss"] == pytest.approx(a["train/loss"], rel=1e-3)
    assert compiled.test.accuracy == pytest.approx(eager.test.accuracy, abs=0.02)
    from cnn_tracker.training.checkpoint import load_checkpoint

    keys = load_checkpoint(compiled.best_path)["state_dict"].keys()
    assert keys == load_checkpoint(eager.best_path)["state_dict"].keys()  # no _orig_mod. prefix
