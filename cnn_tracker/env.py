"""Environment: every environment variable the toolkit reads or sets, the ``.env`` file, the W&B
mode and the local folders the toolkit uses.

Each variable name is written here once (and listed in ``.env.example``); other modules call the
functions below or use the constants, never a literal name or ``os.environ`` directly.
"""

from __future__ import annotations

import netrc
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping
from urllib.parse import urlparse

from cnn_tracker.errors import UserError

# Variables of our own.
DATA_DIR_VAR = "CNN_TRACKER_DATA_DIR"
MIRROR_VAR = "CNN_TRACKER_DATA_MIRROR"
DOWNLOAD_VAR = "CNN_TRACKER_DOWNLOAD"
OUTPUT_DIR_VAR = "CNN_TRACKER_OUTPUT_DIR"
STORE_VAR = "CNN_TRACKER_STORE"  # the run store: a local folder or a postgresql:// URL
STORE_RETRY_VAR = "CNN_TRACKER_STORE_RETRY_SECONDS"  # how long to retry a lost database server
HEARTBEAT_VAR = "CNN_TRACKER_HEARTBEAT_SECONDS"  # seconds between a live run's heartbeats
SWEEP_ID_VAR = "CNN_TRACKER_SWEEP_ID"  # set by the offline agent for its trials
RESUME_VAR = "CNN_TRACKER_RESUME"  # set by the offline agent for a requeued trial: the run to resume

# W&B's variables (the SDK reads most of them itself; these are the ones we read or set).
WANDB_API_KEY = "WANDB_API_KEY"
WANDB_BASE_URL = "WANDB_BASE_URL"
WANDB_MODE = "WANDB_MODE"
WANDB_PROJECT = "WANDB_PROJECT"
WANDB_ENTITY = "WANDB_ENTITY"
WANDB_RUN_GROUP = "WANDB_RUN_GROUP"
WANDB_RUN_ID = "WANDB_RUN_ID"
WANDB_SWEEP_ID = "WANDB_SWEEP_ID"
WANDB_SWEEP_PARAM_PATH = "WANDB_SWEEP_PARAM_PATH"
WANDB_DIR = "WANDB_DIR"
# seconds between writes of a run's .wandb file (W&B's default 15 s): what a reader sees live
WANDB_LOG_FLUSH = "WANDB_X_TRANSACTION_LOG_FLUSH_INTERVAL"
WANDB_SILENT = "WANDB_SILENT"
WANDB_NAME = "WANDB_NAME"
WANDB_JOB_TYPE = "WANDB_JOB_TYPE"
WANDB_ARTIFACT_DIR = "WANDB_ARTIFACT_DIR"

# Process-level variables we set for child processes.
CUDA_DEVICES_VAR = "CUDA_VISIBLE_DEVICES"
OMP_THREADS_VAR = "OMP_NUM_THREADS"
CUBLAS_WORKSPACE_VAR = "CUBLAS_WORKSPACE_CONFIG"
UNBUFFERED_VAR = "PYTHONUNBUFFERED"

DEFAULT_STORE = ".cnn-tracker"
LOCK_FILE = ".cnn-tracker.lock"  # in a run's output folder, locked (flock) while the run lives
HEARTBEAT_SECONDS = 10.0  # default seconds between heartbeats
STORE_RETRY_SECONDS = 600.0  # default: a database server restarted or briefly unreachable

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
    if os.environ.get(WANDB_API_KEY, "").strip():
        return True
    host = urlparse(os.environ.get(WANDB_BASE_URL, "https://api.wandb.ai")).hostname or ""
    path = os.environ.get("NETRC") or str(Path.home() / ".netrc")
    try:
        return netrc.netrc(path).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def wandb_online() -> bool:
    """True when W&B would run online now: a key configured and WANDB_MODE unset or online."""
    return has_api_key() and resolve_mode(None)[0] == "online"


def resolve_mode(cli_mode: str | None) -> tuple[str, str | None]:
    """The W&B mode to use and, when we chose offline for lack of a key, a one-line notice.

    Order: ``--mode`` > WANDB_MODE > online if an API key is configured > offline.
    """
    if cli_mode:
        return normalize_mode(cli_mode, "--mode"), None
    env_mode = os.environ.get(WANDB_MODE, "").strip()
    if env_mode:
        return normalize_mode(env_mode, WANDB_MODE), None
    if has_api_key():
        return "online", None
    return "offline", (
        "W&B: no API key found, logging offline. Upload later with `wandb sync <run folder>` "
        "(printed at the end), or set WANDB_API_KEY to log online."
    )


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cnn-tracker"


def artifact_dir() -> Path:
    """Where downloaded model artifacts go: WANDB_ARTIFACT_DIR (as W&B documents it), else
    ``~/.cache/cnn-tracker/artifacts``."""
    value = get(WANDB_ARTIFACT_DIR)
    return Path(value).expanduser() if value else default_cache_dir() / "artifacts"


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


def store_value() -> str:
    """CNN_TRACKER_STORE, else ``./.cnn-tracker`` (a folder or a URL; ``--store`` wins)."""
    return os.environ.get(STORE_VAR) or DEFAULT_STORE


def store_files_dir() -> Path:
    """Where a database store's per-sweep files go on this machine: ``./.cnn-tracker``."""
    return Path(DEFAULT_STORE).absolute()


def _seconds(name: str, default: float, low: float, high: float) -> float:
    """A number of seconds from variable ``name`` (``default`` when unset), within low..high."""
    raw = os.environ.get(name, "").strip()
    try:
        value = float(raw) if raw else default
    except ValueError:
        value = float("nan")
    if not low <= value <= high:
        raise UserError(f"invalid {name}={raw!r}: give seconds between {low:g} and {high:g} "
                        f"(default {default:g}), or unset it.")
    return value


def store_retry_seconds() -> float:
    """How long a database store is retried after its connection is lost (default 600 s)."""
    return _seconds(STORE_RETRY_VAR, STORE_RETRY_SECONDS, 0, 86400)


def heartbeat_seconds() -> float:
    """Seconds between heartbeats: CNN_TRACKER_HEARTBEAT_SECONDS, else HEARTBEAT_SECONDS."""
    return _seconds(HEARTBEAT_VAR, HEARTBEAT_SECONDS, 0.05, 3600)


def get(name: str) -> str | None:
    """The value of one of the variables named above, or None when unset or empty."""
    value = os.environ.get(name, "").strip()
    return value or None


def resume_request() -> str | None:
    """The run the offline agent asked this trial to resume (CNN_TRACKER_RESUME)."""
    return get(RESUME_VAR)


def wandb_run_id() -> str | None:
    """WANDB_RUN_ID: set by either agent for the run it starts."""
    return get(WANDB_RUN_ID)


def sweep_id() -> str | None:
    """The sweep this process runs a trial of: ours (offline agent) or W&B's (wandb agent)."""
    return get(SWEEP_ID_VAR) or get(WANDB_SWEEP_ID)


def is_local_trial() -> bool:
    """True in a trial started by our offline agent (it watches for the agent vanishing)."""
    return get(SWEEP_ID_VAR) is not None


def wandb_sweep_id() -> str | None:
    """WANDB_SWEEP_ID: set by W&B's own agent."""
    return get(WANDB_SWEEP_ID)


def wandb_project() -> str | None:
    return get(WANDB_PROJECT)


def wandb_entity() -> str | None:
    return get(WANDB_ENTITY)


def set_default(name: str, value: str) -> None:
    """Set a variable of this process unless it is set already."""
    os.environ.setdefault(name, value)


def apply(overrides: Mapping[str, str]) -> None:
    """Set variables of this process (e.g. an agent slot's CUDA_VISIBLE_DEVICES)."""
    os.environ.update(overrides)


def current() -> dict[str, str]:
    """A copy of this process's environment (the base of a child's)."""
    return dict(os.environ)


def replace_environ(environ: Mapping[str, str]) -> None:
    """This process's environment becomes ``environ`` (a forked trial's, before it runs)."""
    os.environ.clear()
    os.environ.update(environ)


UNSHOWN_VARS = ("PATH", STORE_VAR)  # a child's variables never echoed (the store: a password)


def child_environ(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment with ``extra`` on top, for a child process."""
    return {**os.environ, **extra}


def with_path_first(folder: str) -> dict[str, str]:
    """PATH with ``folder`` first (so a child's plain ``python`` is this environment's)."""
    return {"PATH": folder + os.pathsep + os.environ.get("PATH", "")}


def agent_slot(gpu: str | None, threads: int | None) -> dict[str, str]:
    """One agent's variables: the GPU it sees, or its share of CPU threads (unless the user set
    OMP_NUM_THREADS)."""
    if gpu is not None:
        return {CUDA_DEVICES_VAR: gpu}
    if threads is not None and OMP_THREADS_VAR not in os.environ:
        return {OMP_THREADS_VAR: str(threads)}
    return {}


def trial_environ(*, run_id: str, project: str, param_path: str, store_root: str, sweep: str,
                  resume: bool, wandb_dir: os.PathLike[str] | None = None) -> dict[str, str]:
    """A local-sweep trial's environment: an offline W&B run in the sweep's group, reporting to
    the store.

    WANDB_SWEEP_ID is *not* set: the cloud does not know local sweeps, and ``wandb sync`` of a
    run naming an unknown sweep would fail; the trial's run carries the sweep id as a config
    column and a tag instead (a group would average the trials into one line on the dashboard).
    Trials need no API key (they run offline), so it is not passed on. A requeued (preempted)
    trial gets CNN_TRACKER_RESUME = its run id. A foreign program's trial gets its own W&B
    folder (WANDB_DIR = ``wandb_dir``), where its agent finds its run file.
    """
    environ = dict(os.environ)
    for name in (WANDB_SWEEP_ID, WANDB_API_KEY, RESUME_VAR):
        environ.pop(name, None)
    if resume:
        environ[RESUME_VAR] = run_id
    environ.update({
        WANDB_MODE: "offline", WANDB_RUN_ID: run_id, WANDB_PROJECT: project, WANDB_SWEEP_PARAM_PATH: param_path, STORE_VAR: store_root,
        SWEEP_ID_VAR: sweep, UNBUFFERED_VAR: "1",
    })
    if wandb_dir is not None:
        Path(wandb_dir).mkdir(parents=True, exist_ok=True)
        environ[WANDB_DIR] = str(wandb_dir)
        environ.setdefault(WANDB_LOG_FLUSH, "1")  # its agent follows the file (hyperband)
    return environ


@contextmanager
def overridden(values: Mapping[str, str]) -> Iterator[None]:
    """Set variables for the duration of a block, then restore them (the bench's W&B modes)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
