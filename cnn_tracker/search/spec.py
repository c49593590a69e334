"""A sweep file: loading it and judging it, every problem at once.

W&B's own schema (the ``sweeps`` package's JSON schema and a dry run of its engine) plus our
train config's keys, values and logged metrics. Nothing here imports torch or wandb.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import yaml

from cnn_tracker.config import (
    EPOCH_METRICS,
    KEYS,
    SUMMARY_METRICS,
    make_config,
    unknown_key_error,
)
from cnn_tracker.errors import ConfigError, UserError, closest, yaml_problem
from cnn_tracker.search.command import DEFAULT_COMMAND, MACRO_PATTERN, MACROS
from cnn_tracker.search.engine import import_sweeps

METRICS = (*EPOCH_METRICS, *SUMMARY_METRICS)


def load_sweep_file(path: str | Path) -> dict[str, Any]:
    """A sweep YAML as a dict; unreadable or non-mapping files are a UserError naming the fix."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"sweep file '{p}' does not exist: give the path of a sweep YAML "
                        "(see sweeps/ for examples).") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"sweep file '{p}' cannot be read ({exc}): give a YAML text file.") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UserError(f"sweep file '{p}' is not valid YAML{yaml_problem(exc)}. Fix the syntax "
                        "(in a list, write each ${macro} as its own '- ${macro}' line).") from None
    if not isinstance(data, dict):
        raise UserError(f"sweep file '{p}' must be a mapping (method:, metric:, parameters:, ...), "
                        f"got a {type(data).__name__}.")
    return data


def _path(error) -> str:
    parts = [str(p) for p in error.absolute_path]
    return ".".join(parts) if parts else "(top level)"


def _schema_problems(config: dict[str, Any]) -> list[str]:
    """W&B's own schema checks, each prefixed with where it applies (parameter names included)."""
    sweeps = import_sweeps()
    from sweeps.config.schema import validator

    problems = []
    located = {}
    for error in validator.iter_errors(config):
        where = _path(error)
        located[error.message] = where
        problems.append(f"{where}: {error.message}")
    try:
        official = sweeps.schema_violations_from_proposed_config(config)
    except ValueError as exc:  # a parameter that is not a mapping
        return [*problems, str(exc)]
    names = set(config.get("parameters") or {}) if isinstance(config.get("parameters"), dict) else set()
    for message in official:
        if message in located or message.startswith("invalid hyperparameter configuration"):
            continue
        head = message.split(":", 1)[0]
        problems.append(f"parameters.{message}" if head in names else message)
    return list(dict.fromkeys(problems))


def _check_values(name: str, spec: Mapping[str, Any]) -> list[str]:
    """Every fixed value and every range end a parameter can take must be a valid config value."""
    candidates: list[Any] = []
    if "value" in spec:
        candidates.append(spec["value"])
    if isinstance(spec.get("values"), list):
        candidates += spec["values"]
    for bound in ("min", "max"):
        if bound in spec and isinstance(spec[bound], (int, float)):
            if "log_uniform" == spec.get("distribution"):
                continue  # W&B's legacy log_uniform takes exponents, not values
            candidates.append(spec[bound])
    problems = []
    for value in candidates:
        try:
            make_config({name: value}, source=f"sweep parameter '{name}'")
        except ConfigError as exc:
            problems.append(f"parameters.{name}: {exc}")
    return problems


def _macro_problems(config: dict[str, Any]) -> list[str]:
    command = config.get("command", DEFAULT_COMMAND)
    if not isinstance(command, list):
        return []  # the schema reports it
    problems = []
    for chunk in command:
        for macro in MACRO_PATTERN.findall(str(chunk)):
            if macro.startswith("envvar:") or macro in MACROS:
                continue
            hint = closest(macro, MACROS)
            problems.append(f"command: unknown macro '${{{macro}}}'" +
                            (f"; did you mean '${{{hint}}}'?" if hint else "") +
                            f" Known: {', '.join('${' + m + '}' for m in MACROS)}.")
    if any("${program}" == str(c) for c in command) and not config.get("program"):
        problems.append("command uses ${program} but the sweep has no 'program:'.")
    return problems


def validate(config: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(errors, warnings) for a sweep config meant to run our ``train`` command."""
    errors = _schema_problems(config)
    warns: list[str] = []
    params = config.get("parameters")
    if isinstance(params, dict):
        for name, spec in params.items():
            if name not in KEYS:
                errors.append(f"parameters.{name}: {unknown_key_error(str(name), 'the sweep')}")
            elif isinstance(spec, dict):
                errors += _check_values(name, spec)
    metric = config.get("metric")
    if isinstance(metric, dict) and isinstance(metric.get("name"), str):
        name = metric["name"]
        if name not in METRICS:
            hint = closest(name, METRICS)
            errors.append(f"metric.name: '{name}' is not a metric `cnn-tracker train` logs" +
                          (f"; did you mean '{hint}'?" if hint else "") +
                          f" Per-epoch metrics: {', '.join(EPOCH_METRICS)}.")
        elif name.startswith("test/"):
            warns.append(f"metric.name '{name}' selects hyperparameters on the test set; "
                         "use val/accuracy or val/loss to keep test numbers honest.")
        if "early_terminate" in config and name not in EPOCH_METRICS:
            errors.append(f"early_terminate needs a per-epoch metric, not '{name}': "
                          f"use one of {', '.join(EPOCH_METRICS)}.")
    errors += _macro_problems(config)
    if not errors:
        errors += _engine_problems(config)
    if config.get("method") in ("random", "bayes") and not config.get("run_cap"):
        warns.append(f"method {config.get('method')} never runs out of suggestions: set run_cap "
                     "(or pass --count to each agent).")
    return list(dict.fromkeys(errors)), warns


def _engine_problems(config: dict[str, Any]) -> list[str]:
    """Dry-run the sweep engine on no runs: catches method-specific errors the schema misses."""
    sweeps = import_sweeps()
    problems = []
    try:
        sweeps.next_run(config, [])
    except (ValueError, KeyError, TypeError) as exc:
        problems.append(f"method {config.get('method')}: {exc}")
    if "early_terminate" in config:
        try:
            sweeps.stop_runs(config, [])
        except (ValueError, KeyError, TypeError) as exc:
            problems.append(f"early_terminate: {exc}")
    return problems


def check(config: dict[str, Any], source: str) -> list[str]:
    """Raise one UserError listing every problem; return the warnings."""
    errors, warns = validate(config)
    if errors:
        raise UserError(f"sweep {source} has {len(errors)} problem(s):\n  - " + "\n  - ".join(errors))
    return warns


