"""A sweep file: loading it and judging it, every problem at once.

W&B's own schema (the ``sweeps`` package's JSON schema and a dry run of its engine) plus our
train config's keys, values and logged metrics. Nothing here imports torch or wandb.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

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
from cnn_tracker.search.engine import import_sweeps, plain

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


# What W&B's engine can draw for a parameter, by distribution (``sweeps.params.HyperParameter``):
#   listed:  the ``value`` / ``values`` themselves;
#   literal: exactly min..max (values, not exponents);
#   derived: ends computed from min/max: base-e exponents (legacy log_uniform, inv_log_uniform,
#            q_log_uniform) and/or rounding to a multiple of q;
#   tails:   unbounded (normal, log_normal > 0, their q_ forms) or beta's open (0, 1): W&B's own
#            quantile function is probed; a draw that fails in >= 1 trial in 1000 is an error,
#            one that fails only in the far tails (1 in 10^9) a warning.
LISTED = ("constant", "categorical", "categorical_w_probabilities")
LITERAL = ("uniform", "int_uniform", "log_uniform_values", "inv_log_uniform_values")
DERIVED = ("q_uniform", "q_log_uniform_values", "log_uniform", "inv_log_uniform", "q_log_uniform")
TAILS = ("normal", "q_normal", "log_normal", "q_log_normal", "beta", "q_beta")
DISTRIBUTIONS = (*LISTED, *LITERAL, *DERIVED, *TAILS)
_INSIDE = (0.1234, 0.5, 0.8765)  # quantiles inside a range: an int key needs whole draws there
_COMMON = (0.001, 0.25, 0.5, 0.75, 0.999)  # fail here = at least 1 trial in 1000 fails
_RARE = (1e-9, 1 - 1e-9)
_EXPONENTS = {"log_uniform": "e^min..e^max", "inv_log_uniform": "e^-max..e^-min",
              "q_log_uniform": "e^min..e^max rounded to a multiple of q"}
_FIX = {
    "normal": "normal can draw any real number: use log_normal (always > 0), a bounded "
              "distribution (uniform, log_uniform_values, beta for 0..1) or a smaller sigma.",
    "log_normal": "log_normal draws any number > 0: lower mu or sigma, or use a bounded "
                  "distribution (log_uniform_values, uniform).",
    "beta": "beta draws in (0, 1): use it for values between 0 and 1 only.",
}


def _draws(name: str, spec: Mapping[str, Any]) -> tuple[str, Any] | None:
    """(distribution, W&B's HyperParameter) for a well-formed spec; None = the schema reports it."""
    import_sweeps()
    from sweeps.params import HyperParameter

    try:
        param = HyperParameter(name, dict(spec))
    except Exception:  # noqa: BLE001  (jsonschema / ParamValidationError / ValueError: reported)
        return None
    return str(param.config.get("distribution")), param


def _invalid(name: str, value: Any) -> str | None:
    try:
        make_config({name: value}, source=f"sweep parameter '{name}'")
    except ConfigError as exc:
        return str(exc)
    return None


def _check_values(name: str, spec: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(errors, warnings): every value a parameter's distribution can draw must be a valid
    config value; each message names the parameter, the value and the fix."""
    drawn = _draws(name, spec)
    dist, param = drawn if drawn else (spec.get("distribution"), None)
    if dist in LISTED or param is None:
        candidates = [spec["value"]] if "value" in spec else []
        candidates += spec["values"] if isinstance(spec.get("values"), list) else []
        if param is None and dist in LITERAL + (None,):  # a malformed range: check its ends
            candidates += [spec[b] for b in ("min", "max") if isinstance(spec.get(b), (int, float))]
        return [f"parameters.{name}: {e}" for v in candidates if (e := _invalid(name, v))], []
    where = f"parameters.{name}: {dist}"
    if dist in TAILS:
        return _check_tails(name, dist, param, where)
    errors = []
    for end, x in (("min", 0.0), ("max", 1.0)):
        value = spec[end] if dist in LITERAL else plain(param.ppf(x))
        if (e := _invalid(name, value)) is None:
            continue
        how = _EXPONENTS.get(dist, "rounded to a multiple of q")
        errors.append(f"parameters.{name}: {e}" if dist in LITERAL else
                      f"{where} draws {value!r} at its {end} end ({how}): {e} Change min/max"
                      + (" or q" if "q" in param.config else "") + " so every draw is valid.")
    if errors:
        return errors, []
    for x in _INSIDE:
        value = plain(param.ppf(x))
        if (e := _invalid(name, value)) is not None:
            hint = (" Use int_uniform, or a q_ distribution with a whole q."
                    if "an integer" in e else "")
            return [f"{where} also draws {value!r}: {e}{hint}"], []
    return [], []


def _check_tails(name: str, dist: str, param: Any, where: str) -> tuple[list[str], list[str]]:
    shape = ", ".join(f"{k}={v:g}" for k, v in param.config.items()
                      if k != "distribution" and isinstance(v, (int, float)))
    fix = _FIX[dist.removeprefix("q_")] + (
        " A q_ form rounds each draw to a multiple of q (0 included)." if "q" in param.config else "")
    for x in _COMMON:
        value = plain(param.ppf(x))
        if (e := _invalid(name, value)) is not None:
            return [f"{where}({shape}) draws {value:.4g} in at least 1 trial in 1000: {e} {fix}"], []
    for x in _RARE:
        value = plain(param.ppf(x))
        if (e := _invalid(name, value)) is not None:
            return [], [f"{where}({shape}) can draw {value:.4g} in rare trials (fewer than 1 in "
                        f"1000), which then fail: {e} {fix}"]
    return [], []


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
    if any("${program}" == str(c) for c in command) and not config.get("program"):
        problems.append("command uses ${program} but the sweep has no 'program:'.")
    return problems


def validate(config: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(errors, warnings) for a sweep config meant to run our ``train`` command."""
    errors, warns = _deprecations(_schema_problems(config))
    params = config.get("parameters")
    if isinstance(params, dict):
        for name, spec in params.items():
            if isinstance(spec, dict) and "parameters" in spec:
                errors.append(_nested_problem(str(name), spec))
            elif name not in KEYS:
                errors.append(f"parameters.{name}: {unknown_key_error(str(name), 'the sweep')}")
            elif isinstance(spec, dict):
                value_errors, value_warns = _check_values(name, spec)
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


def load_checked(file: str, warn: Callable[[str], None]) -> dict[str, Any]:
    """The sweep file ``file``, loaded and checked (one UserError listing every problem); each
    warning goes to ``warn`` as ``warning: ...``."""
    config = load_sweep_file(file)
    for warning in check(config, f"file '{file}'"):
        warn(f"warning: {warning}")
    return config


def check(config: dict[str, Any], source: str) -> list[str]:
    """Raise one UserError listing every problem; return the warnings."""
    errors, warns = validate(config)
    if errors:
        raise UserError(f"sweep {source} has {len(errors)} problem(s):\n  - " + "\n  - ".join(errors))
    return warns


