"""One exception type for every bad input a user can give us.

Each is printed as one line (``Error: ...``) naming the value and the fix, and the process exits
with code 2 (click's usage-error code; the CLI turns a UserError into click's error). Tracebacks
are shown only with ``--debug``. Nothing here depends on click: data, models, config and the
store raise these without knowing about the command line.
"""

from __future__ import annotations

import difflib
from typing import Iterable


class UserError(Exception):
    """A bad input (config key or value, YAML, data, checkpoint, CLI argument)."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(UserError):
    """A bad training-config key or value."""


class DataError(UserError):
    """Missing, corrupted or unusable dataset files."""


class CheckpointError(UserError):
    """A checkpoint that cannot be read, or does not describe a model we can build."""


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The closest valid spelling of ``word`` among ``choices``, or None if nothing is close."""
    matches = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return matches[0] if matches else None


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (library errors can span many lines)."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def yaml_problem(exc: BaseException) -> str:
    """`` at line L, column C: problem`` for a YAML parse error (location when PyYAML knows it)."""
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(exc, "problem", None) or first_line(exc)
    return f"{where}: {problem}"
