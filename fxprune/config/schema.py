"""What each key of a pruning configuration may hold: one check per key, turning an entry into a value.

A check returns the validated value or raises the entry's :class:`~fxprune.errors.ConfigError`
(naming the line and key, and saying what is allowed). Adding a key means adding a
:class:`~fxprune.config.PruneConfig` field, a check and an entry in ``CHECKS``.

Example:
    >>> entries = read_entries("schedule: {steps: 3, kind: agp}", "prune.yaml", KEYS)
    >>> CHECKS["schedule"](entries["schedule"])
    ScheduleSpec(steps=3, kind='agp')
"""

from __future__ import annotations

import math
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..passes.capture import FRONT_ENDS
from .yaml_entries import Entry

__all__ = ["CHECKS", "FRONT_ENDS", "IMPORTANCES", "KEYS", "SCHEDULE_KINDS", "ScheduleSpec"]

IMPORTANCES = ("l1", "l2", "bn_scale", "random", "taylor")
SCHEDULE_KINDS = ("linear", "agp")

KEYS = ("version", "importance", "ratios", "ignore", "round_to", "exact", "global_ranking", "max_ratio",
        "target_macs", "target_params", "schedule", "calibration_batches", "capture", "check_capture")


@dataclass(frozen=True)
class ScheduleSpec:
    """``schedule: {steps: N, kind: linear | agp}``."""

    steps: int
    kind: str = "linear"


def _number(entry: Entry, low: float, high: float, what: str, low_open: bool = False) -> float:
    value = entry.value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) \
            or not (low < value if low_open else low <= value) or not value < high:
        bracket = "(" if low_open else "["
        raise entry.fail(f"must be a number in {bracket}{low:g}, {high:g}) ({what}), got {value!r}")
    return float(value)


def _ratio(entry: Entry) -> float:
    return _number(entry, 0.0, 1.0, "the fraction of channels to remove")


def _fraction(entry: Entry) -> float | None:
    return None if entry.value is None else _number(entry, 0.0, 1.0, "the fraction of the original to keep", True)


def _flag(entry: Entry) -> bool:
    if not isinstance(entry.value, bool):
        raise entry.fail(f"must be true or false, got {entry.value!r}")
    return entry.value


def _positive_int(entry: Entry, optional: bool = True) -> int | None:
    if entry.value is None and optional:
        return None
    if isinstance(entry.value, bool) or not isinstance(entry.value, int) or entry.value < 1:
        raise entry.fail(f"must be a positive integer{' or null' if optional else ''}, got {entry.value!r}")
    return entry.value


def _choice(entry: Entry, options: tuple[str, ...]) -> str:
    if entry.value not in options:
        raise entry.fail(f"must be one of {', '.join(options)}, got {entry.value!r}")
    return entry.value


def _version(entry: Entry) -> int:
    if entry.value != 1 or isinstance(entry.value, bool):
        raise entry.fail(f"unsupported version {entry.value!r}; this fxprune reads version: 1")
    return 1


def _ratios(entry: Entry) -> float | Mapping[Any, float]:
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
    return types.MappingProxyType({k: _ratio(child) for k, child in zip(keys, children, strict=True)})


def _ignore(entry: Entry) -> tuple[str, ...]:
    value = [entry.value] if isinstance(entry.value, str) else entry.value
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise entry.fail(f"must be a list of module-name patterns (strings), got {entry.value!r}")
    return tuple(value)


def _schedule(entry: Entry) -> ScheduleSpec | None:
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


CHECKS: dict[str, Callable[[Entry], Any]] = {
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
    "capture": lambda e: _choice(e, FRONT_ENDS),
    "check_capture": _flag,
}
