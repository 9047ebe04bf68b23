"""Planning against a latency model: the widths a group may take, and the greedy path HALP takes through them.

Every prunable group gets a ladder of candidate widths (:func:`candidate_widths`):
multiples of 8 (the channel blocks CPU kernels are built around) spread from its full
width down to what ``max_ratio`` allows. Which of those rungs are worth taking is left
to the measured latency model: a planner step moves one group down 1 to 3 rungs, and
the step chosen is the one that loses the least importance per predicted millisecond
saved (Shen et al., *Structural Pruning via Latency-Saliency Knapsack*, HALP,
arXiv 2110.10811, greedy form). A rung that the runtime does not run faster than the
one above it saves nothing and is skipped over. Repeating the step until no step saves
time gives a path of plans, from the model itself to the smallest; the caller picks the
point on it that meets the budget when measured.

Importance is each channel's score over its group's mean score, so groups ranked by
different magnitudes compare, as with global ranking.

Example:
    >>> path = latency_path(groups, scores, find_layers(traced, groups), latency_model, allowed, rest_ms=2.0)
    >>> step = next(s for s in path if s.predicted_ms <= 10.0)
    >>> plan = make_plan(groups, scores, dict(step.ratios))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .groups import Groups
from .layer_widths import Layer, layer_widths
from .plan import keep_at, kept_count

__all__ = ["LayerLatency", "LatencyStep", "candidate_widths", "latency_path"]

_BLOCK = 8
_RUNGS = 16
_LOOKAHEAD = 3


class LayerLatency(Protocol):
    """What the planner needs from a latency model: the run time of a layer at given widths."""

    def layer_ms(self, layer: Layer, in_channels: int, out_channels: int) -> float:
        """Milliseconds ``layer`` takes with ``in_channels`` inputs and ``out_channels`` outputs."""
        ...


@dataclass(frozen=True)
class LatencyStep:
    """One point on the planner's path: the ratio of every group cut so far and what it is predicted to cost."""

    ratios: Mapping[int, float]
    predicted_ms: float
    kept_importance: float


def candidate_widths(size: int, min_keep: int = 1) -> tuple[int, ...]:
    """The widths, largest first, that a group of ``size`` channels may be given.

    About 16 evenly spread targets, each rounded down to a multiple of 8 (and to a
    multiple of 16 too, so that the measurements can show which block the kernels
    prefer); groups of at most 16 channels step by a quarter of their size.

    Example:
        >>> candidate_widths(64)
        (64, 56, 48, 40, 32, 24, 16, 8)
    """
    if size <= 2 * _BLOCK:
        step = max(1, size // 4)
        widths = set(range(size, 0, -step))
    else:
        widths = {size}
        for k in range(1, _RUNGS):
            target = size * (1 - k / _RUNGS)
            widths |= {int(target // _BLOCK) * _BLOCK, int(target // (2 * _BLOCK)) * 2 * _BLOCK}
    return tuple(sorted((w for w in widths if w >= max(1, min_keep)), reverse=True)) or (size,)


def latency_path(groups: Groups, scores: Mapping[int, np.ndarray], layers: Sequence[Layer], model: LayerLatency,
                 allowed: Sequence[int], *, rest_ms: float = 0.0, max_ratio: float = 0.9) -> tuple[LatencyStep, ...]:
    """Greedy steps from no pruning to the smallest plan, each losing the least importance per millisecond saved.

    Args:
        groups, scores: the analysis's groups and one score per channel of each prunable group.
        layers: the conv and linear layers (:func:`fxprune.passes.layer_widths.find_layers`).
        model: prices a layer at given widths.
        allowed: indices of the groups the planner may cut (prunable, not ignored).
        rest_ms: time outside the layers at full width; it is taken to shrink with the layers'
            output activations (what memory-bound ops such as adds and pooling read).
        max_ratio: the largest fraction of any group's channels that may be removed.

    Returns:
        The path, first step the unpruned model; predicted latency decreases along it.
    """
    state = _PathState(groups, scores, layers, model, allowed, rest_ms, max_ratio)
    path = [state.step()]
    while (move := state.best_move()) is not None:
        state.apply(*move)
        path.append(state.step())
    return tuple(path)


class _PathState:
    """The rung of every group, the per-layer predictions at those rungs, and the best move of each group."""

    def __init__(self, groups: Groups, scores: Mapping[int, np.ndarray], layers: Sequence[Layer],
                 model: LayerLatency, allowed: Sequence[int], rest_ms: float, max_ratio: float) -> None:
        self.groups, self.scores, self.layers, self.model, self.rest_ms = groups, scores, layers, model, rest_ms
        self.widths = {g: candidate_widths(groups[g].size, kept_count(groups[g].size, max_ratio)) for g in allowed}
        self.rung = dict.fromkeys(allowed, 0)
        self.layers_of: dict[int, list[int]] = {g: [] for g in allowed}
        for index, layer in enumerate(layers):
            for g in layer.groups:
                if g in self.layers_of:
                    self.layers_of[g].append(index)
        self.neighbours = {g: {h for i in self.layers_of[g] for h in layers[i].groups if h in self.rung}
                           for g in allowed}
        self.masks: dict[tuple[int, int], np.ndarray] = {}
        self.normalised = {g: scores[g] / (np.abs(scores[g]).mean() + 1e-12) for g in allowed}
        self.total_importance = sum(float(v.sum()) for v in self.normalised.values()) or 1.0
        self.full_activation = sum(layer.out_channels * layer.activation for layer in layers) or 1
        self.kept: dict[int, np.ndarray] = {}
        self.layer_ms = [self._price(layer, self.kept) for layer in layers]
        self.activation = [layer_widths(layer, {})[1] * layer.activation for layer in layers]
        self.moves: dict[int, tuple[float, int, float] | None] = {}

    def mask(self, group: int, rung: int) -> np.ndarray:
        if (group, rung) not in self.masks:
            size = self.groups[group].size
            keep = keep_at(self.groups[group], self.scores[group], 1 - self.widths[group][rung] / size)
            mask = np.zeros(size, dtype=bool)
            mask[list(keep)] = True
            self.masks[group, rung] = mask
        return self.masks[group, rung]

    def importance(self, group: int, rung: int) -> float:
        return float(self.normalised[group][self.mask(group, rung)].sum())

    def _price(self, layer: Layer, kept: Mapping[int, np.ndarray]) -> float:
        return self.model.layer_ms(layer, *layer_widths(layer, kept))

    def _saving(self, group: int, rung: int) -> float:
        """Predicted milliseconds saved by moving ``group`` to ``rung``."""
        kept = {**self.kept, group: self.mask(group, rung)}
        saved = 0.0
        for index in self.layers_of[group]:
            layer = self.layers[index]
            saved += self.layer_ms[index] - self._price(layer, kept)
            activation = layer_widths(layer, kept)[1] * layer.activation
            saved += self.rest_ms * (self.activation[index] - activation) / self.full_activation
        return saved

    def _best_move_of(self, group: int) -> tuple[float, int, float] | None:
        now, best = self.importance(group, self.rung[group]), None
        for rung in range(self.rung[group] + 1, min(self.rung[group] + 1 + _LOOKAHEAD, len(self.widths[group]))):
            saved = self._saving(group, rung)
            if saved > 1e-9:
                cost = (now - self.importance(group, rung)) / saved
                if best is None or cost < best[0]:
                    best = (cost, rung, saved)
        return best

    def best_move(self) -> tuple[int, int] | None:
        for group in self.rung:
            if group not in self.moves:
                self.moves[group] = self._best_move_of(group)
        candidates = [(move[0], group, move[1]) for group, move in self.moves.items() if move is not None]
        if not candidates:
            return None
        _, group, rung = min(candidates)
        return group, rung

    def apply(self, group: int, rung: int) -> None:
        self.rung[group] = rung
        self.kept[group] = self.mask(group, rung)
        for index in self.layers_of[group]:
            layer = self.layers[index]
            self.layer_ms[index] = self._price(layer, self.kept)
            self.activation[index] = layer_widths(layer, self.kept)[1] * layer.activation
        for neighbour in self.neighbours[group] | {group}:
            self.moves.pop(neighbour, None)

    def step(self) -> LatencyStep:
        rest = self.rest_ms * sum(self.activation) / self.full_activation
        ratios = {g: 1 - self.widths[g][r] / self.groups[g].size for g, r in self.rung.items() if r}
        kept = sum(self.importance(g, r) for g, r in self.rung.items())
        return LatencyStep(ratios, sum(self.layer_ms) + rest, kept / self.total_importance)
