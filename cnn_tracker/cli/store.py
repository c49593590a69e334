"""``cnn-tracker store check|recover``: the local run store itself."""

from __future__ import annotations

import click

from cnn_tracker import env
from cnn_tracker.cli.common import STORE_OPTION, open_store
from cnn_tracker.errors import UserError


@click.group("store")
def store_group() -> None:
    """The local run store (SQLite): check it, recover a damaged one."""


@store_group.command("check")
@STORE_OPTION
def store_check(store_dir) -> None:
    """Open the store and verify its integrity (exit 0, or 2 with a recovery hint)."""
    store = open_store(store_dir)
    if not store.exists():
        raise UserError(f"there is no run store at {store.path} yet: pass --store / set {env.STORE_VAR}.")
    store.open()
    runs, sweeps = store.runs(with_history=False), store.sweeps()
    click.echo(f"{store.path}: ok ({len(sweeps)} sweep(s), {len(runs)} run(s))")


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
