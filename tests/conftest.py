"""Shared fixtures: an isolated environment per test and tiny generated IDX datasets.

The tiny datasets are real IDX files in torchvision's layout (``<root>/MNIST/raw/...``), read by
torchvision's own MNIST / FashionMNIST classes. Class k is a central 16x16 patch of brightness
~25(k+1) plus noise: learnable in an epoch or two, and unchanged by the 2-px shifts and the flips
of ``augment``.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest

from cnn_tracker.training.data import SPECS

TINY_TRAIN_PER_CLASS = 40
TINY_TEST_PER_CLASS = 12
REPO = Path(__file__).resolve().parents[1]
# Read once at import, made absolute (the README passes a relative ../shared/datasets, and every
# test runs in its own folder): the per-test fixture below clears CNN_TRACKER_* variables.
REAL_MIRROR = os.environ.get("CNN_TRACKER_DATA_MIRROR", "")
REAL_MIRROR = str(Path(REAL_MIRROR).absolute()) if REAL_MIRROR else ""


def write_idx_images(path: Path, images: np.ndarray) -> None:
    n, rows, cols = images.shape
    path.write_bytes(struct.pack(">IIII", 0x803, n, rows, cols) + images.astype(np.uint8).tobytes())


def write_idx_labels(path: Path, labels: np.ndarray) -> None:
    path.write_bytes(struct.pack(">II", 0x801, len(labels)) + labels.astype(np.uint8).tobytes())


def tiny_split(per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(10), per_class)
    rng.shuffle(labels)
    images = rng.integers(0, 20, size=(len(labels), 28, 28)).astype(np.float32)
    for i, k in enumerate(labels):
        images[i, 6:22, 6:22] += 25 * (k + 1) + rng.normal(0, 4, size=(16, 16))
    return images.clip(0, 255).astype(np.uint8), labels


def write_tiny_dataset(root: Path, folder: str) -> None:
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, per_class, seed in (("train", TINY_TRAIN_PER_CLASS, 1), ("t10k", TINY_TEST_PER_CLASS, 2)):
        images, labels = tiny_split(per_class, seed)
        write_idx_images(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx_labels(raw / f"{prefix}-labels-idx1-ubyte", labels)


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    """A data root holding tiny MNIST and FashionMNIST IDX files (extracted, as torchvision keeps them)."""
    root = tmp_path_factory.mktemp("tiny-data")
    for spec in SPECS.values():
        write_tiny_dataset(root, spec.folder)
    return root


def isolate(monkeypatch: pytest.MonkeyPatch, base: Path) -> Path:
    """Own working folder, HOME and caches under ``base``; no W&B key; no dataset downloads."""
    for var in list(os.environ):
        if var.startswith(("WANDB_", "CNN_TRACKER_")):
            monkeypatch.delenv(var, raising=False)
    work = base / "work"
    work.mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(base / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(base / "cache"))
    monkeypatch.setenv("NETRC", str(base / "no-netrc"))
    monkeypatch.setenv("WANDB_DIR", str(work))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(base / "wandb-config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(base / "wandb-cache"))
    monkeypatch.setenv("WANDB_DATA_DIR", str(base / "wandb-data"))
    monkeypatch.setenv("CNN_TRACKER_DOWNLOAD", "0")
    return work


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch) -> Path:
    """Each test in its own working folder, W&B offline-capable and unable to reach the network."""
    return isolate(monkeypatch, tmp_path)


@pytest.fixture
def real_mirror() -> Path:
    """The real dataset mirror (CNN_TRACKER_DATA_MIRROR, as .ci/run sets it), or skip."""
    if not REAL_MIRROR or not Path(REAL_MIRROR).is_dir():
        pytest.skip("real dataset mirror not available (CNN_TRACKER_DATA_MIRROR unset)")
    return Path(REAL_MIRROR)


TINY_ARGS = ["--epochs", "2", "--batch_size", "32", "--val_size", "50", "--model", "lenet",
             "--log_misclassified", "8", "--eval_batch_size", "64"]


# -- a real PostgreSQL server (tests/pgserver.py): .ci/run's, else one started for the session --
from .pgserver import DIR_VAR as _PG_DIR_VAR  # noqa: E402
from .pgserver import URL_VAR as _PG_URL_VAR  # noqa: E402

_CI_PG = (os.environ.get(_PG_URL_VAR, ""), os.environ.get(_PG_DIR_VAR, ""))  # read before isolate()


@pytest.fixture(scope="session")
def pg_server():
    """The PostgreSQL server of the test session (skips, saying why, when none can start)."""
    import tempfile

    from .pgserver import PgServer, Unavailable

    if all(_CI_PG):
        yield PgServer.attach(_CI_PG[1], _CI_PG[0])
        return
    try:  # under /tmp: the postgres user must reach its data folder
        server = PgServer.start(tempfile.mkdtemp(prefix="cnn-tracker-pg-"))
    except Unavailable as exc:
        pytest.skip(f"no PostgreSQL server could be started here: {exc}")
    yield server
    server.stop("immediate")


@pytest.fixture
def pg_url(pg_server) -> str:
    """A fresh, empty database on the session's server: its URL (with the password)."""
    import secrets

    return pg_server.create_database(f"t_{secrets.token_hex(6)}")
