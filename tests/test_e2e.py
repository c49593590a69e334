"""End to end: real offline W&B runs of `cnn-tracker train`, read back with W&B's own reader."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from cnn_tracker.cli import cli

from .conftest import TINY_ARGS, isolate


def wandb_exe() -> str:
    return str(Path(sys.executable).with_name("wandb"))


def leet_summary(run_dir: Path) -> dict:
    out = subprocess.run([wandb_exe(), "leet", "inspect", "--summary", "--json", str(run_dir)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def leet_records(run_dir: Path) -> list[dict]:
    out = subprocess.run([wandb_exe(), "leet", "inspect", "--json", str(run_dir)],
                         check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def run_train(tiny_root, *extra) -> tuple[object, dict]:
    result = CliRunner().invoke(
        cli, ["train", "--data-dir", str(tiny_root), "--output-dir", "out", *TINY_ARGS, *extra])
    assert result.exit_code == 0, result.output
    summary = json.loads(Path("out/summary.json").read_text())
    return result, summary


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory, tiny_root):
    """One offline run shared by the read-back tests (a real .wandb file)."""
    mp = pytest.MonkeyPatch()  # module scope runs before the per-test isolation: isolate here too
    work = isolate(mp, tmp_path_factory.mktemp("offline-run"))
    try:
        result, summary = run_train(tiny_root, "--mode", "offline", "--dataset", "fashion-mnist",
                                    "--tags", "e2e", "--group", "g1", "--log_every", "5")
        yield work, result, summary
    finally:
        mp.undo()


def test_offline_run_summary_config_and_metrics(offline_run):
    work, result, summary = offline_run
    assert "wandb sync" in result.output
    run_dir = Path(summary["wandb_dir"])
    assert run_dir.is_dir() and run_dir.name.startswith("offline-run-")
    s = leet_summary(run_dir)
    assert s["state"] == "finished" and s["exit_code"] == 0
    assert s["project"] == "cnn-tracker" and set(s["tags"]) >= {"fashion-mnist", "lenet", "e2e"}
    cfg = s["config"]
    assert cfg["dataset"] == "fashion-mnist" and cfg["epochs"] == 2 and cfg["batch_size"] == 32
    assert cfg["hidden_units"] == 120 and cfg["dropout"] == 0.0  # model defaults resolved
    summ = s["summary"]
    assert summ["epoch"] == 2
    # Best-so-far as plain numbers, so W&B can sort runs and pick a sweep's best run by them.
    assert summ["val/accuracy"] == pytest.approx(summary["best/val_accuracy"])
    assert summ["val/loss"] == pytest.approx(min(h["val/loss"] for h in summary["history"]))
    assert summ["test/accuracy"] == pytest.approx(summary["test/accuracy"])
    assert summ["test/loss"] == pytest.approx(summary["test/loss"])
    for key in ("train/loss", "train/accuracy", "lr", "perf/images_per_second",
                "best/epoch", "model/n_params", "batch/loss", "trainer/global_step"):
        assert key in summ, key
    for key in ("test/per_class", "test/most_confused", "test/misclassified",
                "test/confusion_matrix_table", "plots/confusion_matrix", "plots/curves"):
        assert key in summ, key
    assert summ["test/per_class"]["nrows"] == 10
    files = run_dir / "files"
    wrong = json.loads((files / summ["test/misclassified"]["path"]).read_text())
    assert wrong["columns"] == ["image", "index", "true", "predicted", "confidence", "top3"]
    n_wrong = sum(r["errors"] for r in summary["per_class"])
    assert len(wrong["data"]) == min(8, n_wrong)
    for row in wrong["data"]:
        assert row[2] != row[3]  # true != predicted
        assert row[5].startswith(row[3])  # top-3 starts with the prediction
    # the images travel in the table's run_table artifact: one PNG per row, plus the table
    tables = [r["artifact"] for r in leet_records(run_dir)
              if r.get("type") == "artifact" and "misclassified" in r["artifact"]["name"]]
    paths = [c["path"] for c in tables[-1]["manifest"]["contents"]]
    assert sum(p.endswith(".png") for p in paths) == len(wrong["data"])
    cm_table = json.loads((files / summ["test/confusion_matrix_table"]["path"]).read_text())
    assert cm_table["columns"] == ["Actual", "Predicted", "nPredictions"]
    cm = summary["confusion_matrix"]  # [true][predicted]
    names = [r["class"] for r in summary["per_class"]]
    for actual, predicted, count in cm_table["data"]:
        assert cm[names.index(actual)][names.index(predicted)] == count


def test_offline_run_history_has_every_epoch(offline_run):
    _, _, summary = offline_run
    records = leet_records(Path(summary["wandb_dir"]))
    history = [r["history"] for r in records if r.get("type") == "history"]
    epochs = []
    for h in history:
        items = h["item"]  # flat key -> value
        if "val/accuracy" in items:
            epochs.append(int(items["epoch"]))
            assert {"train/loss", "train/accuracy", "val/loss", "lr"} <= set(items)
    assert epochs == [1, 2]
    batch_steps = [h["item"]["trainer/global_step"] for h in history if "batch/loss" in h["item"]]
    assert batch_steps == list(range(5, batch_steps[-1] + 1, 5)) and len(batch_steps) >= 4


def test_offline_run_model_artifact_with_aliases(offline_run):
    _, _, summary = offline_run
    records = leet_records(Path(summary["wandb_dir"]))
    models = [r["artifact"] for r in records
              if r.get("type") == "artifact" and r["artifact"].get("type") == "model"]
    assert models, "no model artifact logged"
    run_id = summary["run_id"]
    assert all(a["name"] == f"model-{run_id}" for a in models)
    # Lightning's convention: each new best is a version with best.pt and alias best; the end
    # of training adds last.pt with alias latest (W&B gives every new version `latest`).
    *bests, last = models
    assert all("best" in a["aliases"] for a in bests)
    assert last["aliases"] == ["latest"] and [c["path"] for c in last["manifest"]["contents"]] == ["last.pt"]
    meta = json.loads(bests[-1]["metadata"])
    assert meta["val/accuracy"] == pytest.approx(summary["best/val_accuracy"]) == meta["score"]
    best_so_far, improvements = -1.0, 0
    for h in summary["history"]:
        if h["val/accuracy"] > best_so_far:
            best_so_far, improvements = h["val/accuracy"], improvements + 1
    assert len(bests) == improvements  # best.pt uploaded once per improvement, never otherwise


def test_local_outputs(offline_run):
    work, _, summary = offline_run
    out = work / "out"
    for name in ("curves.png", "confusion_matrix.png", "misclassified.png", "predictions.png",
                 "errors_per_batch.png", "summary.json", "checkpoints/best.pt", "checkpoints/last.pt"):
        assert (out / name).is_file(), name
    files = Path(summary["wandb_dir"]) / "files"
    assert (files / "summary.json").is_file() and (files / "confusion_matrix.png").is_file()
    cm = np.array(summary["confusion_matrix"])
    assert cm.shape == (10, 10) and cm.sum() == 120
    assert np.trace(cm) / cm.sum() == pytest.approx(summary["test/accuracy"])
    per_class = summary["per_class"]
    assert [r["class"] for r in per_class][:2] == ["T-shirt/top", "Trouser"]
    assert sum(r["errors"] for r in per_class) == cm.sum() - np.trace(cm)


def test_evaluate_reproduces_logged_test_accuracy(offline_run, tiny_root):
    work, _, summary = offline_run
    best = work / "out" / "checkpoints" / "best.pt"
    result = CliRunner().invoke(cli, ["evaluate", str(best), "--data-dir", str(tiny_root), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["test/accuracy"] == pytest.approx(summary["test/accuracy"], abs=1e-12)
    assert report["test/loss"] == pytest.approx(summary["test/loss"], rel=1e-6)
    assert len(report["per_class"]) == 10


def test_evaluate_text_and_plots(offline_run, tiny_root, tmp_path):
    work, _, _ = offline_run
    best = work / "out" / "checkpoints" / "best.pt"
    result = CliRunner().invoke(cli, ["evaluate", str(best), "--data-dir", str(tiny_root),
                                      "--output-dir", str(tmp_path / "ev")])
    assert result.exit_code == 0, result.output
    assert "test accuracy" in result.output and "most confused" in result.output
    assert (tmp_path / "ev" / "confusion_matrix.png").is_file()


def test_predict_on_image_files(offline_run, tmp_path):
    work, _, _ = offline_run
    best = work / "out" / "checkpoints" / "best.pt"
    # a large RGB image, dark object on a white background (the way photos look)
    img = np.full((120, 90, 3), 255, np.uint8)
    img[30:90, 20:70] = 40
    Image.fromarray(img).save(tmp_path / "photo.png")
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "small.bmp")
    result = CliRunner().invoke(cli, ["predict", str(best), str(tmp_path / "photo.png"),
                                      str(tmp_path / "small.bmp"), "--top-k", "3", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert len(out) == 2 and len(out[0]["top"]) == 3
    assert sum(t["probability"] for t in out[0]["top"]) <= 1.0 + 1e-6
    assert out[0]["predicted"] == out[0]["top"][0]["class"]
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    result = CliRunner().invoke(cli, ["predict", str(best), str(bad)])
    assert result.exit_code == 2 and "is not a readable image" in result.output


def test_disabled_mode_writes_no_wandb_files(tiny_root, isolated_env):
    result, summary = run_train(tiny_root, "--mode", "disabled")
    assert summary["mode"] == "disabled" and summary["wandb_dir"] == ""
    assert not (isolated_env / "wandb").exists()
    assert "test accuracy" in result.output


def run_cli_subprocess(args, extra_env=None):
    """The console script in a fresh process, the way a W&B agent launches it."""
    import os

    env = {**os.environ, **(extra_env or {})}
    exe = Path(sys.executable).with_name("cnn-tracker")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=env)


def test_sweep_values_in_wandb_config_win(tiny_root, isolated_env):
    """A W&B agent hands the sweep's values to wandb.init; they must beat CLI and file values."""
    params = isolated_env / "sweep-params.yaml"
    params.write_text("epochs:\n  value: 1\nbatch_size:\n  value: 16\nmodel:\n  value: mlp\n")
    proc = run_cli_subprocess(
        ["train", "--data-dir", str(tiny_root), "--output-dir", "out", *TINY_ARGS, "--mode", "offline"],
        {"WANDB_SWEEP_ID": "testsweep", "WANDB_SWEEP_PARAM_PATH": str(params)},
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(Path("out/summary.json").read_text())  # TINY_ARGS say epochs 2, batch 32
    assert summary["config"]["epochs"] == 1 and summary["config"]["batch_size"] == 16
    assert len(summary["history"]) == 1
    s = leet_summary(Path(summary["wandb_dir"]))
    assert s["config"]["batch_size"] == 16 and s["config"]["model"] == "mlp"
    assert s["config"]["hidden_units"] == 10  # mlp's own default, not lenet's
    assert "mlp" in s["tags"] and "lenet" not in s["tags"]  # tags follow the sweep's model
    assert summary["run_name"].startswith("mlp-mnist-")


def test_sweep_typo_fails_instead_of_training_on_defaults(tiny_root, isolated_env):
    params = isolated_env / "sweep-params.yaml"
    params.write_text("learning_rat:\n  value: 0.1\n")
    proc = run_cli_subprocess(
        ["train", "--data-dir", str(tiny_root), *TINY_ARGS, "--mode", "offline"],
        {"WANDB_SWEEP_ID": "testsweep", "WANDB_SWEEP_PARAM_PATH": str(params)},
    )
    assert proc.returncode == 2
    assert "unknown config key 'learning_rat' (from wandb.config)" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not Path("outputs").exists()


def test_bad_input_writes_nothing(tiny_root, isolated_env):
    result = CliRunner().invoke(cli, ["train", "--data-dir", str(tiny_root), "--epochs", "0"])
    assert result.exit_code == 2 and "'epochs'" in result.output
    result = CliRunner().invoke(cli, ["train", "--data-dir", str(tiny_root), "--val_size", "400",
                                      "--mode", "offline"])
    assert result.exit_code == 2 and "smaller than the mnist training set (400 images)" in result.output
    result = CliRunner().invoke(cli, ["train", "--data-dir", str(isolated_env / "nodata"),
                                      "--mode", "offline"])
    assert result.exit_code == 2 and "CNN_TRACKER_DATA_MIRROR" in result.output
    assert list(isolated_env.iterdir()) == []


def test_checkpoint_with_pickled_code_is_refused(tmp_path, isolated_env):
    path = tmp_path / "evil.pt"
    torch.save({"format": "cnn-tracker-checkpoint/1", "payload": Path("x")}, path)
    result = CliRunner().invoke(cli, ["evaluate", str(path)])
    assert result.exit_code == 2 and "pickled code" in result.output
    (tmp_path / "trunc.pt").write_bytes(b"PK\x03\x04garbage")
    result = CliRunner().invoke(cli, ["evaluate", str(tmp_path / "trunc.pt")])
    assert result.exit_code == 2 and "corrupted" in result.output
    result = CliRunner().invoke(cli, ["evaluate", str(tmp_path / "missing.pt")])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_console_script_runs_as_a_subprocess(tiny_root, isolated_env):
    proc = run_cli_subprocess(["train", "--data-dir", str(tiny_root), *TINY_ARGS, "--epochs=1",
                               "--mode=disabled", "--quiet", "--learning_rat=0.1"])
    assert proc.returncode == 2
    assert proc.stderr.startswith("Error: unknown config key 'learning_rat'")
    assert "Traceback" not in proc.stderr


def test_checkpoint_of_another_architecture_is_refused(offline_run, tmp_path):
    work, _, _ = offline_run
    ckpt = torch.load(work / "out" / "checkpoints" / "best.pt", weights_only=True)
    ckpt["model"] = "tinyvgg"  # lenet weights under another architecture's name
    torch.save(ckpt, tmp_path / "wrong.pt")
    result = CliRunner().invoke(cli, ["evaluate", str(tmp_path / "wrong.pt")])
    assert result.exit_code == 2 and "do not fit its model 'tinyvgg'" in result.output


def test_unwritable_output_folder_is_refused_before_anything_is_written(tiny_root, isolated_env):
    blocker = isolated_env / "a-file"
    blocker.write_text("")
    result = CliRunner().invoke(cli, ["train", "--data-dir", str(tiny_root), *TINY_ARGS,
                                      "--mode", "offline", "--output-dir", str(blocker / "out")])
    assert result.exit_code == 2 and "is not writable" in result.output
    assert sorted(p.name for p in isolated_env.iterdir()) == ["a-file"]
