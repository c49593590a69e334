"""``cnn-tracker data prepare``: dataset files from an offline mirror."""

from __future__ import annotations

from pathlib import Path

import click

from cnn_tracker import env
from cnn_tracker.errors import UserError


@click.group()
def data() -> None:
    """Dataset files: copy from an offline mirror and verify."""


@data.command("prepare")
@click.option("--dataset", type=click.Choice(["mnist", "fashion-mnist", "all"]), default="all",
              show_default=True)
@click.option("--from", "mirror", type=click.Path(file_okay=False, path_type=Path),
              help=f"Read-only folder laid out as <Name>/raw/*.gz [default: {env.MIRROR_VAR}].")
@click.option("--data-dir", "data_dir", help="Dataset root to fill.")
def data_prepare(dataset: str, mirror: Path | None, data_dir: str | None) -> None:
    """Copy raw .gz files into the data root; torchvision verifies md5s and extracts them."""
    from cnn_tracker.training.data import SPECS, load_split, prepare

    root = env.data_dir(data_dir)
    if mirror is not None and not mirror.is_dir():
        raise UserError(f"--from {mirror} is not a folder: give the folder that holds "
                        "MNIST/raw and FashionMNIST/raw.")
    names = list(SPECS) if dataset == "all" else [dataset]
    for name in names:
        spec = SPECS[name]
        prepare(spec, root, mirror)
        n_train = len(load_split(spec, root, train=True)[1])
        n_test = len(load_split(spec, root, train=False)[1])
        click.echo(f"{name}: ready in {root / spec.folder} ({n_train} train, {n_test} test images)")




COMMANDS = (data,)
