"""The one module that calls W&B's public API (``wandb.Api``) and creates W&B sweeps (``wandb.sweep``).

Thin on purpose: everything else (results, artifacts, the CLI) goes through these functions.
``wandb`` is looked up at call time, so tests can replace ``wandb.Api`` / ``wandb.sweep``.
"""

from __future__ import annotations

from typing import Any

from cnn_tracker.errors import UserError, first_line

API_TIMEOUT = 30  # seconds per W&B API request


def client(timeout: float | None = None):
    """A ``wandb.Api()``; its errors propagate unchanged (the caller words them)."""
    import wandb

    return wandb.Api(timeout=timeout) if timeout is not None else wandb.Api()


def api(timeout: float = API_TIMEOUT):
    """A ``wandb.Api``, or a UserError saying how to log in."""
    try:
        return client(timeout)
    except Exception as exc:  # noqa: BLE001 - the SDK raises several types for "no login"
        raise UserError(f"W&B API unavailable ({first_line(exc)}): set WANDB_API_KEY or run "
                        "`wandb login`, or use the local store (--offline).") from None


def create_sweep(config: dict[str, Any], project: str, entity: str | None) -> str:
    """Register the sweep with W&B; returns its id."""
    import wandb

    try:
        return wandb.sweep(sweep=config, project=project, entity=entity)
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"W&B could not create the sweep ({first_line(exc)}): check WANDB_API_KEY, "
                        "the entity/project and the network, or use --offline.") from None


REGISTRY_PREFIX = "wandb-registry-"  # W&B Registry collections: wandb-registry-<registry>/<collection>


def registry_path(target: str) -> str:
    """``wandb-registry-<registry>/<collection>`` from ``REGISTRY/COLLECTION`` (prefix optional)."""
    parts = [p for p in target.strip().strip("/").split("/") if p]
    if len(parts) != 2 or ":" in target:
        raise UserError(f"--link '{target}' is not REGISTRY/COLLECTION: give e.g. model/mnist-cnn "
                        f"(linked as {REGISTRY_PREFIX}model/mnist-cnn).")
    registry, collection = parts
    if not registry.startswith(REGISTRY_PREFIX):
        registry = REGISTRY_PREFIX + registry
    return f"{registry}/{collection}"


def link_artifact(ref: str, target: str) -> str:
    """Link the logged artifact ``ref`` into the W&B Registry collection ``target``.

    ``wandb.Api().artifact(ref).link("wandb-registry-<registry>/<collection>")``; returns the
    linked version's name (``...:vN``).
    """
    path = registry_path(target)
    try:
        linked = api().artifact(ref, type="model").link(path)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - CommError, ValueError, ArtifactNotLoggedError...
        raise UserError(f"W&B could not link '{ref}' to '{path}' ({first_line(exc)}): check that "
                        "the registry and collection exist and that you may write to them.") from None
    name = getattr(linked, "qualified_name", None) or getattr(linked, "name", None)
    return str(name or path)
