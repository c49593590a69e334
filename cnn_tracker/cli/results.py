"""``cnn-tracker sweep status|list``, ``best`` and ``compare``: reading results back."""

from __future__ import annotations

from pathlib import Path

import click

from cnn_tracker import env
from cnn_tracker.cli.common import STORE_OPTION, echo_json, open_store
from cnn_tracker.cli.sweeps import sweep
from cnn_tracker.config import (
    KEYS,
    unknown_key_error,
)
from cnn_tracker.errors import UserError
from cnn_tracker.inputs import printable


@sweep.command("status")
@click.argument("sweep_id")
@STORE_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def sweep_status(sweep_id, store_dir, as_json) -> None:
    """Runs of SWEEP_ID with state, parameters, metric and epochs done; the best run."""
    from cnn_tracker.results.source import open_source
    from cnn_tracker.results.text import format_status

    source = open_source(sweep_id, open_store(store_dir), what=f"sweep '{sweep_id}'")
    status = source.sweep_status(sweep_id)
    if as_json:
        echo_json(status)
    else:
        click.echo(printable(format_status(status), keep_newlines=True))


@sweep.command("list")
@STORE_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def sweep_list(store_dir, as_json) -> None:
    """Sweeps in the local run store, with run counts and the best metric."""
    from cnn_tracker.results.source import open_source
    from cnn_tracker.results.text import format_list

    store = open_store(store_dir)
    items = open_source(None, store).sweep_list()
    if as_json:
        echo_json(items)
    elif not items:
        click.echo(f"no sweeps in {store.where} yet; create one with "
                   "`cnn-tracker sweep create sweeps/smoke_random.yaml --offline`")
    else:
        click.echo(printable(format_list(items), keep_newlines=True))


@click.command()
@click.argument("target")
@click.option("--metric", help="Rank by this metric [default: the sweep's, else val/accuracy].")
@click.option("--goal", type=click.Choice(["maximize", "minimize"]),
              help="[default: the sweep's; for other metrics minimize losses, maximize the rest]")
@click.option("--download", type=click.Path(file_okay=False, path_type=Path),
              help="Put the best checkpoint in this folder as best.pt.")
@click.option("--link", "link_to", metavar="REGISTRY/COLLECTION",
              help="Link the best run's model-<run>:best into this W&B Registry collection "
                   "(wandb-registry-REGISTRY/COLLECTION); W&B targets, online only.")
@click.option("--entity", envvar=env.WANDB_ENTITY, help="W&B entity for a W&B project or sweep.")
@STORE_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def best(target, metric, goal, download, link_to, entity, store_dir, as_json) -> None:
    """The best run of a sweep or project, its config, metrics and best checkpoint.

    TARGET is a local sweep id or project name (from the local run store), or a W&B sweep
    (entity/project/sweep_id) or project ([entity/]project). For W&B it pulls the run's
    model-<run>:best artifact, the best-by-validation checkpoint. The file works directly with
    `cnn-tracker evaluate` and `cnn-tracker predict`.
    """
    from cnn_tracker.results.source import open_source
    from cnn_tracker.results.text import format_best

    if link_to and not env.wandb_online():
        raise UserError(f"--link {link_to} needs W&B online: set WANDB_API_KEY (or run `wandb "
                        "login`) and leave WANDB_MODE unset or online; offline runs are linked "
                        "after `wandb sync`.")
    if link_to:
        from cnn_tracker.tracking.wandb_api import registry_path

        registry_path(link_to)  # a malformed REGISTRY/COLLECTION fails before any query
    source = open_source(target, open_store(store_dir), entity=entity,
                         what=f"'{target}' (neither a sweep nor a project with runs)")
    if link_to and source.kind != "wandb":  # before anything is looked up or downloaded
        raise UserError(f"--link needs a W&B sweep or project; '{target}' is in the local "
                        "store: `wandb sync` its runs, then link the W&B target.")
    found = source.best(target, metric, goal)
    if download:
        found["downloaded"] = str(source.fetch_checkpoint(found, download))
    if link_to:
        found["linked"] = source.link_checkpoint(found, link_to)
    if as_json:
        echo_json(found)
    else:
        click.echo(printable(format_best(target, found), keep_newlines=True))
        if link_to:
            click.echo(f"linked to the W&B Registry: {found['linked']}")


@click.command()
@click.argument("target", required=False)
@click.option("--project", help="Every run of this project (local, or [entity/]project on W&B).")
@click.option("--runs", "run_ids", help="These runs, comma-separated (local ids, or W&B entity/project/id).")
@click.option("--by", help="Group by config keys, comma-separated (e.g. model or model,dataset): "
              "mean ± std across each group's runs (seeds).")
@click.option("--metric", help="The metric of the sweep chart (and a column, when not "
              "val/accuracy) [default: a local sweep's metric, else val/accuracy].")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write the table (compare.md/.csv/.json) and the PNG charts into this folder.")
@click.option("--format", "fmt", type=click.Choice(["table", "markdown", "csv", "json"]),
              default="table", show_default=True)
@click.option("--all", "all_states", is_flag=True, help="Include runs that did not finish "
              "(running, crashed, failed, killed); by default only finished and stopped runs.")
@click.option("--entity", envvar=env.WANDB_ENTITY, help="W&B entity for a W&B project or sweep.")
@STORE_OPTION
def compare(target, project, run_ids, by, metric, out_dir, fmt, all_states, entity, store_dir) -> None:
    """Compare runs: one row per run (or per group with --by), and charts with --out.

    TARGET is a sweep id (local, or entity/project/sweep_id on W&B). Without TARGET, --project or
    --runs, every run in the local store is compared. Rows: model, dataset, parameter count, best
    validation accuracy, test accuracy, epochs, training time (epochs only) and train images/s.
    Charts: test accuracy and training time per group (the accuracy-by-model chart of the MLP-vs-TinyVGG reference), and
    for a sweep the metric against each swept parameter.
    """
    from cnn_tracker.results.compare import compare_runs, render, write_outputs
    from cnn_tracker.results.source import open_source
    from cnn_tracker.search.command import runs_our_train

    ids = [r.strip() for r in run_ids.split(",") if r.strip()] if run_ids else None
    keys = [k.strip() for k in by.split(",") if k.strip()] if by else None
    store = open_store(store_dir)
    local = store.find_sweep(target) if target else None
    metric = metric or (local.metric[0] if local is not None and local.metric else "val/accuracy")
    ours = local is None or runs_our_train(local.config)  # another program's keys are its own
    for key in keys or []:
        if ours and key not in KEYS:
            raise unknown_key_error(key, "--by")
    source = open_source(target, store, project=project, run_ids=ids, entity=entity,
                         what=None if ids else f"'{target or project}' (no runs)")
    result = compare_runs(source, sweep=target, project=project, run_ids=ids, by=keys,
                          metric=metric, all_states=all_states)
    click.echo(render(result.table, fmt))
    if out_dir is not None:
        charts = write_outputs(result, out_dir, keys, metric)
        click.echo(f"wrote {', '.join(str(p) for p in charts)} and compare.md/.csv/.json in {out_dir}",
                   err=True)


COMMANDS = (best, compare)  # sweep status / list join the sweep group (cli.sweeps)
