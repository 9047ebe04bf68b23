"""Sensitivity analysis: prune every channel group alone at several ratios and measure.

Li et al. (*Pruning Filters for Efficient ConvNets*, arXiv 1608.08710, section 4.4)
prune one layer at a time and plot accuracy against the pruned fraction: flat curves
mark layers that can lose many channels, steep ones layers to spare. The model is
analysed once; every point is one plan applied to that analysis and scored by the
user's ``evaluate(module) -> float`` (higher is better). The report derives per-group
ratios from the curves, by a tolerance or by a MACs budget.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import InputError, PlanError
from ..ir.parametrized import deepcopy_module
from ..passes.importance import Importance, score_groups
from ..passes.plan import Plan, check_ratio, make_plan
from ..pipeline import Analysis, CompileResult, analyze, apply_with_retry
from ..progress import progress as progress_of
from .sensitivity_report import DEFAULT_RATIOS, SensitivityReport, SensitivityRow

__all__ = ["DEFAULT_RATIOS", "SensitivityReport", "SensitivityRow", "sensitivity"]


def sensitivity(model: nn.Module, example_inputs: Any, evaluate: Callable[[nn.Module], float], *,
                ratios: Sequence[float] = DEFAULT_RATIOS, groups: Iterable[int] | None = None,
                importance: str | Importance = "l1", exact: bool = False, progress: bool = True,
                capture: str = "auto", check_capture: bool = True) -> SensitivityReport:
    """Prune each group alone at each ratio and evaluate the pruned module.

    Args:
        model: a 2D or 3D CNN; it is not modified (the baseline is evaluated on a copy).
        example_inputs: positional arguments of ``model.forward``, as for ``fxprune.compile``.
        evaluate: ``evaluate(module) -> float``, higher is better (accuracy, minus a loss).
        ratios: fractions of channels to remove, each in (0, 1).
        groups: group indices to measure (default: every prunable group).
        importance: which channels go first, as for ``fxprune.compile``.
        exact: freeze groups whose removal changes kept values.
        progress: show a progress bar.
        capture, check_capture: the capture front end and its check, as in :func:`fxprune.compile`.

    Raises:
        PlanError: a ratio out of range, or a group that does not exist or is frozen.
        InputError: ``evaluate`` returned something that is not a finite number.

    Example:
        >>> report = sensitivity(model, (x,), lambda m: accuracy(m, loader))
        >>> report.plot("sensitivity.png")
        >>> ratios = report.derive_ratios(tolerance=0.02)
    """
    points = _check_ratios(ratios)
    analysis = analyze(model, example_inputs, exact=exact, capture=capture, check_capture=check_capture)
    chosen = _check_groups(analysis.groups, groups)
    scores = score_groups(analysis.groups, analysis.traced, importance)
    baseline = _metric(evaluate, deepcopy_module(model), "the unpruned model")
    rows = []
    bar = progress_of(total=len(chosen) * len(points), desc="sensitivity", unit="point", enabled=progress)
    with bar:
        for index in chosen:
            group = analysis.groups[index]
            for ratio in points:
                result = _prune_alone(analysis, scores, index, ratio)
                if result is not None:
                    metric, after = _metric(evaluate, result.module, f"group #{index} at {ratio}"), result.after
                else:  # too few channels to remove one at this ratio: the model is unchanged
                    metric, after = baseline, analysis.before
                removed = result.plan.entries[0].removed if result is not None else 0
                rows.append(SensitivityRow(index, group.name, group.size, ratio, removed, metric, after.params,
                                           after.macs))
                bar.set_postfix(group=group.name, metric=f"{metric:.4g}")
                bar.update()
    return SensitivityReport(tuple(rows), baseline, analysis.before, analysis, scores)


def _prune_alone(analysis: Analysis, scores: Mapping[int, np.ndarray], index: int,
                 ratio: float) -> CompileResult | None:
    """Group ``index`` alone pruned at ``ratio`` through the pipeline's retry; None when nothing is removed."""

    def plan_for(current: Analysis) -> Plan:
        # A retry may have to freeze the measured group itself: then nothing is pruned.
        return make_plan(current.groups, scores, {index: ratio}) if current.groups[index].prunable else Plan(())

    if not plan_for(analysis).entries:
        return None
    result = apply_with_retry(analysis, plan_for)
    return result if result.plan.entries else None


def _check_ratios(ratios: Sequence[float]) -> tuple[float, ...]:
    if isinstance(ratios, (int, float)):
        ratios = (ratios,)
    points = tuple(sorted({check_ratio(r, "sensitivity ratio") for r in ratios}))
    if not points or points[0] <= 0:
        raise PlanError(f"sensitivity ratios must be in (0, 1), got {tuple(ratios)!r}")
    return points


def _check_groups(groups: Any, chosen: Iterable[int] | None) -> tuple[int, ...]:
    if chosen is None:
        return tuple(g.index for g in groups.prunable)
    indices = tuple(chosen)
    for index in indices:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < len(groups):
            raise PlanError(f"group {index!r} does not exist; valid indices are 0..{len(groups) - 1} "
                            "(print fxprune.analyze(model, inputs).groups.table())")
        if not groups[index].prunable:
            raise PlanError(f"group #{index} ({groups[index].name}) is frozen: {groups[index].reason}")
    return tuple(int(i) for i in indices)


def _metric(evaluate: Callable[[nn.Module], float], module: nn.Module, what: str) -> float:
    value = evaluate(module)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
            or not math.isfinite(float(value)):
        raise InputError(f"evaluate() must return a finite number (higher is better); for {what} it returned "
                         f"{value!r}")
    return float(value)
