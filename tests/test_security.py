"""Security: verified artifact downloads, no API key written anywhere, no shell, safe loads.

The secret scan runs the real CLI (train, an offline sweep, its agent, best) as subprocesses with
fake API keys planted in the environment and in ``.env``, then searches every byte written under
the test's folder (W&B run folders and their .wandb files, logs, the run store, checkpoints) for
the keys. W&B itself is faked only at the ``wandb.Api`` boundary, for the artifact download.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

from cnn_tracker.cli import cli
from cnn_tracker.errors import CheckpointError
from cnn_tracker.search.command import expand_command
from cnn_tracker.store.db import Store

from .conftest import REPO, TINY_ARGS

# Fake W&B API keys: 40 lowercase hex characters like real ones, and distinctive enough that a hit
# can only be the key itself.
ENV_KEY = hashlib.sha1(b"cnn-tracker test_security: fake key in the environment").hexdigest()
DOTENV_KEY = hashlib.sha1(b"cnn-tracker test_security: fake key in .env").hexdigest()
REF = "entity/project/model-abc:best"
PACKAGE = REPO / "cnn_tracker"


# -- 1. downloaded artifacts are checked against the manifest ---------------------------------
@pytest.fixture
def checkpoint_file(tmp_path) -> Path:
    """A real (untrained) cnn-tracker checkpoint to serve as the artifact's file."""
    from cnn_tracker.config import TrainConfig
    from cnn_tracker.training.checkpoint import atomic_save, make_checkpoint
    from cnn_tracker.training.data import SPECS
    from cnn_tracker.training.models import build_model, model_args

    args = model_args("mlp")
    ckpt = make_checkpoint(build_model("mlp", args), "mlp", args, TrainConfig(model="mlp"),
                           SPECS["mnist"], epoch=1, metrics={"val/accuracy": 0.1})
    return atomic_save(ckpt, tmp_path / "served" / "best.pt")


def flip_one_byte(folder: Path, name: str = "best.pt") -> None:
    data = bytearray((folder / name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (folder / name).write_bytes(bytes(data))


def remove(folder: Path, name: str = "best.pt") -> None:
    (folder / name).unlink()


def md5_b64(path: Path) -> str:
    """The W&B manifest digest form, computed independently of the SDK."""
    return base64.b64encode(hashlib.md5(path.read_bytes()).digest()).decode()


def serve_artifact(monkeypatch, files: dict[str, Path], damage=None, digest_algorithm="MD5"):
    """Fake ``wandb.Api`` whose artifact has a real manifest (digests computed by wandb.Artifact)
    and whose ``download(root)`` writes the real files, then applies ``damage(root)``."""
    import wandb

    logged = wandb.Artifact("model-abc", type="model", digest_algorithm=digest_algorithm)
    for name, path in files.items():
        logged.add_file(str(path), name=name)
    logged.is_draft = lambda: False  # as if logged: its real Artifact.verify runs on the manifest
    calls = []

    class FakeArtifact:
        manifest = logged.manifest
        verify = logged.verify

        def download(self, root):
            calls.append(root)
            for name, path in files.items():
                (Path(root) / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, Path(root) / name)
            if damage is not None:
                damage(Path(root))
            return root

    class FakeApi:
        def __init__(self, *args, **kwargs):
            pass

        def artifact(self, name, type=None):
            assert (name, type) == (REF, "model")
            return FakeArtifact()

    monkeypatch.setattr(wandb, "Api", FakeApi)
    monkeypatch.setenv("WANDB_API_KEY", ENV_KEY)
    monkeypatch.setenv("WANDB_MODE", "offline")
    return logged.manifest, calls


@pytest.mark.parametrize("damage", [None, flip_one_byte, remove],
                         ids=["intact", "one-byte-changed", "missing"])
def test_evaluate_loads_an_artifact_only_when_it_matches_its_manifest(
        damage, monkeypatch, checkpoint_file, tiny_root):
    manifest, downloads = serve_artifact(monkeypatch, {"best.pt": checkpoint_file}, damage)
    expected = manifest.entries["best.pt"].digest
    assert expected == md5_b64(checkpoint_file)  # W&B's digest: base64 of the file's MD5
    loads = []
    real_load = torch.load

    def spy_load(f, *args, **kwargs):
        loads.append(str(f))
        return real_load(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", spy_load)
    result = CliRunner().invoke(cli, ["evaluate", REF, "--data-dir", str(tiny_root), "--json",
                                      "--no-plots"])
    (folder,) = map(Path, downloads)
    if damage is None:
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["model"] == "mlp"
        assert loads == [str(folder / "best.pt")]
        return
    assert result.exit_code == 2, result.output
    assert loads == []  # refused before torch.load saw a byte
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: the W&B artifact"), result.output
    message = lines[0]
    for needle in (f"'{REF}'", "'best.pt'", str(folder), expected, "download again"):
        assert needle in message, (needle, message)
    if damage is flip_one_byte:
        actual = md5_b64(folder / "best.pt")
        assert actual != expected and f"MD5 digest {actual}, manifest {expected}" in message
        assert "modified or corrupted" in message
    else:
        assert "missing its file" in message and "no file on disk" in message


@pytest.mark.parametrize("algorithm", ["MD5", "XXH128"])
def test_best_download_verifies_every_manifest_file(algorithm, monkeypatch, checkpoint_file,
                                                    tmp_path):
    """The other call site (``best --download`` -> cloud.download_checkpoint), both W&B digests,
    and files other than the checkpoint."""
    from cnn_tracker.results.remote import download_checkpoint

    notes = tmp_path / "notes.txt"
    notes.write_text("trained on tiny data\n")
    files = {"best.pt": checkpoint_file, "extra/notes.txt": notes}
    serve_artifact(monkeypatch, files, None, algorithm)
    got = download_checkpoint(REF, tmp_path / "good")
    assert got == tmp_path / "good" / "best.pt" and got.read_bytes() == checkpoint_file.read_bytes()

    def damage(root):
        flip_one_byte(root, "extra/notes.txt")

    serve_artifact(monkeypatch, files, damage, algorithm)
    with pytest.raises(CheckpointError, match=rf"'extra/notes.txt' .* \({algorithm} digest "):
        download_checkpoint(REF, tmp_path / "bad")


# -- 2. the API key is never written anywhere ---------------------------------------------------
SWEEP = {
    "program": "cnn_tracker/__main__.py", "method": "grid", "metric": {"name": "val/accuracy", "goal": "maximize"},
    "command": ["${env}", "${interpreter}", "-m", "cnn_tracker", "train", "${args}"],
    "parameters": {"model": {"value": "mlp"}, "epochs": {"value": 1}, "batch_size": {"value": 32},
                   "val_size": {"value": 50}, "log_misclassified": {"value": 8},
                   "eval_batch_size": {"value": 64}, "device": {"value": "cpu"},
                   "lr": {"values": [0.003, 0.03]}},
}


def scan(root: Path, needles: dict[str, bytes], skip: set[Path]) -> tuple[list[str], int, int]:
    """Every ``name in path @ offset`` where a needle occurs in a file under ``root``."""
    hits, n_files, n_bytes = [], 0, 0
    for path in sorted(root.rglob("*")):
        if path in skip or path.is_symlink() or not path.is_file():
            continue
        data = path.read_bytes()
        n_files, n_bytes = n_files + 1, n_bytes + len(data)
        for name, needle in needles.items():
            if (at := data.find(needle)) >= 0:
                hits.append(f"{name} in {path.relative_to(root)} @ {at}")
    return hits, n_files, n_bytes


@pytest.mark.slow
def test_no_api_key_is_written_to_any_file_or_output(tiny_root, tmp_path, isolated_env):
    work = isolated_env
    dotenv = work / ".env"  # the .env path: the only place this key is given
    dotenv.write_text(f"WANDB_API_KEY={DOTENV_KEY}\nWANDB_MODE=offline\n")
    (tmp_path / "tmp").mkdir()
    base = {**os.environ, "TMPDIR": str(tmp_path / "tmp")}  # W&B's temp files land in the scan
    logs = tmp_path / "outputs"  # every command's stdout + stderr, scanned with the rest
    logs.mkdir()

    def start(*args, env) -> tuple[subprocess.Popen, Path]:
        log = logs / f"{len(list(logs.iterdir())):02d}-{args[0]}.txt"
        with open(log, "wb") as out:
            return subprocess.Popen([sys.executable, "-m", "cnn_tracker", *args], env=env,
                                    stdout=out, stderr=subprocess.STDOUT), log

    def finish(proc_log) -> str:
        proc, log = proc_log
        assert proc.wait(timeout=300) == 0, log.read_text()
        return log.read_text()

    # train, key from .env only (WANDB_MODE=offline from there too; without the .env file it
    # would print the "no API key found" notice). It runs alongside the sweep (2 cores).
    train = start("train", "--data-dir", str(tiny_root), "--output-dir", "out-train", *TINY_ARGS,
                  env=base)
    # an offline sweep, key in the environment (it wins over .env): trials inherit it
    keyed = {**base, "WANDB_API_KEY": ENV_KEY, "WANDB_MODE": "offline",
             "CNN_TRACKER_DATA_DIR": str(tiny_root)}
    (work / "sweep.yaml").write_text(yaml.safe_dump(SWEEP))
    try:
        created = finish(start("sweep", "create", "sweep.yaml", "--offline", "--json", env=keyed))
        sweep_id = json.loads(created)["sweep_id"]
        finish(start("agent", sweep_id, "--count", "2", env=keyed))
    except BaseException:
        train[0].kill()  # no orphan train when the sweep part fails
        raise
    assert "no API key" not in finish(train)
    best = json.loads(finish(start("best", sweep_id, "--json", env=keyed)))
    finish(start("best", sweep_id, "--download", "pulled", env=keyed))
    runs = Store().runs(sweep_id=sweep_id)
    assert [r.state for r in runs] == ["finished", "finished"]
    assert best["run_id"] in {r.id for r in runs}

    # the scan covers what was written: W&B's binary run files and logs, the store, checkpoints
    written = {p.name for p in tmp_path.rglob("*") if p.is_file()}
    assert sum(n.endswith(".wandb") for n in written) == 3  # train + 2 trials
    for name in ("store.db", "summary.json", "best.pt", "debug.log", "debug-internal.log",
                 f"{runs[0].id}.log", f"config-{runs[0].id}.yaml", f"config-{runs[0].id}.json"):
        assert name in written, name
    assert any(n.endswith(".png") for n in written)  # the plots
    assert (work / "pulled" / "best.pt").is_file() and len(list(logs.iterdir())) == 5

    # each half of each key: a key split by a record-block boundary in a .wandb file (LevelDB-
    # style log, 32 KiB blocks) still leaves one half whole
    needles = {f"{name} {part}": key[i:i + 20].encode()
               for name, key in (("env key", ENV_KEY), (".env key", DOTENV_KEY))
               for part, i in (("head", 0), ("tail", 20))}
    hits, n_files, n_bytes = scan(tmp_path, needles, skip={dotenv})
    print(f"secret scan: {n_files} files, {n_bytes} bytes, {len(hits)} hit(s)")
    assert hits == [], "API key written to:\n" + "\n".join(hits)
    at = len("WANDB_API_KEY=")  # the scan does find a planted key
    assert scan(tmp_path, needles, skip=set())[0] == [f".env key head in work/.env @ {at}",
                                                      f".env key tail in work/.env @ {at + 20}"]


# -- 3. trial commands never go through a shell ------------------------------------------------
HOSTILE = ["$(touch pwned)", "x; touch pwned2"]


def test_expand_command_keeps_each_value_one_argument(tmp_path):
    config = {"command": ["${env}", "${interpreter}", "-m", "cnn_tracker", "train", "${args}",
                          "${args_no_equals}"]}
    argv = expand_command(config, {"optimizer": HOSTILE[0], "lr": HOSTILE[1]},
                          json_file=tmp_path / "c.json", environ={}, interpreter="/py")
    assert argv == ["/usr/bin/env", "/py", "-m", "cnn_tracker", "train",
                    "--optimizer=$(touch pwned)", "--lr=x; touch pwned2",
                    "--optimizer", "$(touch pwned)", "--lr", "x; touch pwned2"]


def test_shell_metacharacters_in_a_sweep_value_never_reach_a_shell(tiny_root, tmp_path,
                                                                   isolated_env, monkeypatch):
    from cnn_tracker.search.agent import run_agent

    monkeypatch.setenv("CNN_TRACKER_DATA_DIR", str(tiny_root))
    hostile = {"optimizer": {"values": [HOSTILE[0]]}, "scheduler": {"values": [HOSTILE[1]]}}
    config = {**SWEEP, "parameters": {**SWEEP["parameters"], "lr": {"value": 0.01}, **hostile}}
    (isolated_env / "sweep.yaml").write_text(yaml.safe_dump(config))
    for args in (["validate", "sweep.yaml"], ["create", "sweep.yaml", "--offline"]):
        result = CliRunner().invoke(cli, ["sweep", *args])  # rejected up front, both values named
        assert result.exit_code == 2, result.output
        for name, value in zip(hostile, HOSTILE):
            assert f"parameters.{name}: invalid value '{value}'" in result.output, result.output
    store = Store()
    assert store.sweeps() == []
    sweep_id = store.create_sweep(config, "p").id  # so bypass validation to reach the agent
    assert run_agent(store, sweep_id, count=1, echo=lambda s: None, stream=False) == 0
    (run,) = Store().runs(sweep_id=sweep_id)
    assert run.params == {**{k: v["value"] for k, v in SWEEP["parameters"].items() if "value" in v},
                          "lr": 0.01, "optimizer": HOSTILE[0], "scheduler": HOSTILE[1]}
    # train got the value verbatim as one argument (a shell would have substituted "$(...)")
    assert (run.state, run.exitcode) == ("failed", 2), (run.state, run.exitcode, run.message)
    assert f"invalid value '{HOSTILE[0]}' for 'optimizer'" in run.message, run.message
    assert list(tmp_path.rglob("pwned*")) == []  # cwd, store, HOME: nothing ran


# -- 4. secrets stay out of git ------------------------------------------------------------------
def test_dotenv_is_git_ignored_and_the_example_holds_no_secret():
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    ignored = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=REPO)
    assert ignored.returncode == 0, ".env is not git-ignored: add it to .gitignore"
    tracked = subprocess.run(["git", "ls-files", "--", ".env"], cwd=REPO, capture_output=True,
                             text=True, check=True).stdout
    assert tracked == "", ".env is tracked by git"

    from dotenv import dotenv_values

    example = REPO / ".env.example"
    text = example.read_text()
    assert "WANDB_API_KEY" in text  # documented, ...
    assert not dotenv_values(example).get("WANDB_API_KEY")  # ... but never given a value
    for line in text.splitlines():
        if re.match(r"\s*(export\s+)?WANDB_API_KEY\s*=", line):
            assert line.split("=", 1)[1].strip() in ("", '""', "''"), line
    assert not re.search(r"(?<![0-9a-fA-F])[0-9a-fA-F]{40}(?![0-9a-fA-F])", text)


# -- 5. cheap source guards -----------------------------------------------------------------------
SHELL_CALLS = ("os.system", "os.popen", "subprocess.getoutput", "subprocess.getstatusoutput")


def dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else "?"


def is_constant(node: ast.AST | None, value) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def source_guard(files) -> tuple[list[str], list[str]]:
    """(torch.load call sites, problems): loads without weights_only=True, shells."""
    loads, problems = [], []
    for path in files:
        tree = ast.parse(path.read_text(), filename=str(path))
        load_names = {"torch.load", "torch.serialization.load"}
        for node in ast.walk(tree):  # import torch as t / from torch import load as l
            if isinstance(node, ast.Import):
                load_names |= {f"{a.asname}.load" for a in node.names
                               if a.name == "torch" and a.asname}
            elif isinstance(node, ast.ImportFrom) and node.module in ("torch",
                                                                       "torch.serialization"):
                load_names |= {a.asname or a.name for a in node.names if a.name == "load"}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            where, name = f"{path.name}:{node.lineno}", dotted(node.func)
            keywords = {k.arg: k.value for k in node.keywords}
            if name in load_names:
                loads.append(where)
                if not is_constant(keywords.get("weights_only"), True):
                    problems.append(f"{where}: {name} without weights_only=True")
            if "shell" in keywords and not is_constant(keywords["shell"], False):
                problems.append(f"{where}: {name}(shell=...)")
            if name in SHELL_CALLS:
                problems.append(f"{where}: {name} runs a shell")
    return loads, problems


def test_package_loads_checkpoints_only_with_weights_only_and_runs_no_shell(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("\n".join([
        "import os, subprocess, torch", "import torch as T", "from torch import load as L",
        "torch.load(p)", "T.load(p, weights_only=False)", "L(p)",
        "torch.load(p, weights_only=True)", "subprocess.run(c, shell=True)", "os.system(c)",
        "subprocess.run([c], shell=False)"]))
    assert source_guard([bad]) == (
        ["bad.py:4", "bad.py:5", "bad.py:6", "bad.py:7"],
        ["bad.py:4: torch.load without weights_only=True",
         "bad.py:5: T.load without weights_only=True",
         "bad.py:6: L without weights_only=True", "bad.py:8: subprocess.run(shell=...)",
         "bad.py:9: os.system runs a shell"])
    loads, problems = source_guard(sorted(PACKAGE.rglob("*.py")))
    assert problems == []
    assert "checkpoint.py" in {w.split(":")[0] for w in loads}  # the guard sees the real load
