"""The package tree is the diagram, and each fact has one owner: checked on the source itself.

Rules (README, Architecture): only ``cli/`` imports click; only ``tracking/`` imports wandb;
every environment variable name is written only in ``env.py`` (and ``os.environ`` is read only
there); only ``runs/lifecycle.py`` calls the store's state-writing methods; no module over 350
lines and no function over 80; the training loop takes one hooks object.
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "cnn_tracker"
SOURCES = sorted(p for p in PKG.rglob("*.py"))
PACKAGES = ("training", "tracking", "runs", "search", "store", "results", "tools", "cli")
ENV_NAME = re.compile(r"^(WANDB|CNN_TRACKER|CUDA|OMP|CUBLAS|PYTHON)[A-Z0-9_]*$")
STATE_WRITERS = ("insert_run", "insert_trial", "transition", "set_sweep_state", "move_sweep")


def rel(path: Path) -> str:
    return path.relative_to(PKG).as_posix()


def tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


def imported_modules(module: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(module):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_the_tree_is_the_diagram():
    top = {p.name for p in PKG.iterdir() if p.suffix == ".py"}
    assert top == {"__init__.py", "__main__.py", "env.py", "errors.py", "files.py", "config.py",
                   "table.py", "inputs.py", "offline.py", "recipes.py"}
    for package in PACKAGES:
        assert (PKG / package / "__init__.py").is_file(), package


@pytest.mark.parametrize("library, owner", [("click", "cli/"), ("wandb", "tracking/")])
def test_only_one_package_imports(library, owner):
    offenders = [rel(p) for p in SOURCES
                 if library in imported_modules(tree(p)) and not rel(p).startswith(owner)]
    assert offenders == [], f"{library} imported outside {owner}: {offenders}"


def test_environment_variables_are_named_only_in_env():
    offenders = []
    for path in SOURCES:
        if rel(path) == "env.py":
            continue
        for node in ast.walk(tree(path)):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and ENV_NAME.match(node.value):
                offenders.append(f"{rel(path)}:{node.lineno} {node.value}")
            if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv") \
                    and isinstance(node.value, ast.Name) and node.value.id == "os":
                offenders.append(f"{rel(path)}:{node.lineno} os.{node.attr}")
    assert offenders == []


def test_only_the_lifecycle_writes_a_runs_state():
    offenders = []
    for path in SOURCES:
        if rel(path) in ("runs/lifecycle.py", "store/db.py"):
            continue
        for node in ast.walk(tree(path)):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr in STATE_WRITERS:
                offenders.append(f"{rel(path)}:{node.lineno} .{node.func.attr}()")
    assert offenders == []
    # and the store itself writes `state` nowhere else
    db = (PKG / "store" / "db.py").read_text(encoding="utf-8")
    assert "state = 'crashed'" not in db and "UPDATE runs SET state" not in db


def test_module_and_function_sizes():
    too_long = [f"{rel(p)}: {n} lines" for p in SOURCES
                if (n := len(p.read_text(encoding="utf-8").splitlines())) > 350]
    big_functions = []
    for path in SOURCES:
        for node in ast.walk(tree(path)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > 80:
                    big_functions.append(f"{rel(path)}:{node.name} {n} lines")
    assert too_long == []
    assert big_functions == []


def test_the_training_loop_takes_one_hooks_object():
    from cnn_tracker.training.engine import TrainHooks, train

    params = inspect.signature(train).parameters
    assert list(params)[:3] == ["cfg", "data", "hooks"]
    assert not [p for p in params if p.startswith(("on_", "should_", "after_", "stop_"))]
    assert issubclass(TrainHooks, object) and callable(TrainHooks().should_stop)
    lines = inspect.getsource(train).splitlines()
    assert len(lines) <= 120


def test_status_reads_never_write():
    """The results layer calls no store method that writes."""
    writes = (*STATE_WRITERS, "update_run", "record_epoch", "set_checkpoint", "heartbeat",
              "create_sweep")
    offenders = []
    for path in sorted((PKG / "results").rglob("*.py")):
        for node in ast.walk(tree(path)):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr in writes:
                offenders.append(f"{rel(path)}:{node.lineno} .{node.func.attr}()")
            if isinstance(node, ast.Attribute) and node.attr == "reap_stale":
                offenders.append(f"{rel(path)}:{node.lineno} reap_stale")
    assert offenders == []
