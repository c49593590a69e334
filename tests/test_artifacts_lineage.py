"""Model artifacts: aliases and metadata of a real offline run, lineage of downloads, Registry links.

Real offline W&B runs throughout, read back with ``wandb leet inspect``; no W&B server is
reachable, so the network is faked only where a run or ``wandb.Api`` would reach it: the eval
run's ``Run.use_artifact`` (an offline run cannot record a use) and ``wandb.Api``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from cnn_tracker.cli import cli

from .conftest import TINY_ARGS
from .test_e2e import leet_records, leet_summary

REF = "me/cnn-tracker/model-abc123:best"
KEY = "k" * 40


def model_versions(run_dir: Path) -> list[dict]:
    """The ``model`` artifact versions a run logged, in order: name, aliases, files, metadata."""
    versions = []
    for record in leet_records(run_dir):
        artifact = record.get("artifact") or {}
        if record.get("type") == "artifact" and artifact.get("type") == "model":
            versions.append({"name": artifact["name"], "aliases": artifact["aliases"],
                             "files": [c["path"] for c in artifact["manifest"]["contents"]],
                             "metadata": json.loads(artifact["metadata"])})
    return versions


def offline_run_dirs(root: Path) -> list[Path]:
    return sorted((root / "wandb").glob("offline-run-*"))


def test_best_and_last_checkpoints_are_versions_with_score_and_epoch(tiny_root, isolated_env):
    result = CliRunner().invoke(cli, ["train", "--data-dir", str(tiny_root), "--output-dir", "out",
                                      "--mode", "offline", *TINY_ARGS, "--epochs", "3"])
    assert result.exit_code == 0, result.output
    summary = json.loads(Path("out/summary.json").read_text())
    (run_dir,) = offline_run_dirs(isolated_env)
    versions = model_versions(run_dir)
    history = summary["history"]
    bests = [v for v in versions if "best" in v["aliases"]]
    assert bests and versions[:len(bests)] == bests  # every new best during training, then last
    for v in bests:
        assert v["name"] == f"model-{summary['run_id']}" and v["files"] == ["best.pt"]
        epoch = v["metadata"]["epoch"]
        assert v["metadata"]["score"] == history[epoch - 1]["val/accuracy"]
    assert bests[-1]["metadata"]["epoch"] == summary["best/epoch"]
    assert bests[-1]["metadata"]["score"] == summary["best/val_accuracy"]
    last = versions[-1]  # the end of training: last.pt, alias latest (and not best)
    assert last["name"] == f"model-{summary['run_id']}" and last["files"] == ["last.pt"]
    assert last["aliases"] == ["latest"]
    assert last["metadata"]["epoch"] == 3 == history[-1]["epoch"]
    assert last["metadata"]["score"] == history[-1]["val/accuracy"]
    assert last["metadata"]["model"] == "lenet" and len(versions) == len(bests) + 1


@pytest.fixture
def served(tmp_path, monkeypatch):
    """A real checkpoint as the artifact's file, a real manifest (digests by wandb.Artifact),
    and a recording ``Run.use_artifact`` that serves it; W&B "online" with a key."""
    import wandb
    from wandb.sdk.wandb_run import Run

    from cnn_tracker.config import TrainConfig
    from cnn_tracker.training.checkpoint import atomic_save, make_checkpoint
    from cnn_tracker.training.data import SPECS
    from cnn_tracker.training.models import build_model, model_args

    args = model_args("mlp")
    ckpt = make_checkpoint(build_model("mlp", args), "mlp", args, TrainConfig(model="mlp"),
                           SPECS["mnist"], epoch=1, metrics={"val/accuracy": 0.1})
    best = atomic_save(ckpt, tmp_path / "served" / "best.pt")
    logged = wandb.Artifact("model-abc123", type="model")
    logged.add_file(str(best), name="best.pt")
    logged.is_draft = lambda: False  # as if logged: its real Artifact.verify runs on the manifest
    state = {"uses": [], "inits": [], "damage": None}

    class ServedArtifact:
        manifest = logged.manifest
        verify = logged.verify

        def download(self, root):
            Path(root).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(best, Path(root) / "best.pt")
            if state["damage"]:
                state["damage"](Path(root) / "best.pt")
            return root

    def use_artifact(run, name, type=None, **kwargs):
        state["uses"].append((run.id, run.job_type, name, type))
        return ServedArtifact()

    real_init = wandb.init
    wandb.teardown()  # W&B's process-wide settings keep the first test's WANDB_DIR otherwise

    def init(**kwargs):  # the eval run, offline: no server to record the use
        state["inits"].append(dict(kwargs))
        return real_init(**{**kwargs, "mode": "offline"})

    state["artifact"] = ServedArtifact
    monkeypatch.setattr(Run, "use_artifact", use_artifact)
    monkeypatch.setattr(wandb, "init", init)
    monkeypatch.setenv("WANDB_API_KEY", KEY)
    return state


def test_online_evaluate_records_the_download_as_an_eval_runs_input(served, tiny_root,
                                                                    isolated_env):
    result = CliRunner().invoke(cli, ["evaluate", REF, "--data-dir", str(tiny_root), "--json",
                                      "--no-plots"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["model"] == "mlp"
    (init,) = served["inits"]
    assert (init["entity"], init["project"], init["job_type"]) == ("me", "cnn-tracker", "eval")
    (run_dir,) = offline_run_dirs(isolated_env)
    run_id = run_dir.name.rsplit("-", 1)[-1]
    assert served["uses"] == [(run_id, "eval", REF, "model")]
    records = leet_records(run_dir)
    assert [r["run"]["job_type"] for r in records if r.get("type") == "run"][0] == "eval"
    assert [r["exit"]["exit_code"] for r in records if r.get("type") == "exit"] == [0]
    assert leet_summary(run_dir)  # a complete, readable run file


def test_a_modified_download_fails_the_eval_run_and_loads_nothing(served, tiny_root, isolated_env):
    def flip(path: Path) -> None:
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))

    served["damage"] = flip
    result = CliRunner().invoke(cli, ["evaluate", REF, "--data-dir", str(tiny_root), "--json"])
    assert result.exit_code == 2, result.output
    assert "'best.pt'" in result.output and "modified or corrupted" in result.output
    (run_dir,) = offline_run_dirs(isolated_env)
    assert [r["exit"]["exit_code"] for r in leet_records(run_dir) if r.get("type") == "exit"] == [1]


def test_best_download_uses_the_artifact_in_an_eval_run(served, isolated_env):
    from cnn_tracker.results.remote import download_checkpoint

    got = download_checkpoint(REF, isolated_env / "dl")
    assert got == isolated_env / "dl" / "best.pt"
    assert [u[1:] for u in served["uses"]] == [("eval", REF, "model")]


def test_offline_mode_downloads_through_the_api_without_a_run(served, isolated_env, monkeypatch):
    """WANDB_MODE=offline: a run could not record the use, so no eval run is started."""
    import wandb

    asked = []

    class FakeApi:
        def __init__(self, *args, **kwargs):
            pass

        def artifact(self, name, type=None):
            asked.append((name, type))
            return served["artifact"]()

    monkeypatch.setattr(wandb, "Api", FakeApi)
    monkeypatch.setenv("WANDB_MODE", "offline")
    from cnn_tracker.tracking.artifacts import download_artifact

    assert download_artifact(REF, isolated_env / "dl").name == "best.pt"
    assert asked == [(REF, "model")] and served["inits"] == []


# -- the Registry: best --link ----------------------------------------------------------------
class FakeRun:
    id, name, state, entity, project = "abc123", "mlp-mnist-abc123", "finished", "me", "cnn-tracker"
    config = {"model": "mlp", "lr": 0.01}
    summary_metrics = {"val/accuracy": 0.9, "test/accuracy": 0.88}


def fake_registry_api(monkeypatch) -> list:
    import wandb

    calls = []

    class Linked:
        qualified_name = "my-org/wandb-registry-model/mnist-cnn:v0"

    class Logged:
        def __init__(self, name):
            self.name = name

        def link(self, target_path, aliases=None):
            calls.append(("link", self.name, target_path))
            return Linked()

    class FakeApi:
        def __init__(self, *args, **kwargs):
            pass

        def runs(self, path, order=None, per_page=None):
            calls.append(("runs", path))
            return [FakeRun()]

        def artifact(self, name, type=None):
            calls.append(("artifact", name, type))
            return Logged(name)

    monkeypatch.setattr(wandb, "Api", FakeApi)
    return calls


def test_best_link_links_the_best_runs_model_into_the_registry(isolated_env, monkeypatch):
    calls = fake_registry_api(monkeypatch)
    monkeypatch.setenv("WANDB_API_KEY", KEY)
    result = CliRunner().invoke(cli, ["best", "me/cnn-tracker", "--link", "model/mnist-cnn",
                                      "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    assert found["linked"] == "my-org/wandb-registry-model/mnist-cnn:v0"
    assert ("artifact", REF, "model") in calls
    assert calls[-1] == ("link", REF, "wandb-registry-model/mnist-cnn")
    text = CliRunner().invoke(cli, ["best", "me/cnn-tracker", "--link",
                                    "wandb-registry-model/mnist-cnn"])
    assert text.exit_code == 0 and "linked to the W&B Registry: my-org/" in text.output
    assert calls[-1] == ("link", REF, "wandb-registry-model/mnist-cnn")


@pytest.mark.parametrize("setup, link, needle", [
    ({}, "model/mnist-cnn", "needs W&B online"),  # no key
    ({"WANDB_API_KEY": KEY, "WANDB_MODE": "offline"}, "model/mnist-cnn", "needs W&B online"),
    ({"WANDB_API_KEY": KEY}, "mnist-cnn", "is not REGISTRY/COLLECTION"),
])
def test_best_link_refuses_clearly(setup, link, needle, isolated_env, monkeypatch):
    calls = fake_registry_api(monkeypatch)
    for name, value in setup.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(cli, ["best", "me/cnn-tracker", "--link", link])
    assert result.exit_code == 2 and needle in result.output, result.output
    assert calls == []  # refused before any W&B call
