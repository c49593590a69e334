"""What a sweep parameter can draw, checked against a train config key's range.

W&B's own ``HyperParameter`` (the ``sweeps`` package) computes the draws: the listed values, a
range's ends, rounding to q, and the quantiles of unbounded distributions.
"""

from __future__ import annotations

from typing import Any, Mapping

from cnn_tracker.config import make_config
from cnn_tracker.errors import ConfigError
from cnn_tracker.search.engine import import_sweeps, plain

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


def check_values(name: str, spec: Mapping[str, Any]) -> tuple[list[str], list[str]]:
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
