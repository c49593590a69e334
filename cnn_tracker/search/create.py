"""Creating a sweep: on W&B (``wandb.sweep``) or in the local store, from a validated sweep file."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from cnn_tracker import env
from cnn_tracker.errors import UserError
from cnn_tracker.search.spec import load_checked
from cnn_tracker.store.db import Store


@dataclass(frozen=True)
class CreatedSweep:
    sweep_id: str  # local id, or entity/project/id on W&B
    mode: str  # offline (local store) or online (W&B)
    project: str
    where: str  # the store folder, or "wandb"
    method: str | None
    agent_command: str


def create_sweep(file: str, *, offline: bool, project: str | None, entity: str | None,
                 store_dir: str | None, warn: Callable[[str], None]) -> CreatedSweep:
    """Validate FILE and create its sweep; ``warn`` receives the warnings and notices.

    Without ``offline`` the W&B mode decides as for train: online with an API key, else offline.
    """
    config: dict[str, Any] = load_checked(file, warn)
    project = project or config.get("project") or env.wandb_project() or "cnn-tracker"
    mode = "offline"
    if not offline:
        mode, notice = env.resolve_mode(None)
        if notice:
            warn("W&B: no API key found, creating the sweep in the local store "
                 "(pass --offline to say so; set WANDB_API_KEY for a W&B sweep).")
        if mode == "online" and not env.has_api_key():
            raise UserError("WANDB_MODE is online but no API key is configured: set WANDB_API_KEY, "
                            "or pass --offline.")
        mode = "offline" if mode == "disabled" else mode
    if mode == "offline":
        store = Store(store_dir)
        sweep_id = store.create_sweep(config, project).id
        # A database URL is shown without its password (libpq then reads PGPASSWORD/.pgpass).
        agent_cmd = f"cnn-tracker agent {sweep_id}" + (
            f" --store {store.location.shareable}" if store_dir else "")
        return CreatedSweep(sweep_id, mode, project, store.location.shareable, config.get("method"),
                            agent_cmd)
    from cnn_tracker.results.remote import sweep_path
    from cnn_tracker.tracking import wandb_api

    sweep_id = sweep_path(wandb_api.create_sweep(config, project, entity), project, entity)
    return CreatedSweep(sweep_id, mode, project, "wandb", config.get("method"),
                        f"cnn-tracker agent {sweep_id}")
