"""``cnn-tracker dashboard``: save a W&B workspace view of a project or sweep (wandb-workspaces)."""

from __future__ import annotations

from pathlib import Path

import click

from cnn_tracker import env
from cnn_tracker.cli.common import STORE_OPTION, open_store
from cnn_tracker.errors import UserError


def sweep_view(sweep: str, entity: str, project: str, store_dir: str | None):
    """The SweepView of a sweep YAML file, a local sweep id, or a W&B sweep id."""
    from cnn_tracker.results.source import (
        open_source,
        searched_parameters,
        sweep_metric,
    )
    from cnn_tracker.tracking.dashboard import SweepView
    from cnn_tracker.tracking.tracker import SWEEP_KEY

    if Path(sweep).suffix in (".yaml", ".yml") and Path(sweep).is_file():
        from cnn_tracker.search.spec import load_sweep_file

        config = load_sweep_file(sweep)
        return SweepView(Path(sweep).stem, searched_parameters(config), sweep_metric(config)[0])
    source = open_source(sweep, open_store(store_dir), entity=entity,
                         what=f"sweep '{sweep}' (neither a sweep YAML, a local sweep nor a W&B sweep)")
    if source.kind == "wandb":
        source.entity, source.project = entity, project
    status = source.sweep_status(sweep)
    sweep_id = str(status["sweep"]).split("/")[-1]
    # W&B's own sweeps set the run's Sweep; our offline trials carry the config key instead.
    run_filter = (f"Metric('Sweep') == '{sweep_id}'" if source.kind == "wandb"
                  else f"Config('{SWEEP_KEY}') == '{sweep_id}'")
    return SweepView(sweep_id, list(status["parameters"]), status["metric"]["name"], run_filter)


@click.command()
@click.argument("target", metavar="ENTITY/PROJECT")
@click.option("--sweep", help="Add a sweep section (parallel coordinates, parameter importance): "
              "a sweep YAML file, a local sweep id, or a W&B sweep id.")
@click.option("--name", help="The view's name [default: cnn-tracker, or cnn-tracker sweep ID].")
@click.option("--dry-run", is_flag=True, help="Print the sections and panels; save nothing.")
@STORE_OPTION
def dashboard(target, sweep, name, dry_run, store_dir) -> None:
    """Save a W&B workspace view of ENTITY/PROJECT: curves by epoch, test results, sweep panels.

    Sections: validation accuracy, loss, learning rate and train accuracy against epoch; test
    accuracy by model and by dataset (mean ± std); the test confusion matrix; with --sweep, the
    metric over the swept parameters (parallel coordinates) and their importance. Needs the
    dashboard extra (wandb-workspaces); saving needs W&B online.
    """
    from cnn_tracker.tracking.dashboard import build_workspace, describe, save_workspace

    parts = [p for p in target.strip("/").split("/") if p]
    if len(parts) != 2:
        raise click.BadParameter(f"'{target}' is not ENTITY/PROJECT (e.g. me/cnn-tracker).",
                                 param_hint="ENTITY/PROJECT")
    entity, project = parts
    if not dry_run and not env.wandb_online():
        raise UserError("the dashboard is saved to W&B and needs it online: set WANDB_API_KEY (or "
                        "run `wandb login`) and leave WANDB_MODE unset, or use --dry-run.")
    view = sweep_view(sweep, entity, project, store_dir) if sweep else None
    workspace = build_workspace(entity, project, view, name)
    click.echo("\n".join(describe(workspace)))
    if dry_run:
        click.echo("dry run: nothing saved", err=True)
        return
    click.echo(f"saved: {save_workspace(workspace)}")


COMMANDS = (dashboard,)
