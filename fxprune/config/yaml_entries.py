"""Reading a pruning configuration's YAML with the line of every key, for errors that point at it.

PyYAML's composed nodes keep their positions, so each top-level key (and each entry of
``ratios`` and ``schedule``) becomes an :class:`Entry` holding its value and line; unknown
or repeated keys and YAML syntax errors become a :class:`ConfigError` naming file, line and key.

Example:
    >>> entries = read_entries("ratios: 0.5", "prune.yaml", ("ratios", "exact"))
    >>> entries["ratios"].value, entries["ratios"].line
    (0.5, 1)
"""

from __future__ import annotations

import difflib
import re
from typing import Any

import yaml

from ..errors import ConfigError

__all__ = ["Entry", "read_entries"]


class Entry:
    """A key's constructed value with the node it came from (for line numbers)."""

    def __init__(self, key: str, value: Any, node: yaml.Node, source: str, raw: Any = None) -> None:
        self.key, self.value, self.node, self.source, self.raw = key, value, node, source, raw
        self.children: list[Entry] = []

    @property
    def line(self) -> int:
        return _line(self.node)

    def fail(self, problem: str) -> ConfigError:
        return ConfigError(f"{self.source}, line {self.line}: key '{self.key}': {problem}")


def read_entries(text: str, source: str, keys: tuple[str, ...]) -> dict[str, Entry]:
    """The top-level keys of configuration text, each with its value and line; ``keys`` are the allowed ones."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            raise ConfigError(f"{source}: the file is empty; start with 'version: 1' and 'ratios: 0.5'")
        if not isinstance(root, yaml.MappingNode):
            raise ConfigError(f"{source}, line {_line(root)}: the file must be a mapping of keys "
                              f"({', '.join(keys)}), not a {_kind(root)}")
        return _entries(root, loader, source, "", keys)
    except yaml.MarkedYAMLError as error:
        raise _syntax_error(error, text, source) from error
    finally:
        loader.dispose()


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _kind(node: yaml.Node) -> str:
    kinds: dict[type[yaml.Node], str] = {yaml.MappingNode: "mapping", yaml.SequenceNode: "list"}
    return kinds.get(type(node), "single value")


def _entries(node: yaml.MappingNode, loader: yaml.SafeLoader, source: str, prefix: str,
             allowed: tuple[str, ...]) -> dict[str, Entry]:
    found: dict[str, Entry] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        name = f"{prefix}{key}"
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise ConfigError(f"{source}, line {_line(key_node)}: unknown key '{name}'; {hint}"
                              f"allowed keys: {', '.join(allowed)}")
        if key in found:
            raise ConfigError(f"{source}, line {_line(key_node)}: key '{name}' is given twice "
                              f"(first at line {found[key].line})")
        found[key] = Entry(name, loader.construct_object(value_node, deep=True), value_node, source, key)
        if isinstance(value_node, yaml.MappingNode) and key in ("schedule", "ratios"):
            found[key].children = _children(value_node, loader, source, name)
    return found


def _children(node: yaml.MappingNode, loader: yaml.SafeLoader, source: str, name: str) -> list[Entry]:
    children: list[Entry] = []
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        twice = [c for c in children if c.raw == key]
        if twice:
            raise ConfigError(f"{source}, line {_line(key_node)}: key '{name}.{key}' is given twice "
                              f"(first at line {twice[0].line})")
        children.append(Entry(f"{name}.{key}", loader.construct_object(value_node, deep=True), value_node, source,
                              key))
    return children


def _syntax_error(error: yaml.MarkedYAMLError, text: str, source: str) -> ConfigError:
    mark = error.problem_mark or error.context_mark
    line = mark.line + 1 if mark is not None else 1
    # The key the broken construct belongs to: the context (an unclosed bracket) starts in it.
    start = error.context_mark.line + 1 if error.context_mark is not None else line
    key = None
    for candidate in reversed(text.splitlines()[:start]):
        match = re.match(r"([A-Za-z_][\w-]*)\s*:", candidate)
        if match:
            key = match.group(1)
            break
    where = f" (in key '{key}')" if key else ""
    problem = error.problem or error.context or "malformed YAML"
    return ConfigError(f"{source}, line {line}: YAML syntax error{where}: {problem}")
