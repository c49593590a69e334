"""Environment handling and the W&B cloud boundary (faked: no server is reachable in tests)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from cnn_tracker import env
from cnn_tracker.cli import cli
from cnn_tracker.errors import UserError
from cnn_tracker.tracking.artifacts import is_artifact_ref, resolve_checkpoint


def test_dotenv_loads_without_overriding(isolated_env, monkeypatch):
    (isolated_env / ".env").write_text(
        "# comment\nWANDB_PROJECT=from-dotenv\nexport CNN_TRACKER_DATA_DIR='/data/x'\nWANDB_ENTITY=dotenv\n")
    monkeypatch.setenv("WANDB_ENTITY", "already-set")
    set_now = env.load_dotenv_file()
    import os

    assert os.environ["WANDB_PROJECT"] == "from-dotenv"
    assert os.environ["CNN_TRACKER_DATA_DIR"] == "/data/x"
    assert os.environ["WANDB_ENTITY"] == "already-set"
    assert "WANDB_ENTITY" not in set_now


def test_mode_resolution(monkeypatch, tmp_path):
    mode, notice = env.resolve_mode(None)
    assert mode == "offline" and "wandb sync" in notice
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert env.resolve_mode(None) == ("online", None)
    monkeypatch.setenv("WANDB_MODE", "dryrun")
    assert env.resolve_mode(None) == ("offline", None)
    assert env.resolve_mode("disabled") == ("disabled", None)
    monkeypatch.setenv("WANDB_MODE", "sometimes")
    with pytest.raises(UserError, match="invalid W&B mode 'sometimes' \\(from WANDB_MODE\\)"):
        env.resolve_mode(None)


def test_netrc_counts_as_an_api_key(monkeypatch, tmp_path):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    assert env.has_api_key()


def test_online_without_key_is_a_clear_error(tiny_root, isolated_env):
    result = CliRunner().invoke(cli, ["train", "--data-dir", str(tiny_root), "--mode", "online"])
    assert result.exit_code == 2 and "WANDB_API_KEY" in result.output
    assert list(isolated_env.iterdir()) == []


def test_data_dir_precedence(monkeypatch, tmp_path):
    assert env.data_dir(None) == tmp_path / "cache" / "cnn-tracker" / "data"
    monkeypatch.setenv("CNN_TRACKER_DATA_DIR", str(tmp_path / "d"))
    assert env.data_dir(None) == tmp_path / "d"
    assert env.data_dir(str(tmp_path / "cli")) == tmp_path / "cli"


def test_artifact_reference_detection(tmp_path):
    assert is_artifact_ref("me/cnn-tracker/model-1a2b3c4d:best")
    assert is_artifact_ref("model-1a2b3c4d:v3")
    assert not is_artifact_ref("outputs/run/checkpoints/best.pt")
    assert resolve_checkpoint(str(tmp_path / "x.pt")) == tmp_path / "x.pt"


def test_artifact_reference_needs_a_key():
    with pytest.raises(UserError, match="no W&B API key"):
        resolve_checkpoint("me/proj/model-abc:best")


def test_artifact_download_through_wandb_api(monkeypatch, tmp_path, tiny_root, isolated_env):
    """Online path at the SDK boundary: wandb.Api().artifact(ref, type='model').download(root)."""
    # a real checkpoint to serve as the artifact's file
    result = CliRunner().invoke(cli, ["train", "--data-dir", str(tiny_root), "--mode", "disabled",
                                      "--output-dir", "run", "--epochs", "1", "--val_size", "50",
                                      "--model", "mlp", "--quiet"])
    assert result.exit_code == 0, result.output
    best = isolated_env / "run" / "checkpoints" / "best.pt"
    calls = []
    import wandb

    logged = wandb.Artifact("model-abc", type="model")  # its manifest holds best.pt's real digest
    logged.add_file(str(best), name="best.pt")
    logged.is_draft = lambda: False  # as if logged: its real Artifact.verify checks the download

    class FakeArtifact:
        manifest = logged.manifest
        verify = logged.verify

        def download(self, root):
            calls.append(("download", root))
            Path(root).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(best, Path(root) / "best.pt")
            return root

    class FakeApi:
        def artifact(self, name, type=None):
            calls.append(("artifact", name, type))
            return FakeArtifact()

    class FakeRun:  # online, the download is an input of a short eval run (lineage)
        def __init__(self, **kwargs):
            calls.append(("init", kwargs["entity"], kwargs["project"], kwargs["job_type"]))

        def use_artifact(self, name, type=None):
            return FakeApi().artifact(name, type)

        def finish(self, exit_code=0):
            calls.append(("finish", exit_code))

    monkeypatch.setattr(wandb, "Api", FakeApi)
    monkeypatch.setattr(wandb, "init", FakeRun)  # no W&B server: the online run is faked too
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    result = CliRunner().invoke(cli, ["evaluate", "me/cnn-tracker/model-abc:best",
                                      "--data-dir", str(tiny_root), "--json"])
    assert result.exit_code == 0, result.output
    assert calls.pop(0) == ("init", "me", "cnn-tracker", "eval")
    assert calls[0] == ("artifact", "me/cnn-tracker/model-abc:best", "model")
    assert calls[-1] == ("finish", 0)
    assert json.loads(result.output)["model"] == "mlp"
