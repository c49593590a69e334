"""A sweep file: loading it and judging it, every problem at once.

W&B's own schema (the ``sweeps`` package's JSON schema and a dry run of its engine) for any
program; for a sweep of ``cnn-tracker train``, our train config's keys, values and logged metrics
too. Nothing here imports torch or wandb.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from cnn_tracker.config import (
    EPOCH_METRICS,
    KEYS,
    SUMMARY_METRICS,
    unknown_key_error,
)
from cnn_tracker.errors import UserError, closest, yaml_problem
from cnn_tracker.inputs import MAX_FILE_BYTES, load_yaml
from cnn_tracker.search.command import (
    DEFAULT_COMMAND,
    MACRO_PATTERN,
    MACROS,
    runs_our_train,
)
from cnn_tracker.search.draws import check_values
from cnn_tracker.search.engine import import_sweeps

METRICS = (*EPOCH_METRICS, *SUMMARY_METRICS)
GRID_CAP = 100_000  # points a grid sweep may have: W&B's engine lists them all for each suggestion
PROGRAM = "cnn_tracker/__main__.py"  # what our sweep files name (their command runs -m cnn_tracker)


def load_sweep_file(path: str | Path) -> dict[str, Any]:
    """A sweep YAML as a dict; unreadable or non-mapping files are a UserError naming the fix."""
    p = Path(path)
    try:
        if p.stat().st_size > MAX_FILE_BYTES:
            raise UserError(f"sweep file '{p}' is {p.stat().st_size} bytes: a sweep file is at most "
                            f"{MAX_FILE_BYTES} bytes of YAML.")
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"sweep file '{p}' does not exist: give the path of a sweep YAML "
                        "(see sweeps/ for examples).") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"sweep file '{p}' cannot be read ({exc}): give a YAML text file.") from None
    try:
        data = load_yaml(text)
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
    except (AttributeError, TypeError, KeyError) as exc:  # W&B's own check fails on the shape
        return problems or [f"W&B's schema check cannot read this config ({type(exc).__name__}: "
                            f"{exc}): parameters must be a mapping of names to specs."]
    names = set(config.get("parameters") or {}) if isinstance(config.get("parameters"), dict) else set()
    for message in official:
        if message in located or message.startswith("invalid hyperparameter configuration"):
            continue
        head = message.split(":", 1)[0]
        problems.append(f"parameters.{message}" if head in names else message)
    return list(dict.fromkeys(problems))


_DEPRECATED = ", where min/max specify base-e exponents."


def _deprecations(problems: list[str]) -> tuple[list[str], list[str]]:
    """W&B's notes on its legacy exponent forms (log_uniform, inv_log_uniform, q_log_uniform)
    are warnings here: its engine (and W&B's server) still run them, and the values they draw
    are range-checked like any other distribution's."""
    errors, warns = [], []
    for problem in problems:
        if _DEPRECATED not in problem:
            errors.append(problem)
            continue
        name, _, rest = problem.partition(" uses ")
        dist = rest.split(",", 1)[0]
        warns.append(f"parameters.{name}: {dist} takes base-e exponents as min/max (W&B keeps it "
                     f"for old sweeps); {dist}_values takes the values themselves.")
    return errors, warns


def _nested_problem(name: str, spec: Mapping[str, Any]) -> str:
    inner = spec.get("parameters")
    names = ", ".join(map(str, inner)) if isinstance(inner, dict) else "its keys"
    return (f"parameters.{name}: nested parameters are not supported by `cnn-tracker train` "
            f"(its config is flat): flatten them into top-level parameters ({names}), each a "
            f"train config key.")


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
    return problems


def _missing_program(config: dict[str, Any], ours: bool) -> list[str]:
    """W&B's agent reads ``program`` for every trial, used or not (its schema does not say so,
    but ``wandb agent`` stops at a sweep without one)."""
    if config.get("program"):
        return []
    command = config.get("command", DEFAULT_COMMAND)
    uses = isinstance(command, list) and any("${program}" == str(c) for c in command)
    what = (f"'program: {PROGRAM}' (with a command that runs `-m cnn_tracker train`, as in sweeps/)"
            if ours else "'program: your_script.py' (the script the command runs)")
    return ["program: missing" + (" (the command uses ${program})" if uses else "")
            + f": W&B's agent requires it; add {what}."]


def _grid_count(spec: Any) -> int | None:
    """Grid points of one parameter (as W&B's grid expands it), or None if it has no count."""
    if not isinstance(spec, Mapping):
        return None
    if "values" in spec:
        return len(spec["values"]) if isinstance(spec["values"], list) else None
    if "value" in spec:
        return 1
    lo, hi, q = spec.get("min"), spec.get("max"), spec.get("q", 1)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
               for v in (lo, hi, q)) or q <= 0:
        return None
    dist = spec.get("distribution")
    if dist == "int_uniform" or (dist is None and isinstance(lo, int) and isinstance(hi, int)):
        return max(0, int(hi) - int(lo) + 1)
    if dist == "q_uniform":
        return max(0, math.ceil((hi - lo) / q))
    return None


def grid_size(config: Mapping[str, Any]) -> int | None:
    """Points of a grid sweep: the product of each parameter's count, computed without
    enumerating any; None when it is not a grid or a parameter has no count."""
    params = config.get("parameters")
    if config.get("method") != "grid" or not isinstance(params, Mapping):
        return None
    counts = [_grid_count(spec) for spec in params.values()]
    return None if None in counts else math.prod(counts)


def _metric_warning(metric: Mapping[str, Any]) -> list[str]:
    """W&B minimizes a metric without ``goal``: almost surely wrong for an accuracy."""
    name = metric.get("name")
    if "goal" in metric or not isinstance(name, str) or "accuracy" not in name.lower():
        return []
    return [f"metric '{name}' has no goal: W&B then minimizes it (its default), searching for the "
            "worst accuracy; add 'goal: maximize' to the metric."]


def validate(config: dict[str, Any], *, needs_program: bool = True) -> tuple[list[str], list[str]]:
    """(errors, warnings) of a sweep config. One whose command runs ``cnn-tracker train`` is
    judged by W&B's rules and ours (keys, values, metrics); any other program by W&B's alone.
    ``needs_program``: False for the Python form, whose trials run a function."""
    if not runs_our_train(config):
        return validate_program(config, needs_program=needs_program)
    errors, warns = _deprecations(_schema_problems(config))
    params = config.get("parameters")
    if isinstance(params, dict):
        for name, spec in params.items():
            if isinstance(spec, dict) and "parameters" in spec:
                errors.append(_nested_problem(str(name), spec))
            elif name not in KEYS:
                errors.append(f"parameters.{name}: {unknown_key_error(str(name), 'the sweep')}")
            elif isinstance(spec, dict):
                value_errors, value_warns = check_values(name, spec)
                errors += value_errors
                warns += value_warns
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
    if isinstance(metric, dict):
        warns += _metric_warning(metric)
    errors += _macro_problems(config) + (_missing_program(config, True) if needs_program else [])
    size = grid_size(config)
    if size is not None and size > GRID_CAP:
        errors.append(f"method grid has {size:.3g} points (the product of every parameter's "
                      f"values), more than {GRID_CAP}: use method random or bayes with a run_cap, "
                      "or fewer values.")
    if not errors:
        errors += _engine_problems(config)
    if config.get("method") in ("random", "bayes") and not config.get("run_cap"):
        warns.append(f"method {config.get('method')} never runs out of suggestions: set run_cap "
                     "(or pass --count to each agent).")
    return list(dict.fromkeys(errors)), warns


def validate_program(config: dict[str, Any], *, needs_program: bool = True) -> tuple[list[str], list[str]]:
    """(errors, warnings) by W&B's rules only, for a sweep of any other program: the ``sweeps``
    package's schema and a dry run of its engine (the program's keys and metrics are its own).
    An unknown ``${macro}`` is left as it is by ``wandb agent``: a warning here."""
    errors, warns = _deprecations(_schema_problems(config))
    warns += [p.replace("command: unknown macro", "command: macro", 1) + " wandb agent passes it as "
              "it is." for p in _macro_problems(config)]
    if needs_program:
        errors += _missing_program(config, False)
    size = grid_size(config)
    if size is not None and size > GRID_CAP:
        errors.append(f"method grid has {size:.3g} points, more than {GRID_CAP}: use method "
                      "random or bayes with a run_cap, or fewer values.")
    if not errors:
        errors += _engine_problems(config)
    metric = config.get("metric")
    if isinstance(metric, dict):
        warns += _metric_warning(metric)
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


def load_checked(file: str, warn: Callable[[str], None]) -> dict[str, Any]:
    """The sweep file ``file``, loaded and checked (one UserError listing every problem); each
    warning goes to ``warn`` as ``warning: ...``."""
    config = load_sweep_file(file)
    for warning in check(config, f"file '{file}'"):
        warn(f"warning: {warning}")
    return config


def check(config: dict[str, Any], source: str, *, needs_program: bool = True) -> list[str]:
    """Raise one UserError listing every problem; return the warnings."""
    errors, warns = validate(config, needs_program=needs_program)
    if errors:
        raise UserError(f"sweep {source} has {len(errors)} problem(s):\n  - " + "\n  - ".join(errors))
    return warns


