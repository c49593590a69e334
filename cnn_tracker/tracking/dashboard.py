"""The W&B dashboard: a saved workspace view of a project (or a sweep), built with ``wandb-workspaces``.

:func:`build_workspace` is pure (it returns the ``wandb_workspaces.workspaces.Workspace`` and
touches no network); :func:`describe` lists its sections and panels (``dashboard --dry-run``);
:func:`save_workspace` is the one call that talks to W&B. Metric keys are the ones the tracker
logs: per-epoch keys against ``epoch``, ``test/*`` summaries, the ``test/confusion_matrix``
custom chart (``wandb.plot.confusion_matrix``: table ``test/confusion_matrix_table``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cnn_tracker.errors import UserError, first_line

EPOCH = "epoch"  # the x-axis of every per-epoch panel (define_metric step_metric)
CONFUSION_TABLE = "test/confusion_matrix_table"  # wandb.plot's table for test/confusion_matrix
CONFUSION_SPEC = "wandb/confusion_matrix/v1"  # the Vega spec wandb.plot.confusion_matrix uses
PANEL_NAMES = {"ParameterImportancePlot": "parameter importance"}  # panels without a title
INSTALL_HINT = "install the dashboard extra: pip install 'cnn-tracker[dashboard]' (wandb-workspaces)"


@dataclass(frozen=True)
class SweepView:
    """What a sweep's section shows: its id, swept parameters, metric and run filter."""

    sweep_id: str
    parameters: list[str] = field(default_factory=list)
    metric: str = "val/accuracy"
    run_filter: str = ""  # a wandb-workspaces filter expression, e.g. Metric('Sweep') == 'abc'


def _libraries():
    try:
        import wandb_workspaces.reports.v2 as wr
        import wandb_workspaces.workspaces as ws
    except ImportError:
        raise UserError(f"the dashboard needs wandb-workspaces: {INSTALL_HINT}.") from None
    return wr, ws


def _training(wr) -> list[Any]:
    return [
        wr.LinePlot(title="validation accuracy", x=EPOCH, y=["val/accuracy"]),
        wr.LinePlot(title="loss", x=EPOCH, y=["train/loss", "val/loss"]),
        wr.LinePlot(title="learning rate", x=EPOCH, y=["lr"]),
        wr.LinePlot(title="train accuracy", x=EPOCH, y=["train/accuracy"]),
    ]


def _test(wr) -> list[Any]:
    by = {"groupby_aggfunc": "mean", "groupby_rangefunc": "stddev"}  # mean ± std over seeds
    return [
        wr.BarPlot(title="test accuracy by model", metrics=["test/accuracy"],
                   groupby=wr.Config("model"), **by),
        wr.BarPlot(title="test accuracy by dataset", metrics=["test/accuracy"],
                   groupby=wr.Config("dataset"), **by),
        wr.CustomChart(query={"summaryTable": {"tableKey": CONFUSION_TABLE}},
                       chart_name=CONFUSION_SPEC,
                       chart_fields={"Actual": "Actual", "Predicted": "Predicted",
                                     "nPredictions": "nPredictions"},
                       chart_strings={"title": "test confusion matrix"}),
    ]


def _sweep(wr, sweep: SweepView) -> list[Any]:
    columns = [wr.ParallelCoordinatesPlotColumn(metric=wr.Config(p)) for p in sweep.parameters]
    columns.append(wr.ParallelCoordinatesPlotColumn(metric=wr.SummaryMetric(sweep.metric)))
    return [
        wr.ParallelCoordinatesPlot(title=f"{sweep.metric} by swept parameter", columns=columns),
        wr.ParameterImportancePlot(with_respect_to=sweep.metric),
        wr.LinePlot(title=f"{sweep.metric} of each trial", x=EPOCH, y=[sweep.metric]),
    ]


def build_workspace(entity: str, project: str, sweep: SweepView | None = None,
                    name: str | None = None):
    """The workspace view of ``entity/project``; with ``sweep``, its section first and the
    runs filtered to it."""
    wr, ws = _libraries()
    sections = [
        ws.Section(name="Training (by epoch)", panels=_training(wr), is_open=True),
        ws.Section(name="Test results", panels=_test(wr), is_open=True),
    ]
    runset = ws.RunsetSettings()
    if sweep is not None:
        sections.insert(0, ws.Section(name=f"Sweep {sweep.sweep_id}", panels=_sweep(wr, sweep),
                                      is_open=True))
        if sweep.run_filter:
            runset = ws.RunsetSettings(filters=sweep.run_filter)
    return ws.Workspace(
        entity=entity, project=project,
        name=name or (f"cnn-tracker sweep {sweep.sweep_id}" if sweep else "cnn-tracker"),
        sections=sections,
        settings=ws.WorkspaceSettings(x_axis=EPOCH),
        runset_settings=runset,
    )


def _key(metric: Any) -> str:
    name = getattr(metric, "name", metric)
    return f"config.{name}" if type(metric).__name__ == "Config" else str(name)


def panel_keys(panel: Any) -> list[str]:
    """The metric keys a panel reads (config keys as ``config.<name>``)."""
    kind = type(panel).__name__
    if kind == "LinePlot":
        return [_key(k) for k in panel.y]
    if kind == "BarPlot":
        return [_key(k) for k in panel.metrics]
    if kind == "ParallelCoordinatesPlot":
        return [_key(c.metric) for c in panel.columns]
    if kind == "ParameterImportancePlot":
        return [panel.with_respect_to]
    if kind == "CustomChart":
        return [panel.query.get("summaryTable", {}).get("tableKey", "")]
    return []


def describe(workspace) -> list[str]:
    """One line per section and per panel: type, title, keys, x-axis or grouping."""
    lines = [f"workspace '{workspace.name}' of {workspace.entity}/{workspace.project}"]
    if workspace.runset_settings.filters:
        lines.append(f"  runs: {workspace.runset_settings.filters}")
    for section in workspace.sections:
        lines.append(f"section {section.name}")
        for panel in section.panels:
            title = (getattr(panel, "title", None) or getattr(panel, "chart_strings", {}).get("title")
                     or PANEL_NAMES.get(type(panel).__name__, ""))
            extra = []
            if getattr(panel, "x", None):
                extra.append(f"x={panel.x}")
            if getattr(panel, "groupby", None) is not None:
                extra.append(f"by {_key(panel.groupby)}")
            if type(panel).__name__ == "CustomChart":
                extra.append(f"spec {panel.chart_name}")
            detail = f" ({', '.join(extra)})" if extra else ""
            lines.append(f"  {type(panel).__name__:<24} {title}: "
                         f"{', '.join(panel_keys(panel))}{detail}")
    return lines


def save_workspace(workspace) -> str:
    """Save the view to W&B (a new view each time); returns its URL."""
    try:
        saved = workspace.save()
        return str(saved.url)
    except Exception as exc:  # noqa: BLE001 - GraphQL, auth and network errors all land here
        raise UserError(f"W&B could not save the workspace of {workspace.entity}/"
                        f"{workspace.project} ({first_line(exc)}): check WANDB_API_KEY, the "
                        "entity/project and the network, or use --dry-run.") from None
