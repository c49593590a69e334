from __future__ import annotations

import gzip
import shutil

import pytest
import torch
from click.testing import CliRunner

from cnn_tracker.cli import cli
from cnn_tracker.errors import ConfigError, DataError
from cnn_tracker.training.batches import (
    EpochPlan,
    augment_batch,
    train_batches,
    warp_batch,
)
from cnn_tracker.training.data import (
    SPECS,
    get_spec,
    load_data,
    load_split,
    prepare,
    split_indices,
)

from .conftest import TINY_TEST_PER_CLASS, TINY_TRAIN_PER_CLASS


def test_tiny_idx_loads_through_torchvision(tiny_root):
    images, labels = load_split(SPECS["mnist"], tiny_root, train=True)
    assert images.dtype == torch.uint8 and images.shape == (10 * TINY_TRAIN_PER_CLASS, 1, 28, 28)
    assert labels.dtype == torch.int64 and set(labels.tolist()) == set(range(10))


def test_split_is_seeded_disjoint_and_stable(tiny_root):
    a = load_data("fashion-mnist", tiny_root, val_size=50, seed=3)
    b = load_data("fashion-mnist", tiny_root, val_size=50, seed=3)
    c = load_data("fashion-mnist", tiny_root, val_size=50, seed=4)
    assert len(a.val) == 50 and len(a.train) == 10 * TINY_TRAIN_PER_CLASS - 50
    assert len(a.test) == 10 * TINY_TEST_PER_CLASS
    assert torch.equal(a.val.images, b.val.images)
    assert not torch.equal(a.val.images, c.val.images)
    train_idx, val_idx = split_indices(400, 50, seed=3)
    assert set(train_idx.tolist()).isdisjoint(val_idx.tolist())
    assert len(set(train_idx.tolist()) | set(val_idx.tolist())) == 400


def test_val_size_must_be_smaller_than_train(tiny_root):
    with pytest.raises(ConfigError, match="val_size.*smaller than the mnist training set"):
        load_data("mnist", tiny_root, val_size=10 * TINY_TRAIN_PER_CLASS, seed=0)


def test_batches_cover_the_split_once_and_are_normalized(tiny_root):
    data = load_data("mnist", tiny_root, val_size=50, seed=0)
    gen = torch.Generator().manual_seed(0)
    seen = 0
    for x, y in train_batches(data.train, data.spec, 64, gen, augment=False):
        assert x.dtype == torch.float32 and x.shape[1:] == (1, 28, 28)
        seen += len(y)
    assert seen == len(data.train)
    x, _ = next(train_batches(data.train, data.spec, 1000, torch.Generator().manual_seed(0), False))
    spec = data.spec
    expected_mean = (data.train.images.float().mean() / 255 - spec.mean) / spec.std
    assert torch.isclose(x.mean(), expected_mean, atol=1e-4)


def test_augment_shifts_and_flips_exactly():
    img = torch.zeros(2, 1, 28, 28, dtype=torch.uint8)
    img[:, 0, 10, 5] = 255
    shifts = torch.tensor([[2, -1], [0, 0]])
    out = augment_batch(img, shifts, flips=torch.tensor([False, True]))
    # shift by (dy, dx) = (2, -1) moves content up-left in source coordinates
    assert out[0, 0, 8, 6] == 255 and out[0].sum() == 255
    # flip mirrors the column: 5 -> 22
    assert out[1, 0, 10, 22] == 255 and out[1].sum() == 255


def test_augmentation_is_deterministic_per_seed(tiny_root):
    data = load_data("fashion-mnist", tiny_root, val_size=50, seed=0)

    def first(seed):
        return next(train_batches(data.train, data.spec, 32, torch.Generator().manual_seed(seed), True))[0]

    assert torch.equal(first(1), first(1)) and not torch.equal(first(1), first(2))


def test_rotate_turns_each_image_about_its_centre():
    img = torch.zeros(3, 1, 28, 28)
    img[:, 0, 2, 20] = 255.0  # a dot up and to the right of the centre
    out = warp_batch(img, torch.tensor([90.0, -90.0, 0.0]))
    assert torch.allclose(out[0], torch.rot90(img[0], 1, (1, 2)), atol=1e-3)  # counter-clockwise
    assert torch.allclose(out[1], torch.rot90(img[1], -1, (1, 2)), atol=1e-3)
    assert torch.allclose(out[2], img[2], atol=1e-3)
    small = warp_batch(img[:1], torch.tensor([10.0]))  # bilinear: mass kept, moved off the dot
    assert small[0, 0, 2, 20] < 255 and small.sum() == pytest.approx(255.0, rel=0.05)


def test_zoom_scales_each_image_about_its_centre():
    img = torch.zeros(3, 1, 28, 28)
    img[:, 0, 10:18, 10:18] = 255.0  # an 8 px square about the centre
    out = warp_batch(img, None, torch.tensor([2.0, 0.5, 1.0]))
    assert torch.equal(out[0, 0] > 128, torch.nn.functional.pad(torch.ones(16, 16), (6, 6, 6, 6)) > 0)
    assert torch.equal(out[1, 0] > 128, torch.nn.functional.pad(torch.ones(4, 4), (12, 12, 12, 12)) > 0)
    assert torch.allclose(out[2], img[2], atol=1e-3)
    both = warp_batch(img[:1], torch.tensor([90.0]), torch.tensor([2.0]))  # one resampling
    assert torch.allclose(both, out[:1], atol=1e-3)  # the square is symmetric under a quarter turn


def test_zooms_are_drawn_after_the_angles(tiny_root):
    """zoom=0 gives the batches of a run from before the key; zoom>0 keeps order, shifts and
    angles and scales the images, from the seed."""
    data = load_data("mnist", tiny_root, val_size=50, seed=0)

    def first(zoom, seed=1):
        gen = torch.Generator().manual_seed(seed)
        return next(train_batches(data.train, data.spec, 32, gen, True, zoom=zoom))

    plain, zoomed = first(0.0), first(0.2)
    assert torch.equal(plain[1], zoomed[1]) and not torch.equal(plain[0], zoomed[0])
    assert torch.equal(zoomed[0], first(0.2)[0]) and not torch.equal(zoomed[0], first(0.2, seed=2)[0])
    with_zoom, without = (EpochPlan(500, torch.Generator().manual_seed(1), True, False, "cpu",
                                    rotate=15.0, zoom=z) for z in (0.2, 0.0))
    for name in ("order", "shifts", "angles"):
        assert torch.equal(getattr(with_zoom, name), getattr(without, name)), name
    assert without.zooms is None and with_zoom.zooms.min() >= 0.8 and with_zoom.zooms.max() <= 1.2
    assert with_zoom.zooms.std() > 0.1  # uniform on [0.8, 1.2]: std 0.115


def test_rotations_are_drawn_after_the_other_draws(tiny_root):
    """rotate=0 gives the batches a run got before the key existed; rotate>0 keeps the order
    and the shifts, and turns the images (seeded, so a resumed epoch sees the same angles)."""
    data = load_data("mnist", tiny_root, val_size=50, seed=0)

    def first(rotate, seed=1):
        gen = torch.Generator().manual_seed(seed)
        return next(train_batches(data.train, data.spec, 32, gen, True, rotate=rotate))

    plain, turned = first(0.0), first(15.0)
    unrotated = next(train_batches(data.train, data.spec, 32, torch.Generator().manual_seed(1), True))
    assert torch.equal(plain[0], unrotated[0])
    assert torch.equal(plain[1], turned[1]) and not torch.equal(plain[0], turned[0])
    assert torch.equal(turned[0], first(15.0)[0]) and not torch.equal(turned[0], first(15.0, 2)[0])
    skipped = next(train_batches(data.train, data.spec, 32, torch.Generator().manual_seed(1), True,
                                 start_batch=1, rotate=15.0))
    gen = torch.Generator().manual_seed(1)
    batches = train_batches(data.train, data.spec, 32, gen, True, rotate=15.0)
    next(batches)
    assert torch.equal(next(batches)[0], skipped[0])


def test_rotate_is_a_config_key_with_a_range():
    from cnn_tracker.config import TrainConfig, make_config

    assert make_config({"rotate": "5"}).rotate == 5.0 and TrainConfig().rotate == 0.0
    assert make_config({}).rotate == 10.0  # the MNIST recipe's
    assert make_config({"dataset": "fashion-mnist"}).rotate == 0.0
    with pytest.raises(ConfigError, match="'rotate'.*0 to 180"):
        make_config({"rotate": -5})
    with pytest.raises(ConfigError, match="Did you mean 'rotate'"):
        make_config({"rotation": 10})


def test_zoom_is_a_config_key_with_a_range():
    from cnn_tracker.config import TrainConfig, make_config

    assert make_config({"zoom": "0.1"}).zoom == 0.1 and TrainConfig().zoom == 0.0
    for bad in (-0.1, 0.6):
        with pytest.raises(ConfigError, match="'zoom'.*0 to 0.5"):
            make_config({"zoom": bad})
    with pytest.raises(ConfigError, match="Did you mean 'zoom'"):
        make_config({"zoom_range": 0.1})


def test_a_checkpoint_from_before_rotate_resumes_without_rotations():
    import dataclasses
    from pathlib import Path

    from cnn_tracker.config import make_config
    from cnn_tracker.runs.plan import resume_config

    old = dataclasses.asdict(make_config({}))  # the MNIST recipe, which now rotates by 10
    del old["rotate"]  # a checkpoint written before the key existed
    assert resume_config({"config": old}, Path("old.pt"), None).rotate == 0.0
    assert resume_config({"config": dataclasses.asdict(make_config({}))}, Path("new.pt"),
                         None).rotate == 10.0


def test_missing_data_names_both_fixes(tmp_path):
    with pytest.raises(DataError) as exc:
        prepare(get_spec("mnist"), tmp_path / "empty")
    msg = exc.value.message
    assert "CNN_TRACKER_DATA_MIRROR" in msg and "data prepare" in msg and "network" in msg
    assert exc.value.exit_code == 2


def test_mirror_with_bad_md5_is_refused(tmp_path):
    mirror = tmp_path / "mirror" / "MNIST" / "raw"
    mirror.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        with gzip.open(mirror / f"{name}.gz", "wb") as f:
            f.write(b"not the real file")
    with pytest.raises(DataError, match="is corrupted"):
        prepare(get_spec("mnist"), tmp_path / "root", mirror=tmp_path / "mirror")
    assert not list((tmp_path / "root" / "MNIST" / "raw").glob("*.gz"))  # nothing half-copied


def test_mirror_missing_files(tmp_path):
    (tmp_path / "mirror").mkdir()
    with pytest.raises(DataError, match="has no MNIST/raw/train-images-idx3-ubyte.gz"):
        prepare(get_spec("mnist"), tmp_path / "root", mirror=tmp_path / "mirror")


def test_truncated_extracted_file_is_a_clear_error(tiny_root, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(tiny_root / "MNIST", root / "MNIST")
    path = root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DataError, match="cannot be read"):
        load_split(get_spec("mnist"), root, train=True)


@pytest.mark.realdata
def test_real_mirror_prepare_and_load(real_mirror, tmp_path):
    result = CliRunner().invoke(cli, ["data", "prepare", "--from", str(real_mirror),
                                      "--data-dir", str(tmp_path / "root")])
    assert result.exit_code == 0, result.output
    assert "mnist: ready" in result.output and "fashion-mnist: ready" in result.output
    data = load_data("fashion-mnist", tmp_path / "root", val_size=5000, seed=0)
    assert (len(data.train), len(data.val), len(data.test)) == (55000, 5000, 10000)
    counts = torch.bincount(data.test.labels, minlength=10)
    assert counts.tolist() == [1000] * 10  # per the mirror's README
    mnist_test = load_split(SPECS["mnist"], tmp_path / "root", train=False)[1]
    assert torch.bincount(mnist_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_mirror_that_is_not_a_folder_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("CNN_TRACKER_DATA_MIRROR", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="nowhere.*is not a folder"):
        prepare(get_spec("fashion-mnist"), tmp_path / "root")


@pytest.mark.realdata
def test_real_data_smoke_train(real_mirror, tmp_path, monkeypatch):
    """One short real run: the MLP on real MNIST via the mirror variable, tracking disabled."""
    import json

    monkeypatch.setenv("CNN_TRACKER_DATA_MIRROR", str(real_mirror))
    result = CliRunner().invoke(cli, ["train", "--data-dir", str(tmp_path / "root"), "--model", "mlp",
                                      "--hidden_units", "64", "--epochs", "1", "--mode", "disabled",
                                      "--output-dir", str(tmp_path / "out"), "--quiet"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["test/accuracy"] > 0.9  # one epoch of a 64-unit MLP on MNIST gets ~95%
