"""What several command modules share: the --store option, JSON output, checkpoint references."""

from __future__ import annotations

import json
from typing import Any

import click

from cnn_tracker import env
from cnn_tracker.errors import UserError
from cnn_tracker.store.db import (
    DEFAULT_STORE,
    STORE_VAR,
)

STORE_OPTION = click.option(
    "--store", "store_dir", metavar="DIR",
    help=f"Local run store folder [default: {STORE_VAR} or ./{DEFAULT_STORE}].")


def open_store(store_dir: str | None):
    from cnn_tracker.store.db import Store

    return Store(store_dir)


def echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


def cloud_or_fail(what: str, store) -> None:
    if not env.has_api_key():
        raise UserError(f"{what} is not in the local run store {store.root}, and no W&B API key is "
                        f"configured to look it up on W&B: check the id, pass --store / set "
                        f"{STORE_VAR} to the store that holds it, or set WANDB_API_KEY.")


