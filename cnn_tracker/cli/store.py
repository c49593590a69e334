"""``cnn-tracker store check|copy|recover``: the run store itself."""

from __future__ import annotations

import click

from cnn_tracker import env
from cnn_tracker.cli.common import STORE_OPTION, open_store
from cnn_tracker.errors import UserError


@click.group("store")
def store_group() -> None:
    """The run store (a SQLite folder or a PostgreSQL URL): check, copy, recover."""


@store_group.command("check")
@STORE_OPTION
def store_check(store_dir) -> None:
    """Open the store and verify its integrity (exit 0, or 2 with a recovery hint)."""
    store = open_store(store_dir)
    if not store.exists():
        raise UserError(f"there is no run store at {store.where} yet: pass --store / set {env.STORE_VAR}.")
    store.open()
    runs, sweeps = store.runs(with_history=False), store.sweeps()
    checkpoints = store.stored_checkpoints()
    click.echo(f"{store.where}: ok ({len(sweeps)} sweep(s), {len(runs)} run(s), "
               f"{len(checkpoints)} best checkpoint(s))")


@store_group.command("copy")
@click.argument("src", metavar="SRC")
@click.argument("dst", metavar="DST")
def store_copy(src, dst) -> None:
    """Copy every sweep, run, epoch and checkpoint of store SRC into store DST.

    SRC and DST are folders or postgresql://USER:PASSWORD@HOST:PORT/DB URLs (either way).
    Rows DST already has are kept: run it again after more runs, nothing is doubled.
    """
    from cnn_tracker.store.copy import copy_store

    source, target = open_store(src), open_store(dst)
    counts = copy_store(source, target)
    shown = ", ".join(f"{c['copied']} {_NAMES[t]}" + (f" ({c['kept']} already there)" if c["kept"] else "")
                      for t, c in counts.items())
    click.echo(f"copied {shown} from {source.where} to {target.where}")


_NAMES = {"sweeps": "sweep(s)", "runs": "run(s)", "history": "epoch(s)", "checkpoints": "checkpoint(s)"}


@store_group.command("recover")
@STORE_OPTION
def store_recover(store_dir) -> None:
    """Copy every readable sweep, run and epoch of a damaged store into a fresh one.

    The damaged file is kept beside it as store.db.damaged-<time>; nothing is deleted.
    """
    from cnn_tracker.store.recover import recover

    result = recover(store_dir)
    counts = ", ".join(f"{n} {table}" for table, n in result["tables"].items())
    click.echo(f"recovered {counts} into {result['store']}; the damaged file is {result['damaged']}")




COMMANDS = (store_group,)
