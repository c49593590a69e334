"""Reading what users and files give us, within budgets: YAML, JSON, names and echoed text.

One owner for each rule: YAML is loaded with duplicate keys refused and a size, alias and depth
budget (an alias-expansion bomb is a short error, not megabytes of output); JSON with a depth
bound; a name that becomes a folder is a name (no path separators, no ``..``); a value echoed in
an error message is clipped to one short line; text that came from a file reaches the terminal
with its control characters escaped. Nothing here imports click, torch or wandb.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from pathlib import Path
from typing import Any, Mapping

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, ScalarNode

from cnn_tracker.errors import ConfigError, yaml_problem

MAX_FILE_BYTES = 1_000_000  # a config or sweep file is text of at most this size
MAX_ALIASES = 100  # YAML aliases (*name) in one document
MAX_DEPTH = 32  # nesting of YAML / JSON collections
MAX_NODES = 100_000  # YAML values once every alias is expanded (as a dump or a message would)
MAX_ECHO = 80  # characters of a user's value repeated in a message
MAX_NAME = 128  # characters of a run name (it names a folder)


class BudgetError(yaml.YAMLError):
    """A YAML document over its alias or depth budget, or with a duplicate key (with a mark)."""

    def __init__(self, problem: str, mark=None):
        super().__init__(problem)
        self.problem, self.problem_mark = problem, mark


class _BudgetLoader(yaml.SafeLoader):
    """PyYAML's safe loader, counting aliases and depth while it composes the node tree."""

    def __init__(self, stream):
        super().__init__(stream)
        self._aliases = 0
        self._depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise BudgetError(f"more than {MAX_ALIASES} aliases (an alias-expansion bomb?)",
                                  self.peek_event().start_mark)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise BudgetError(f"nested deeper than {MAX_DEPTH} levels",
                                  self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        if isinstance(node, MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if not isinstance(key_node, ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node)
                line = key_node.start_mark.line + 1
                try:
                    if key in seen:
                        raise BudgetError(f"duplicate key {clip(key)} (first at line {seen[key]}); "
                                          "each key may appear once", key_node.start_mark)
                    seen[key] = line
                except TypeError:
                    continue  # unhashable: the base class reports it
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str) -> Any:
    """``yaml.safe_load`` with duplicate keys, too many aliases and deep nesting refused (a
    ``yaml.YAMLError`` with a line mark, as PyYAML's own errors)."""
    loader = _BudgetLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node) > MAX_NODES:
            raise BudgetError(f"more than {MAX_NODES} values once its aliases are expanded (an "
                              "alias-expansion bomb?)", node.start_mark)
        return loader.construct_document(node)
    except RecursionError:
        raise BudgetError(f"nested deeper than {MAX_DEPTH} levels") from None
    except (ValueError, OverflowError, TypeError) as exc:  # e.g. a timestamp out of range
        raise ConstructorError(None, None, f"a value cannot be read ({first(exc)})") from None
    finally:
        loader.dispose()


def _expanded_size(root) -> int:
    """Values in the document with every alias expanded, memoized per node (no expansion done)."""
    sizes: dict[int, int] = {}
    started: set[int] = set()
    stack = [(root, False)]
    while stack:
        node, done = stack.pop()
        if id(node) in sizes:
            continue
        children = ([n for pair in node.value for n in pair] if isinstance(node, MappingNode)
                    else [] if isinstance(node, ScalarNode) else list(node.value))
        if not done:
            if id(node) in started:  # a recursive anchor (&a [*a]): expands forever
                return 10 * MAX_NODES
            started.add(id(node))
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in sizes)
        else:
            sizes[id(node)] = min(1 + sum(sizes.get(id(c), 1) for c in children), 10 * MAX_NODES)
    return sizes[id(root)]


def first(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return clip(lines[0], quote=False) if lines else type(exc).__name__


def depth(value: Any, limit: int = MAX_DEPTH) -> int:
    """How deeply lists and dicts nest in ``value`` (iteratively; stops counting past ``limit``)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (list, tuple, dict)):
            deepest = max(deepest, level)
            if level > limit:
                return level
            children = item.values() if isinstance(item, dict) else item
            stack.extend((c, level + 1) for c in children)
    return deepest


def load_json(text: str, limit: int = MAX_DEPTH) -> Any:
    """``json.loads`` with nesting bounded; a ``ValueError`` naming the problem otherwise."""
    if len(text) > MAX_FILE_BYTES:
        raise ValueError(f"longer than {MAX_FILE_BYTES} characters")
    try:
        value = json.loads(text)
    except RecursionError:
        raise ValueError(f"nested deeper than {limit} levels") from None
    except json.JSONDecodeError as exc:
        raise ValueError(exc.msg) from None
    if depth(value, limit) > limit:
        raise ValueError(f"nested deeper than {limit} levels")
    return value


# C0 and C1 control characters, DEL, and Unicode format characters that reorder or hide text
# (bidi overrides, zero-width joiners): what could clear a screen, set a title or fake output.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def printable(text: Any, keep_newlines: bool = False) -> str:
    """``text`` for a terminal: control characters as ``\\x1b``-style escapes."""
    def escape(m: re.Match) -> str:
        ch = m.group(0)
        if keep_newlines and ch == "\n":
            return ch
        return f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}"
    return _CONTROL.sub(escape, str(text))


def clip(value: Any, limit: int = MAX_ECHO, quote: bool = True) -> str:
    """A user's value as a message repeats it: ``repr`` (or str), escaped, at most ``limit``
    characters (``...`` and the full length when cut)."""
    shown = printable(repr(value) if quote else str(value))
    if len(shown) <= limit:
        return shown
    return f"{shown[:limit]}... ({len(shown)} characters)"


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a folder (a run's outputs/<name>), or None when it can."""
    if not name.strip():
        return "it is empty"
    if len(name) > MAX_NAME:
        return f"it is longer than {MAX_NAME} characters"
    if "/" in name or "\\" in name:
        return "it holds a path separator"
    if ".." in name or name.strip() == ".":
        return "it holds '..' or is '.'"
    if any(unicodedata.category(c) in ("Cc", "Cf") for c in name):
        return "it holds control characters"
    return None


def unwrap_wandb_values(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """Accept W&B's ``config-defaults.yaml`` form (``key: {value: x, desc: ...}``) as plain values."""
    out = {}
    for key, value in mapping.items():
        if str(key).startswith("_") or key == "wandb_version":  # W&B's own bookkeeping keys
            continue
        if isinstance(value, Mapping) and "value" in value:
            value = value["value"]
        out[str(key)] = value
    return out


def load_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The key → value mapping of a YAML config file, unvalidated (make_config validates)."""
    p = Path(path)
    try:
        if p.stat().st_size > MAX_FILE_BYTES:
            raise ConfigError(f"config file '{p}' is {p.stat().st_size} bytes: a config file is a "
                              f"few key: value lines (at most {MAX_FILE_BYTES} bytes).")
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file '{p}' does not exist: check the path given to --config.")
    except UnicodeDecodeError:
        raise ConfigError(f"config file '{p}' is not a text file: --config takes a YAML file.") from None
    except OSError as exc:
        raise ConfigError(f"config file '{p}' cannot be read ({exc.strerror}).") from None
    try:
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"config file '{p}' is not valid YAML{yaml_problem(exc)}. "
            "Fix the syntax (a mapping of key: value lines)."
        ) from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"config file '{p}' must be a mapping of key: value lines, "
            f"got a {type(data).__name__}."
        )
    return unwrap_wandb_values(data)
