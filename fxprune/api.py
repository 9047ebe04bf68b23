"""``fxprune.compile``: trace, shapes, groups, score, plan, rewrite, verify.

:func:`analyze` runs the analysis once (trace, shapes, groups); :func:`apply_plan`
turns an analysis and a plan into a pruned module. :func:`compile` is the two
with scoring and planning in between; sensitivity analysis and schedules reuse an
analysis for many plans.
"""

from __future__ import annotations

import numbers
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from torch import fx, nn
from torch.utils._pytree import tree_flatten

from .errors import InputError, PlanError, RewriteError
from .passes.cost import estimate_macs, estimate_params
from .passes.groups import Groups, find_groups
from .ir.layout import Layout
from .passes.importance import Importance, score_groups
from .passes.oracle import masked_reference, max_difference
from .passes.plan import Plan, Ratios, make_plan
from .passes.rewrite import check_shapes, keep_mask, rewrite
from .passes.shapes import propagate_shapes
from .report import Figures, count_params, summarize
from .tracing import normalize_inputs, trace

__all__ = ["Analysis", "CompileResult", "analyze", "apply_plan", "compile", "verify"]


@dataclass(frozen=True)
class Analysis:
    """A traced model with shapes and channel groups: everything a plan is made against."""

    model: nn.Module
    traced: fx.GraphModule
    groups: Groups
    inputs: tuple[Any, ...]
    before: Figures

    def estimate(self, plan: Plan) -> Figures:
        """Parameters (exact) and MACs (estimated per node) of ``plan`` without rewriting."""
        keep = keep_mask(self.groups, plan)
        return Figures(estimate_params(self.traced, self.groups, keep), estimate_macs(self.traced, self.groups, keep))


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
    """

    module: fx.GraphModule
    plan: Plan
    groups: Groups
    before: Figures
    after: Figures
    seconds: float
    traced: fx.GraphModule
    target: tuple[str, float] | None = None

    def summary(self) -> str:
        text = summarize(self.traced.__class__.__name__, self.before, self.after, self.groups, self.plan,
                         self.seconds)
        if self.target is not None:
            kind, fraction = self.target
            reached = getattr(self.after, kind) / max(1, getattr(self.before, kind))
            text += f"\n  budget  {kind} target {fraction:.3f}x of the original, reached {reached:.3f}x"
        return text


def analyze(model: nn.Module, example_inputs: Any, *, exact: bool = False, leaf_modules: Iterable[type | str] = (),
            concrete_args: dict[str, Any] | None = None) -> Analysis:
    """Trace ``model``, propagate shapes on fake tensors and find its channel groups.

    Example:
        >>> analysis = fxprune.analyze(model, (x,))
        >>> print(analysis.groups.table())
    """
    if not isinstance(exact, bool):  # exact="no" would silently mean True
        raise InputError(f"exact must be True or False, got {exact!r}")
    inputs = normalize_inputs(example_inputs)
    traced = trace(model, inputs, leaf_modules=leaf_modules, concrete_args=concrete_args)
    macs = propagate_shapes(traced, inputs)
    return Analysis(model, traced, find_groups(traced, exact), inputs, Figures(count_params(model), macs))


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
                         time.perf_counter() - started, analysis.traced, target)


def compile(model: nn.Module, ratios: Ratios | Plan | None = 0.5, *, example_inputs: Any = None, exact: bool = False,
            ignore: Iterable[str] = (), round_to: int | None = None, importance: str | Importance = "l1",
            global_ranking: bool = False, max_ratio: float = 0.9, target_macs: float | None = None,
            target_params: float | None = None, leaf_modules: Iterable[type | str] = (),
            concrete_args: dict[str, Any] | None = None) -> CompileResult:
    """Prune ``model`` structurally and return a new, smaller module. ``model`` is not modified.

    Args:
        model: a 2D or 3D CNN (any mode; the result keeps it).
        ratios: fraction of channels to remove: one float in [0, 1) for every group, a mapping
            of module-name glob patterns to ratios (first match wins), or a saved :class:`Plan`.
        example_inputs: positional arguments of ``model.forward`` (a tensor, a tuple, lists of tensors).
        exact: freeze groups whose removal changes kept values (LayerNorm or softmax over channels).
        ignore: glob patterns of modules whose output channels must not be pruned.
        round_to: keep channel counts at multiples of this (hardware-friendly widths).
        importance: ``"l1"``, ``"l2"``, ``"bn_scale"``, ``"random"``, a :class:`fxprune.Taylor`,
            or ``fn(group, module) -> scores``.
        global_ranking: rank channels across groups (scores normalised per group) instead of
            applying the ratio to every group; ``max_ratio`` caps any one layer.
        target_macs, target_params: a budget as a fraction of the original (e.g. 0.5); the
            ratio is found by search and the summary reports the value reached.
        leaf_modules, concrete_args: passed to :func:`fxprune.trace`.

    Example:
        >>> result = fxprune.compile(torchvision.models.resnet18(), 0.5,
        ...                          example_inputs=(torch.randn(1, 3, 224, 224),))
        >>> print(result.summary())
    """
    start = time.perf_counter()
    analysis = analyze(model, example_inputs, exact=exact, leaf_modules=leaf_modules, concrete_args=concrete_args)
    if isinstance(ratios, Plan):
        return apply_plan(analysis, ratios, started=start)
    scores = score_groups(analysis.groups, analysis.traced, importance)
    names = [name for name, _ in model.named_modules() if name]
    ignored = [ignore] if isinstance(ignore, str) else list(ignore)  # one pattern, not its characters

    def plan_at(ratio: Ratios) -> Plan:
        return make_plan(analysis.groups, scores, ratio, ignore=ignored, round_to=round_to,
                         module_names=names, global_ranking=global_ranking, max_ratio=max_ratio)

    target = _budget(target_macs, target_params)
    for attempt in range(_RETRIES + 1):
        plan = plan_at(0.5 if ratios is None else ratios) if target is None else _search(analysis, plan_at, *target)
        try:
            return apply_plan(analysis, plan, started=start, target=target)
        except RewriteError as error:
            if error.node is None or attempt == _RETRIES:
                raise
            analysis = _freeze_around(analysis, error.node, str(error).splitlines()[0])
    raise AssertionError("unreachable")


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
    if all(a.frozen_by == b.frozen_by for a, b in zip(frozen, groups)):
        raise RewriteError(f"cannot recover from a failed rewrite at '{node_name}': {why}", None)
    return replace(analysis, groups=replace(groups, groups=frozen))


def _budget(target_macs: float | None, target_params: float | None) -> tuple[str, float] | None:
    if target_macs is not None and target_params is not None:
        raise PlanError("give one budget: target_macs or target_params, not both")
    if target_macs is None and target_params is None:
        return None
    kind, value = ("macs", target_macs) if target_macs is not None else ("params", target_params)
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < 1:
        raise PlanError(f"target_{kind} must be in (0, 1): the fraction of the original to keep, got {value!r}")
    return kind, float(value)


def _search(analysis: Analysis, plan_at: Any, kind: str, fraction: float, steps: int = 24) -> Plan:
    """Bisect the ratio for the smallest plan meeting the budget (estimated cost)."""
    goal = fraction * getattr(analysis.before, kind)
    low, high = 0.0, 0.995
    best = plan_at(high)
    floor = getattr(analysis.estimate(best), kind) / getattr(analysis.before, kind)
    if floor > fraction:
        warnings.warn(
            f"target_{kind}={fraction:g} cannot be reached: removing {high:.1%} of every prunable group "
            f"still keeps {floor:.3f}x (see the summary for frozen groups); returning that plan, which "
            "leaves most layers a channel or two wide", UserWarning, stacklevel=3)
        return best
    for _ in range(steps):
        middle = (low + high) / 2
        plan = plan_at(middle)
        if getattr(analysis.estimate(plan), kind) <= goal:
            high, best = middle, plan
        else:
            low = middle
    return best


def verify(model: nn.Module, result: CompileResult, example_inputs: Any) -> float:
    """The oracle: max |pruned(x) - masked_original(x)| in eval mode (0 up to rounding when correct).

    Example:
        >>> assert fxprune.verify(model, result, (x,)) < 1e-4
    """
    inputs = normalize_inputs(example_inputs)
    reference = masked_reference(model, result.groups, result.plan)
    return max_difference(reference, result.module, inputs)
