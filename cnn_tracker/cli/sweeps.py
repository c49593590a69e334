"""``cnn-tracker sweep validate|create`` and ``cnn-tracker agent``: making and running sweeps."""

from __future__ import annotations

import sys

import click

from cnn_tracker import env
from cnn_tracker.cli.common import STORE_OPTION, cloud_or_fail, echo_json, open_store
from cnn_tracker.errors import UserError
from cnn_tracker.inputs import clip, printable
from cnn_tracker.store.db import STALE_SECONDS


@click.group()
def sweep() -> None:
    """W&B sweep configs: validate, create (W&B or the local store), status, list, and
    pause / resume / stop / cancel."""


@sweep.command("validate")
@click.argument("file", type=click.Path(dir_okay=False))
def sweep_validate(file: str) -> None:
    """Check FILE against W&B's sweep schema and our train config keys and values (exit 0 or 2)."""
    from cnn_tracker.results.source import searched_parameters
    from cnn_tracker.search.spec import grid_size, load_checked

    config = load_checked(file, warn=lambda line: click.echo(printable(line), err=True))
    n, total = len(searched_parameters(config)), len(config.get("parameters") or {})
    size = grid_size(config)
    click.echo(printable(f"{file}: valid ({config.get('method')} over {n} searched parameter(s) "
                         f"and {total - n} constant(s), "
                         + (f"{size} grid points, " if size is not None else "")
                         + f"metric {(config.get('metric') or {}).get('name', 'none')})"))


@sweep.command("create")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--offline", is_flag=True, help="Create it in the local store (no W&B server needed).")
@click.option("--project", help="W&B project [default: the file's project:, WANDB_PROJECT, cnn-tracker].")
@click.option("--entity", envvar=env.WANDB_ENTITY, help="W&B entity (online only).")
@STORE_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def sweep_create(file, offline, project, entity, store_dir, as_json) -> None:
    """Create a sweep from FILE: on W&B (wandb.sweep) or, with --offline, in the local store.

    Without --offline the W&B mode decides as for train: online with an API key, else offline.
    Prints the sweep id and the agent command to run next.
    """
    from cnn_tracker.search.create import create_sweep

    made = create_sweep(file, offline=offline, project=project, entity=entity, store_dir=store_dir,
                        warn=lambda line: click.echo(printable(line), err=True))
    if as_json:
        echo_json({"sweep_id": made.sweep_id, "mode": made.mode, "project": made.project,
                   "store": made.where, "method": made.method, "agent_command": made.agent_command})
        return
    click.echo(f"created {made.mode} sweep {made.sweep_id} ({made.method}, project {made.project}"
               + (f", store {made.where}" if made.mode == "offline" else "") + ")")
    click.echo(f"run agents with:  {made.agent_command}  [--agents N | --gpus 0,1,...] [--count N]")


def _parse_gpus(value: str | None) -> list[str] | None:
    """The GPU indices of ``--gpus`` (or all visible ones), each visible here."""
    if value is None:
        return None
    import torch

    n = torch.cuda.device_count()
    if value.strip().lower() == "all":
        if n == 0:
            raise UserError("--gpus all: no CUDA GPU is visible here. Use --agents N on CPU.")
        return [str(i) for i in range(n)]
    gpus = [g.strip() for g in value.split(",") if g.strip()]
    if not gpus or not all(g.isdigit() for g in gpus) or len(set(gpus)) != len(gpus):
        raise UserError(f"invalid --gpus {clip(value)}: give distinct GPU indices like 0,1,2 (or "
                        "'all').")
    if n == 0:
        raise UserError(f"--gpus {value}: no CUDA GPU is visible here, so no agent could use "
                        "one. Use --agents N on CPU.")
    missing = [g for g in gpus if int(g) >= n]
    if missing:
        raise UserError(f"--gpus {value}: GPU {missing[0]} is not visible here ({n} GPU(s): "
                        f"0 to {n - 1}). Give indices of visible GPUs, or 'all'.")
    return gpus


@click.command()
@click.argument("sweep_id")
@click.option("--count", type=click.IntRange(min=1), help="Trials per agent [default: until the sweep is done].")
@click.option("--gpus", help="One agent per listed GPU, e.g. 0,1,2,3 (or 'all'); each sees only its GPU.")
@click.option("--agents", type=click.IntRange(min=1), default=1, show_default=True,
              help="Agents on this machine when no --gpus (CPU threads are split between them).")
@click.option("--max-failures", type=click.IntRange(min=1), default=3, show_default=True,
              help="Stop an agent after this many failed trials in a row.")
@click.option("--stagger", type=click.FloatRange(min=0), help="Seconds between agent starts "
              "[default: 1 for local sweeps, 5 for W&B].")
@click.option("--project", envvar=env.WANDB_PROJECT, help="W&B project of a W&B sweep id.")
@click.option("--entity", envvar=env.WANDB_ENTITY, help="W&B entity of a W&B sweep id.")
@STORE_OPTION
@click.option("--stale-after", type=click.FloatRange(min=1), default=STALE_SECONDS, show_default=True,
              metavar="SECONDS", help="Mark a running trial of a local sweep crashed when its "
              "heartbeat is this old (its process was killed).")
@click.option("--name", default="agent", show_default=True, help="This agent's name, recorded "
              "with its trials (with --agents/--gpus: NAME-0, NAME-1, ...); e.g. the machine's.")
@click.option("--verbose", is_flag=True, help="Echo everything the trials print (by default: one "
              "line per trial start, epoch and end; a trial's full output is always in its log "
              "file in the store's sweep folder).")
@click.option("--quiet-trials", is_flag=True, help="Not even the trials' epoch lines.")
def agent(sweep_id, count, gpus, agents, max_failures, stagger, project, entity, store_dir,
          stale_after, name, verbose, quiet_trials) -> None:
    """Run trials of SWEEP_ID: a local sweep (offline engine) or a W&B sweep (wandb agent).

    \b
    cnn-tracker agent abc123xy                 one agent on this machine
    cnn-tracker agent abc123xy --agents 2      two CPU agents, cores split between them
    cnn-tracker agent me/proj/abc123xy --gpus 0,1,2,3   one W&B agent per GPU

    Ctrl-C stops all agents and their trials cleanly.
    """
    from cnn_tracker.search.agent import run_agent
    from cnn_tracker.search.launch import (
        agent_slots,
        launch,
        local_agent_command,
        store_environ,
        wandb_agent_command,
        wandb_agent_env,
    )

    stale_floor = 3 * env.heartbeat_seconds()
    if stale_after < stale_floor:
        raise UserError(f"--stale-after {stale_after:g} is shorter than three heartbeats "
                        f"({stale_floor:g} s): live trials would be marked crashed. Give at least "
                        f"{stale_floor:g}, or lower {env.HEARTBEAT_VAR}.")
    if gpus is not None and agents != 1:
        raise UserError("give either --gpus (one agent per GPU) or --agents N (CPU), not both.")
    gpu_list = _parse_gpus(gpus)
    slots = agent_slots(gpu_list, agents)
    store = open_store(store_dir)
    local = store.find_sweep(sweep_id)  # a W&B sweep path is never a local id
    if local is not None:
        if len(slots) == 1:
            env.apply(slots[0])
            sys.exit(run_agent(store, sweep_id, count=count, max_failures=max_failures, name=name,
                               echo=click.echo, stream=verbose, progress=not quiet_trials,
                               stale_seconds=stale_after))
        commands = [local_agent_command(sweep_id, count=count,
                                        max_failures=max_failures, name=f"{name}-{i}",
                                        stale_after=stale_after)
                    for i in range(len(slots))]
        sys.exit(launch(commands, [{**store_environ(store), **slot} for slot in slots],
                        stagger=1.0 if stagger is None else stagger, echo=click.echo))
    cloud_or_fail(f"sweep '{sweep_id}'", store)
    from cnn_tracker.results.remote import sweep_path

    path = sweep_path(sweep_id, project, entity)
    command = wandb_agent_command(path, count=count, max_failures=max_failures)
    click.echo(f"W&B sweep {path}: starting {len(slots)} `wandb agent` process(es)")
    sys.exit(launch([command] * len(slots), [{**wandb_agent_env(), **slot} for slot in slots],
                    stagger=5.0 if stagger is None else stagger, echo=click.echo))


# sweep control, as W&B's `wandb sweep --pause|--resume|--stop|--cancel`
_CONTROL_HELP = {
    "pause": "Pause SWEEP_ID: agents start no new trial and wait; running trials go on.",
    "resume": "Resume a paused SWEEP_ID: its waiting agents claim trials again.",
    "stop": "Stop SWEEP_ID: no new trials; running trials finish, then their agents exit.",
    "cancel": "Cancel SWEEP_ID: no new trials, and running trials are killed.",
}
_CONTROL_DONE = {
    "pause": "paused: agents start no new trial and wait (running trials go on); "
             "`cnn-tracker sweep resume {id}` continues it",
    "resume": "resumed: waiting agents claim trials again (or start `cnn-tracker agent {id}`)",
    "stop": "stopped: no new trials; running trials finish, then their agents exit",
    "cancel": "canceled: running trials are killed within one heartbeat ({beat:g} s), then their "
              "agents exit",
}
_CONTROL_NOTE = {"pause": "by `cnn-tracker sweep pause` (agents wait)", "resume": None,
                 "stop": "by `cnn-tracker sweep stop` (running trials finish, no new ones)",
                 "cancel": "by `cnn-tracker sweep cancel` (running trials killed)"}


def wandb_sweep_command(action: str, path: str) -> list[str]:
    """W&B's own CLI for a cloud sweep's state: ``wandb sweep --pause entity/project/id``."""
    return [sys.executable, "-m", "wandb", "sweep", f"--{action}", path]


def control_sweep(action: str, sweep_id: str, *, project: str | None, entity: str | None,
                  store_dir: str | None) -> None:
    """pause / resume / stop / cancel a local sweep (runs.lifecycle) or a W&B one (wandb CLI)."""
    import subprocess

    from cnn_tracker.runs import lifecycle

    store = open_store(store_dir)
    if store.find_sweep(sweep_id) is not None:
        state = lifecycle.SWEEP_CONTROLS[action]
        _, moved = lifecycle.set_sweep_control(store, sweep_id, state, _CONTROL_NOTE[action])
        done = _CONTROL_DONE[action].format(id=sweep_id, beat=env.heartbeat_seconds())
        click.echo(f"sweep {sweep_id} {done}" if moved else f"sweep {sweep_id} is already {state}")
        return
    cloud_or_fail(f"sweep '{sweep_id}'", store)
    from cnn_tracker.results.remote import sweep_path

    path = sweep_path(sweep_id, project, entity)
    argv = wandb_sweep_command(action, path)
    click.echo(f"W&B sweep {path}: wandb sweep --{action} {path}")
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          errors="replace", stdin=subprocess.DEVNULL)
    if proc.stdout:
        click.echo(proc.stdout.rstrip())
    if proc.returncode != 0:
        raise UserError(f"`wandb sweep --{action} {path}` failed (exit {proc.returncode}, its "
                        "output is above): check the sweep path (entity/project/id) and your W&B "
                        "login (`wandb login`).")


def _control_command(action: str) -> click.Command:
    @sweep.command(action, help=_CONTROL_HELP[action] + " A local sweep id or a W&B sweep "
                   "(entity/project/id, run through `wandb sweep`).")
    @click.argument("sweep_id")
    @click.option("--project", envvar=env.WANDB_PROJECT, help="W&B project of a W&B sweep id.")
    @click.option("--entity", envvar=env.WANDB_ENTITY, help="W&B entity of a W&B sweep id.")
    @STORE_OPTION
    def command(sweep_id, project, entity, store_dir) -> None:
        control_sweep(action, sweep_id, project=project, entity=entity, store_dir=store_dir)

    return command


CONTROL_COMMANDS = {action: _control_command(action) for action in _CONTROL_HELP}
COMMANDS = (sweep, agent)
