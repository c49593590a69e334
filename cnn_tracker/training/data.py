"""Datasets: torchvision's MNIST / FashionMNIST for files, md5 checks and IDX parsing; then
tensors.

Each split is held once as a uint8 tensor ``[N, 1, 28, 28]`` on the training device (batches are
cut from it by training.batches). The validation split is drawn from the training set by a CPU
generator seeded by the config, so the same seed gives the same split on every device.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from cnn_tracker import env
from cnn_tracker.errors import ConfigError, DataError, first_line

IMAGE_SHAPE = (1, 28, 28)
MAX_SHIFT = 2  # px, random translation range of `augment` in each direction
DOWNLOAD_TIMEOUT = 30  # s per socket operation while torchvision downloads


@dataclass(frozen=True)
class DatasetSpec:
    name: str  # our name, as in TrainConfig.dataset
    folder: str  # torchvision class name and folder under the data root
    class_names: tuple[str, ...]
    mean: float  # of the training pixels scaled to [0, 1]
    std: float
    hflip: bool  # is a horizontal flip label-preserving (clothes yes, digits no)


SPECS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        "mnist", "MNIST", tuple(str(d) for d in range(10)), 0.1307, 0.3081, hflip=False
    ),
    "fashion-mnist": DatasetSpec(
        "fashion-mnist",
        "FashionMNIST",
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        0.2860,
        0.3530,
        hflip=True,
    ),
}


def get_spec(name: str) -> DatasetSpec:
    try:
        return SPECS[name]
    except KeyError:
        raise ConfigError(
            f"unknown dataset {name!r}: choose one of {', '.join(SPECS)}."
        ) from None


def tv_class(spec: DatasetSpec):
    import torchvision.datasets

    return getattr(torchvision.datasets, spec.folder)


def raw_folder(spec: DatasetSpec, root: Path) -> Path:
    return Path(root) / spec.folder / "raw"


def raw_files(spec: DatasetSpec) -> list[tuple[str, str]]:
    """(``.gz`` file name, md5) of each raw file, from torchvision's own resource list."""
    return [(url.rpartition("/")[2], md5) for url, md5 in tv_class(spec).resources]


def _is_extracted(spec: DatasetSpec, root: Path) -> bool:
    folder = raw_folder(spec, root)
    return all((folder / gz[: -len(".gz")]).is_file() for gz, _ in raw_files(spec))


def _missing_data_error(
    spec: DatasetSpec, root: Path, reason: str, bad_mirror: Path | None = None
) -> DataError:
    if bad_mirror is not None:
        reason += f"; the mirror {bad_mirror} ({env.MIRROR_VAR}) is not a folder"
    return DataError(
        f"{spec.name} is not in the data root {root} and {reason}. Either point "
        f"{env.MIRROR_VAR} at a folder holding {spec.folder}/raw/*.gz (or run "
        f"`cnn-tracker data prepare --dataset {spec.name} --from DIR`), or run once with network "
        f"access so torchvision can download it."
    )


def copy_from_mirror(spec: DatasetSpec, root: Path, mirror: Path) -> list[Path]:
    """Copy the raw ``.gz`` files of ``spec`` from a read-only ``mirror`` into ``root``.

    Files already present with the right md5 are kept. Each copy goes through a temp name and a
    rename, so an interrupted copy never leaves a half-written file under the real name.
    """
    from torchvision.datasets.utils import check_integrity

    src_dir = Path(mirror) / spec.folder / "raw"
    missing = [gz for gz, _ in raw_files(spec) if not (src_dir / gz).is_file()]
    if missing:
        raise DataError(
            f"the mirror {mirror} has no {spec.folder}/raw/{missing[0]}"
            + (f" (and {len(missing) - 1} more files)" if len(missing) > 1 else "")
            + f": a mirror must hold {spec.folder}/raw/*.gz as torchvision names them."
        )
    # Every source is checked before anything is created: a bad mirror leaves the root untouched.
    for gz, md5 in raw_files(spec):
        if not check_integrity(str(src_dir / gz), md5):
            raise DataError(
                f"{src_dir / gz} is corrupted (its md5 is not torchvision's {md5}): replace it with "
                "the original file."
            )
    dst_dir = raw_folder(spec, root)
    try:
        dst_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the data folder {dst_dir} ({exc.strerror}): "
                        f"choose a writable --data-dir or {env.DATA_DIR_VAR}.") from None
    copied = []
    for gz, md5 in raw_files(spec):
        src, dst = src_dir / gz, dst_dir / gz
        if dst.is_file() and check_integrity(str(dst), md5):
            continue
        tmp = dst.with_name(dst.name + ".partial")
        shutil.copyfile(src, tmp)
        tmp.replace(dst)
        copied.append(dst)
    return copied


def prepare(spec: DatasetSpec, root: Path, mirror: Path | None = None) -> None:
    """Make sure both splits of ``spec`` are extracted under ``root``.

    Order: already extracted > copy from ``mirror`` (or CNN_TRACKER_DATA_MIRROR) > download by
    torchvision (unless CNN_TRACKER_DOWNLOAD=0). torchvision checks every ``.gz`` against its md5
    before extracting, and skips the network when the files are already there and valid.
    """
    from torchvision.datasets.utils import check_integrity

    root = Path(root)
    if _is_extracted(spec, root):
        return
    bad_mirror = None
    mirror = mirror or env.data_mirror()
    if mirror is not None and not Path(mirror).is_dir():
        # Not fatal while a download may still work; named in the error if it does not.
        bad_mirror, mirror = mirror, None
    if mirror is not None:
        copy_from_mirror(spec, root, Path(mirror))
    folder = raw_folder(spec, root)
    have_all = True
    for gz, md5 in raw_files(spec):
        path = folder / gz
        if not path.is_file():
            have_all = False
        elif not check_integrity(str(path), md5):
            raise DataError(
                f"{path} is corrupted (md5 mismatch with torchvision's {md5}): delete it and run "
                f"`cnn-tracker data prepare --dataset {spec.name}` again."
            )
    if not have_all and not env.download_allowed():
        raise _missing_data_error(spec, root, f"downloads are off ({env.DOWNLOAD_VAR}=0)", bad_mirror)
    previous_timeout = socket.getdefaulttimeout()
    try:
        root.mkdir(parents=True, exist_ok=True)
        # A silently dropping network must fail, not hang: seconds per socket operation.
        socket.setdefaulttimeout(DOWNLOAD_TIMEOUT)
        # torchvision prints its progress on stdout; keep stdout for our own (--json) output.
        with contextlib.redirect_stdout(sys.stderr):
            tv_class(spec)(str(root), train=True, download=True)
    except OSError as exc:
        if isinstance(exc, PermissionError):
            raise DataError(f"cannot write into the data root {root}: choose a writable "
                            f"--data-dir or {env.DATA_DIR_VAR}.") from None
        raise _missing_data_error(spec, root, "downloading it failed (no network?)", bad_mirror) from None
    except RuntimeError as exc:
        raise _missing_data_error(
            spec, root, f"downloading it failed ({first_line(exc)})", bad_mirror) from None
    finally:
        socket.setdefaulttimeout(previous_timeout)


# What torchvision raises on truncated or malformed extracted IDX files.
_READ_ERRORS = (RuntimeError, ValueError, AssertionError, OSError)


def _unreadable_error(spec: DatasetSpec, root: Path, exc: BaseException) -> DataError:
    return DataError(
        f"the {spec.name} files under {raw_folder(spec, root)} cannot be read ({first_line(exc)}): "
        f"delete that folder and run `cnn-tracker data prepare --dataset {spec.name}`."
    )


def load_split(spec: DatasetSpec, root: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 images ``[N, 1, 28, 28]``, int64 labels ``[N]``) of one split, on the CPU."""
    prepare(spec, root)
    return _read_split(spec, root, train)


def _read_split(spec: DatasetSpec, root: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """One split of prepared data, checked."""
    try:
        with contextlib.redirect_stdout(sys.stderr):
            ds = tv_class(spec)(str(root), train=train, download=False)
        images, labels = ds.data, ds.targets
    except _READ_ERRORS as exc:
        raise _unreadable_error(spec, root, exc) from None
    if images.dim() != 3 or tuple(images.shape[1:]) != IMAGE_SHAPE[1:] or len(images) != len(labels):
        raise DataError(
            f"the {spec.name} files under {raw_folder(spec, root)} have an unexpected shape "
            f"{tuple(images.shape)} with {len(labels)} labels: expected [N, 28, 28] images and N "
            "labels. Delete that folder and prepare the data again."
        )
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= len(spec.class_names)):
        raise DataError(
            f"the {spec.name} labels under {raw_folder(spec, root)} fall outside 0..9: "
            "delete that folder and prepare the data again."
        )
    return images.to(torch.uint8).unsqueeze(1).contiguous(), labels.to(torch.int64)


@dataclass
class Split:
    """One split held as tensors on one device."""

    images: torch.Tensor  # uint8 [N, 1, 28, 28]
    labels: torch.Tensor  # int64 [N]

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device: torch.device | str) -> "Split":
        return Split(self.images.to(device), self.labels.to(device))


@dataclass
class Data:
    spec: DatasetSpec
    train: Split
    val: Split
    test: Split

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.spec.class_names


def split_indices(n: int, val_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, val) indices of an ``n``-image training set; the same for the same seed."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[val_size:].sort().values, perm[:val_size].sort().values


def check_val_size(spec: DatasetSpec, n_train: int, val_size: int) -> None:
    if val_size >= n_train:
        raise ConfigError(
            f"invalid value {val_size} for 'val_size': it must be smaller than the {spec.name} "
            f"training set ({n_train} images). Use e.g. --val_size {max(1, n_train // 12)}."
        )


def check_batch_size(spec: DatasetSpec, n_train: int, val_size: int, batch_size: int) -> None:
    """A batch must fit in the training split (the training set less the validation images)."""
    split = n_train - val_size
    if batch_size > split:
        hint = 2 ** max(0, (max(1, split // 4)).bit_length() - 1)
        raise ConfigError(
            f"invalid value {batch_size} for 'batch_size': it is larger than the {spec.name} "
            f"training split ({split} images: {n_train} less val_size {val_size}). Use e.g. "
            f"--batch_size {hint}, or a smaller --val_size."
        )


_IDX = {"images": (0x803, 3), "labels": (0x801, 1)}  # IDX magic number and dimensions


def _idx_problem(path: Path, kind: str) -> tuple[str | None, int]:
    """(why the IDX file at ``path`` is damaged or None, its item count), from its header and
    size alone (no pixels read)."""
    import struct

    magic, ndim = _IDX[kind]
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            header = f.read(4 + 4 * ndim)
    except OSError as exc:
        return f"{path.name}: {exc.strerror}", 0
    if len(header) < 4 + 4 * ndim or struct.unpack(">I", header[:4])[0] != magic:
        return f"{path.name} is not an IDX {kind} file", 0
    dims = struct.unpack(f">{ndim}I", header[4:])
    if kind == "images" and tuple(dims[1:]) != IMAGE_SHAPE[1:]:
        return f"{path.name} holds {dims[1]}x{dims[2]} images, not 28x28", 0
    expected = 4 + 4 * ndim + math.prod(dims)
    if size != expected:
        what = "truncated" if size < expected else "longer than its header says"
        return f"{path.name} is {what} ({size} bytes, {expected} expected)", 0
    return None, dims[0]


def check_files(spec: DatasetSpec, root: Path) -> int:
    """The training set's size, after checking all four prepared files (header, size and image
    count = label count), cheaply: a damaged file is found before a run writes anything."""
    counts = {}
    for split in ("train", "t10k"):
        for kind in ("images", "labels"):
            path = raw_folder(spec, root) / f"{split}-{kind}-idx{_IDX[kind][1]}-ubyte"
            problem, counts[split, kind] = _idx_problem(path, kind)
            if problem is None and counts[split, "images"] != counts[split, kind]:
                problem = (f"{path.name} has {counts[split, kind]} labels for "
                           f"{counts[split, 'images']} images")
            if problem is not None:
                raise _unreadable_error(spec, root, ValueError(problem))
    return counts["train", "images"]


def load_data(
    dataset: str,
    root: Path,
    *,
    val_size: int,
    seed: int,
    device: torch.device | str = "cpu",
) -> Data:
    """Train / validation / test splits of ``dataset`` as tensors on ``device``."""
    spec = get_spec(dataset)
    prepare(spec, root)  # once for both splits (a no-op when they are extracted)
    images, labels = _read_split(spec, root, train=True)
    check_val_size(spec, len(labels), val_size)
    train_idx, val_idx = split_indices(len(labels), val_size, seed)
    test_images, test_labels = _read_split(spec, root, train=False)
    return Data(
        spec,
        Split(images[train_idx], labels[train_idx]).to(device),
        Split(images[val_idx], labels[val_idx]).to(device),
        Split(test_images, test_labels).to(device),
    )
