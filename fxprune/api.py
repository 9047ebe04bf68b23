"""``fxprune.compile``: trace, shapes, groups, score, plan, rewrite, verify."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from torch import fx, nn

from .passes.groups import Groups, find_groups
from .passes.importance import Importance, score_groups
from .passes.oracle import masked_reference, max_difference
from .passes.plan import Plan, Ratios, make_plan
from .passes.rewrite import check_shapes, rewrite
from .passes.shapes import propagate_shapes
from .errors import InputError, RewriteError
from .report import Figures, count_params, summarize
from .tracing import normalize_inputs, trace

__all__ = ["CompileResult", "compile", "verify"]


@dataclass(frozen=True)
class CompileResult:
    """What :func:`compile` returns.

    Attributes:
        module: the pruned GraphModule (same inputs and output shapes as the model).
        plan: kept channels per pruned group; ``plan.to_json()`` to save it.
        groups: every channel group, prunable or frozen with the reason.
        before, after: parameters and MACs of the model and of ``module``.
        seconds: wall time of the compile.
    """

    module: fx.GraphModule
    plan: Plan
    groups: Groups
    before: Figures
    after: Figures
    seconds: float
    traced: fx.GraphModule

    def summary(self) -> str:
        return summarize(self.traced.__class__.__name__, self.before, self.after, self.groups, self.plan,
                         self.seconds)


def compile(model: nn.Module, ratios: Ratios | Plan = 0.5, *, example_inputs: Any = None, exact: bool = False,
            ignore: Iterable[str] = (), round_to: int | None = None, importance: str | Importance = "l1",
            leaf_modules: Iterable[type | str] = (), concrete_args: dict[str, Any] | None = None) -> CompileResult:
    """Prune ``model`` structurally and return a new, smaller module. ``model`` is not modified.

    Args:
        model: a 2D or 3D CNN (any mode; the result keeps it).
        ratios: fraction of channels to remove: one float in [0, 1) for every group, a mapping
            of module-name glob patterns to ratios (first match wins), or a saved :class:`Plan`.
        example_inputs: positional arguments of ``model.forward`` (a tensor, a tuple, lists of tensors).
        exact: freeze groups whose removal changes kept values (LayerNorm or softmax over channels).
        ignore: glob patterns of modules whose output channels must not be pruned.
        round_to: keep channel counts at multiples of this (hardware-friendly widths).
        importance: ``"l1"``, ``"l2"`` or ``fn(group, module) -> scores``.
        leaf_modules, concrete_args: passed to :func:`fxprune.trace`.

    Example:
        >>> result = fxprune.compile(torchvision.models.resnet18(), 0.5,
        ...                          example_inputs=(torch.randn(1, 3, 224, 224),))
        >>> print(result.summary())
    """
    start = time.perf_counter()
    inputs = normalize_inputs(example_inputs)
    traced = trace(model, inputs, leaf_modules=leaf_modules, concrete_args=concrete_args)
    macs_before = propagate_shapes(traced, inputs)
    groups = find_groups(traced, exact)
    plan = ratios if isinstance(ratios, Plan) else make_plan(
        groups, score_groups(groups, traced, importance), ratios, ignore=list(ignore), round_to=round_to,
        module_names=[name for name, _ in model.named_modules() if name])
    pruned = rewrite(traced, groups, plan)
    try:
        macs_after = propagate_shapes(pruned, inputs)
    except InputError as error:  # the inputs fitted the original: the rewrite is at fault
        raise RewriteError(f"the pruned module does not run: {error}") from error
    check_shapes(traced, pruned, groups, plan)
    return CompileResult(pruned, plan, groups, Figures(count_params(model), macs_before),
                         Figures(count_params(pruned), macs_after), time.perf_counter() - start, traced)


def verify(model: nn.Module, result: CompileResult, example_inputs: Any) -> float:
    """The oracle: max |pruned(x) - masked_original(x)| in eval mode (0 up to rounding when correct).

    Example:
        >>> assert fxprune.verify(model, result, (x,)) < 1e-4
    """
    inputs = normalize_inputs(example_inputs)
    reference = masked_reference(model, result.groups, result.plan)
    return max_difference(reference, result.module, inputs)
