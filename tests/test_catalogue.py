"""The catalogue of bad inputs: every one is refused the same way, through the real entry point.

Each case is one bad input a user can give `cnn-tracker`: a setup that prepares files in the
case's working folder, the argv, environment overrides, and the fragments its message must hold
(the offending value and the fix). For every case: exit code 2, exactly one line starting with
``Error:``, no traceback, and nothing created, modified or removed under the case's folder or the
shared fixtures (the tiny data root and the real checkpoint).

Cases run in-process through ``cnn_tracker.cli.main`` (the console-script function: its exit code
and its one-line printing), a few as real ``python -m cnn_tracker`` subprocesses.

``python -m tests.test_catalogue`` runs every case with the same runner and writes the table of
real messages to docs/errors.md.
"""

from __future__ import annotations

import io
import os
import random
import shlex
import shutil
import struct
import subprocess
import sys
import tempfile
import traceback
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import pytest
import torch
import yaml

from cnn_tracker import env
from cnn_tracker.cli import main
from cnn_tracker.config import TrainConfig
from cnn_tracker.training.checkpoint import FORMAT, atomic_save, make_checkpoint
from cnn_tracker.training.data import SPECS, raw_files
from cnn_tracker.training.models import build_model, model_args

from .conftest import REPO, TINY_ARGS, isolate, write_tiny_dataset

HAS_GPU = torch.cuda.is_available()
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0  # root writes into read-only folders
NO_GPU_ONLY = "a CUDA GPU is visible here" if HAS_GPU else ""
DOC = REPO / "docs" / "errors.md"
REGENERATE = "python -m tests.test_catalogue"


# -- shared fixtures: the tiny data root and one real checkpoint, built once ------------------
@dataclass(frozen=True)
class Fixtures:
    root: Path  # holds both; snapshotted with every case (a case must not write here either)
    data: Path  # tiny MNIST / FashionMNIST IDX files (400 train images each)
    ckpt: Path  # a real lenet checkpoint (untrained weights), as `train` writes it


def build_fixtures(root: Path) -> Fixtures:
    data = root / "data"
    for spec in SPECS.values():
        write_tiny_dataset(data, spec.folder)
    cfg = TrainConfig(model="lenet")
    args = model_args("lenet")
    model = build_model("lenet", args)
    ckpt = atomic_save(make_checkpoint(model, "lenet", args, cfg, SPECS["mnist"], 1,
                                       {"val/accuracy": 0.1}), root / "lenet.pt")
    return Fixtures(root, data, ckpt)


# -- setups: each writes into the case's working folder ---------------------------------------
Setup = Callable[[Path, Fixtures], None]


def text(name: str, content: str) -> Setup:
    def setup(work: Path, fx: Fixtures) -> None:
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(content, encoding="utf-8")
    return setup


def folder(name: str) -> Setup:
    return lambda work, fx: (work / name).mkdir(parents=True)


def garbage(name: str, size: int = 4096) -> Setup:
    def setup(work: Path, fx: Fixtures) -> None:
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_bytes(random.Random(name).randbytes(size))
    return setup


def truncated_checkpoint(work: Path, fx: Fixtures) -> None:
    data = fx.ckpt.read_bytes()
    (work / "half.pt").write_bytes(data[: len(data) // 2])


def other_architecture(work: Path, fx: Fixtures) -> None:
    ckpt = torch.load(fx.ckpt, weights_only=True)
    ckpt["model"] = "tinyvgg"  # lenet weights under another architecture's name
    torch.save(ckpt, work / "wrong-arch.pt")


class Payload:
    """A custom class: unpickling it would run code, so weights_only refuses it."""


def pickled_code(work: Path, fx: Fixtures) -> None:
    torch.save({"format": FORMAT, "payload": Payload()}, work / "evil.pt")


def plain_state_dict(work: Path, fx: Fixtures) -> None:
    torch.save(build_model("lenet", model_args("lenet")).state_dict(), work / "weights.pt")


def bad_mirror(work: Path, fx: Fixtures) -> None:
    raw = work / "mirror" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for gz, _ in raw_files(SPECS["mnist"]):
        (raw / gz).write_bytes(b"\x1f\x8b" + random.Random(gz).randbytes(2000))


def unwritable_folder(work: Path, fx: Fixtures) -> None:
    (work / "locked").mkdir()
    (work / "locked").chmod(0o500)


def unreadable_image(work: Path, fx: Fixtures) -> None:
    (work / "secret.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    (work / "secret.png").chmod(0)


BAD_YAML = "lr: 0.01\nepochs: [3, 4\nmodel: lenet\n"
BAD_SWEEP_YAML = ("method: random\nprogram: cnn_tracker/__main__.py\ncommand: [${env}, ${interpreter}, -m, cnn_tracker, train, ${args}]\n"
                  "parameters:\n  lr: {values: [0.01]}\n")
# Eight problems in one file: each must be listed, each naming its parameter.
MANY_PROBLEMS = (
    "method: bayes\nmetric: {name: val/acuracy, goal: maximise}\nprogram: cnn_tracker/__main__.py\n"
    "command:\n  - ${env}\n  - ${interpreter}\n  - -m\n  - cnn_tracker\n  - train\n  - ${argz}\n"
    "parameters:\n"
    "  learning_rate: {min: 0.001, max: 0.1}\n"
    "  batch_size: {values: 3}\n"
    "  dropout: {min: 0.5, max: 1.5}\n"
    "  lr: {distribution: log_uniform_values, min: 0.1, max: 0.01}\n"
    "  optimizer: {values: [adam, rmsprop]}\n"
)
TYPO_SWEEP = yaml.safe_dump({
    "method": "grid", "metric": {"name": "val/accuracy", "goal": "maximize"},
    "program": "cnn_tracker/__main__.py",
    "command": ["${env}", "${interpreter}", "-m", "cnn_tracker", "train", "${args}"],
    "parameters": {"batchsize": {"values": [32, 64]}, "lr": {"values": [0.01]}},
})
DAMAGED_STORE = text("badstore/store.db", "not a database " * 100)


def foreign_sqlite(work: Path, fx: Fixtures) -> None:
    """Another program's SQLite database where a store's store.db goes."""
    import sqlite3

    (work / "app").mkdir()
    with sqlite3.connect(work / "app" / "store.db") as db:
        db.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    db.close()


PG = "postgresql://cnn:hunter2-secret@127.0.0.1"  # no server needed: these fail before one
TRAIN = ("train", "--data-dir", "{data}", "--mode", "offline", *TINY_ARGS)


# -- setups of reliability round two: checkpoints, images, YAML, data, locks -------------------
def edited_checkpoint(name: str, **changes) -> Setup:
    """The shared checkpoint with fields replaced (``a__b`` is ``ckpt["a"]["b"]``, and
    ``state_dict__head__0__weight`` its ``head.0.weight``; None deletes)."""
    def setup(work: Path, fx: Fixtures) -> None:
        ckpt = torch.load(fx.ckpt, weights_only=True)
        for key, value in changes.items():
            parts = key.split("__")
            if parts[0] == "state_dict" and len(parts) > 1:  # its keys are dotted: head.0.weight
                parts = ["state_dict", ".".join(parts[1:])]
            *parents, last = parts
            target = ckpt
            for part in parents:
                target = target[part]
            if value is None:
                del target[last]
            else:
                target[last] = value() if callable(value) else value
        torch.save(ckpt, work / name)
    return setup


def with_resume_section(work: Path, fx: Fixtures) -> None:
    ckpt = torch.load(fx.ckpt, weights_only=True)
    ckpt["resume"] = {k: 0 for k in ("batch", "optimizer", "scaler", "partial", "history", "best",
                                     "best_epoch", "global_step", "train_seconds", "run")}
    ckpt["resume"].update(epoch="two", rng={"torch": torch.get_rng_state(),
                                            "epoch_start": torch.get_rng_state()})
    torch.save(ckpt, work / "last.pt")


def picture(name: str, size: tuple[int, int], fmt: str = "PNG", mode: str = "1",
            keep: float = 1.0) -> Setup:
    """An image file (``keep`` < 1: only that fraction of its bytes, a truncated file)."""
    def setup(work: Path, fx: Fixtures) -> None:
        from PIL import Image

        buffer = io.BytesIO()
        image = Image.new(mode, size)
        if keep < 1:  # noise, so that the cut lands inside the pixel data
            image = Image.frombytes("L", size, random.Random(name).randbytes(size[0] * size[1]))
            image = image.convert(mode)
        image.save(buffer, fmt)
        data = buffer.getvalue()
        (work / name).write_bytes(data[: int(len(data) * keep)])
    return setup


def data_copy(damage: Callable[[Path], None]) -> Setup:
    """A copy of the tiny data root in ``data/``, then ``damage(its MNIST raw folder)``."""
    def setup(work: Path, fx: Fixtures) -> None:
        shutil.copytree(fx.data, work / "data")
        damage(work / "data" / "MNIST" / "raw")
    return setup


def cut(file: str, keep: int) -> Callable[[Path], None]:
    def damage(raw: Path) -> None:
        data = (raw / file).read_bytes()
        (raw / file).write_bytes(data[:keep] if keep >= 0 else data[:keep])
    return damage


def fewer_labels(raw: Path) -> None:
    data = (raw / "train-labels-idx1-ubyte").read_bytes()
    (raw / "train-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x801, 300) + data[8:308])


def not_idx(raw: Path) -> None:
    (raw / "t10k-labels-idx1-ubyte").write_bytes(b"<html>not found</html>")


HELD_LOCKS: list[int] = []  # descriptors of the locks "another run" holds during a case


def locked_folder(folder: str) -> Setup:
    """``folder`` locked by another (simulated) running run, as runs.lock writes it."""
    def setup(work: Path, fx: Fixtures) -> None:
        import fcntl

        (work / folder).mkdir(parents=True)
        path = work / folder / env.LOCK_FILE
        path.write_text('{"run_id": "abc12345", "pid": 4242}')
        fd = os.open(path, os.O_RDWR)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        HELD_LOCKS.append(fd)
    return setup


def sweep_file(name: str, **fields) -> Setup:
    """A valid sweep (grid over lr) with ``fields`` replaced (None removes one)."""
    doc = {"program": "cnn_tracker/__main__.py", "method": "grid",
           "metric": {"name": "val/accuracy", "goal": "maximize"},
           "command": ["${env}", "${interpreter}", "-m", "cnn_tracker", "train", "${args}"],
           "parameters": {"lr": {"values": [0.01, 0.02]}}}
    doc.update(fields)
    return text(name, yaml.safe_dump({k: v for k, v in doc.items() if v is not None}))


LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
DEEP = "lr: " + "[" * 40 + "]" * 40 + "\n"
DUP_SWEEP = ("program: cnn_tracker/__main__.py\nmethod: grid\ncommand: [train]\nparameters:\n"
             "  lr: {values: [0.01]}\n  lr: {values: [0.1]}\n")
BIG_GRID = {f"{k}": {"values": list(range(1, 11))} for k in
            ("epochs", "seed", "log_misclassified", "log_every", "eval_batch_size", "val_size")}
ESC = "\x1b]0;owned\x07\x1b[2J"  # a terminal title change and a screen clear


# -- the catalogue ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    id: str
    input: str  # what is wrong, in words (the docs table's "input")
    argv: tuple[str, ...]  # after `cnn-tracker`; {data} and {ckpt} name the shared fixtures
    expect: tuple[str, ...]  # message fragments: the offending value, then the fix
    setup: Setup | None = None
    env: dict[str, str] = field(default_factory=dict)
    subprocess: bool = False  # run as `python -m cnn_tracker` (proves the console behaviour)
    skip: str = ""  # why this case cannot be shown on this machine, if it cannot
    # Not yet as required, and why: the fix belongs in a module this catalogue does not own.
    # The test is a strict xfail, so it fails (XPASS) as soon as the fix lands: then drop this.
    known_issue: str = ""
    # Paths (relative to the case's folder) it may create or change; each needs a comment saying
    # why it is not half-written output. No case needs one today.
    allowed: tuple[str, ...] = ()


CASES: list[Case] = [
    # YAML files
    Case("config-yaml-malformed", "malformed YAML in a --config file",
         ("train", "--config", "bad.yaml"),
         ("'bad.yaml'", "not valid YAML at line 3", "Fix the syntax"), text("bad.yaml", BAD_YAML)),
    Case("sweep-validate-yaml-malformed", "malformed YAML in a sweep file (validate)",
         ("sweep", "validate", "sweep.yaml"),
         ("'sweep.yaml'", "not valid YAML at line 3", "write each ${macro} as its own"),
         text("sweep.yaml", BAD_SWEEP_YAML)),
    Case("sweep-create-yaml-malformed", "malformed YAML in a sweep file (create --offline)",
         ("sweep", "create", "sweep.yaml", "--offline"),
         ("'sweep.yaml'", "not valid YAML", "write each ${macro} as its own"),
         text("sweep.yaml", BAD_SWEEP_YAML)),
    Case("sweep-schema-violations", "eight schema and value violations in one sweep file",
         ("sweep", "validate", "many.yaml"),
         ("8 problem(s)", "metric.goal: 'maximise'", "parameters.batch_size",
          "parameters.lr: min 0.1", "parameters.learning_rate: unknown config key",
          "parameters.dropout: invalid value 1.5", "'rmsprop'", "unknown macro '${argz}'",
          "Did you mean 'lr'", "did you mean 'val/accuracy'"),
         text("many.yaml", MANY_PROBLEMS)),
    Case("sweep-create-schema-violations", "the same eight problems, at sweep create --offline",
         ("sweep", "create", "many.yaml", "--offline"),
         ("8 problem(s)", "parameters.learning_rate", "Did you mean 'lr'"),
         text("many.yaml", MANY_PROBLEMS)),
    Case("config-file-missing", "a --config file that does not exist",
         ("train", "--config", "nope.yaml"), ("'nope.yaml' does not exist", "check the path")),
    Case("sweep-file-missing", "a sweep file that does not exist", ("sweep", "validate", "nope.yaml"),
         ("'nope.yaml' does not exist", "give the path of a sweep YAML")),
    # unknown keys, with the closest match
    Case("unknown-cli-option", "unknown config key as a CLI option",
         ("train", "--batchsize", "32"),
         ("'batchsize'", "Did you mean 'batch_size'", "Valid keys:"), subprocess=True),
    Case("unknown-config-file-key", "unknown key in a --config file",
         ("train", "--config", "typo.yaml"),
         ("'learning_rat'", "config file typo.yaml", "Did you mean 'lr'"),
         text("typo.yaml", "learning_rat: 0.1\n")),
    Case("unknown-sweep-parameter", "unknown sweep parameter",
         ("sweep", "create", "typo.yaml", "--offline"),
         ("parameters.batchsize", "'batchsize'", "Did you mean 'batch_size'"),
         text("typo.yaml", TYPO_SWEEP)),
    # wrong types
    Case("epochs-not-a-number", "wrong type: --epochs abc", ("train", "--epochs", "abc"),
         ("'abc'", "'epochs'", "expected an integer")),
    Case("lr-not-a-number", "wrong type: --lr fast", ("train", "--lr", "fast"),
         ("'fast'", "'lr'", "expected a number"), subprocess=True),
    Case("bad-json-argument", "a bad JSON argument to train", ("train", '{"lr": 0.1'),
         ("'{\"lr\": 0.1'", "not a valid JSON object", "pass hyperparameters as")),
    Case("unexpected-positional", "an unexpected positional argument", ("train", "mnist"),
         ("unexpected argument 'mnist'", "--key value")),
    # out of range
    Case("lr-zero", "out of range: --lr 0", ("train", "--lr", "0"),
         ("invalid value 0.0 for 'lr'", "must be a number > 0")),
    Case("lr-negative", "out of range: --lr -1", ("train", "--lr", "-1"),
         ("invalid value -1.0 for 'lr'", "must be a number > 0")),
    Case("batch-size-zero", "out of range: --batch_size 0", ("train", "--batch_size", "0"),
         ("invalid value 0 for 'batch_size'", "an integer from 1 to 65536")),
    Case("dropout-one", "out of range: --dropout 1", ("train", "--dropout", "1"),
         ("invalid value 1.0 for 'dropout'", "a number >= 0 and < 1")),
    Case("epochs-zero", "out of range: --epochs 0", ("train", "--epochs", "0"),
         ("invalid value 0 for 'epochs'", "an integer from 1 to 10000")),
    Case("val-size-too-big", "--val_size >= the training set (400 tiny images)",
         ("train", "--data-dir", "{data}", "--val_size", "400"),
         ("invalid value 400 for 'val_size'", "(400 images)", "Use e.g. --val_size 33")),
    Case("unknown-model", "unknown model", ("train", "--model", "resnet18"),
         ("'resnet18'", "'model'", "Choose one of: mlp")),
    Case("unknown-dataset", "unknown dataset", ("train", "--dataset", "fashion_mnist"),
         ("'fashion_mnist'", "Did you mean 'fashion-mnist'")),
    Case("unknown-preset", "unknown --preset", ("train", "--preset", "fastest"),
         ("'fastest'", "'--preset'", "'fast'")),
    # data
    Case("missing-data", "missing data, downloads off (empty data dir)",
         ("train", "--data-dir", "nodata", "--mode", "offline"),
         ("not in the data root nodata", "CNN_TRACKER_DOWNLOAD=0", "data prepare --dataset mnist --from DIR"),
         folder("nodata")),
    Case("missing-data-evaluate", "missing data for evaluate, downloads off",
         ("evaluate", "{ckpt}", "--data-dir", "nodata"),
         ("not in the data root nodata", "CNN_TRACKER_DATA_MIRROR"), folder("nodata")),
    Case("mirror-bad-md5", "a mirror whose .gz files fail torchvision's md5 (data prepare --from)",
         ("data", "prepare", "--dataset", "mnist", "--from", "mirror", "--data-dir", "root"),
         ("mirror/MNIST/raw/train-images-idx3-ubyte.gz is corrupted", "replace it with the original"),
         bad_mirror),
    Case("data-root-bad-gz", "a data root holding a corrupted .gz",
         ("train", "--data-dir", "root", "--mode", "offline"),
         ("root/MNIST/raw/train-images-idx3-ubyte.gz is corrupted", "delete it and run",
          "data prepare --dataset mnist"),
         garbage("root/MNIST/raw/train-images-idx3-ubyte.gz")),
    Case("prepare-from-missing-folder", "data prepare --from a missing folder",
         ("data", "prepare", "--from", "nowhere", "--data-dir", "root"),
         ("--from nowhere is not a folder", "MNIST/raw and FashionMNIST/raw")),
    # checkpoints
    Case("checkpoint-missing", "missing checkpoint file", ("evaluate", "missing.pt"),
         ("'missing.pt' does not exist", "check the path")),
    Case("checkpoint-random-bytes", "corrupted checkpoint (random bytes)", ("evaluate", "noise.pt"),
         ("'noise.pt' is corrupted", "use another copy"), garbage("noise.pt")),
    Case("checkpoint-truncated", "truncated checkpoint (a real one cut in half)",
         ("evaluate", "half.pt"), ("'half.pt' is corrupted, truncated", "re-download"),
         truncated_checkpoint),
    Case("checkpoint-other-architecture", "lenet weights under another model's name",
         ("evaluate", "wrong-arch.pt"),
         ("'wrong-arch.pt' weights do not fit its model 'tinyvgg'", "belongs to another architecture"),
         other_architecture),
    Case("checkpoint-pickled-code", "a checkpoint holding pickled code (a custom class)",
         ("predict", "evil.pt", "digit.png"), ("'evil.pt' contains pickled code", "weights_only=True",
                                               "re-save them"), pickled_code),
    Case("checkpoint-plain-state-dict", "a plain torch state_dict, not a cnn-tracker checkpoint",
         ("evaluate", "weights.pt"), ("'weights.pt' is not a cnn-tracker checkpoint",
                                      "best.pt/last.pt written by `cnn-tracker train`"), plain_state_dict),
    Case("evaluate-folder", "evaluate on a folder", ("evaluate", "ckdir"),
         ("'ckdir' is a folder", "give the .pt file inside it"), folder("ckdir")),
    Case("predict-folder", "predict with a folder as checkpoint", ("predict", "ckdir", "x.png"),
         ("'ckdir' is a folder", "give the .pt file inside it"), folder("ckdir")),
    Case("predict-not-an-image", "predict on a text file", ("predict", "{ckpt}", "notes.txt"),
         ("'notes.txt' is not a readable image", "pass a PNG, JPEG"), text("notes.txt", "hello\n")),
    Case("predict-missing-image", "predict on a missing image file", ("predict", "{ckpt}", "nope.png"),
         ("image 'nope.png' does not exist", "check the path")),
    Case("predict-unreadable-image", "predict on an image without read permission",
         ("predict", "{ckpt}", "secret.png"), ("image 'secret.png' cannot be read", "check the file's permissions"),
         unreadable_image, skip="root reads any file" if IS_ROOT else ""),
    # sweeps and agents
    Case("agent-unknown-sweep", "unknown sweep id (agent)", ("agent", "nope1234"),
         ("sweep 'nope1234' is not in the local run store", "check the id", "WANDB_API_KEY")),
    Case("sweep-status-unknown-sweep", "unknown sweep id (sweep status)", ("sweep", "status", "nope1234"),
         ("sweep 'nope1234' is not in the local run store", "--store")),
    Case("best-unknown-sweep", "unknown sweep id (best)", ("best", "nope1234"),
         ("'nope1234' (neither a sweep nor a project with runs)", "check the id")),
    Case("gpus-not-indices", "agent --gpus a,b", ("agent", "x", "--gpus", "a,b"),
         ("--gpus 'a,b'", "distinct GPU indices like 0,1,2")),
    Case("gpus-repeated", "agent --gpus 0,0", ("agent", "x", "--gpus", "0,0"),
         ("--gpus '0,0'", "distinct GPU indices like 0,1,2")),
    Case("gpus-all-without-gpu", "agent --gpus all on a machine without a GPU",
         ("agent", "x", "--gpus", "all"), ("--gpus all", "Use --agents N on CPU"), skip=NO_GPU_ONLY),
    Case("agent-count-zero", "agent --count 0", ("agent", "x", "--count", "0"),
         ("'--count': 0 is not in the range", "x>=1")),
    Case("gpus-and-agents", "agent --gpus together with --agents 2",
         ("agent", "x", "--gpus", "0", "--agents", "2"), ("--gpus", "--agents N", "not both")),
    # W&B mode
    Case("online-without-key", "train --mode online without an API key", ("train", "--mode", "online"),
         ("mode is online but no API key", "set WANDB_API_KEY", "--mode offline")),
    Case("wandb-mode-env-online-without-key", "WANDB_MODE=online without an API key", ("train",),
         ("online but no API key", "set WANDB_API_KEY"), env={"WANDB_MODE": "online"}),
    Case("wandb-mode-invalid", "an invalid WANDB_MODE value", ("train",),
         ("'sometimes' (from WANDB_MODE)", "use online, offline or disabled"),
         env={"WANDB_MODE": "sometimes"}),
    # outputs and the run store
    Case("output-dir-under-a-file", "--output-dir under a regular file (can never be created)",
         (*TRAIN, "--output-dir", "a-file/out"), ("a-file/out is not writable", "choose another folder"),
         text("a-file", "")),
    Case("output-dir-read-only", "--output-dir under a read-only folder",
         (*TRAIN, "--output-dir", "locked/out"), ("locked/out is not writable", "choose another folder"),
         unwritable_folder, skip="root writes into read-only folders" if IS_ROOT else ""),
    Case("store-damaged-train", "a damaged store (store.db of garbage) for train",
         (*TRAIN, "--store", "badstore"),
         ("badstore/store.db cannot be opened", "left untouched", "cnn-tracker store recover --store"),
         DAMAGED_STORE),
    Case("store-damaged-sweep-status", "a damaged store for sweep status",
         ("sweep", "status", "abc12345", "--store", "badstore"),
         ("badstore/store.db cannot be opened", "cnn-tracker store recover --store"), DAMAGED_STORE),
    Case("store-check-damaged", "store check on a damaged store", ("store", "check", "--store", "badstore"),
         ("badstore/store.db cannot be opened", "cnn-tracker store recover --store"), DAMAGED_STORE),
    Case("store-check-missing", "store check where there is no store", ("store", "check", "--store", "nostore"),
         ("no run store at", "nostore/store.db", "pass --store")),
    Case("store-recover-missing", "store recover where there is no store",
         ("store", "recover", "--store", "nostore"), ("no run store at", "nothing to recover")),
    Case("store-db-is-a-folder", "a store whose store.db is a folder (not an empty store)",
         ("sweep", "list", "--store", "s"), ("s/store.db is not a file", "--store"),
         folder("s/store.db")),
    Case("store-foreign-sqlite", "another program's SQLite file as store.db: never written",
         ("store", "check", "--store", "app"), ("not a cnn-tracker run store", "invoices",
                                                "left untouched"), foreign_sqlite),
    Case("store-foreign-sqlite-train", "train into another program's SQLite file",
         (*TRAIN, "--store", "app"), ("not a cnn-tracker run store", "invoices"), foreign_sqlite),
    Case("store-url-port", "a PostgreSQL URL whose port is not a number",
         ("sweep", "list", "--store", f"{PG}:54x2/sweeps"), ("the port is not a number", "5432")),
    Case("store-url-no-database", "a PostgreSQL URL without a database",
         ("sweep", "list", "--store", f"{PG}:5432"), ("names no host or no database",
                                                       "postgresql://USER@HOST:PORT/DATABASE")),
    Case("store-url-unreachable", "a PostgreSQL URL where no server listens",
         ("sweep", "status", "abc12345", "--store", f"{PG}:1/sweeps"),
         ("cannot connect to the PostgreSQL run store at 127.0.0.1:1", "check the host and port",
          "nothing was written")),
    Case("store-url-unreachable-agent", "an agent given a PostgreSQL URL where no server listens",
         ("agent", "abc12345", "--store", f"{PG}:1/sweeps"),
         ("cannot connect to the PostgreSQL run store", "127.0.0.1:1")),
    Case("store-url-scheme", "a store URL that is not PostgreSQL",
         ("sweep", "list", "--store", "mysql://u:p@host/db"), ("not a folder or a PostgreSQL URL",
                                                               "postgresql://")),
    Case("store-copy-same", "store copy of a store onto itself",
         ("store", "copy", "badstore", "badstore"), ("two different stores",), DAMAGED_STORE),
    # resume
    Case("resume-weights-only", "train --resume with a best.pt (weights only, no training state)",
         ("train", "--resume", "{ckpt}"), ("holds weights only", "pass last.pt or resume.pt")),
    Case("resume-unknown-run", "train --resume with an unknown run id",
         ("train", "--resume", "nosuchrun"), ("--resume 'nosuchrun'", "its run id")),
    Case("resume-corrupted", "train --resume with a corrupted checkpoint",
         ("train", "--resume", "noise.pt"), ("'noise.pt' is corrupted", "use another copy"),
         garbage("noise.pt")),
    Case("stale-after-too-short", "agent --stale-after shorter than three heartbeats",
         ("agent", "abc12345", "--stale-after", "5"), ("--stale-after 5", "at least 30")),
    Case("heartbeat-env-invalid", "CNN_TRACKER_HEARTBEAT_SECONDS is not a number",
         ("agent", "abc12345"), ("CNN_TRACKER_HEARTBEAT_SECONDS='soon'", "seconds between 0.05 and 3600"),
         env={"CNN_TRACKER_HEARTBEAT_SECONDS": "soon"}),
    # other commands
    Case("compare-by-unknown-key", "compare --by nonsense_key", ("compare", "--by", "nonsense_key"),
         ("'nonsense_key' (from --by)", "Valid keys:")),
    Case("bench-set-not-key-value", "bench --set lr (not KEY=VALUE)", ("bench", "--set", "lr"),
         ("--set 'lr' is not KEY=VALUE", "--set batch_size=512")),
    # devices
    Case("device-cuda-without-gpu", "--device cuda on a machine without a GPU",
         ("train", "--device", "cuda"), ("'cuda' for 'device'", "Use --device cpu"), skip=NO_GPU_ONLY),
    Case("precision-fp16-on-cpu", "--precision fp16 on the CPU",
         (*TRAIN, "--device", "cpu", "--precision", "fp16"),
         ("'fp16' for 'precision'", "Use --precision bf16 or fp32"), subprocess=True),
    # -- reliability round two ---------------------------------------------------------------
    # checkpoints whose contents are wrong (each field checked before a model is built)
    Case("checkpoint-state-dict-list", "a checkpoint whose state_dict is a list",
         ("evaluate", "c.pt"), ("'c.pt' is not a valid cnn-tracker checkpoint",
                                "'state_dict' is not a mapping", "use another copy"),
         edited_checkpoint("c.pt", state_dict=lambda: [torch.zeros(3)])),
    Case("checkpoint-hidden-units-negative", "model_args.hidden_units: -1",
         ("evaluate", "c.pt"), ("'model_args.hidden_units' is -1", "an integer from 1 to 4096"),
         edited_checkpoint("c.pt", model_args__hidden_units=-1)),
    Case("checkpoint-hidden-units-huge", "model_args.hidden_units: 10**7 (a 31 GB allocation)",
         ("predict", "c.pt", "x.png"), ("'model_args.hidden_units' is 10000000",
                                        "an integer from 1 to 4096"),
         edited_checkpoint("c.pt", model_args__hidden_units=10**7)),
    Case("checkpoint-num-classes-string", "model_args.num_classes: '10' (a string)",
         ("evaluate", "c.pt"), ("'model_args.num_classes' is '10'", "an integer from 1 to 1000"),
         edited_checkpoint("c.pt", model_args__num_classes="10")),
    Case("checkpoint-num-classes-negative", "model_args.num_classes: -1 (found by Hypothesis)",
         ("evaluate", "c.pt"), ("'model_args.num_classes' is -1",),
         edited_checkpoint("c.pt", model_args__num_classes=-1)),
    Case("checkpoint-in-shape-empty", "model_args.in_shape: [] (found by Hypothesis)",
         ("evaluate", "c.pt"), ("'model_args.in_shape' is []", "[1, 28, 28]"),
         edited_checkpoint("c.pt", model_args__in_shape=[])),
    Case("checkpoint-in-shape-rgb", "model_args.in_shape: [3, 32, 32]",
         ("evaluate", "c.pt"), ("'model_args.in_shape' is [3, 32, 32]",),
         edited_checkpoint("c.pt", model_args__in_shape=[3, 32, 32])),
    Case("checkpoint-dropout-tensor", "model_args.dropout: a tensor (found by Hypothesis)",
         ("evaluate", "c.pt"), ("'model_args.dropout' is tensor(", "a number >= 0 and < 1"),
         edited_checkpoint("c.pt", model_args__dropout=lambda: torch.zeros(6))),
    Case("checkpoint-dropout-too-big", "model_args.dropout: 1.5",
         ("evaluate", "c.pt"), ("'model_args.dropout' is 1.5",),
         edited_checkpoint("c.pt", model_args__dropout=1.5)),
    Case("checkpoint-batch-norm-string", "model_args.batch_norm: 'yes' (found by Hypothesis as a tensor)",
         ("evaluate", "c.pt"), ("'model_args.batch_norm' is 'yes'", "true or false"),
         edited_checkpoint("c.pt", model_args__batch_norm="yes")),
    Case("checkpoint-model-args-extra-key", "model_args with an unknown key",
         ("evaluate", "c.pt"), ("'model_args' is", "'depth'", "not a mapping of in_shape"),
         edited_checkpoint("c.pt", model_args__depth=3)),
    Case("checkpoint-fewer-class-names", "9 class names for a 10-output model",
         ("evaluate", "c.pt"), ("it has 9 class names for a model with 10 outputs",),
         edited_checkpoint("c.pt", class_names=list("012345678"))),
    Case("checkpoint-class-names-numbers", "class names that are numbers",
         ("predict", "c.pt", "x.png"), ("'class_names' is [0, 1, 2", "a list of names"),
         edited_checkpoint("c.pt", class_names=list(range(10)))),
    Case("checkpoint-class-names-tensor", "class_names: a tensor (found by Hypothesis)",
         ("evaluate", "c.pt"), ("'class_names' is tensor(",),
         edited_checkpoint("c.pt", class_names=lambda: torch.zeros(10))),
    Case("checkpoint-class-name-too-long", "a class name of 500 characters",
         ("evaluate", "c.pt"), ("a list of names (strings of 1 to 100 characters)", "characters)"),
         edited_checkpoint("c.pt", class_names=["x" * 500] * 10)),
    Case("checkpoint-mean-string", "normalization.mean: '0.13' (a string where a number belongs)",
         ("evaluate", "c.pt"), ("'normalization' is", "not {mean: number, std: number > 0}"),
         edited_checkpoint("c.pt", normalization__mean="0.13")),
    Case("checkpoint-std-zero", "normalization.std: 0 (a division by zero)",
         ("evaluate", "c.pt"), ("'normalization' is", "std: number > 0"),
         edited_checkpoint("c.pt", normalization__std=0)),
    Case("checkpoint-std-missing", "normalization without std (found by Hypothesis)",
         ("evaluate", "c.pt"), ("'normalization' is {'mean': 0.1307}",),
         edited_checkpoint("c.pt", normalization__std=None)),
    Case("checkpoint-normalization-number", "normalization: -1 (found by Hypothesis)",
         ("evaluate", "c.pt"), ("'normalization' is -1",), edited_checkpoint("c.pt", normalization=-1)),
    Case("checkpoint-unknown-model", "model: 'resnet50'", ("evaluate", "c.pt"),
         ("'model' is 'resnet50'", "not one of mlp, tinyvgg"), edited_checkpoint("c.pt", model="resnet50")),
    Case("checkpoint-model-number", "model: 5 (a number where a name belongs)", ("evaluate", "c.pt"),
         ("'model' is 5",), edited_checkpoint("c.pt", model=5)),
    Case("checkpoint-dataset-list", "dataset: [] (found by Hypothesis)", ("evaluate", "c.pt"),
         ("'dataset' is []", "not one of mnist, fashion-mnist"), edited_checkpoint("c.pt", dataset=[])),
    Case("checkpoint-config-bad-value", "config.eval_batch_size: 'many'", ("evaluate", "c.pt"),
         ("invalid value 'many' for 'eval_batch_size' (from its config)",),
         edited_checkpoint("c.pt", config__eval_batch_size="many")),
    Case("checkpoint-config-not-mapping", "config: a list", ("evaluate", "c.pt"),
         ("'config' is [1, 2]", "not a mapping"), edited_checkpoint("c.pt", config=[1, 2])),
    Case("checkpoint-epoch-negative", "epoch: -3", ("evaluate", "c.pt"),
         ("'epoch' is -3", "an integer >= 0"), edited_checkpoint("c.pt", epoch=-3)),
    Case("checkpoint-metrics-strings", "metrics: {'val/accuracy': 'high'}", ("evaluate", "c.pt"),
         ("'metrics' is", "a mapping of names to numbers"),
         edited_checkpoint("c.pt", metrics={"val/accuracy": "high"})),
    Case("checkpoint-state-dict-number", "state_dict: -1 (found by Hypothesis)", ("predict", "c.pt", "x.png"),
         ("'state_dict' is not a mapping",), edited_checkpoint("c.pt", state_dict=-1)),
    Case("checkpoint-tensor-not-tensor", "a state_dict entry that is a list", ("evaluate", "c.pt"),
         ("'state_dict.head.0.weight' is not a dense CPU tensor",),
         edited_checkpoint("c.pt", state_dict__head__0__weight=[1.0, 2.0])),
    Case("checkpoint-tensor-wrong-shape", "a weight of the wrong shape (checked before allocating)",
         ("evaluate", "c.pt"), ("weights do not fit its model 'lenet'",
                                "size mismatch for head.0.weight: [5, 5] in the file, [120, 900]"),
         edited_checkpoint("c.pt", state_dict__head__0__weight=lambda: torch.zeros(5, 5))),
    Case("checkpoint-tensor-complex", "a complex weight (found by Hypothesis)", ("evaluate", "c.pt"),
         ("head.0.bias is torch.complex64",),
         edited_checkpoint("c.pt", state_dict__head__0__bias=lambda: torch.zeros(120, dtype=torch.complex64))),
    Case("checkpoint-tensor-missing", "a weight missing from the state_dict", ("evaluate", "c.pt"),
         ("weights do not fit its model 'lenet' (missing ['head.0.bias'])",),
         edited_checkpoint("c.pt", state_dict__head__0__bias=None)),
    Case("checkpoint-damaged-pickle", "one byte of the pickle zeroed (found by Hypothesis: KeyError)",
         ("evaluate", "zeroed.pt"), ("'zeroed.pt' is corrupted", "use another copy"),
         lambda work, fx: (work / "zeroed.pt").write_bytes(
             (lambda b: b[:223] + b"\0" + b[224:])(fx.ckpt.read_bytes()))),
    Case("resume-damaged-state", "train --resume with a resume section whose epoch is 'two'",
         ("train", "--resume", "last.pt"), ("the resume state in 'last.pt' is damaged",
                                            "resume from the run's last.pt"), with_resume_section),
    # images
    Case("predict-decompression-bomb", "a 200 KB PNG claiming 40000x40000 pixels",
         ("predict", "{ckpt}", "bomb.png"), ("image 'bomb.png' claims 1,600,000,000 pixels",
                                             "at most 50,000,000", "pass a smaller image"),
         picture("bomb.png", (40000, 40000))),
    Case("predict-image-too-many-pixels", "a PNG of 9000x9000 pixels (over the 50 MP budget)",
         ("predict", "{ckpt}", "big.png"), ("image 'big.png' is 9000x9000 pixels", "pass a smaller image"),
         picture("big.png", (9000, 9000))),
    Case("predict-truncated-png", "a PNG cut to half its bytes", ("predict", "{ckpt}", "cut.png"),
         ("image 'cut.png' is truncated", "re-export or re-download"),
         picture("cut.png", (64, 64), "PNG", "L", keep=0.5)),
    Case("predict-truncated-jpeg", "a JPEG cut to half its bytes", ("predict", "{ckpt}", "cut.jpg"),
         ("image 'cut.jpg' is truncated",), picture("cut.jpg", (64, 64), "JPEG", "RGB", keep=0.5)),
    Case("predict-empty-image", "an empty image file", ("predict", "{ckpt}", "empty.png"),
         ("'empty.png' is not a readable image",), text("empty.png", "")),
    # YAML and JSON
    Case("config-duplicate-key", "a --config file with lr twice (the last would win silently)",
         ("train", "--config", "dup.yaml"), ("'dup.yaml' is not valid YAML at line 3",
                                             "duplicate key 'lr' (first at line 1)"),
         text("dup.yaml", "lr: 0.1\nepochs: 2\nlr: 0.2\n")),
    Case("config-duplicate-key-flow", "a flow mapping with a key twice", ("train", "--config", "dup.yaml"),
         ("duplicate key 'epochs'",), text("dup.yaml", "{epochs: 1, epochs: 2}\n")),
    Case("sweep-duplicate-parameter", "a sweep file naming parameter lr twice",
         ("sweep", "validate", "dup.yaml"), ("'dup.yaml' is not valid YAML at line 6",
                                             "duplicate key 'lr' (first at line 5)"),
         text("dup.yaml", DUP_SWEEP)),
    Case("config-alias-bomb", "an alias-expansion bomb (10^9 values from 90 aliases)",
         ("train", "--config", "laughs.yaml"), ("more than 100000 values once its aliases are expanded",),
         text("laughs.yaml", LAUGHS)),
    Case("sweep-alias-bomb", "an alias-expansion bomb as a sweep file", ("sweep", "validate", "laughs.yaml"),
         ("'laughs.yaml' is not valid YAML", "alias-expansion bomb"), text("laughs.yaml", LAUGHS)),
    Case("config-recursive-alias", "a recursive alias (&a [*a])", ("train", "--config", "loop.yaml"),
         ("values once its aliases are expanded",), text("loop.yaml", "lr: &a [*a]\n")),
    Case("config-too-deep", "40 nested lists in a --config file", ("train", "--config", "deep.yaml"),
         ("nested deeper than 32 levels",), text("deep.yaml", DEEP)),
    Case("sweep-too-deep", "40 nested lists in a sweep file", ("sweep", "create", "deep.yaml", "--offline"),
         ("nested deeper than 32 levels",), text("deep.yaml", DEEP)),
    Case("config-file-too-large", "a 2 MB --config file", ("train", "--config", "big.yaml"),
         ("is 2000000 bytes", "at most 1000000 bytes"), text("big.yaml", "#" * 2_000_000)),
    Case("sweep-file-too-large", "a 2 MB sweep file", ("sweep", "validate", "big.yaml"),
         ("is 2000000 bytes", "at most 1000000 bytes"), text("big.yaml", "#" * 2_000_000)),
    Case("config-bad-date", "a --config value YAML reads as an impossible date",
         ("train", "--config", "date.yaml"), ("a value cannot be read (month must be in 1..12)",),
         text("date.yaml", "seed: 2001-13-40\n")),
    Case("config-file-a-list", "a --config file that is a list", ("train", "--config", "list.yaml"),
         ("must be a mapping of key: value lines, got a list",), text("list.yaml", "- lr\n- 0.1\n")),
    Case("sweep-file-a-list", "a sweep file that is a list", ("sweep", "validate", "list.yaml"),
         ("must be a mapping (method:, metric:, parameters:, ...), got a list",),
         text("list.yaml", "- method\n- grid\n")),
    Case("config-binary-file", "a --config file that is not text", ("train", "--config", "bin.yaml"),
         ("'bin.yaml' is not a text file",), garbage("bin.yaml", 64)),
    Case("json-argument-too-deep", "a JSON argument nested 40 deep", ("train", '{"lr": ' + "[" * 40 + "]" * 40 + "}"),
         ("not a valid JSON object (nested deeper than 32 levels)",)),
    Case("json-argument-echo-clipped", "a 500-character bad JSON argument (echoed clipped)",
         ("train", "{" + "x" * 500), ("(503 characters) is not a valid JSON object",)),
    Case("value-echo-clipped", "a 500-character --model value (echoed in one short line)",
         ("train", "--model", "m" * 500), ("(502 characters)", "'model'")),
    Case("lr-integer-too-large", "lr: a 400-digit integer in a --config file (float overflow)",
         ("train", "--config", "huge.yaml"), ("for 'lr'", "expected a finite number"),
         text("huge.yaml", "lr: " + "9" * 400 + "\n")),
    # exact integers
    Case("epochs-not-whole", "--epochs 2.5 (not truncated to 2)", ("train", "--epochs", "2.5"),
         ("invalid value '2.5' for 'epochs'", "expected an integer")),
    Case("batch-size-not-whole-config", "batch_size: 32.5 in a --config file",
         ("train", "--config", "half.yaml"), ("invalid value 32.5 for 'batch_size'", "expected an integer"),
         text("half.yaml", "batch_size: 32.5\n")),
    Case("seed-too-large", "--seed 2**63 (exact, out of range)", ("train", "--seed", str(2**63)),
         (f"invalid value {2**63} for 'seed'", "an integer >= 0")),
    Case("log-every-fraction", "--log_every 0.5", ("train", "--log_every", "0.5"),
         ("invalid value '0.5' for 'log_every'",)),
    # names and paths
    Case("name-path-traversal", "--name ../../x (outputs outside outputs/)",
         (*TRAIN, "--name", "../../x"), ("invalid run name '../../x' (from --name)",
                                          "holds a path separator", "Give a plain name")),
    Case("name-dotdot", "--name ..", (*TRAIN, "--name", ".."), ("invalid run name '..'", "holds '..'")),
    Case("name-backslash", "--name with a backslash", (*TRAIN, "--name", "a\\b"),
         ("holds a path separator",)),
    Case("name-from-wandb-name", "WANDB_NAME=../escape", TRAIN,
         ("invalid run name '../escape' (from WANDB_NAME)",), env={"WANDB_NAME": "../escape"}),
    Case("name-control-characters", "--name with a screen-clear escape", (*TRAIN, "--name", "a" + ESC),
         ("holds control characters", "\\x1b[2J"), subprocess=True),
    Case("name-too-long", "--name of 300 characters", (*TRAIN, "--name", "n" * 300),
         ("longer than 128 characters",)),
    # data problems found before the first byte is written
    Case("data-truncated-test-images", "a truncated t10k-images file (found before any store row)",
         ("train", "--data-dir", "data", "--mode", "offline", *TINY_ARGS),
         ("t10k-images-idx3-ubyte is truncated", "delete that folder", "data prepare --dataset mnist"),
         data_copy(cut("t10k-images-idx3-ubyte", 5000))),
    Case("data-truncated-train-labels", "a truncated train-labels file",
         ("train", "--data-dir", "data", "--mode", "offline", *TINY_ARGS),
         ("train-labels-idx1-ubyte is truncated",), data_copy(cut("train-labels-idx1-ubyte", 100))),
    Case("data-label-count-mismatch", "300 labels for 400 training images",
         ("train", "--data-dir", "data", "--mode", "offline", *TINY_ARGS),
         ("has 300 labels for 400 images",), data_copy(fewer_labels)),
    Case("data-not-idx", "an HTML page saved as t10k-labels", ("train", "--data-dir", "data", "--mode", "offline"),
         ("t10k-labels-idx1-ubyte is not an IDX labels file",), data_copy(not_idx)),
    Case("batch-size-over-split", "--batch_size 1000 over a 350-image training split",
         (*TRAIN, "--batch_size", "1000"), ("invalid value 1000 for 'batch_size'",
                                            "training split (350 images: 400 less val_size 50)",
                                            "--batch_size 64")),
    Case("heartbeat-env-out-of-range", "CNN_TRACKER_HEARTBEAT_SECONDS=1e9", ("agent", "abc12345"),
         ("CNN_TRACKER_HEARTBEAT_SECONDS='1e9'",), env={"CNN_TRACKER_HEARTBEAT_SECONDS": "1e9"}),
    # sweeps
    Case("sweep-missing-program", "a sweep file without program: (W&B requires it)",
         ("sweep", "validate", "s.yaml"), ("program: missing", "W&B's agent requires it",
                                           "add 'program: cnn_tracker/__main__.py'"),
         sweep_file("s.yaml", program=None)),
    Case("sweep-missing-program-default-command", "no program: and no command: (W&B's default uses ${program})",
         ("sweep", "create", "s.yaml", "--offline"), ("program: missing (the command uses ${program})",),
         sweep_file("s.yaml", program=None, command=None)),
    Case("sweep-grid-too-large", "a grid of 10^6 points (counted, never enumerated)",
         ("sweep", "validate", "g.yaml"), ("method grid has 1e+06 points", "more than 100000",
                                           "use method random or bayes"),
         sweep_file("g.yaml", parameters=BIG_GRID)),
    Case("sweep-grid-huge-int-range", "a grid over seed 0..10^12 (int_uniform)",
         ("sweep", "create", "g.yaml", "--offline"), ("method grid has 1e+12 points",),
         sweep_file("g.yaml", parameters={"seed": {"min": 0, "max": 10**12}})),
    Case("gpus-without-gpu", "agent --gpus 0 on a machine without a GPU",
         ("agent", "x", "--gpus", "0"), ("--gpus 0: no CUDA GPU is visible here", "--agents N"),
         skip=NO_GPU_ONLY),
    Case("gpus-not-visible", "agent --gpus 99 (more GPUs than visible)", ("agent", "x", "--gpus", "0,99"),
         ("GPU 99 is not visible here",), skip="" if HAS_GPU else "no CUDA GPU is visible here"),
    # one output folder, one run
    Case("output-dir-in-use", "--output-dir that a running run holds",
         (*TRAIN, "--output-dir", "out"), ("output folder", "/out is in use by run abc12345 (process 4242)",
                                           "give another --output-dir"), locked_folder("out")),
    Case("name-folder-in-use", "--name whose outputs/<name> a running run holds",
         (*TRAIN, "--name", "exp1"), ("outputs/exp1 is in use by run abc12345",),
         locked_folder("outputs/exp1")),
    # text from files reaches the terminal escaped
    Case("terminal-escape-in-checkpoint-name", "a checkpoint path holding terminal escapes",
         ("evaluate", f"x{ESC}.pt"), ("\\x1b]0;owned\\x07\\x1b[2J.pt' does not exist",), subprocess=True),
    Case("terminal-escape-in-sweep-name", "a sweep file name holding terminal escapes",
         ("sweep", "validate", f"s{ESC}.yaml"), ("s\\x1b]0;owned",)),
    Case("terminal-escape-in-config-key", "a --config key holding terminal escapes",
         ("train", "--config", "esc.yaml"), ("unknown config key 'a\\x1b[2J'",),
         text("esc.yaml", '"a\\x1b[2J": 1\n')),
]


# -- the runner (shared by the test and the docs table) ---------------------------------------
@dataclass
class Outcome:
    code: int | None
    output: str  # stderr then stdout
    changes: list[str]  # paths created, modified or removed ("+ path", "~ path", "- path"), except
    # the case's allowed ones


def snapshot(roots: list[Path]) -> dict[str, tuple]:
    """Every file (size, mtime) and folder under ``roots``."""
    seen: dict[str, tuple] = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for d in dirnames:
                seen[os.path.join(dirpath, d)] = ("dir",)
            for f in filenames:
                st = os.lstat(os.path.join(dirpath, f))
                seen[os.path.join(dirpath, f)] = (st.st_size, st.st_mtime_ns)
    return seen


def diff(before: dict[str, tuple], after: dict[str, tuple]) -> list[str]:
    return sorted([f"+ {p}" for p in after.keys() - before.keys()]
                  + [f"- {p}" for p in before.keys() - after.keys()]
                  + [f"~ {p}" for p in before.keys() & after.keys() if before[p] != after[p]])


def in_process(argv: list[str]) -> tuple[int | None, str]:
    """``main()`` as the console script runs it; an escaping exception prints its traceback."""
    out, err = io.StringIO(), io.StringIO()
    saved = sys.argv
    sys.argv = ["cnn-tracker", *argv]
    code: int | None = 0
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                main()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) or exc.code is None else 1
            except BaseException:  # what the interpreter would print, with its exit code
                traceback.print_exc()
                code = 1
    finally:
        sys.argv = saved
    return code, err.getvalue() + out.getvalue()


def as_subprocess(argv: list[str], work: Path) -> tuple[int | None, str]:
    proc = subprocess.run([sys.executable, "-m", "cnn_tracker", *argv], cwd=work, env=dict(os.environ),
                          capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stderr + proc.stdout


def expand(items: tuple[str, ...], fx: Fixtures) -> list[str]:
    return [s.replace("{data}", str(fx.data)).replace("{ckpt}", str(fx.ckpt)) for s in items]


def run_case(case: Case, base: Path, fx: Fixtures) -> Outcome:
    """Set up ``case`` in its own isolated folder ``base``, run it and report what changed."""
    with pytest.MonkeyPatch.context() as mp:
        work = isolate(mp, base)
        for key, value in case.env.items():
            mp.setenv(key, value)
        if case.setup is not None:
            case.setup(work, fx)
        roots = [base, fx.root]
        before = snapshot(roots)
        argv = expand(case.argv, fx)
        code, output = as_subprocess(argv, work) if case.subprocess else in_process(argv)
        allowed = {str(base / a) for a in case.allowed}
        changes = [c for c in diff(before, snapshot(roots)) if c[2:] not in allowed]
    return Outcome(code, output, changes)


def violations(case: Case, result: Outcome, fx: Fixtures) -> list[str]:
    """How ``result`` falls short of the rules for a bad input (empty when it does not)."""
    found = []
    if result.code != 2:
        found.append(f"exit code {result.code}, not 2")
    if "Traceback" in result.output:
        found.append("a traceback")
    n = len(error_lines(result.output))
    if n != 1:
        found.append(f"{n} lines start with 'Error:'")
    msg = message(result.output) if n else ""
    found += [f"message lacks {f!r}" for f in expand(case.expect, fx) if f not in msg]
    found += [f"changed {c}" for c in result.changes]
    return found


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("Error:")]


def message(output: str) -> str:
    """The Error line and its indented continuation lines (a sweep's list of problems)."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Error:"))
    end = start + 1
    while end < len(lines) and lines[end].startswith("  - "):
        end += 1
    return "\n".join(lines[start:end])


def shorten(text_: str, base: Path, fx: Fixtures) -> str:
    for path, short in ((fx.ckpt, "<ckpt>"), (fx.data, "<data>"), (base / "work", "<tmp>"),
                        (base, "<tmp>/.."), (fx.root, "<fixtures>")):
        text_ = text_.replace(str(path), short)
    return text_


# -- the test ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fixtures(tmp_path_factory) -> Fixtures:
    return build_fixtures(tmp_path_factory.mktemp("catalogue-fixtures"))


def params() -> list:
    def marks(case: Case) -> list:
        if case.skip:
            return [pytest.mark.skip(reason=case.skip)]
        if case.known_issue:
            return [pytest.mark.xfail(strict=True, reason=case.known_issue)]
        return []
    return [pytest.param(case, id=case.id, marks=marks(case)) for case in CASES]


def test_catalogue_is_complete():
    assert len(CASES) >= 115
    assert len({c.id for c in CASES}) == len(CASES)
    assert sum(c.subprocess for c in CASES) >= 2


@pytest.mark.parametrize("case", params())
def test_bad_input(case: Case, tmp_path, fixtures):
    result = run_case(case, tmp_path, fixtures)
    found = violations(case, result, fixtures)
    assert not found, shorten("\n".join([*found, "output:", result.output]), tmp_path, fixtures)


def test_in_process_runner_prints_what_the_console_prints(tmp_path, fixtures):
    """The in-process runner is faithful: same exit code and output as `python -m cnn_tracker`."""
    case = next(c for c in CASES if c.id == "unknown-config-file-key")
    assert not case.subprocess
    inside = run_case(case, tmp_path / "in", fixtures)
    console = run_case(replace(case, subprocess=True), tmp_path / "sub", fixtures)
    assert (inside.code, inside.output) == (console.code, console.output)


def test_debug_shows_the_traceback(tmp_path, fixtures):
    case = Case("debug", "--debug on a bad input", ("--debug", "train", "--lr", "fast"), (),
                subprocess=True)
    result = run_case(case, tmp_path, fixtures)
    assert result.code == 1, result.output
    assert "Traceback (most recent call last)" in result.output
    assert "ConfigError: invalid value 'fast' for 'lr'" in result.output
    assert result.changes == []


# -- docs/errors.md ---------------------------------------------------------------------------
def _cell(value: str) -> str:
    return value.replace("|", "\\|").replace("\n", "<br>")


def _escape_html(value: str) -> str:
    """``<``/``>`` as entities, except inside `code spans` (where they show as written)."""
    parts = value.split("`")
    for i in range(0, len(parts), 2):  # outside backticks
        parts[i] = parts[i].replace("<", "&lt;").replace(">", "&gt;")
    return "`".join(parts)


def markdown_table(base: Path, fx: Fixtures) -> tuple[str, list[str]]:
    """The table of every case runnable here, and each case's violations ("id: ...")."""
    rows = ["| # | input | command | message |", "|---|---|---|---|"]
    problems = []
    for n, case in enumerate((c for c in CASES if not c.skip), 1):
        case_base = base / f"{n:02d}-{case.id}"
        case_base.mkdir()
        result = run_case(case, case_base, fx)
        env_prefix = "".join(f"{k}={v} " for k, v in case.env.items())
        command = shorten(env_prefix + "cnn-tracker " + shlex.join(expand(case.argv, fx)),
                          case_base, fx)
        msg = message(result.output) if error_lines(result.output) else result.output.strip()
        msg = shorten(msg, case_base, fx)
        found = violations(case, Outcome(result.code, result.output, []), fx)
        if result.changes:  # the top-level paths written, not every file under them
            tops = [c for c in result.changes
                    if not any(c[2:].startswith(o[2:] + os.sep) for o in result.changes)]
            found.append(f"{len(result.changes)} paths written: " + ", ".join(c[2:] for c in tops))
        problems += [shorten(f"{case.id}: {v}", case_base, fx) for v in found]
        rows.append(f"| {n} | {_cell(_escape_html(case.input))} | ``{_cell(command)}`` | "
                    f"{_cell(_escape_html(msg))} |")
    return "\n".join(rows), problems


INTRO = f"""# Error catalogue

Every bad input `cnn-tracker` can be given is refused the same way: exit code 2, one line
starting with `Error:` that names the offending value and the fix, no traceback (the global
`--debug` flag shows one), and nothing half-written. This table is the catalogue of
`tests/test_catalogue.py`: each row ran through the real entry point, and the message is the one
it printed. `<tmp>` is the case's working folder, `<data>` a tiny generated data root (400
training images per dataset) and `<ckpt>` a real lenet checkpoint. A sweep file with several
problems gets them all in one message, one per line.

Regenerate it (the same cases and runner as the test) with:

    {REGENERATE}

"""


def write_doc(path: Path = DOC) -> list[str]:
    """Run every case and write the table to ``path``; return the violations found."""
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp).resolve()
        fx = build_fixtures(base / "fixtures")
        (base / "cases").mkdir()
        table, problems = markdown_table(base / "cases", fx)
    parts = [INTRO, table, "\n"]
    skipped = [c for c in CASES if c.skip]
    if skipped:
        parts.append("\nNot run on the machine that generated this table: "
                     + "; ".join(f"{c.input} ({c.skip})" for c in skipped) + ".\n")
    known = [c for c in CASES if c.known_issue and not c.skip]
    if known:
        parts.append("\n## Known issues\n\nThese rows are not yet as required (strict xfail in the "
                     "test until fixed):\n\n")
        for c in known:
            seen = [p.split(": ", 1)[1] for p in problems if p.startswith(c.id + ": ")]
            parts.append(_escape_html(f"- {c.input}: {c.known_issue}. Seen: "
                                      f"{'; '.join(seen) or 'nothing'}.") + "\n")
    path.write_text("".join(parts).rstrip("\n") + "\n", encoding="utf-8")
    return problems


if __name__ == "__main__":
    found = write_doc()
    print(f"wrote {DOC} ({sum(not c.skip for c in CASES)} cases)")
    known = {c.id for c in CASES if c.known_issue}
    unexpected = [p for p in found if p.split(": ", 1)[0] not in known]
    for line in found:
        print(("KNOWN ISSUE: " if line not in unexpected else "NOT AS REQUIRED: ") + line,
              file=sys.stderr)
    sys.exit(1 if unexpected else 0)
