"""``fxprune.compile``: trace, shapes, groups, score, plan, rewrite, verify.

:func:`compile` is the pipeline's :func:`~fxprune.pipeline.analyze` and
:func:`~fxprune.pipeline.apply_with_retry` with scoring and planning in between;
:func:`verify` is the oracle against the original model.
"""

from __future__ import annotations

import numbers
import time
from collections.abc import Iterable
from typing import Any

from torch import nn

from ..errors import PlanError
from ..passes.capture import normalize_inputs
from ..passes.importance import Importance, score_groups
from ..passes.oracle import masked_reference, max_difference
from ..passes.plan import Plan, Ratios, make_plan
from ..pipeline import Analysis, CompileResult, analyze, apply_plan, apply_with_retry, search_budget

__all__ = ["compile", "verify"]


def compile(model: nn.Module, ratios: Ratios | Plan | None = 0.5, *, example_inputs: Any = None, exact: bool = False,
            ignore: Iterable[str] = (), round_to: int | None = None, importance: str | Importance = "l1",
            global_ranking: bool = False, max_ratio: float = 0.9, target_macs: float | None = None,
            target_params: float | None = None, leaf_modules: Iterable[type | str] = (),
            concrete_args: dict[str, Any] | None = None, capture: str = "auto",
            check_capture: bool = True, attention: str = "heads") -> CompileResult:
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
        leaf_modules, concrete_args: passed to :func:`fxprune.trace` (symbolic tracing only).
        capture: ``"auto"`` (symbolic tracing, else torch.export), ``"fx"`` or ``"export"``;
            the summary says which front end ran and why the other was left.
        check_capture: compare the captured graph's outputs with the model's on the example
            inputs (one eager run of each) and fall back to the other front end on a mismatch.
        attention: ``"heads"`` prunes whole attention heads; ``"head_dim"`` the same widths in
            every head (query/key widths keep the original softmax scale). Both keep exact mode exact.

    Example:
        >>> result = fxprune.compile(torchvision.models.resnet18(), 0.5,
        ...                          example_inputs=(torch.randn(1, 3, 224, 224),))
        >>> print(result.summary())
    """
    start = time.perf_counter()
    analysis = analyze(model, example_inputs, exact=exact, leaf_modules=leaf_modules, concrete_args=concrete_args,
                       capture=capture, check_capture=check_capture, attention=attention)
    if isinstance(ratios, Plan):
        return apply_plan(analysis, ratios, started=start)
    scores = score_groups(analysis.groups, analysis.traced, importance)
    names = [name for name, _ in model.named_modules() if name]
    ignored = [ignore] if isinstance(ignore, str) else list(ignore)  # one pattern, not its characters
    target = _budget(target_macs, target_params)

    def plan_for(current: Analysis) -> Plan:
        def plan_at(ratio: Ratios) -> Plan:
            return make_plan(current.groups, scores, ratio, ignore=ignored, round_to=round_to,
                             module_names=names, global_ranking=global_ranking, max_ratio=max_ratio)

        if target is None:
            return plan_at(0.5 if ratios is None else ratios)
        # The warning blames compile's caller: plan_for <- apply_with_retry <- compile <- caller.
        return search_budget(current, plan_at, *target, warn_stacklevel=4)

    return apply_with_retry(analysis, plan_for, started=start, target=target)


def _budget(target_macs: float | None, target_params: float | None) -> tuple[str, float] | None:
    if target_macs is not None and target_params is not None:
        raise PlanError("give one budget: target_macs or target_params, not both")
    if target_macs is None and target_params is None:
        return None
    kind, value = ("macs", target_macs) if target_macs is not None else ("params", target_params)
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < 1:
        raise PlanError(f"target_{kind} must be in (0, 1): the fraction of the original to keep, got {value!r}")
    return kind, float(value)


def verify(model: nn.Module, result: CompileResult, example_inputs: Any) -> float:
    """The oracle: max |pruned(x) - masked_original(x)| in eval mode (0 up to rounding when correct).

    Example:
        >>> assert fxprune.verify(model, result, (x,)) < 1e-4
    """
    inputs = normalize_inputs(example_inputs)
    reference = masked_reference(model, result.groups, result.plan)
    return max_difference(reference, result.module, inputs)
