"""Pruning to a latency budget: plan against a measured latency model, then correct by measuring the model.

The latency model prices each conv and linear at candidate widths; the planner's
greedy path (:func:`fxprune.passes.latency_plan.latency_path`) runs from the model
to its smallest plan, each step the cheapest in importance per predicted millisecond.
Predictions miss what fusion, layout changes between layers and a busy machine do to
the whole model, so the point on the path is chosen by measuring whole pruned models:
the ratio of measured to predicted latency at the last point measured rescales the
budget for the next guess (a secant step), bracketed by the points known to be over
and within the budget, for at most ``corrections`` models. The plan returned is the
one measured within the budget that keeps the most importance; when even the smallest
plan is over budget, that plan is returned with a warning giving the floor reached.

Example:
    >>> result = fxprune.compile(model, example_inputs=(x,), target_latency=0.5,
    ...                          latency=LatencySettings(threads=2))
    >>> result.latency.measured_ms <= result.latency.budget_ms
    True
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from torch import nn

from ..errors import RewriteError
from ..passes.latency_plan import LatencyStep, latency_path
from ..passes.layer_widths import Layer, find_layers
from ..passes.plan import Plan, make_plan, resolve_ratios
from ..pipeline import Analysis, apply_plan

__all__ = ["LatencyBackend", "LatencySearch", "latency_planner"]

_MARGIN = 0.97  # aim a little under the budget: medians of a busy machine wander by a few percent
_CLOSE_ENOUGH = 0.95  # a plan measured within 5% under the budget is not worth another measurement


class LatencyBackend(Protocol):
    """What a latency budget is measured with (:class:`fxprune.export.latency.OrtLatency`, or a fake in tests)."""

    def prepare(self, layers: Sequence[Layer]) -> None: ...

    def layer_ms(self, layer: Layer, in_channels: int, out_channels: int) -> float: ...

    def model_ms(self, module: nn.Module, example_inputs: Any) -> float: ...

    def describe(self) -> str: ...


@dataclass
class LatencySearch:
    """What the latency planner found, filled in as it runs (the driver reads it after the final rewrite)."""

    budget_ms: float
    original_ms: float
    predicted_ms: float = float("nan")
    measured_ms: float = float("nan")
    measurements: int = 1
    path: tuple[LatencyStep, ...] = field(default=(), repr=False)


def latency_planner(backend: LatencyBackend, scores: Mapping[int, np.ndarray], search: LatencySearch, *,
                    ignore: Sequence[str], module_names: Sequence[str], max_ratio: float, corrections: int,
                    warn_stacklevel: int) -> Callable[[Analysis], Plan]:
    """``plan_for`` for :func:`fxprune.pipeline.apply_with_retry`: the measured plan meeting ``search.budget_ms``."""

    def plan_for(current: Analysis) -> Plan:
        if search.original_ms <= search.budget_ms:
            search.predicted_ms = search.measured_ms = search.original_ms
            return Plan(())
        allowed = sorted(resolve_ratios(current.groups, 0.5, ignore, module_names))
        layers = find_layers(current.traced, current.groups)
        backend.prepare(layers)
        full = sum(backend.layer_ms(layer, layer.in_channels, layer.out_channels) for layer in layers)
        path = latency_path(current.groups, scores, layers, backend, allowed,
                            rest_ms=max(0.0, search.original_ms - full), max_ratio=max_ratio)
        search.path = path

        def plan_at(index: int) -> Plan:
            return make_plan(current.groups, scores, dict(path[index].ratios))

        def measure(index: int) -> float:
            return backend.model_ms(apply_plan(current, plan_at(index)).module, current.inputs)

        try:
            index = _correct(path, measure, search, corrections, warn_stacklevel + 1)
        except _Unmeasurable as failed:  # the rewrite fails there: the retry freezes around it and plans again
            return plan_at(failed.index)
        search.predicted_ms = path[index].predicted_ms
        return plan_at(index)

    return plan_for


class _Unmeasurable(Exception):
    def __init__(self, index: int) -> None:
        super().__init__(index)
        self.index = index


def _correct(path: Sequence[LatencyStep], measure: Callable[[int], float], search: LatencySearch,
             corrections: int, stacklevel: int) -> int:
    """The index on ``path`` whose measured latency meets the budget and keeps the most importance."""
    budget, last = search.budget_ms, len(path) - 1
    measured: dict[int, float] = {0: search.original_ms}

    def take(index: int) -> float:
        try:
            measured[index] = measure(index)
        except RewriteError as error:
            raise _Unmeasurable(index) from error
        return measured[index]

    low, high = 0, None  # the last point known over the budget, the first known within it
    index = max(1, _first_within(path, _MARGIN * budget * path[0].predicted_ms / search.original_ms))
    for _ in range(corrections if last else 0):
        ms = take(index)
        if ms <= budget:
            high = index
        else:
            low = index
        top = last if high is None else high - 1
        if low >= top or (high == index and ms >= _CLOSE_ENOUGH * budget):
            break
        guess = _first_within(path, _MARGIN * budget * path[index].predicted_ms / ms)
        index = min(max(guess, low + 1), top)
        if index in measured:
            index = (low + 1 + top) // 2
    if high is None and last not in measured and take(last) <= budget:
        high = last
    search.measurements = len(measured)
    chosen = last if high is None else high
    search.measured_ms = measured[chosen]
    if high is None:
        warnings.warn(f"fxprune: target latency {budget:.3g} ms cannot be reached: the smallest plan searched "
                      f"(every prunable group at its narrowest width) measures {measured[last]:.3g} ms, "
                      f"{measured[last] / search.original_ms:.2f}x of the original's {search.original_ms:.3g} ms; "
                      "returning that plan (see the summary for frozen groups)", UserWarning, stacklevel=stacklevel)
    return chosen


def _first_within(path: Sequence[LatencyStep], predicted_ms: float) -> int:
    """The first point on the path predicted at or under ``predicted_ms`` (the last point if none is)."""
    return next((i for i, step in enumerate(path) if step.predicted_ms <= predicted_ms), len(path) - 1)
