"""Environment: the ``.env`` file, the W&B mode and the local folders the toolkit uses.

Every environment variable the toolkit reads is named here (and listed in ``.env.example``).
"""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from urllib.parse import urlparse

from cnn_tracker.errors import UserError

# Variables of our own. W&B's (WANDB_API_KEY, WANDB_PROJECT, WANDB_ENTITY, WANDB_MODE, WANDB_DIR,
# WANDB_BASE_URL, ...) are read by the SDK itself, and by resolve_mode below.
DATA_DIR_VAR = "CNN_TRACKER_DATA_DIR"
MIRROR_VAR = "CNN_TRACKER_DATA_MIRROR"
DOWNLOAD_VAR = "CNN_TRACKER_DOWNLOAD"
OUTPUT_DIR_VAR = "CNN_TRACKER_OUTPUT_DIR"

_MODE_ALIASES = {"online": "online", "run": "online", "offline": "offline", "dryrun": "offline",
                 "disabled": "disabled"}


def load_dotenv_file(path: str | os.PathLike[str] | None = None) -> list[str]:
    """Load ``.env`` from the working directory (or ``path``) without overriding set variables.

    Returns the names it set. A missing file is not an error.
    """
    from dotenv import dotenv_values

    p = Path(path) if path is not None else Path.cwd() / ".env"
    if not p.is_file():
        return []
    set_now = []
    for key, value in dotenv_values(p).items():
        if value is not None and key not in os.environ:
            os.environ[key] = value
            set_now.append(key)
    return set_now


def normalize_mode(mode: str, source: str) -> str:
    resolved = _MODE_ALIASES.get(mode.strip().lower())
    if resolved is None:
        raise UserError(
            f"invalid W&B mode {mode!r} (from {source}): use online, offline or disabled."
        )
    return resolved


def has_api_key() -> bool:
    """True when W&B could authenticate: WANDB_API_KEY, or a netrc entry for the W&B host."""
    if os.environ.get("WANDB_API_KEY", "").strip():
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or ""
    path = os.environ.get("NETRC") or str(Path.home() / ".netrc")
    try:
        return netrc.netrc(path).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def resolve_mode(cli_mode: str | None) -> tuple[str, str | None]:
    """The W&B mode to use and, when we chose offline for lack of a key, a one-line notice.

    Order: ``--mode`` > WANDB_MODE > online if an API key is configured > offline.
    """
    if cli_mode:
        return normalize_mode(cli_mode, "--mode"), None
    env_mode = os.environ.get("WANDB_MODE", "").strip()
    if env_mode:
        return normalize_mode(env_mode, "WANDB_MODE"), None
    if has_api_key():
        return "online", None
    return "offline", (
        "W&B: no API key found, logging offline. Upload later with `wandb sync <run folder>` "
        "(printed at the end), or set WANDB_API_KEY to log online."
    )


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cnn-tracker"


def data_dir(cli_value: str | os.PathLike[str] | None = None) -> Path:
    """``--data-dir`` > CNN_TRACKER_DATA_DIR > ``~/.cache/cnn-tracker/data``."""
    value = cli_value or os.environ.get(DATA_DIR_VAR)
    return Path(value).expanduser() if value else default_cache_dir() / "data"


def data_mirror() -> Path | None:
    value = os.environ.get(MIRROR_VAR, "").strip()
    return Path(value).expanduser() if value else None


def download_allowed() -> bool:
    """CNN_TRACKER_DOWNLOAD=0 forbids network downloads (air-gapped machines, tests)."""
    return os.environ.get(DOWNLOAD_VAR, "1").strip().lower() not in {"0", "false", "no", "off"}


def output_root() -> Path:
    """Where runs put their local outputs when --output-dir is not given."""
    return Path(os.environ.get(OUTPUT_DIR_VAR) or "outputs")
