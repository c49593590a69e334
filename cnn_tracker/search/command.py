"""A trial's command line: the sweep's ``command`` with W&B's macros replaced as ``wandb agent``
does (wandb/sdk/launch/sweeps/utils.py), no shell involved."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, Mapping

# What ``wandb agent`` puts in place of each macro (wandb/sdk/launch/sweeps/utils.py).
DEFAULT_COMMAND = ["${env}", "${interpreter}", "${program}", "${args}"]
ARG_MACROS = ("args", "args_no_equals", "args_no_hyphens", "args_no_boolean_flags", "args_json",
              "args_append_hydra", "args_override_hydra")
MACROS = ("env", "interpreter", "program", "args_json_file", *ARG_MACROS)
_ENVVAR = re.compile(r"\$\{envvar:([A-Z0-9_]*)\}")
MACRO_PATTERN = re.compile(r"\$\{([^}]*)\}")


def command_args(params: Mapping[str, Any]) -> dict[str, list[str]]:
    """The argument forms ``wandb agent`` builds from a run's parameters, macro by macro."""
    out: dict[str, list[str]] = {m: [] for m in ARG_MACROS}
    for name, value in params.items():
        flag = f"{name}={value}"
        out["args"].append("--" + flag)
        out["args_no_hyphens"].append(flag)
        out["args_no_equals"] += [f"--{name}", str(value)]
        out["args_append_hydra"].append("+" + flag)
        out["args_override_hydra"].append("++" + flag)
        if isinstance(value, bool):
            if value:
                out["args_no_boolean_flags"].append("--" + name)
        else:
            out["args_no_boolean_flags"].append("--" + flag)
    out["args_json"] = [json.dumps(dict(params))]
    return out


def expand_command(config: Mapping[str, Any], params: Mapping[str, Any], *, json_file: Path,
                   environ: Mapping[str, str], interpreter: str | None = None) -> list[str]:
    """The trial's argv, macros replaced as ``wandb agent`` does (no shell involved).

    ``${interpreter}`` is this Python (``sys.executable``) rather than whatever ``python`` is
    first on PATH, so trials use the environment cnn-tracker is installed in.
    """
    command = [str(c) for c in config.get("command", DEFAULT_COMMAND)]
    values = command_args(params)
    values["env"] = ["/usr/bin/env"] if sys.platform != "win32" else []
    values["interpreter"] = [interpreter or sys.executable]
    values["program"] = [str(config.get("program", ""))]
    values["args_json_file"] = [str(json_file)]
    argv: list[str] = []
    for chunk in command:
        chunk = _ENVVAR.sub(lambda m: environ.get(m.group(1), m.group(1)), chunk)
        if chunk.startswith("${") and chunk.endswith("}") and chunk.count("${") == 1:
            argv += values.get(chunk[2:-1], [])
        else:
            argv.append(chunk)
    return argv


def runs_our_train(config: Mapping[str, Any]) -> bool:
    """Whether the sweep's command runs ``cnn-tracker train``: ``-m cnn_tracker train``, the
    console script, or ``${program}`` = cnn_tracker/__main__.py, followed by ``train``."""
    program = str(config.get("program", ""))
    words = [program if str(c) == "${program}" else str(c)
             for c in config.get("command", DEFAULT_COMMAND)]
    for i in range(len(words) - 1):
        word, following = words[i], words[i + 1]
        if following != "train":
            continue
        if (word == "cnn_tracker" and i > 0 and words[i - 1] == "-m") \
                or Path(word).name == "cnn-tracker" \
                or word.replace("\\", "/").endswith("cnn_tracker/__main__.py"):
            return True
    return False
