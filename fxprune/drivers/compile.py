"""``fxprune.compile``: trace, shapes, groups, score, plan, rewrite, verify.

:func:`compile` is the pipeline's :func:`~fxprune.pipeline.analyze` and
:func:`~fxprune.pipeline.apply_with_retry` with scoring and planning in between;
:func:`verify` is the oracle against the original model. With ``submodules`` it prunes
the submodules that capture (:mod:`fxprune.drivers.submodules`), each through the same path.
"""

from __future__ import annotations

import fnmatch
import numbers
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any, cast

from torch import nn

from ..errors import InputError, PlanError, TraceError
from ..export.latency import LatencySettings, OrtLatency
from ..passes.capture import normalize_inputs
from ..passes.importance import Importance, score_groups
from ..passes.oracle import masked_reference, max_difference
from ..passes.plan import Plan, Ratios, make_plan
from ..passes.taylor import Taylor
from ..pipeline import (
    Analysis,
    CompileResult,
    LatencyOutcome,
    analyze,
    apply_plan,
    apply_with_retry,
    search_budget,
)
from .latency import LatencyBackend, LatencySearch, latency_planner
from .submodules import PruneOne, SubmoduleResult, capture_failures, prune_submodules, verify_submodules

__all__ = ["compile", "verify"]


def compile(model: nn.Module, ratios: Ratios | Plan | None = 0.5, *, example_inputs: Any = None, exact: bool = False,
            ignore: Iterable[str] = (), round_to: int | None = None, importance: str | Importance = "l1",
            global_ranking: bool = False, max_ratio: float = 0.9, target_macs: float | None = None,
            target_params: float | None = None, leaf_modules: Iterable[type | str] = (),
            concrete_args: dict[str, Any] | None = None, capture: str = "auto",
            check_capture: bool = True, attention: str = "heads", submodules: bool | Sequence[str] = False,
            target_latency_ms: float | None = None, target_latency: float | None = None,
            latency: LatencySettings | LatencyBackend | None = None) -> CompileResult | SubmoduleResult:
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
        submodules: for a model neither front end captures whole (a detector's NMS). ``True``:
            when the whole model does not capture, prune its largest submodules that do, each on
            the inputs it receives in one eager run, with its boundary channels kept, spliced
            into a copy of the model; a list of names prunes those submodules (one that does not
            capture is split into its children). Ratio and ignore patterns name modules of the
            whole model; a budget applies to each submodule on its own. Returns a
            :class:`~fxprune.drivers.submodules.SubmoduleResult` (the whole model captured
            under ``True`` gives the usual result).

        target_latency_ms, target_latency: a latency budget, in milliseconds or as a fraction
            of the original's measured latency: the plan is made against a latency model of
            this machine and corrected until the pruned model's measured median meets it
            (:mod:`fxprune.drivers.latency`); ``result.latency`` reports the figures.
        latency: how latency is measured (:class:`fxprune.export.LatencySettings`: threads,
            batch, runs, ONNX Runtime session entries, cache folder, INT8), or any object
            with the :class:`~fxprune.drivers.latency.LatencyBackend` methods.

    Returns:
        A :class:`CompileResult`, or a :class:`SubmoduleResult` when submodules were pruned.

    Example:
        >>> result = fxprune.compile(torchvision.models.resnet18(), 0.5,
        ...                          example_inputs=(torch.randn(1, 3, 224, 224),))
        >>> print(result.summary())
    """
    options: dict[str, Any] = {
        "exact": exact, "ignore": ignore, "round_to": round_to, "importance": importance,
        "global_ranking": global_ranking, "max_ratio": max_ratio, "target_macs": target_macs,
        "target_params": target_params, "leaf_modules": leaf_modules, "capture": capture,
        "check_capture": check_capture, "attention": attention, "target_latency_ms": target_latency_ms,
        "target_latency": target_latency, "latency": latency}
    if submodules is False:
        return _compile_whole(model, ratios, example_inputs, concrete_args=concrete_args, **options)
    started, names = time.perf_counter(), _submodule_names(submodules)
    inputs = normalize_inputs(example_inputs)
    if names is not None:
        return prune_submodules(model, inputs, _part_compiler(model, ratios, options), names=names, started=started)
    try:
        return _compile_whole(model, ratios, example_inputs, concrete_args=concrete_args, **options)
    except TraceError as error:
        return prune_submodules(model, inputs, _part_compiler(model, ratios, options), whole=capture_failures(error),
                                started=started)


def _compile_whole(model: nn.Module, ratios: Ratios | Plan | None, example_inputs: Any, *, exact: bool,
                   ignore: Iterable[str], round_to: int | None, importance: str | Importance, global_ranking: bool,
                   max_ratio: float, target_macs: float | None, target_params: float | None,
                   leaf_modules: Iterable[type | str], concrete_args: dict[str, Any] | None, capture: str,
                   check_capture: bool, attention: str, target_latency_ms: float | None,
                   target_latency: float | None, latency: LatencySettings | LatencyBackend | None) -> CompileResult:
    """``compile`` of one captured model: analyze, score, plan (or search a budget), apply with retry."""
    start = time.perf_counter()
    analysis = analyze(model, example_inputs, exact=exact, leaf_modules=leaf_modules, concrete_args=concrete_args,
                       capture=capture, check_capture=check_capture, attention=attention)
    if isinstance(ratios, Plan):
        return apply_plan(analysis, ratios, started=start)
    scores = score_groups(analysis.groups, analysis.traced, importance)
    names = [name for name, _ in model.named_modules() if name]
    ignored = [ignore] if isinstance(ignore, str) else list(ignore)  # one pattern, not its characters
    target = _budget(target_macs, target_params)
    if target_latency_ms is not None or target_latency is not None:
        if target is not None:
            raise PlanError("give one budget: a latency target or target_macs/target_params, not both")
        return _compile_to_latency(analysis, scores, _latency_budget(target_latency_ms, target_latency), latency,
                                   ignored, names, max_ratio, start)

    def plan_for(current: Analysis) -> Plan:
        def plan_at(ratio: Ratios) -> Plan:
            return make_plan(current.groups, scores, ratio, ignore=ignored, round_to=round_to,
                             module_names=names, global_ranking=global_ranking, max_ratio=max_ratio)

        if target is None:
            return plan_at(0.5 if ratios is None else ratios)
        # The warning blames compile's caller: plan_for <- apply_with_retry <- _compile_whole <- compile <- caller.
        return search_budget(current, plan_at, *target, warn_stacklevel=5)

    return apply_with_retry(analysis, plan_for, started=start, target=target)


def _submodule_names(submodules: bool | Sequence[str]) -> list[str] | None:
    """None for ``True`` (the whole model first); the names for a list of them."""
    if submodules is True:
        return None
    if isinstance(submodules, str) or not isinstance(submodules, Sequence) or not submodules \
            or not all(isinstance(name, str) and name for name in submodules):
        raise InputError(f"submodules must be True, False or a list of submodule names, got {submodules!r}")
    return list(submodules)


def _part_compiler(model: nn.Module, ratios: Ratios | Plan | None, options: dict[str, Any]) -> PruneOne:
    """``compile`` of one submodule, with the whole model's patterns turned into its own names."""
    if isinstance(ratios, Plan):
        raise PlanError("a saved Plan applies to one captured model; with submodules give ratios")
    if options["target_latency_ms"] is not None or options["target_latency"] is not None:
        raise PlanError("a latency budget is measured on one exported model; with submodules give ratios or "
                        "target_macs")
    if isinstance(options["importance"], Taylor):
        raise InputError("Taylor importance needs the loss of the whole model, which submodules do not give; "
                         "with submodules use importance='l1', 'l2' or 'bn_scale'")
    names = [name for name, _ in model.named_modules() if name]
    ignored = [options["ignore"]] if isinstance(options["ignore"], str) else list(options["ignore"])
    if isinstance(ratios, Mapping) and any(isinstance(key, int) for key in ratios):
        raise PlanError("group indices name groups of one captured model; with submodules give module patterns")
    spec = {str(key): value for key, value in ratios.items()} if isinstance(ratios, Mapping) else None
    for pattern in [*ignored, *(spec or {})]:
        if pattern != "*" and not any(fnmatch.fnmatchcase(name, pattern) for name in names):
            raise PlanError(f"pattern '{pattern}' matches no module of {type(model).__name__}")

    def prune(module: nn.Module, inputs: tuple[Any, ...], prefix: str) -> CompileResult:
        part_ratios = ratios if spec is None else _relative(spec, module, prefix)
        part_ignore = list(_relative(dict.fromkeys(ignored, 0.0), module, prefix))
        leaves = [leaf for leaf in options["leaf_modules"] if not isinstance(leaf, str)]
        return _compile_whole(module, part_ratios, inputs, concrete_args=None,
                              **{**options, "ignore": part_ignore, "leaf_modules": leaves})

    return prune


def _relative(spec: Mapping[str, float], module: nn.Module, prefix: str) -> dict[str, float]:
    """Patterns on the whole model's names as the submodule's own names (first match wins, as in make_plan)."""
    chosen: dict[str, float] = {}
    names = [name for name, _ in module.named_modules() if name]
    for pattern, ratio in spec.items():
        if pattern == "*":
            chosen.setdefault("*", ratio)
            break
        for name in names:
            if name not in chosen and fnmatch.fnmatchcase(f"{prefix}.{name}" if prefix else name, pattern):
                chosen[name] = ratio
    return chosen


def _compile_to_latency(analysis: Analysis, scores: dict[int, Any], budget: tuple[str, float],
                        latency: LatencySettings | LatencyBackend | None, ignored: list[str], names: list[str],
                        max_ratio: float, start: float) -> CompileResult:
    backend = cast(LatencyBackend, latency) if hasattr(latency, "model_ms") else OrtLatency(latency)
    original_ms = backend.model_ms(analysis.model, analysis.inputs)
    kind, value = budget
    search = LatencySearch(value if kind == "ms" else value * original_ms, original_ms)
    # The warning blames compile's caller:
    # _correct <- plan_for <- apply_with_retry <- here <- _compile_whole <- compile <- caller.
    plan_for = latency_planner(backend, scores, search, ignore=ignored, module_names=names, max_ratio=max_ratio,
                               corrections=6, warn_stacklevel=6)
    result = apply_with_retry(analysis, plan_for, started=start)
    outcome = LatencyOutcome(search.budget_ms, original_ms, search.predicted_ms, search.measured_ms,
                             search.measurements, backend.describe(), value if kind == "fraction" else None)
    return replace(result, latency=outcome)


def _latency_budget(ms: float | None, fraction: float | None) -> tuple[str, float]:
    if ms is not None and fraction is not None:
        raise PlanError("give one latency budget: target_latency_ms or target_latency, not both")
    if fraction is not None:
        if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real) or not 0 < fraction < 1:
            raise PlanError(f"target_latency must be in (0, 1): the fraction of the original's measured latency, "
                            f"got {fraction!r}")
        return "fraction", float(fraction)
    if isinstance(ms, bool) or not isinstance(ms, numbers.Real) or not ms > 0:
        raise PlanError(f"target_latency_ms must be a number of milliseconds > 0, got {ms!r}")
    return "ms", float(ms)


def _budget(target_macs: float | None, target_params: float | None) -> tuple[str, float] | None:
    if target_macs is not None and target_params is not None:
        raise PlanError("give one budget: target_macs or target_params, not both")
    if target_macs is None and target_params is None:
        return None
    kind, value = ("macs", target_macs) if target_macs is not None else ("params", target_params)
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < 1:
        raise PlanError(f"target_{kind} must be in (0, 1): the fraction of the original to keep, got {value!r}")
    return kind, float(value)


def verify(model: nn.Module, result: CompileResult | SubmoduleResult, example_inputs: Any) -> float:
    """The oracle: max |pruned(x) - masked_original(x)| in eval mode (0 up to rounding when correct).

    For a :class:`SubmoduleResult`, the largest of each pruned submodule's oracle on its inputs
    and the whole model's (every pruned submodule masked in a copy of the model);
    :func:`~fxprune.drivers.submodules.verify_submodules` gives them one by one.

    Example:
        >>> assert fxprune.verify(model, result, (x,)) < 1e-4
    """
    inputs = normalize_inputs(example_inputs)
    if isinstance(result, SubmoduleResult):
        return max(verify_submodules(model, result, inputs).values())
    reference = masked_reference(model, result.groups, result.plan)
    return max_difference(reference, result.module, inputs)
