"""The pipeline: analyze -> plan -> apply_plan, the budget search and the freeze-and-retry.

:func:`analyze` runs the analysis once (trace, shapes, groups); :func:`apply_plan`
turns an analysis and a plan into a pruned module. :func:`search_budget` finds the
plan meeting a MACs or params budget; :func:`apply_with_retry` plans and applies,
and when the rewrite fails at a node freezes the groups around it and plans again.
Every driver (compile, schedules, sensitivity) goes through these functions.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from torch import fx, nn
from torch.utils._pytree import tree_flatten

from .errors import InputError, RewriteError
from .ir.layout import Layout
from .passes.capture import Capture, normalize_inputs
from .passes.capture import capture as capture_model  # analyze takes a ``capture`` argument
from .passes.cost import estimate_macs, estimate_params
from .passes.figures import Figures, count_params
from .passes.groups import Groups, find_groups
from .passes.plan import Plan, keep_mask
from .passes.rewrite import check_shapes, rewrite
from .passes.shapes import propagate_shapes
from .passes.summary import summarize
from .rules.context import ATTENTION_MODES

__all__ = ["Analysis", "CompileResult", "LatencyOutcome", "analyze", "apply_plan", "apply_with_retry", "search_budget"]


@dataclass(frozen=True)
class Analysis:
    """A traced model with shapes and channel groups: everything a plan is made against."""

    model: nn.Module
    traced: fx.GraphModule
    groups: Groups
    inputs: tuple[Any, ...]
    before: Figures
    capture: Capture | None = None

    def estimate(self, plan: Plan) -> Figures:
        """Parameters (exact) and MACs (estimated per node) of ``plan`` without rewriting."""
        keep = keep_mask(self.groups, plan)
        return Figures(estimate_params(self.traced, self.groups, keep), estimate_macs(self.traced, self.groups, keep))


@dataclass(frozen=True)
class LatencyOutcome:
    """What a latency budget asked for and what the pruned model measured.

    Attributes:
        budget_ms: the budget; ``fraction`` of ``original_ms`` when it was given as a fraction.
        original_ms: the original model's measured median.
        predicted_ms: the latency model's prediction for the returned plan.
        measured_ms: the returned module's measured median.
        measurements: whole models measured while correcting the plan (the original included).
        setting: how latency was measured (runtime, threads, batch, runs).
        fraction: the budget as a fraction of the original, if it was given so.
    """

    budget_ms: float
    original_ms: float
    predicted_ms: float
    measured_ms: float
    measurements: int
    setting: str
    fraction: float | None = None

    @property
    def met(self) -> bool:
        return self.measured_ms <= self.budget_ms

    def describe(self) -> str:
        asked = f"{self.budget_ms:.3g} ms" + (f" ({self.fraction:g}x of the original)" if self.fraction else "")
        verdict = "met" if self.met else "NOT met"
        return (f"latency target {asked}: original {self.original_ms:.3g} ms, predicted {self.predicted_ms:.3g} ms, "
                f"measured {self.measured_ms:.3g} ms ({self.original_ms / self.measured_ms:.2f}x faster), {verdict}; "
                f"{self.measurements} models measured, {self.setting}")


@dataclass(frozen=True)
class CompileResult:
    """What :func:`compile` returns.

    Attributes:
        module: the pruned GraphModule (same inputs and output shapes as the model).
        plan: kept channels per pruned group; ``plan.to_json()`` to save it.
        groups: every channel group, prunable or frozen with the reason.
        before, after: parameters and MACs of the model and of ``module``.
        seconds: wall time of the compile.
        target: the budget asked for, as ("macs" or "params", fraction), if any.
        latency: for a latency budget, what was asked, predicted and measured.
    """

    module: fx.GraphModule
    plan: Plan
    groups: Groups
    before: Figures
    after: Figures
    seconds: float
    traced: fx.GraphModule
    target: tuple[str, float] | None = None
    capture: Capture | None = None
    latency: LatencyOutcome | None = None

    def summary(self) -> str:
        text = summarize(self.traced.__class__.__name__, self.before, self.after, self.groups, self.plan,
                         self.seconds)
        if self.capture is not None:
            text += f"\n  capture {self.capture.describe()}"
        if self.target is not None:
            kind, fraction = self.target
            reached = getattr(self.after, kind) / max(1, getattr(self.before, kind))
            text += f"\n  budget  {kind} target {fraction:.3f}x of the original, reached {reached:.3f}x"
        if self.latency is not None:
            text += f"\n  budget  {self.latency.describe()}"
        return text


def analyze(model: nn.Module, example_inputs: Any, *, exact: bool = False, leaf_modules: Iterable[type | str] = (),
            concrete_args: dict[str, Any] | None = None, capture: str = "auto",
            check_capture: bool = True, attention: str = "heads") -> Analysis:
    """Capture ``model`` (:func:`fxprune.capture`), propagate shapes on fake tensors and find its channel groups.

    Example:
        >>> analysis = fxprune.analyze(model, (x,))
        >>> print(analysis.groups.table())
    """
    if not isinstance(exact, bool):  # exact="no" would silently mean True
        raise InputError(f"exact must be True or False, got {exact!r}")
    if attention not in ATTENTION_MODES:
        raise InputError(f"attention must be one of {', '.join(map(repr, ATTENTION_MODES))} (prune whole heads, "
                         f"or the same widths in every head), got {attention!r}")
    inputs = normalize_inputs(example_inputs)
    captured = capture_model(model, inputs, front_end=capture, check=check_capture, leaf_modules=leaf_modules,
                        concrete_args=concrete_args)
    return Analysis(model, captured.module, find_groups(captured.module, exact, attention), inputs,
                    Figures(count_params(model), captured.macs), captured)


def apply_plan(analysis: Analysis, plan: Plan, *, started: float | None = None,
               target: tuple[str, float] | None = None) -> CompileResult:
    """Rewrite the analysed model according to ``plan`` and check the result's shapes.

    Raises:
        PlanError: the plan does not fit this model's groups.
        RewriteError: internal error naming the node whose shape came out wrong.
    """
    started = time.perf_counter() if started is None else started
    pruned = rewrite(analysis.traced, analysis.groups, plan)
    try:
        macs = propagate_shapes(pruned, analysis.inputs)
    except InputError as error:  # the inputs fitted the original: the rewrite is at fault
        raise RewriteError(f"the pruned module does not run: {error}", getattr(error, "node", None)) from error
    check_shapes(analysis.traced, pruned, analysis.groups, plan)
    return CompileResult(pruned, plan, analysis.groups, analysis.before, Figures(count_params(pruned), macs),
                         time.perf_counter() - started, analysis.traced, target, analysis.capture)


_RETRIES = 64  # each retry freezes at least one more group, so the loop ends


def _tensor_inputs(node: fx.Node, groups: Groups) -> list[fx.Node]:
    """Tensors a node reads, looking through plain values (sizes) to the tensors they came from."""
    found, todo, seen = [], list(node.all_input_nodes), set()
    while todo:
        value = todo.pop()
        if value in seen:
            continue
        seen.add(value)
        if isinstance(groups.layouts.get(value), Layout):
            found.append(value)
        else:
            todo.extend(value.all_input_nodes)
    return found


def _freeze_around(analysis: Analysis, node_name: str, why: str) -> Analysis:
    """Freeze every group whose channels reach the node a rewrite failed at.

    A rule can meet a form it does not resize correctly, for instance a view whose
    sizes are computed at run time from another tensor's shape. Rather than emit a
    broken module, the groups around that node are kept whole and the plan is made again.
    """
    groups = analysis.groups
    node = next(n for n in analysis.traced.graph.nodes if n.name == node_name)
    ids = [block.ids.reshape(-1) for value in (node, *_tensor_inputs(node, groups))
           for layout in tree_flatten(groups.layouts.get(value), is_leaf=lambda x: isinstance(x, Layout))[0]
           if isinstance(layout, Layout) for block in layout.blocks]
    roots = set(groups.roots[np.concatenate(ids)[np.concatenate(ids) >= 0]].tolist()) if ids else set()
    reason = f"the rewrite could not resize {node.op} '{node.name}' ({why[:160]})"
    # Only a group that was still prunable counts as progress: re-freezing a frozen one
    # would loop until the retry limit.
    frozen = tuple(replace(g, frozen_by=(reason,)) if not g.frozen_by and roots & set(g.roots.tolist()) else g
                   for g in groups)
    if all(a.frozen_by == b.frozen_by for a, b in zip(frozen, groups, strict=True)):
        raise RewriteError(f"cannot recover from a failed rewrite at '{node_name}': {why}", None)
    return replace(analysis, groups=replace(groups, groups=frozen))


def apply_with_retry(analysis: Analysis, plan_for: Callable[[Analysis], Plan], *, started: float | None = None,
                     target: tuple[str, float] | None = None) -> CompileResult:
    """Plan with ``plan_for(analysis)`` and apply; on a rewrite failing at a node, freeze around it and retry.

    ``plan_for`` is called again with the analysis whose groups around the failing
    node are frozen, so it must plan against the groups it is given.

    Raises:
        RewriteError: the failure names no node, or freezing makes no progress.
    """
    for attempt in range(_RETRIES + 1):
        plan = plan_for(analysis)
        try:
            return apply_plan(analysis, plan, started=started, target=target)
        except RewriteError as error:
            if error.node is None or attempt == _RETRIES:
                raise
            analysis = _freeze_around(analysis, error.node, str(error).splitlines()[0])
    raise AssertionError("unreachable")


def search_budget(analysis: Analysis, plan_at: Callable[[float], Plan], kind: str, fraction: float, *,
                  of: Figures | None = None, rounds: int = 24, warn_stacklevel: int | None = None) -> Plan:
    """Bisect the smallest uniform ratio whose estimated ``kind`` ("macs" or "params") meets the budget.

    The budget is ``fraction`` of ``of`` (default: the analysed model's figures). An
    empty plan when the analysed model already meets it; the plan at the largest ratio
    searched when none does, with a ``UserWarning`` when ``warn_stacklevel`` is given (the
    ``stacklevel`` the caller would pass to ``warnings.warn``: the frame to blame).

    Example:
        >>> plan = search_budget(analysis, lambda r: make_plan(analysis.groups, scores, r), "macs", 0.5)
    """
    before = getattr(analysis.before, kind)
    goal = fraction * getattr(analysis.before if of is None else of, kind)
    if before <= goal:
        return Plan(())
    low, high = 0.0, 0.995
    best = plan_at(high)
    if warn_stacklevel is not None:
        floor = getattr(analysis.estimate(best), kind) / before
        if floor > fraction:
            warnings.warn(
                f"target_{kind}={fraction:g} cannot be reached: removing {high:.1%} of every prunable group "
                f"still keeps {floor:.3f}x (see the summary for frozen groups); returning that plan, which "
                "leaves most layers a channel or two wide", UserWarning, stacklevel=warn_stacklevel + 1)
            return best
    for _ in range(rounds):
        middle = (low + high) / 2
        plan = plan_at(middle)
        if getattr(analysis.estimate(plan), kind) <= goal:
            high, best = middle, plan
        else:
            low = middle
    return best
