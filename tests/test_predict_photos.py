"""`predict` on photo-like images: real MNIST test digits, dark on uneven light paper, as JPEG.

Needs the real data (CNN_TRACKER_DATA_MIRROR): one ~99% lenet is trained for the session with
`train --preset fast` (about 10-20 s on a laptop CPU).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from benchmarks.photo_set import make_photo_set
from cnn_tracker.cli import cli
from cnn_tracker.tools.inference import dataset_image

from .conftest import REAL_MIRROR, isolate


@pytest.fixture(scope="session")
def mnist_model(tmp_path_factory) -> tuple[Path, Path]:
    """(best.pt of a real-MNIST lenet with >= 99% test accuracy, its data folder)."""
    if not REAL_MIRROR or not Path(REAL_MIRROR).is_dir():
        pytest.skip("real dataset mirror not available (CNN_TRACKER_DATA_MIRROR unset)")
    base = tmp_path_factory.mktemp("photo-model")
    with pytest.MonkeyPatch.context() as mp:
        work = isolate(mp, base)
        mp.setenv("CNN_TRACKER_DATA_MIRROR", REAL_MIRROR)
        result = CliRunner().invoke(cli, ["train", "--preset", "fast", "--mode", "disabled", "--quiet",
                                          "--data-dir", str(base / "data"), "--output-dir", "out"])
    assert result.exit_code == 0, result.output
    summary = json.loads((work / "out" / "summary.json").read_text())
    assert summary["test/accuracy"] >= 0.99
    return work / "out" / "checkpoints" / "best.pt", base / "data"


@pytest.mark.slow
@pytest.mark.realdata
def test_photos_of_real_digits_are_read_as_mnist_digits(mnist_model, tmp_path, monkeypatch):
    ckpt, data = mnist_model
    monkeypatch.setenv("CNN_TRACKER_DATA_MIRROR", REAL_MIRROR)
    monkeypatch.setenv("CNN_TRACKER_DATA_DIR", str(data))
    photos = make_photo_set(tmp_path / "photos", 60, seed=0)
    sizes = [Image.open(p).size for p, _ in photos]
    assert min(map(min, sizes)) >= 120 and max(map(max, sizes)) <= 640
    result = CliRunner().invoke(cli, ["predict", str(ckpt), *(str(p) for p, _ in photos),
                                      "--top-k", "1", "--json", "--show", str(tmp_path / "show")])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    right = sum(r["predicted"] == str(label) for r, (_, label) in zip(out, photos))
    assert right / len(photos) >= 0.90, f"{right}/{len(photos)} right"
    shown = [Path(r["shown"]) for r in out]
    assert len(set(shown)) == len(photos) and all(p.read_bytes()[:4] == b"\x89PNG" for p in shown)


def test_digit_is_boxed_in_20_px_and_centred_by_mass():
    """A dark 3:1 bar on a light gradient: longer side 20 px, aspect kept, mass at the centre."""
    yy, xx = np.mgrid[0:300, 0:400]
    photo = 160 + 60 * xx / 400 + np.random.default_rng(0).normal(0, 4, (300, 400))
    photo[40:160, 250:290] = 30  # 120 x 40 px, far off-centre
    img = dataset_image(photo, digits=True).astype(float)
    rows, cols = np.flatnonzero(img.max(1) > 60), np.flatnonzero(img.max(0) > 60)
    assert rows[-1] - rows[0] + 1 in (19, 20, 21) and cols[-1] - cols[0] + 1 in (6, 7, 8)
    cy = (img.sum(1) * np.arange(28)).sum() / img.sum()
    cx = (img.sum(0) * np.arange(28)).sum() / img.sum()
    assert abs(cy - 13.5) <= 0.75 and abs(cx - 13.5) <= 0.75
    assert img[:2].max() == 0 and img[:, :2].max() == 0  # the gradient is not ink


def test_clothes_fill_the_frame():
    photo = np.full((500, 300), 240.0)
    photo[50:450, 100:250] = 90  # a 400 x 150 px garment
    img = dataset_image(photo, digits=False)
    rows = np.flatnonzero(img.max(1) > 60)
    assert rows[0] == 0 and rows[-1] == 27
