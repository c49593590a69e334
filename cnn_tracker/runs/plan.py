"""A run's plan: everything decided before training, computed once.

:func:`plan_run` turns the CLI's config and settings into a :class:`RunPlan`: the final config
(model defaults filled, a resumed run's saved config), the W&B mode, the device and autocast
dtype, the data (prepared, its size checked against ``val_size``), the output root, the run
store and the sweep. Every check that can fail on a user's input runs here, before
``wandb.init``, so a bad input leaves nothing half-written. After ``wandb.init``,
:func:`replan` re-plans only if ``wandb.config`` differs (a sweep's values).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cnn_tracker import env
from cnn_tracker.config import KEYS, RunSettings, TrainConfig, make_config, redefault
from cnn_tracker.errors import CheckpointError, ConfigError, UserError
from cnn_tracker.files import atomic_write
from cnn_tracker.inputs import clip, name_problem
from cnn_tracker.runs.lock import check_free
from cnn_tracker.store.db import STORED_RESUME, STORED_RESUME_BEST, Store
from cnn_tracker.training.data import (
    check_batch_size,
    check_files,
    check_val_size,
    get_spec,
    prepare,
)
from cnn_tracker.training.models import with_model_defaults
from cnn_tracker.training.runtime import resolve_device, resolve_precision
from cnn_tracker.training.state import (
    LAST,
    RESUME,
    CheckpointFiles,
    TrainState,
    load_resume,
)

# Keys a resumed run may change: they do not affect what is trained.
RESUME_MAY_CHANGE = ("device", "log_every", "log_misclassified", "eval_batch_size")


@dataclass(frozen=True)
class Resume:
    """The checkpoint a resumed run continues from, loaded and read once."""

    path: Path
    ckpt: dict[str, Any]
    state: TrainState  # its resume section, with the weights

    @property
    def info(self) -> dict[str, Any]:
        """The run's identity saved in the checkpoint (run id, name, W&B step, sweep, folder)."""
        return self.state.run


@dataclass(frozen=True)
class RunPlan:
    cfg: TrainConfig  # final: validated, model defaults filled
    requested: TrainConfig  # what wandb.init receives: model defaults left null, so that a
    #                         sweep that changes the model gets that model's defaults
    settings: RunSettings
    mode: str  # online, offline or disabled
    notice: str | None  # why the mode was chosen, when we chose offline for lack of a key
    device: torch.device
    amp_dtype: torch.dtype | None  # autocast dtype (None = fp32)
    data_dir: Path
    output_dir: Path | None  # fixed by --output-dir or the resumed run; else out_root/<run name>
    out_root: Path
    store: Store
    sweep_id: str | None
    resume: Resume | None

    def run_folder(self, run_name: str) -> Path:
        return self.output_dir if self.output_dir else self.out_root / run_name

    def known_folder(self) -> Path | None:
        """The run's folder when it is known before ``wandb.init`` (--output-dir, a resumed
        run's, or outputs/<--name>); else None (it holds the new run's id)."""
        if self.output_dir:
            return Path(self.output_dir)
        return self.out_root / self.settings.name if self.settings.name else None


def _check_writable(folder: Path, what: str) -> None:
    """Fail early if ``folder`` could not be created or written, without creating anything."""
    existing = folder.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{what} {folder} is not writable ({existing} is not a writable folder): "
                        "choose another folder.")


def _check_name(settings: RunSettings) -> None:
    """A run's name names its folder (outputs/<name>): it must be a plain name."""
    name, source = (settings.name, "--name") if settings.name else (
        env.get(env.WANDB_NAME), env.WANDB_NAME)
    why = name_problem(name) if name else None
    if why:
        raise UserError(f"invalid run name {clip(name)} (from {source}): {why}, and the name "
                        "becomes the run's folder under outputs/. Give a plain name such as "
                        "'lenet-lr0.01'.")


def find_resume_checkpoint(ref: str, store: Store) -> Resume:
    """The resumable checkpoint for ``ref``: a ``.pt`` file, a run's output folder
    (or its ``checkpoints/``), or a run id of the run store. Of ``resume.pt`` (written on a
    signal) and ``last.pt`` (every epoch end), the one further along."""
    path = Path(ref).expanduser()
    if path.is_file():
        return Resume(path, *load_resume(path))
    if path.is_dir():
        folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    else:
        run = store.run(ref)
        if run is None:
            raise UserError(
                f"--resume {ref!r} is not a checkpoint file, a run folder or a run id in the run "
                f"store {store.where}: pass the run's checkpoints/resume.pt (or last.pt), its output "
                "folder, or its run id (as printed when it stopped)."
            )
        folder = Path(run.output_dir) / "checkpoints" if run.output_dir else None
        if folder is None or not CheckpointFiles(folder).resumable():
            fetched = _fetched_resume(store, run)  # preempted on another machine
            if fetched is not None:
                return fetched
        if folder is None:
            raise UserError(f"run {ref} never started training (no output folder): start it again.")
    found = CheckpointFiles(folder).resumable()
    if not found:
        raise CheckpointError(
            f"no {RESUME} or {LAST} in {folder}: the run stopped before it saved a resumable "
            "checkpoint (before its first epoch ended), so start it again instead."
        )
    loaded = {p: load_resume(p) for p in found}
    chosen = max(found, key=lambda p: loaded[p][1].position)
    return Resume(chosen, *loaded[chosen])


def _fetched_resume(store: Store, run) -> Resume | None:
    """The resume checkpoint a preempted run left in the store, written into this machine's
    output folder for the run (its folder on the other machine is not here)."""
    data = store.checkpoint_bytes(run.id, STORED_RESUME)
    if data is None:
        return None
    folder = (env.output_root() / (run.name or run.id)).absolute()
    files = CheckpointFiles(folder / "checkpoints")
    best = store.checkpoint_bytes(run.id, STORED_RESUME_BEST)  # the best epoch before the stop
    if best is not None:
        atomic_write(files.best, best)
    path = atomic_write(files.resume, data)
    found = Resume(path, *load_resume(path))
    found.info["output_dir"] = str(folder)
    return found


def resume_config(ckpt: dict[str, Any], path: Path, requested: TrainConfig | None) -> TrainConfig:
    """The saved config; ``requested`` (options given with --resume) may only change
    RESUME_MAY_CHANGE keys."""
    # A saved config holds every key of its day; one added since (rotate) takes the field's
    # default, which is what that run trained with, not today's recipe.
    saved = with_model_defaults(make_config(ckpt["config"], base=TrainConfig(),
                                            source=f"checkpoint '{path}'"))
    if requested is None:
        return saved
    requested = with_model_defaults(requested)
    differ = [f"{k} {getattr(requested, k)!r} (saved {getattr(saved, k)!r})" for k in KEYS
              if k not in RESUME_MAY_CHANGE and getattr(requested, k) != getattr(saved, k)]
    if differ:
        raise ConfigError(
            f"--resume continues a run with its saved config, but these values differ: "
            f"{'; '.join(differ)}. Drop those options (only {', '.join(RESUME_MAY_CHANGE)} may "
            "change), or start a new run."
        )
    return dataclasses.replace(saved, **{k: getattr(requested, k) for k in RESUME_MAY_CHANGE})


def _requeued_run(store: Store) -> str | None:
    """WANDB_RUN_ID when it names a preempted run of the store (W&B's agent requeued it)."""
    run_id = env.wandb_run_id()
    if run_id and store.exists():
        store.open()
        run = store.run(run_id)
        if run is not None and run.state == "preempted":
            return run_id
    return None


def _placed(cfg: TrainConfig, data_dir: Path) -> tuple[torch.device, torch.dtype | None]:
    """Device and precision resolved, data prepared and ``val_size`` checked: once per config."""
    device = resolve_device(cfg.device)
    amp_dtype = resolve_precision(cfg.precision, device)
    spec = get_spec(cfg.dataset)
    prepare(spec, data_dir)
    n_train = check_files(spec, data_dir)  # all four files, before anything is written
    check_val_size(spec, n_train, cfg.val_size)
    check_batch_size(spec, n_train, cfg.val_size, cfg.batch_size)
    return device, amp_dtype


def plan_run(cfg: TrainConfig, settings: RunSettings, *, data_dir: Path, output_dir: Path | None,
             store_dir: str | os.PathLike[str] | None, resume: str | None,
             options_given: bool) -> RunPlan:
    """Check everything and decide everything a run needs before ``wandb.init``.

    ``resume`` (a checkpoint, run folder or run id; also CNN_TRACKER_RESUME, or WANDB_RUN_ID
    naming a preempted run of the store, as when W&B's agent requeues one) continues a run;
    then ``cfg`` may only differ from the saved config in RESUME_MAY_CHANGE keys (checked when
    ``options_given``).
    """
    mode, notice = env.resolve_mode(settings.mode)
    if mode == "online" and not env.has_api_key():
        raise UserError(
            "W&B mode is online but no API key is configured: set WANDB_API_KEY (or run "
            "`wandb login`), or use --mode offline and `wandb sync` later."
        )
    store = Store(store_dir)
    found = None
    resume = resume or env.resume_request() or _requeued_run(store)
    if resume:
        found = find_resume_checkpoint(resume, store)
        cfg = resume_config(found.ckpt, found.path, cfg if options_given else None)
        info = found.info
        if found.state.epoch > cfg.epochs:
            raise UserError(f"run {info.get('run_id', '?')} already trained all its {cfg.epochs} "
                            f"epochs ('{found.path}'): there is nothing to resume.")
        settings = dataclasses.replace(
            settings, **{k: info[k] for k in ("project", "entity", "group", "name", "notes")
                         if info.get(k) is not None},
            tags=tuple(info.get("tags") or settings.tags))
        if output_dir is None and info.get("output_dir"):
            output_dir = Path(info["output_dir"])
    _check_name(settings)
    requested, cfg = cfg, with_model_defaults(cfg)
    device, amp_dtype = _placed(cfg, data_dir)
    out_root = Path(output_dir) if output_dir else env.output_root()
    _check_writable(out_root, "output folder")
    if not store.is_postgres:
        _check_writable(store.root, "run store")
    folder = Path(output_dir) if output_dir else out_root / settings.name if settings.name else None
    if folder is not None:
        check_free(folder)  # another run's folder: refused before anything is written
    store.open()  # a damaged store fails here, before wandb.init
    sweep_id = env.sweep_id() or ((found.info.get("sweep_id") or None) if found else None)
    return RunPlan(cfg=cfg, requested=requested, settings=settings, mode=mode, notice=notice, device=device,
                   amp_dtype=amp_dtype, data_dir=data_dir, output_dir=output_dir,
                   out_root=out_root, store=store, sweep_id=sweep_id, resume=found)


def replan(plan: RunPlan, wandb_config: dict[str, Any]) -> tuple[RunPlan, dict[str, Any]]:
    """The plan for the config W&B holds after ``wandb.init`` (a sweep's values win), and the
    model defaults to show on the dashboard for keys W&B holds as null.

    The same plan when nothing differs; otherwise the config is validated like any input and
    the device, precision and data checks run again for it.
    """
    raw = make_config(wandb_config, source="wandb.config")
    if raw.dataset != plan.requested.dataset:  # the sweep chose the dataset: its recipe applies
        swept = {k: v for k, v in wandb_config.items() if v != getattr(plan.requested, k, v)}
        raw = make_config(swept, base=redefault(plan.requested, raw.dataset), source="wandb.config")
    cfg = with_model_defaults(raw)
    if plan.resume is not None:  # a resumed run trains its saved config (a sweep's values too)
        cfg = resume_config(plan.resume.ckpt, Path("resume checkpoint"), cfg)
    # Only keys left at null: a sweep's own values are locked and already concrete.
    shown = {k: getattr(cfg, k) for k in ("hidden_units", "dropout", "tta") if getattr(raw, k) is None}
    if cfg == plan.cfg:
        return plan, shown
    device, amp_dtype = _placed(cfg, plan.data_dir)
    return dataclasses.replace(plan, cfg=cfg, device=device, amp_dtype=amp_dtype), shown
