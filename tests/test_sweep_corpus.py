"""Sweep files of other programs, judged by W&B's rules: our verdict is W&B's own.

``tests/sweep_corpus/valid`` and ``invalid`` hold W&B sweep files for a user's own script
(``program: train.py``), written from W&B's sweep-configuration docs and the ``sweeps`` package's
JSON schema (each file's first line names its source). W&B's verdict is computed here with W&B's
code (the ``sweeps`` schema and a dry run of its engine, what W&B's server runs on a new sweep);
``sweep validate`` must agree, and name the parameter when the problem is one parameter's.

``python -m tests.test_sweep_corpus`` prints the table (file, W&B's verdict, ours, our message).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cnn_tracker.cli import cli
from cnn_tracker.search.engine import import_sweeps
from cnn_tracker.search.spec import load_sweep_file, validate

CORPUS = Path(__file__).parent / "sweep_corpus"
FILES = sorted(CORPUS.glob("*/*.yaml"))
# invalid file -> the parameter its message must name
NAMED = {"misspelled_distribution": "lr", "empty_values": "lr", "normal_without_sigma_type": "x",
         "uniform_min_is_text": "x", "parameter_without_values": "lr", "grid_over_a_range": "lr",
         "probabilities_not_summing_to_one": "opt"}


def wandb_verdict(config: dict) -> tuple[bool, str]:
    """W&B's own judgement: the sweeps schema, then a dry run of its engine."""
    sweeps = import_sweeps()
    try:
        violations = sweeps.schema_violations_from_proposed_config(config)
    except Exception as exc:  # noqa: BLE001 - W&B's code failing on the file is a rejection
        return False, f"schema check failed: {exc!r}"
    if violations:
        return False, violations[0]
    try:
        sweeps.next_run(config, [])
        if "early_terminate" in config:
            sweeps.stop_runs(config, [])
    except Exception as exc:  # noqa: BLE001
        return False, f"engine: {exc}"
    return True, ""


def test_the_corpus_is_big_enough():
    kinds = [p.parent.name for p in FILES]
    assert kinds.count("valid") >= 30 and kinds.count("invalid") >= 15


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_our_verdict_is_wandbs(path):
    expected = path.parent.name == "valid"
    config = load_sweep_file(path)
    assert wandb_verdict(config)[0] == expected  # the file's label is W&B's own verdict
    errors, _ = validate(config)
    assert (not errors) == expected, errors
    if path.stem in NAMED:
        assert any(NAMED[path.stem] in e for e in errors), errors


def test_sweep_validate_accepts_a_foreign_program_and_its_own_keys(tmp_path):
    result = CliRunner().invoke(cli, ["sweep", "validate", str(CORPUS / "valid" / "bayes_minimize.yaml")])
    assert result.exit_code == 0, result.output
    assert "valid (bayes over 2 searched parameter(s)" in result.output


def table() -> str:
    lines = ["| file | W&B's verdict | ours | our message |", "|---|---|---|---|"]
    for path in FILES:
        config = load_sweep_file(path)
        ok, _ = wandb_verdict(config)
        errors, warns = validate(config)
        shown = (errors[0] if errors else (f"warning: {warns[0]}" if warns else "")).replace("|", "/")
        lines.append(f"| {path.parent.name}/{path.name} | {'valid' if ok else 'invalid'} | "
                     f"{'valid' if not errors else 'invalid'} | {shown[:110]} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(table() + "\n")
