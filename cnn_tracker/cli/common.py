"""What several command modules share: the --store option, JSON output, checkpoint references."""

from __future__ import annotations

import json
from typing import Any

import click

from cnn_tracker.env import DEFAULT_STORE, STORE_VAR

STORE_OPTION = click.option(
    "--store", "store_dir", metavar="DIR|URL",
    help=f"Run store: a folder (SQLite, one machine) or postgresql://USER:PASS@HOST:PORT/DB "
         f"(many machines) [default: {STORE_VAR} or ./{DEFAULT_STORE}].")


def open_store(store_dir: str | None):
    from cnn_tracker.store.db import Store

    return Store(store_dir)


def echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


def cloud_or_fail(what: str, store) -> None:
    """UserError unless W&B can be asked about ``what`` (see ``results.source.open_source``)."""
    from cnn_tracker.results.source import require_wandb

    require_wandb(what, store)


