"""Reliability, round two: the output-folder lock, sweep verdicts (goal, program, grid size),
names, escaped terminal text and the data checks before the first byte is written.

The error messages themselves are cases of tests/test_catalogue.py; these tests cover what a
catalogue row cannot: a second process, a warning on a valid input, printed output.
"""

from __future__ import annotations

import io
import subprocess
import sys
import time

import pytest
import torch
import yaml
from click.testing import CliRunner

from cnn_tracker import env
from cnn_tracker.cli import cli
from cnn_tracker.config import TrainConfig
from cnn_tracker.errors import UserError
from cnn_tracker.inputs import clip, load_yaml, name_problem, printable
from cnn_tracker.runs.lock import FolderLock, check_free
from cnn_tracker.search.spec import grid_size, validate
from cnn_tracker.training.checkpoint import atomic_save, make_checkpoint
from cnn_tracker.training.data import SPECS
from cnn_tracker.training.models import build_model, model_args

from .conftest import TINY_ARGS

HOLD = """
import sys, time
from pathlib import Path
from cnn_tracker.runs.lock import FolderLock
lock = FolderLock()
lock.acquire(Path(sys.argv[1]))
lock.label("run0001")
print("locked", flush=True)
time.sleep(120)
"""


def test_a_second_run_into_a_held_folder_is_refused_and_the_lock_dies_with_its_process(
        tmp_path, tiny_root):
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(UserError, match=r"out is in use by run run0001 \(process \d+\)"):
            check_free(out)
        argv = ["train", "--data-dir", str(tiny_root), "--mode", "disabled", *TINY_ARGS,
                "--epochs", "1", "--output-dir", str(out)]
        result = CliRunner().invoke(cli, argv)
        assert result.exit_code == 2 and "is in use by run run0001" in result.output
        assert not (tmp_path / "work" / ".cnn-tracker").exists()  # refused before the store
    finally:
        holder.kill()
        holder.wait()
    check_free(out)  # the OS released the killed holder's lock
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 0, result.output
    assert (out / "summary.json").is_file() and (out / env.LOCK_FILE).is_file()
    check_free(out)  # released when the run returned
    result = CliRunner().invoke(cli, [*argv, "--seed", "1"])  # a later run may reuse the folder
    assert result.exit_code == 0, result.output


def test_the_lock_is_exclusive_within_one_process_and_released(tmp_path):
    first, second = FolderLock(), FolderLock()
    first.acquire(tmp_path / "f")
    first.label("abc")
    first.acquire(tmp_path / "f")  # the same folder again: a no-op
    with pytest.raises(UserError, match="in use by run abc"):
        second.acquire(tmp_path / "f")
    first.release()
    second.acquire(tmp_path / "f")
    second.release()


# -- sweeps -------------------------------------------------------------------------------------
def sweep(**fields) -> dict:
    doc = {"program": "cnn_tracker/__main__.py", "method": "bayes", "run_cap": 4,
           "metric": {"name": "val/accuracy", "goal": "maximize"},
           "command": ["${env}", "${interpreter}", "-m", "cnn_tracker", "train", "${args}"],
           "parameters": {"lr": {"min": 0.001, "max": 0.1}}}
    doc.update(fields)
    return {k: v for k, v in doc.items() if v is not None}


@pytest.mark.parametrize("command", ["validate", "create"])
def test_an_accuracy_without_goal_is_warned_about_w_and_b_minimizing_it(tmp_path, command):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(sweep(metric={"name": "val/accuracy"})))
    argv = ["sweep", command, str(path)] + (["--offline"] if command == "create" else [])
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 0, result.output
    assert "warning: metric 'val/accuracy' has no goal: W&B then minimizes it" in result.stderr
    assert "add 'goal: maximize'" in result.stderr


def test_a_loss_without_goal_is_fine_and_a_goal_silences_the_warning():
    for metric in ({"name": "val/loss"}, {"name": "val/accuracy", "goal": "maximize"}):
        errors, warns = validate(sweep(metric=metric))
        assert errors == [] and not [w for w in warns if "no goal" in w]


def test_a_missing_program_is_an_error_with_or_without_a_command():
    for fields in ({"program": None}, {"program": None, "command": None}):
        errors, _ = validate(sweep(**fields))
        assert any(e.startswith("program: missing") for e in errors), errors


def test_grid_size_is_counted_without_enumerating():
    huge = {"method": "grid", "parameters": {f"k{i}": {"values": list(range(100))} for i in range(40)}}
    start = time.perf_counter()
    assert grid_size(huge) == 100 ** 40
    assert grid_size({"method": "grid", "parameters": {
        "a": {"value": 1}, "b": {"min": 1, "max": 10}, "c": {"distribution": "q_uniform",
                                                          "min": 0, "max": 1, "q": 0.25}}}) == 40
    assert grid_size({"method": "random", "parameters": {}}) is None
    assert grid_size({"method": "grid", "parameters": {"a": {"min": 0.1, "max": 1.0}}}) is None
    errors, _ = validate(sweep(method="grid", parameters={
        "seed": {"min": 0, "max": 10**15}, "lr": {"values": [0.01]}}))
    assert any("method grid has 1e+15 points" in e for e in errors)
    assert time.perf_counter() - start < 5


def test_agent_gpus_must_be_visible(monkeypatch):
    monkeypatch.setattr("torch.cuda.device_count", lambda: 0)
    result = CliRunner().invoke(cli, ["agent", "x", "--gpus", "0"])
    assert result.exit_code == 2 and "no CUDA GPU is visible here" in result.output
    monkeypatch.setattr("torch.cuda.device_count", lambda: 2)
    result = CliRunner().invoke(cli, ["agent", "x", "--gpus", "1,2"])
    assert result.exit_code == 2 and "GPU 2 is not visible here (2 GPU(s): 0 to 1)" in result.output


# -- the inputs module ----------------------------------------------------------------------------
def test_printable_escapes_control_characters_and_keeps_text():
    assert printable("T-shirt/top é 数字") == "T-shirt/top é 数字"
    assert printable("a\x1b[2Jb\x07\x9b\u202e") == "a\\x1b[2Jb\\x07\\x9b\\u202e"
    assert printable("one\ntwo", keep_newlines=True) == "one\ntwo"
    assert printable("one\ntwo") == "one\\x0atwo"


def test_clip_keeps_messages_to_one_short_line():
    assert clip("x" * 10) == "'xxxxxxxxxx'"
    long = clip("y\n" * 1000)
    assert len(long) < 120 and "\n" not in long and "(3002 characters)" in long


@pytest.mark.parametrize("name, ok", [("lenet-lr0.01", True), ("run 1", True), ("a.b", True),
                                      ("../../x", False), ("..", False), (".", False), ("a/b", False),
                                      ("a\\b", False), ("", False), ("x" * 129, False),
                                      ("a\x1bb", False), ("a\u202eb", False)])
def test_a_name_is_a_name(name, ok):
    assert (name_problem(name) is None) == ok


def test_yaml_merge_keys_and_shared_aliases_still_load():
    text = "base: &b {lr: 0.1, epochs: 2}\nrun:\n  <<: *b\n  lr: 0.2\nboth: [*b, *b]\n"
    assert load_yaml(text)["run"] == {"lr": 0.2, "epochs": 2}


# -- terminal text from files ---------------------------------------------------------------------
ESC = "\x1b]0;owned\x07\x1b[2J"


def hostile_checkpoint(path):
    args = model_args("lenet")
    ckpt = make_checkpoint(build_model("lenet", args), "lenet", args, TrainConfig(model="lenet"),
                           SPECS["mnist"], 1, {"val/accuracy": 0.5})
    ckpt["class_names"] = [f"{ESC}{i}" for i in range(10)]
    return atomic_save(ckpt, path)


def test_class_names_from_a_checkpoint_reach_the_terminal_escaped(tmp_path, tiny_root):
    from PIL import Image

    ckpt = hostile_checkpoint(tmp_path / "hostile.pt")
    image = tmp_path / "digit.png"
    buffer = io.BytesIO()
    Image.new("L", (28, 28), 40).save(buffer, "PNG")
    image.write_bytes(buffer.getvalue())
    for argv in (["evaluate", str(ckpt), "--data-dir", str(tiny_root), "--no-plots"],
                 ["predict", str(ckpt), str(image)]):
        result = CliRunner().invoke(cli, argv)
        assert result.exit_code == 0, result.output
        assert "\x1b" not in result.output and "\x07" not in result.output
    assert "\\x1b]0;owned\\x07\\x1b[2J" in CliRunner().invoke(cli, argv[:3]).output  # predict
    result = CliRunner().invoke(cli, ["predict", str(ckpt), str(image), "--json"])
    assert "\x1b" not in result.output  # JSON escapes them itself (\u001b)


def test_a_onecycle_of_exactly_four_steps_trains():
    """torch's OneCycleLR divides by zero when pct_start * total_steps == 1."""
    from cnn_tracker.training.runtime import make_scheduler

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = make_scheduler(TrainConfig(scheduler="onecycle"), opt, total_steps=4)
    for _ in range(4):
        opt.step()
        scheduler.step()
