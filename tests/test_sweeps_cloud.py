"""The W&B cloud side of sweeps, at the SDK boundary: wandb.sweep, wandb.Api and agent launches
are faked (no server is reachable in tests); everything on our side of them is real."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from cnn_tracker.cli import cli
from cnn_tracker.results.remote import sweep_path
from cnn_tracker.search import agent as agent_mod
from cnn_tracker.search.launch import agent_slots, launch

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def api_key(monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)


class FakePopen:
    """Records what would have been started; every process exits 0 at once."""

    started: list["FakePopen"] = []

    def __init__(self, argv, env=None, start_new_session=False):
        self.argv, self.env, self.new_session = list(argv), dict(env or {}), start_new_session
        self.returncode = 0
        FakePopen.started.append(self)

    def wait(self, timeout=None):
        return 0

    def poll(self):
        return 0


@pytest.fixture
def fake_popen(monkeypatch):
    FakePopen.started = []
    monkeypatch.setattr(agent_mod.subprocess, "Popen", FakePopen)
    return FakePopen.started


def test_sweep_create_online_calls_wandb_sweep(monkeypatch, api_key):
    import wandb

    calls = []

    def fake_sweep(sweep, project=None, entity=None, prior_runs=None):
        calls.append((sweep, project, entity))
        return "abc123"

    monkeypatch.setattr(wandb, "sweep", fake_sweep)
    result = CliRunner().invoke(cli, ["sweep", "create", str(REPO / "sweeps" / "mnist_bayes.yaml"),
                                      "--project", "proj", "--entity", "team", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["sweep_id"] == "team/proj/abc123" and out["mode"] == "online"
    assert out["agent_command"] == "cnn-tracker agent team/proj/abc123"
    config, project, entity = calls[0]
    assert project == "proj" and entity == "team" and config["method"] == "bayes"
    assert not Path(".cnn-tracker").exists()  # nothing local was created


def test_sweep_create_online_refuses_an_invalid_file_before_calling_wandb(monkeypatch, api_key, tmp_path):
    import wandb

    monkeypatch.setattr(wandb, "sweep", lambda *a, **k: pytest.fail("must not be called"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: bayes\nprogram: cnn_tracker/__main__.py\ncommand: ['${env}', "
                   "'${interpreter}', -m, cnn_tracker, train, '${args}']\n"
                   "parameters: {lr_rate: {values: [0.1]}}\n")
    result = CliRunner().invoke(cli, ["sweep", "create", str(bad)])
    assert result.exit_code == 2 and "lr_rate" in result.output


def test_sweep_create_without_key_falls_back_to_the_local_store():
    result = CliRunner().invoke(cli, ["sweep", "create", str(REPO / "sweeps" / "smoke_random.yaml"),
                                      "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["mode"] == "offline" and Path(out["store"], "store.db").is_file()


def test_online_agents_one_per_gpu(fake_popen, api_key, monkeypatch):
    monkeypatch.setattr("torch.cuda.device_count", lambda: 4)  # --gpus must name visible GPUs
    result = CliRunner().invoke(cli, ["agent", "team/proj/abc123", "--gpus", "0,1,3", "--count", "5",
                                      "--stagger", "0"])
    assert result.exit_code == 0, result.output
    assert len(fake_popen) == 3
    for proc, gpu in zip(fake_popen, ["0", "1", "3"]):
        assert proc.env["CUDA_VISIBLE_DEVICES"] == gpu  # each agent sees only its GPU
        assert proc.argv[:4] == [sys.executable, "-m", "wandb", "agent"]
        assert "--forward-signals" in proc.argv and proc.argv[-1] == "team/proj/abc123"
        assert proc.argv[proc.argv.index("--count") + 1] == "5"
        assert proc.argv[proc.argv.index("--max-consecutive-failed-runs") + 1] == "3"
        # `${interpreter}` is plain `python` for wandb agent: this environment's comes first
        assert proc.env["PATH"].split(":")[0] == str(Path(sys.executable).parent)
        assert proc.new_session


def test_local_agents_one_per_gpu(fake_popen, tmp_path, monkeypatch):
    monkeypatch.setattr("torch.cuda.device_count", lambda: 2)  # --gpus must name visible GPUs
    sweep = json.loads(CliRunner().invoke(
        cli, ["sweep", "create", str(REPO / "sweeps" / "smoke_random.yaml"), "--offline", "--json"]
    ).output)["sweep_id"]
    result = CliRunner().invoke(cli, ["agent", sweep, "--gpus", "0,1", "--stagger", "0"])
    assert result.exit_code == 0, result.output
    assert [p.env["CUDA_VISIBLE_DEVICES"] for p in fake_popen] == ["0", "1"]
    assert all(p.argv[1:5] == ["-m", "cnn_tracker", "agent", sweep] for p in fake_popen)
    assert len({p.argv[p.argv.index("--name") + 1] for p in fake_popen}) == 2


def test_agent_argument_errors(api_key):
    for args, needle in ((["x/y/z", "--gpus", "0,0"], "distinct GPU indices"),
                         (["x/y/z", "--gpus", "a,b"], "distinct GPU indices"),
                         (["x/y/z", "--gpus", "0", "--agents", "2"], "not both")):
        result = CliRunner().invoke(cli, ["agent", *args])
        assert result.exit_code == 2 and needle in result.output


def test_unknown_sweep_without_key_is_a_clear_error():
    result = CliRunner().invoke(cli, ["agent", "zzzz9999"])
    assert result.exit_code == 2 and "not in the local run store" in result.output
    assert "WANDB_API_KEY" in result.output


def test_launch_staggers_agents_and_splits_cpu_threads(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    slots = agent_slots(None, 2)
    assert all(s["OMP_NUM_THREADS"] for s in slots)
    events = []

    def spawn(argv, env, start_new_session):
        events.append(("start", argv[0], env.get("OMP_NUM_THREADS")))
        return SimpleNamespace(wait=lambda: 0, poll=lambda: 0)

    rc = launch([["a"], ["b"], ["c"]], [{}, {}, {}], stagger=2.5, echo=lambda s: None, spawn=spawn,
                sleep=lambda s: events.append(("sleep", s)))
    assert rc == 0
    assert events == [("start", "a", None), ("sleep", 2.5), ("start", "b", None), ("sleep", 2.5),
                      ("start", "c", None)]
    assert agent_slots(["0", "1"], 1) == [{"CUDA_VISIBLE_DEVICES": "0"}, {"CUDA_VISIBLE_DEVICES": "1"}]


def test_sweep_path_forms():
    assert sweep_path("abc", "proj", "team") == "team/proj/abc"
    assert sweep_path("proj/abc", None, "team") == "team/proj/abc"
    assert sweep_path("team/proj/abc", "other", "x") == "team/proj/abc"
    assert sweep_path("https://wandb.ai/team/proj/sweeps/abc", None, None) == "team/proj/abc"


class FakeRun:
    def __init__(self, run_id, acc, state="finished"):
        self.id, self.name, self.state = run_id, f"lenet-mnist-{run_id}", state
        self.entity, self.project = "team", "proj"
        self.config = {"lr": 0.01 * acc, "model": "lenet", "_wandb": {}}
        self.summary_metrics = {"val/accuracy": acc, "test/accuracy": acc - 0.01, "epoch": 3}


class FakeSweep:
    config = {"method": "bayes", "metric": {"name": "val/accuracy", "goal": "maximize"},
              "parameters": {"lr": {"min": 0.001, "max": 0.1}, "model": {"value": "lenet"}}}
    state = "RUNNING"

    def __init__(self):
        self.runs = [FakeRun("r1", 0.91), FakeRun("r2", 0.95), FakeRun("r3", 0.93)]

    def best_run(self, order=None):
        return max(self.runs, key=lambda r: r.summary_metrics["val/accuracy"])


@pytest.fixture
def fake_api(monkeypatch, tmp_path, tiny_root):
    import wandb

    calls = []
    # a real checkpoint to serve as the artifact's file
    result = CliRunner().invoke(cli, ["train", "--data-dir", str(tiny_root), "--mode", "disabled",
                                      "--output-dir", str(tmp_path / "run"), "--epochs", "1",
                                      "--val_size", "50", "--model", "mlp", "--quiet"])
    assert result.exit_code == 0, result.output
    ckpt = tmp_path / "run" / "checkpoints" / "best.pt"

    logged = wandb.Artifact("model-r2", type="model")  # a real manifest: downloads are verified
    logged.add_file(str(ckpt), name="best.pt")
    logged.is_draft = lambda: False  # as if logged: its real Artifact.verify checks the download

    class FakeArtifact:
        manifest = logged.manifest
        verify = logged.verify

        def download(self, root):
            Path(root).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ckpt, Path(root) / "best.pt")
            return root

    class FakeApi:
        def __init__(self, timeout=None):
            pass

        def sweep(self, path):
            calls.append(("sweep", path))
            return FakeSweep()

        def runs(self, path, order=None, per_page=None):
            calls.append(("runs", path, order))
            return [FakeRun("p1", 0.80), FakeRun("p2", 0.97), FakeRun("p3", 0.99, state="crashed")]

        def artifact(self, name, type=None):
            calls.append(("artifact", name, type))
            return FakeArtifact()

    class FakeEvalRun:  # online, a download is an input of a short eval run (lineage)
        def __init__(self, **kwargs):
            calls.append(("init", kwargs.get("entity"), kwargs.get("project"), kwargs.get("job_type")))

        def use_artifact(self, name, type=None):
            return FakeApi().artifact(name, type)

        def finish(self, exit_code=0):
            calls.append(("finish", exit_code))

    monkeypatch.setattr(wandb, "Api", FakeApi)
    monkeypatch.setattr(wandb, "init", FakeEvalRun)  # no W&B server: the eval run is faked too
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    return calls


def test_best_of_a_wandb_sweep_downloads_the_best_artifact(fake_api, tmp_path, tiny_root):
    result = CliRunner().invoke(cli, ["best", "team/proj/abc123", "--download", str(tmp_path / "dl"),
                                      "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["run_id"] == "r2" and out["metric"]["value"] == 0.95
    assert out["checkpoint"] == "team/proj/model-r2:best"  # the best checkpoint, not the last
    assert ("artifact", "team/proj/model-r2:best", "model") in fake_api
    assert Path(out["downloaded"]) == tmp_path / "dl" / "best.pt"
    assert "_wandb" not in out["config"]
    ev = CliRunner().invoke(cli, ["evaluate", out["downloaded"], "--json", "--no-plots",
                                  "--data-dir", str(tiny_root)])
    assert ev.exit_code == 0, ev.output  # the pulled file works directly with evaluate
    assert json.loads(ev.output)["model"] == "mlp"


def test_best_of_a_wandb_project_skips_crashed_runs(fake_api):
    result = CliRunner().invoke(cli, ["best", "team/proj", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["run_id"] == "p2"
    assert ("runs", "team/proj", "-summary_metrics.val/accuracy") in fake_api


def test_sweep_status_of_a_wandb_sweep(fake_api):
    result = CliRunner().invoke(cli, ["sweep", "status", "team/proj/abc123"])
    assert result.exit_code == 0, result.output
    assert "r2" in result.output and "best: r2" in result.output
    data = json.loads(CliRunner().invoke(cli, ["sweep", "status", "team/proj/abc123", "--json"]).output)
    assert data["parameters"] == ["lr"] and len(data["runs"]) == 3 and data["best"] == "r2"


def test_wandb_agent_help_matches_the_flags_we_pass():
    """The flags we hand to `python -m wandb agent` exist in the installed SDK's CLI."""
    out = subprocess.run([sys.executable, "-m", "wandb", "agent", "--help"], capture_output=True,
                         text=True, timeout=120).stdout
    for flag in ("--count", "--forward-signals", "--max-consecutive-failed-runs"):
        assert flag in out
