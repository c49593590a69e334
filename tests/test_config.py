from __future__ import annotations

from dataclasses import asdict

import pytest
from click.testing import CliRunner

from cnn_tracker.cli import cli
from cnn_tracker.config import (
    KEYS,
    TrainConfig,
    config_from_sources,
    dataset_defaults,
    make_config,
    parse_bool,
)
from cnn_tracker.errors import ConfigError


def test_defaults_validate():
    assert make_config({}) == dataset_defaults("mnist")
    assert make_config({"dataset": "fashion-mnist"}) == dataset_defaults("fashion-mnist")


def test_precedence_defaults_file_cli(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("lr: 0.01\nepochs: 3\nmodel:\n  value: lenet\n  desc: W&B style\n")
    cfg = config_from_sources(cfg_file, {"epochs": "5"})
    assert cfg.lr == 0.01  # file over default
    assert cfg.model == "lenet"  # W&B config-defaults form unwrapped
    assert cfg.epochs == 5  # CLI over file
    assert cfg.batch_size == TrainConfig().batch_size  # default kept


@pytest.mark.parametrize(
    "raw, expected",
    [("True", True), ("false", False), ("1", True), ("0", False), ("yes", True), (True, True),
     ("on", True), ("OFF", False)],
)
def test_booleans_the_way_wandb_passes_them(raw, expected):
    assert parse_bool(raw) is expected
    assert make_config({"augment": raw}).augment is expected


def test_numbers_from_strings_and_yaml():
    cfg = make_config({"lr": "1e-3", "batch_size": "64", "epochs": 2.0, "hidden_units": "null"})
    assert (cfg.lr, cfg.batch_size, cfg.epochs, cfg.hidden_units) == (1e-3, 64, 2, None)


def test_unknown_key_suggests_closest_and_lists_valid():
    with pytest.raises(ConfigError) as exc:
        make_config({"learning_rat": 0.1}, source="sweep")
    msg = exc.value.message
    assert "learning_rat" in msg and "sweep" in msg
    assert "Did you mean 'lr'?" in msg
    for key in KEYS:
        assert key in msg
    with pytest.raises(ConfigError, match="Did you mean 'batch_size'"):
        make_config({"batchsize": 32})
    with pytest.raises(ConfigError, match="Did you mean 'epochs'"):
        make_config({"num_epoch": 3})
    with pytest.raises(ConfigError, match="Did you mean 'weight_decay'"):
        make_config({"weight_decy": 0.1})


def test_wandb_bookkeeping_keys_in_config_files_are_skipped(tmp_path):
    f = tmp_path / "config.yaml"
    f.write_text("wandb_version: 1\n_wandb:\n  value: {cli_version: 0.31.0}\nlr:\n  value: 0.01\n")
    assert config_from_sources(f, {}).lr == 0.01


def test_binary_config_file_is_a_clear_error(tmp_path):
    f = tmp_path / "best.pt"
    f.write_bytes(b"\x80\x02\xff\xfe binary")
    with pytest.raises(ConfigError, match="is not a text file"):
        config_from_sources(f, {})


@pytest.mark.parametrize(
    "key, value, fragment",
    [
        ("lr", 0, "must be a number > 0"),
        ("lr", -1e-3, "must be a number > 0"),
        ("lr", "fast", "expected a number"),
        ("batch_size", 0, "from 1 to 65536"),
        ("hidden_units", 100_000, "from 1 to 4096"),
        ("batch_size", 3.5, "expected an integer"),
        ("batch_size", True, "expected an integer"),
        ("epochs", 0, "from 1 to 10000"),
        ("dropout", 1.0, ">= 0 and < 1"),
        ("label_smoothing", 1, ">= 0 and < 1"),
        ("momentum", 1.5, ">= 0 and < 1"),
        ("val_size", 0, ">= 1"),
        ("augment", "maybe", "expected true or false"),
        ("model", "resnet", "Choose one of: mlp, tinyvgg"),
        ("dataset", "mnits", "Did you mean 'mnist'"),
        ("optimizer", "adamx", "Did you mean 'adam"),
        ("lr", float("nan"), "finite"),
    ],
)
def test_bad_values_name_key_value_and_range(key, value, fragment):
    with pytest.raises(ConfigError) as exc:
        make_config({key: value})
    msg = exc.value.message
    assert f"'{key}'" in msg and repr(value).strip("'") in msg and fragment in msg
    assert exc.value.exit_code == 2


def test_config_file_errors(tmp_path):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("lr: [0.1\nepochs: 2\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        config_from_sources(bad_yaml, {})
    not_mapping = tmp_path / "list.yaml"
    not_mapping.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        config_from_sources(not_mapping, {})
    with pytest.raises(ConfigError, match="does not exist"):
        config_from_sources(tmp_path / "missing.yaml", {})
    typo = tmp_path / "typo.yaml"
    typo.write_text("learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'learning_rate' \(from config file"):
        config_from_sources(typo, {})


def _cli_config(monkeypatch, args):
    """Parse train args through click and return the TrainConfig run_training would get."""
    seen = {}

    def fake_run(cfg, settings, **kwargs):
        seen["cfg"], seen["settings"] = cfg, settings

    monkeypatch.setattr("cnn_tracker.runs.runner.run_training", fake_run)
    result = CliRunner().invoke(cli, ["train", *args])
    return result, seen


def test_cli_key_value_forms(monkeypatch):
    result, seen = _cli_config(monkeypatch, [
        "--lr=0.02", "--batch_size", "64", "--hidden-units=16", "--augment=False",
        "--batch_norm", "--deterministic", "True", "--tags", "a,b", "--tags", "c",
    ])
    assert result.exit_code == 0, result.output
    cfg = seen["cfg"]
    assert (cfg.lr, cfg.batch_size, cfg.hidden_units) == (0.02, 64, 16)
    assert cfg.augment is False and cfg.batch_norm is True and cfg.deterministic is True
    assert seen["settings"].tags == ("a", "b", "c")


def test_cli_unknown_key_exit_2_with_suggestion(monkeypatch, isolated_env):
    result, seen = _cli_config(monkeypatch, ["--learning_rat=0.1"])
    assert result.exit_code == 2
    assert "unknown config key 'learning_rat'" in result.output
    assert "Valid keys:" in result.output and "Traceback" not in result.output
    assert not seen and not any(isolated_env.iterdir())  # nothing written
    result, _ = _cli_config(monkeypatch, ["--batch-sise", "3"])
    assert result.exit_code == 2 and "Did you mean 'batch_size'" in result.output


def test_cli_bad_value_exit_2(monkeypatch):
    result, _ = _cli_config(monkeypatch, ["--lr", "0"])
    assert result.exit_code == 2
    assert "invalid value 0.0 for 'lr' (from command line)" in result.output


def test_every_key_is_a_cli_option(monkeypatch):
    defaults = asdict(TrainConfig())
    args = []
    for key, value in defaults.items():
        args.append(f"--{key}={'null' if value is None else value}")
    result, seen = _cli_config(monkeypatch, args)
    assert result.exit_code == 0, result.output
    assert seen["cfg"] == TrainConfig()


def test_shipped_config_files_validate():
    from pathlib import Path

    files = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))
    assert files
    for f in files:
        config_from_sources(f, {})


def test_every_config_key_has_a_help_line():
    from cnn_tracker.cli.train import _HELP
    from cnn_tracker.config import KEYS

    assert sorted(_HELP) == sorted(KEYS)
