"""``cnn-tracker sweep status|list``, ``best`` and ``compare``: reading results back."""

from __future__ import annotations

import os
from pathlib import Path

import click

from cnn_tracker.cli.common import STORE_OPTION, cloud_or_fail, echo_json, open_store
from cnn_tracker.cli.sweeps import sweep
from cnn_tracker.config import (
    KEYS,
    unknown_key_error,
)
from cnn_tracker.errors import UserError


@sweep.command("status")
@click.argument("sweep_id")
@STORE_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def sweep_status(sweep_id, store_dir, as_json) -> None:
    """Runs of SWEEP_ID with state, parameters, metric and epochs done; the best run."""
    from cnn_tracker.results.local import format_status
    from cnn_tracker.results.local import sweep_status as local_status

    store = open_store(store_dir)
    if "/" not in sweep_id and store.find_sweep(sweep_id) is not None:
        status = local_status(store, sweep_id)
    else:
        cloud_or_fail(f"sweep '{sweep_id}'", store)
        from cnn_tracker.results.remote import sweep_path
        from cnn_tracker.results.remote import sweep_status as cloud_status

        status = cloud_status(sweep_path(sweep_id, os.environ.get("WANDB_PROJECT"),
                                         os.environ.get("WANDB_ENTITY")))
    if as_json:
        echo_json(status)
    else:
        click.echo(format_status(status))


@sweep.command("list")
@STORE_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def sweep_list(store_dir, as_json) -> None:
    """Sweeps in the local run store, with run counts and the best metric."""
    from cnn_tracker.results.local import format_list
    from cnn_tracker.results.local import sweep_list as local_list

    store = open_store(store_dir)
    items = local_list(store)
    if as_json:
        echo_json(items)
    elif not items:
        click.echo(f"no sweeps in {store.root} yet; create one with "
                   "`cnn-tracker sweep create sweeps/smoke_random.yaml --offline`")
    else:
        click.echo(format_list(items))


@click.command()
@click.argument("target")
@click.option("--metric", help="Rank by this metric [default: the sweep's, else val/accuracy].")
@click.option("--goal", type=click.Choice(["maximize", "minimize"]),
              help="[default: the sweep's; for other metrics minimize losses, maximize the rest]")
@click.option("--download", type=click.Path(file_okay=False, path_type=Path),
              help="Put the best checkpoint in this folder as best.pt.")
@click.option("--entity", envvar="WANDB_ENTITY", help="W&B entity for a W&B project or sweep.")
@STORE_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def best(target, metric, goal, download, entity, store_dir, as_json) -> None:
    """The best run of a sweep or project, its config, metrics and best checkpoint.

    TARGET is a local sweep id or project name (from the local run store), or a W&B sweep
    (entity/project/sweep_id) or project ([entity/]project). For W&B it pulls the run's
    model-<run>:best artifact, the best-by-validation checkpoint. The file works directly with
    `cnn-tracker evaluate` and `cnn-tracker predict`.
    """
    from cnn_tracker.results.local import best_local, copy_checkpoint

    store = open_store(store_dir)
    found = best_local(store, target, metric, goal) if "/" not in target else None
    if found is not None:
        if download:
            found["downloaded"] = str(copy_checkpoint(found["checkpoint"], download))
    else:
        cloud_or_fail(f"'{target}' (neither a sweep nor a project with runs)", store)
        from cnn_tracker.results.remote import best_run, download_checkpoint

        found = best_run(target, metric, goal, entity)
        if download:
            found["downloaded"] = str(download_checkpoint(found["checkpoint"], download))
    if as_json:
        echo_json(found)
        return
    m = found["metric"]
    value = f"{m['value']:.4f}" if isinstance(m["value"], float) else m["value"]
    click.echo(f"best run of {target}: {found['run_id']} ({found.get('run_name')}, {found['state']}), "
               f"{m['name']} {value} ({m['goal']})")
    test = found["metrics"].get("test/accuracy")
    if test is not None:
        click.echo(f"test accuracy {test:.4%}")
    click.echo("config:")
    for key, val in found["config"].items():
        click.echo(f"  {key}: {val}")
    ckpt = found.get("downloaded") or found["checkpoint"]
    click.echo(f"checkpoint: {ckpt}")
    if found.get("downloaded") or found["source"] == "local":
        click.echo(f"next: cnn-tracker evaluate {ckpt}")


@click.command()
@click.argument("target", required=False)
@click.option("--project", help="Every run of this project (local, or [entity/]project on W&B).")
@click.option("--runs", "run_ids", help="These runs, comma-separated (local ids, or W&B entity/project/id).")
@click.option("--by", help="Group by config keys, comma-separated (e.g. model or model,dataset): "
              "mean ± std across each group's runs (seeds).")
@click.option("--metric", default="val/accuracy", show_default=True,
              help="The metric of the sweep chart (and a column, when not val/accuracy).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write the table (compare.md/.csv/.json) and the PNG charts into this folder.")
@click.option("--format", "fmt", type=click.Choice(["table", "markdown", "csv", "json"]),
              default="table", show_default=True)
@click.option("--all", "all_states", is_flag=True, help="Include runs that did not finish "
              "(running, crashed, failed, killed); by default only finished and stopped runs.")
@click.option("--entity", envvar="WANDB_ENTITY", help="W&B entity for a W&B project or sweep.")
@STORE_OPTION
def compare(target, project, run_ids, by, metric, out_dir, fmt, all_states, entity, store_dir) -> None:
    """Compare runs: one row per run (or per group with --by), and charts with --out.

    TARGET is a sweep id (local, or entity/project/sweep_id on W&B). Without TARGET, --project or
    --runs, every run in the local store is compared. Rows: model, dataset, parameter count, best
    validation accuracy, test accuracy, epochs, training time (epochs only) and train images/s.
    Charts: test accuracy and training time per group (seed 001's accuracy-vs-model chart), and
    for a sweep the metric against each swept parameter.
    """
    from cnn_tracker.files import atomic_write
    from cnn_tracker.results.compare import (
        DONE,
        build_table,
        chart_models,
        chart_parameters,
        local_rows,
        render,
        wandb_rows,
    )
    from cnn_tracker.results.local import searched_parameters

    ids = [r.strip() for r in run_ids.split(",") if r.strip()] if run_ids else None
    keys = [k.strip() for k in by.split(",") if k.strip()] if by else None
    for key in keys or []:
        if key not in KEYS:
            raise unknown_key_error(key, "--by")
    store = open_store(store_dir)
    remote = any("/" in x for x in [target or "", project or "", *(ids or [])])
    rows, sweep_config, where = [], None, ""
    if not remote:
        local_sweep = store.find_sweep(target) if target is not None else None
        if target is None or local_sweep is not None:
            rows = local_rows(store, sweep=target, project=project, run_ids=ids, metric=metric)
            sweep_config = local_sweep.config if local_sweep is not None else None
        where = f"local store {store.root}"
        if not rows and (target or project):
            cloud_or_fail(f"'{target or project}' (no runs)", store)
            remote = True
    if remote:
        rows, sweep_config = wandb_rows(sweep=target, project=project, run_ids=ids, entity=entity,
                                        metric=metric)
        where = "W&B"
    if not all_states:
        rows = [r for r in rows if r.state in DONE]
    if not rows:
        raise UserError(f"no {'finished ' if not all_states else ''}runs to compare in {where}"
                        f"{' for ' + (target or project) if target or project else ''}: train some "
                        "first, or pass --all to include unfinished runs.")
    table = build_table(rows, keys, metric)
    click.echo(render(table, fmt))
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, form in (("compare.md", "markdown"), ("compare.csv", "csv"), ("compare.json", "json")):
            atomic_write(out_dir / name, render(table, form) + "\n")
        label = target or project or f"{len(rows)} runs"
        charts = [chart_models(rows, keys or ["model"], out_dir / "compare.png",
                               f"{label}: {len(rows)} runs")]
        params = searched_parameters(sweep_config) if sweep_config else []
        if params:
            charts.append(chart_parameters(rows, params, metric, out_dir / "parameters.png",
                                           f"sweep {target}: {metric} by parameter"))
        click.echo(f"wrote {', '.join(str(p) for p in charts)} and compare.md/.csv/.json in {out_dir}",
                   err=True)




COMMANDS = (best, compare)  # sweep status / list join the sweep group (cli.sweeps)
