"""Pruning configuration files: a YAML schedule in the spirit of Intel Distiller.

Example file::

    version: 1
    importance: l1          # l1 | l2 | bn_scale | random | taylor
    ratios:                 # or one float; integer keys are group indices
      "layer4.*": 0.6
      "*": 0.4
    ignore: ["fc"]
    round_to: 8
    exact: false
    global_ranking: false
    target_macs: null       # or a budget, e.g. 0.5 (then leave ratios out)
    schedule: {steps: 3, kind: agp}

Also accepted: ``max_ratio`` (cap per layer with global ranking, default 0.9),
``target_params`` (a parameter budget instead of ``target_macs``) and
``calibration_batches`` (how many batches Taylor importance uses). Every key and type
is checked when the file is loaded; a :class:`ConfigError` names the file, the line
and the key, and says what is allowed.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
import yaml
from torch import fx, nn

from .errors import FxPruneError, PlanError

__all__ = ["ConfigError", "PruneConfig", "ScheduleSpec", "load_config", "parse_config"]

IMPORTANCES = ("l1", "l2", "bn_scale", "random", "taylor")
SCHEDULE_KINDS = ("linear", "agp")


class ConfigError(FxPruneError, ValueError):
    """A pruning configuration file is malformed; the message names the file, line and key."""


@dataclass(frozen=True)
class ScheduleSpec:
    """``schedule: {steps: N, kind: linear | agp}``."""

    steps: int
    kind: str = "linear"


@dataclass(frozen=True)
class PruneConfig:
    """A validated configuration; :meth:`run` prunes a model with it.

    ``ratios`` is a float or a read-only mapping (patterns or group indices to ratios).
    ``lines`` maps each key given in the file to its line, for later error messages.
    """

    importance: str = "l1"
    ratios: float | Mapping[Any, float] | None = None
    ignore: tuple[str, ...] = ()
    round_to: int | None = None
    exact: bool = False
    global_ranking: bool = False
    max_ratio: float = 0.9
    target_macs: float | None = None
    target_params: float | None = None
    schedule: ScheduleSpec | None = None
    calibration_batches: int | None = None
    version: int = 1
    source: str = "<string>"
    lines: Mapping[str, int] = field(default_factory=dict, repr=False, compare=False)

    def run(self, model: nn.Module, example_inputs: Any, *, fine_tune: Callable[[fx.GraphModule, int], Any] | None = None,
            calibration: Iterable[Any] | None = None, loss_fn: Callable[[Any, Any], torch.Tensor] | None = None,
            progress: bool = True) -> Any:
        """Prune ``model`` (not modified): one ``fxprune.compile``, or the iterative schedule.

        Args:
            fine_tune: ``fine_tune(module, step)`` after each step (after the single compile: step 1).
            calibration: ``(inputs, target)`` batches for ``importance: taylor`` (re-iterable
                when there is a schedule: every step re-scores).
            loss_fn: loss for Taylor importance (default cross-entropy).

        Returns:
            A :class:`fxprune.CompileResult` without ``schedule``, else a ``ScheduleResult``.

        Raises:
            ConfigError: taylor without calibration data, or patterns that match no module.

        Example:
            >>> result = load_config("prune.yaml").run(model, (x,))
            >>> print(result.summary())
        """
        from .api import compile
        from .passes.schedule import prune_iteratively

        importance = self._importance(calibration, loss_fn)
        options: dict[str, Any] = {
            "exact": self.exact, "ignore": self.ignore, "round_to": self.round_to, "importance": importance,
            "global_ranking": self.global_ranking, "max_ratio": self.max_ratio, "target_macs": self.target_macs,
            "target_params": self.target_params}
        ratios = dict(self.ratios) if isinstance(self.ratios, Mapping) else self.ratios
        try:
            if self.schedule is not None:
                return prune_iteratively(model, example_inputs, ratios, steps=self.schedule.steps,
                                         schedule=self.schedule.kind, fine_tune=fine_tune, progress=progress,
                                         **options)
            result = compile(model, ratios, example_inputs=example_inputs, **options)
        except PlanError as error:
            raise ConfigError(f"{self.source}: {error} (check {self._where('ratios', 'ignore')})") from error
        replaced = fine_tune(result.module, 1) if fine_tune is not None else None
        return dataclasses.replace(result, module=cast(fx.GraphModule, replaced)) if isinstance(replaced, nn.Module) \
            else result

    def _importance(self, calibration: Iterable[Any] | None, loss_fn: Any) -> Any:
        if self.importance != "taylor":
            return self.importance
        if calibration is None:
            raise ConfigError(f"{self.source}: {self._where('importance')}: 'taylor' needs calibration data: "
                              "pass run(..., calibration=loader) with (inputs, target) batches, or choose l1")
        from .passes.taylor import Taylor

        return Taylor(calibration, loss_fn or F.cross_entropy, batches=self.calibration_batches)

    def _where(self, *keys: str) -> str:
        found = [f"'{k}' at line {self.lines[k]}" for k in keys if k in self.lines]
        return " and ".join(found) or f"keys {', '.join(repr(k) for k in keys)}"


def load_config(path: str | Path) -> PruneConfig:
    """Read and validate a YAML pruning configuration.

    Raises:
        ConfigError: unreadable file, YAML syntax error, unknown key, wrong type or value
            out of range; the message names the key and the line.

    Example:
        >>> config = load_config("prune.yaml")
        >>> result = config.run(model, (torch.randn(1, 3, 224, 224),))
    """
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise ConfigError(f"cannot read pruning config {path}: {error.strerror or error}") from error
    return parse_config(text, str(path))


def parse_config(text: str, source: str = "<string>") -> PruneConfig:
    """Validate configuration text (what :func:`load_config` does after reading the file)."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            raise ConfigError(f"{source}: the file is empty; start with 'version: 1' and 'ratios: 0.5'")
        if not isinstance(root, yaml.MappingNode):
            raise ConfigError(f"{source}, line {_line(root)}: the file must be a mapping of keys "
                              f"({', '.join(_KEYS)}), not a {_kind(root)}")
        values = _entries(root, loader, source, "")
    except yaml.MarkedYAMLError as error:
        raise _syntax_error(error, text, source) from error
    finally:
        loader.dispose()
    return _build(values, source)


_KEYS = ("version", "importance", "ratios", "ignore", "round_to", "exact", "global_ranking", "max_ratio",
         "target_macs", "target_params", "schedule", "calibration_batches")


class _Entry:
    """A key's constructed value with the node it came from (for line numbers)."""

    def __init__(self, key: str, value: Any, node: yaml.Node, source: str, raw: Any = None) -> None:
        self.key, self.value, self.node, self.source, self.raw = key, value, node, source, raw
        self.children: list[_Entry] = []

    @property
    def line(self) -> int:
        return _line(self.node)

    def fail(self, problem: str) -> ConfigError:
        return ConfigError(f"{self.source}, line {self.line}: key '{self.key}': {problem}")


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _kind(node: yaml.Node) -> str:
    return {yaml.MappingNode: "mapping", yaml.SequenceNode: "list"}.get(type(node), "single value")


def _entries(node: yaml.MappingNode, loader: yaml.SafeLoader, source: str, prefix: str,
             allowed: tuple[str, ...] = _KEYS) -> dict[str, _Entry]:
    found: dict[str, _Entry] = {}
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
        found[key] = _Entry(name, loader.construct_object(value_node, deep=True), value_node, source, key)
        if isinstance(value_node, yaml.MappingNode) and key in ("schedule", "ratios"):
            found[key].children = _children(value_node, loader, source, name)
    return found


def _children(node: yaml.MappingNode, loader: yaml.SafeLoader, source: str, name: str) -> list[_Entry]:
    children: list[_Entry] = []
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        twice = [c for c in children if c.raw == key]
        if twice:
            raise ConfigError(f"{source}, line {_line(key_node)}: key '{name}.{key}' is given twice "
                              f"(first at line {twice[0].line})")
        children.append(_Entry(f"{name}.{key}", loader.construct_object(value_node, deep=True), value_node, source,
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


def _build(values: dict[str, _Entry], source: str) -> PruneConfig:
    parsed: dict[str, Any] = {}
    for key, entry in values.items():
        parsed[key] = _CHECKS[key](entry)
    config = PruneConfig(**parsed, source=source, lines={k: e.line for k, e in values.items()})
    budgets = [k for k in ("target_macs", "target_params") if parsed.get(k) is not None]
    if len(budgets) > 1:
        raise values["target_params"].fail("give one budget, target_macs or target_params, not both")
    if budgets and config.ratios is not None:
        raise values["ratios"].fail(f"ratios and {budgets[0]} exclude each other: a budget searches the ratio; "
                                    "remove one of them")
    if not budgets and config.ratios is None:
        raise ConfigError(f"{source}: key 'ratios' is missing: give 'ratios: 0.5' (or patterns), or a budget "
                          "'target_macs: 0.5'")
    if config.global_ranking and isinstance(config.ratios, Mapping):
        raise values["global_ranking"].fail("global ranking takes one float 'ratios' (the fraction of all "
                                            "channels), not patterns; set it to false or give one float")
    return config


def _number(entry: _Entry, low: float, high: float, what: str, low_open: bool = False) -> float:
    value = entry.value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) \
            or not (low < value if low_open else low <= value) or not value < high:
        bracket = "(" if low_open else "["
        raise entry.fail(f"must be a number in {bracket}{low:g}, {high:g}) ({what}), got {value!r}")
    return float(value)


def _ratio(entry: _Entry) -> float:
    return _number(entry, 0.0, 1.0, "the fraction of channels to remove")


def _fraction(entry: _Entry) -> float | None:
    return None if entry.value is None else _number(entry, 0.0, 1.0, "the fraction of the original to keep", True)


def _flag(entry: _Entry) -> bool:
    if not isinstance(entry.value, bool):
        raise entry.fail(f"must be true or false, got {entry.value!r}")
    return entry.value


def _positive_int(entry: _Entry, optional: bool = True) -> int | None:
    if entry.value is None and optional:
        return None
    if isinstance(entry.value, bool) or not isinstance(entry.value, int) or entry.value < 1:
        raise entry.fail(f"must be a positive integer{' or null' if optional else ''}, got {entry.value!r}")
    return entry.value


def _choice(entry: _Entry, options: tuple[str, ...]) -> str:
    if entry.value not in options:
        raise entry.fail(f"must be one of {', '.join(options)}, got {entry.value!r}")
    return entry.value


def _version(entry: _Entry) -> int:
    if entry.value != 1 or isinstance(entry.value, bool):
        raise entry.fail(f"unsupported version {entry.value!r}; this fxprune reads version: 1")
    return 1


def _ratios(entry: _Entry) -> float | Mapping[Any, float]:
    if not isinstance(entry.value, dict):
        if isinstance(entry.value, list):
            raise entry.fail("must be one float or a mapping of module patterns to ratios, not a list")
        return _ratio(entry)
    children = entry.children
    if not children:
        raise entry.fail("the mapping is empty: give 'pattern: ratio' entries, e.g. '\"*\": 0.5'")
    keys = [child.raw for child in children]
    if not (all(isinstance(k, str) for k in keys) or all(isinstance(k, int) and not isinstance(k, bool)
                                                         for k in keys)):
        raise entry.fail("keys must all be module-name patterns (strings) or all group indices (integers), "
                         f"got {keys!r}")
    return types.MappingProxyType({k: _ratio(child) for k, child in zip(keys, children)})


def _ignore(entry: _Entry) -> tuple[str, ...]:
    value = [entry.value] if isinstance(entry.value, str) else entry.value
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise entry.fail(f"must be a list of module-name patterns (strings), got {entry.value!r}")
    return tuple(value)


def _schedule(entry: _Entry) -> ScheduleSpec | None:
    if entry.value is None:
        return None
    if not isinstance(entry.value, dict):
        raise entry.fail(f"must be a mapping like {{steps: 3, kind: agp}}, got {entry.value!r}")
    children = {child.raw: child for child in entry.children}
    for name, child in children.items():
        if name not in ("steps", "kind"):
            raise child.fail("unknown key; a schedule has 'steps' (positive integer) and 'kind' (linear or agp)")
    if "steps" not in children:
        raise entry.fail("'steps' is missing, e.g. schedule: {steps: 3, kind: agp}")
    kind = _choice(children["kind"], SCHEDULE_KINDS) if "kind" in children else "linear"
    return ScheduleSpec(int(_positive_int(children["steps"], optional=False) or 1), kind)


_CHECKS: dict[str, Callable[[_Entry], Any]] = {
    "version": _version,
    "importance": lambda e: _choice(e, IMPORTANCES),
    "ratios": _ratios,
    "ignore": _ignore,
    "round_to": _positive_int,
    "exact": _flag,
    "global_ranking": _flag,
    "max_ratio": lambda e: 1.0 if e.value == 1 and not isinstance(e.value, bool) else _number(
        e, 0.0, 1.0, "the largest fraction removed from one layer; 1 for no cap", True),
    "target_macs": _fraction,
    "target_params": _fraction,
    "schedule": _schedule,
    "calibration_batches": _positive_int,
}
