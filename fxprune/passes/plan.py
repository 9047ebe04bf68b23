"""Planning: which channels of each group to keep, from a ratio specification.

Ratios are fractions of channels to *remove*. A spec is one float for every group,
a mapping from module-name glob patterns to ratios (first match wins, matched
against the modules producing the group's channels), or a mapping from group
index to ratio. Planners only plan.
"""

from __future__ import annotations

import difflib
import fnmatch
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from ..errors import PlanError
from .groups import ChannelGroup, Groups

__all__ = ["PlanEntry", "Plan", "Ratios", "make_plan", "check_ratio", "keep_mask"]

Ratios = float | Mapping[str, float] | Mapping[int, float]


@dataclass(frozen=True)
class PlanEntry:
    """The decision for one group: its channels ``0..size-1`` and which are kept."""

    group: int
    name: str
    size: int
    ratio: float
    keep: tuple[int, ...]
    modules: tuple[str, ...] = ()

    @property
    def removed(self) -> int:
        return self.size - len(self.keep)


@dataclass(frozen=True)
class Plan:
    """Kept channels per pruned group; JSON-serialisable and applicable to another checkpoint."""

    entries: tuple[PlanEntry, ...]

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps({"format": "fxprune-plan", "version": 1,
                           "entries": [asdict(e) for e in self.entries]}, indent=indent)

    @classmethod
    def from_json(cls, text: str) -> Plan:
        try:
            data = json.loads(text)
            entries = tuple(PlanEntry(int(e["group"]), str(e["name"]), int(e["size"]), float(e["ratio"]),
                                      tuple(int(k) for k in e["keep"]), tuple(e.get("modules", ())))
                            for e in data["entries"])
        except (ValueError, KeyError, TypeError) as error:
            raise PlanError(f"not an fxprune plan: {error}") from error
        return cls(entries)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> Plan:
        return cls.from_json(Path(path).read_text())

    def check_against(self, groups: Groups) -> None:
        """Raise PlanError unless every entry names a prunable group of the same size."""
        for entry in self.entries:
            if entry.group >= len(groups) or groups[entry.group].size != entry.size \
                    or groups[entry.group].name != entry.name:
                raise PlanError(f"plan entry for group #{entry.group} ({entry.name}, {entry.size} channels) does "
                                "not match this model: was the plan made for another architecture?")
            if not groups[entry.group].prunable and entry.removed:
                raise PlanError(f"plan prunes group #{entry.group} ({entry.name}), which is frozen here: "
                                f"{groups[entry.group].reason}")
            if any(not 0 <= k < entry.size for k in entry.keep) or not entry.keep:
                raise PlanError(f"plan entry for group #{entry.group} keeps invalid channels")
            dropped_pins = set(groups[entry.group].pinned.tolist()) - set(entry.keep)
            if dropped_pins:
                raise PlanError(f"plan removes channels {sorted(dropped_pins)} of group #{entry.group} "
                                f"({entry.name}), which meet untracked values and must be kept")


def check_ratio(value: Any, where: str = "ratio") -> float:
    """A ratio as a float in [0, 1), or PlanError saying what is wrong."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise PlanError(f"{where} must be a number in [0, 1), got {value!r}")
    value = float(value)
    if math.isnan(value) or not 0.0 <= value < 1.0:
        raise PlanError(f"{where} must be in [0, 1) (the fraction of channels to remove), got {value}")
    return value


def _matches(group: ChannelGroup, pattern: str) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for name in group.producers)


def _check_patterns(patterns: Sequence[str], names: Sequence[str], what: str) -> None:
    for pattern in patterns:
        if not isinstance(pattern, str):
            raise PlanError(f"{what} patterns must be strings, got {pattern!r}")
        if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
            close = difflib.get_close_matches(pattern, names, n=5, cutoff=0.5)
            hint = f"; close names: {', '.join(close)}" if close else ""
            raise PlanError(f"{what} pattern '{pattern}' matches no module{hint}")


def resolve_ratios(groups: Groups, ratios: Ratios, ignore: Sequence[str],
                   module_names: Sequence[str]) -> dict[int, float]:
    """The ratio of every prunable group that is not ignored."""
    if isinstance(ignore, str):
        ignore = [ignore]
    _check_patterns(list(ignore), module_names, "ignore")
    if isinstance(ratios, Mapping) and ratios and all(isinstance(k, int) for k in ratios):
        return _by_index(groups, cast(Mapping[int, float], ratios))
    if isinstance(ratios, Mapping):
        patterns = cast(Mapping[str, float], ratios)  # keys are all indices (above) or all patterns
        spec = {p: check_ratio(r, f"ratio for '{p}'") for p, r in patterns.items()}
        _check_patterns(list(spec), module_names, "ratio")
    else:
        spec = {"*": check_ratio(ratios)}
    chosen = {}
    for group in groups.prunable:
        if any(_matches(group, p) for p in ignore):
            continue
        ratio = next((r for p, r in spec.items() if p == "*" or _matches(group, p)), 0.0)
        if ratio > 0:
            chosen[group.index] = ratio
    return chosen


def _by_index(groups: Groups, ratios: Mapping[int, float]) -> dict[int, float]:
    """Ratios keyed by group index (sensitivity analysis and schedules plan this way)."""
    chosen = {}
    for index, ratio in ratios.items():
        if not 0 <= index < len(groups) or not groups[index].prunable:
            raise PlanError(f"group #{index} is not a prunable group of this model")
        if check_ratio(ratio, f"ratio for group #{index}") > 0:
            chosen[index] = float(ratio)
    return chosen


def kept_count(size: int, ratio: float, round_to: int | None = None) -> int:
    """Channels kept out of ``size`` at ``ratio``: at least one, a multiple of ``round_to`` when possible."""
    keep = size - math.floor(size * ratio + 1e-9)
    if round_to and round_to > 1:
        keep = max(round_to, round_to * round(keep / round_to))
    return max(1, min(size, keep))


def make_plan(groups: Groups, scores: Mapping[int, np.ndarray], ratios: Ratios, *, ignore: Sequence[str] = (),
              round_to: int | None = None, module_names: Sequence[str] = (), global_ranking: bool = False,
              max_ratio: float = 0.9) -> Plan:
    """Keep the highest-scoring channels of every group at its ratio.

    With ``global_ranking`` the ratio is the fraction of all prunable channels to
    remove, taken where scores (normalised by each group's mean) are lowest, at most
    ``max_ratio`` of any layer's channels.

    Example:
        >>> plan = make_plan(groups, score_groups(groups, gm), {"layer4.*": 0.7, "*": 0.3})
    """
    if round_to is not None and (isinstance(round_to, bool) or not isinstance(round_to, int) or round_to < 1):
        raise PlanError(f"round_to must be a positive integer, got {round_to!r}")
    names = list(module_names) or sorted({n for g in groups for n in g.modules})
    chosen = resolve_ratios(groups, ratios, ignore, names)
    if global_ranking:
        if isinstance(ratios, Mapping):
            raise PlanError("global ranking takes one float ratio (the fraction of all channels), not patterns")
        # 1 or more means no cap; anything else must be a ratio (a string or None is not).
        uncapped = isinstance(max_ratio, (int, float)) and not isinstance(max_ratio, bool) and max_ratio >= 1
        kept = _global_keep(groups, scores, chosen, 1.0 if uncapped else check_ratio(max_ratio, "max_ratio"),
                            round_to)
    else:
        kept = {index: _top(scores[index], ratio, round_to, groups[index].parts or (np.arange(groups[index].size),),
                            groups[index].segments, groups[index].pinned) for index, ratio in chosen.items()}
    entries = [PlanEntry(index, groups[index].name, groups[index].size, chosen[index], keep, groups[index].modules)
               for index, keep in sorted(kept.items()) if len(keep) < groups[index].size]
    return Plan(tuple(entries))


def _global_keep(groups: Groups, scores: Mapping[int, np.ndarray], chosen: Mapping[int, float], max_ratio: float,
                 round_to: int | None) -> dict[int, tuple[int, ...]]:
    """Remove the globally lowest normalised scores, capping each part at ``max_ratio``."""
    ratio = max(chosen.values(), default=0.0)
    candidates, caps, kept = [], [], {}
    for index in chosen:
        group = groups[index]
        normalised = scores[index] / (np.abs(scores[index]).mean() + 1e-12)
        kept[index] = np.ones(group.size, dtype=bool)
        pinned = set(group.pinned.tolist())
        for part in group.parts or (np.arange(group.size),):
            caps.append(part.size - kept_count(part.size, max_ratio))
            candidates += [(float(normalised[c]), index, len(caps) - 1, int(c)) for c in part if int(c) not in pinned]
    budget = math.floor(len(candidates) * ratio + 1e-9)
    removed = [0] * len(caps)
    for _, index, part_index, channel in sorted(candidates):
        if budget == 0:
            break
        if removed[part_index] < caps[part_index]:
            removed[part_index] += 1
            kept[index][channel] = False
            budget -= 1
    result = {}
    for index, mask in kept.items():
        group = groups[index]
        for part in group.parts or (np.arange(group.size),):
            target = kept_count(part.size, 1 - mask[part].sum() / part.size, round_to) if round_to else 1
            order = part[np.argsort(-scores[index][part], kind="stable")]
            mask[order[:target]] = True
        for segment in group.segments:
            if not mask[segment].any():
                mask[segment[np.argmax(scores[index][segment])]] = True
        result[index] = tuple(int(i) for i in np.flatnonzero(mask))
    return result


def _top(scores: np.ndarray, ratio: float, round_to: int | None, parts: Sequence[np.ndarray],
         segments: Sequence[np.ndarray], pinned: np.ndarray) -> tuple[int, ...]:
    """The best channels of every part at ``ratio``, plus the best of any segment left empty
    and every pinned channel."""
    kept = np.zeros(scores.size, dtype=bool)
    kept[pinned] = True
    for part in parts:
        order = part[np.argsort(-scores[part], kind="stable")]
        kept[order[:kept_count(part.size, ratio, round_to)]] = True
    for segment in segments:
        if not kept[segment].any():
            kept[segment[np.argmax(scores[segment])]] = True
    return tuple(int(i) for i in np.flatnonzero(kept))


def keep_mask(groups: Groups, plan: Plan) -> np.ndarray:
    """For every channel id: does it survive the plan?"""
    plan.check_against(groups)
    removed_roots = np.zeros(groups.record.size, dtype=bool)
    for entry in plan.entries:
        roots = groups[entry.group].roots
        removed = np.setdiff1d(np.arange(entry.size), np.asarray(entry.keep, dtype=np.int64))
        removed_roots[roots[removed]] = True
    return ~removed_roots[groups.roots] if groups.record.size else np.ones(0, dtype=bool)
