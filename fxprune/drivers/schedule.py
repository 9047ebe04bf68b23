"""Iterative pruning: remove channels over several steps, fine-tuning in between.

Pruning gradually and letting the network recover after every step keeps more
accuracy than one large cut (Zhu & Gupta, *To prune, or not to prune*, arXiv
1710.01878; Intel Distiller's schedules). Step ``k`` of ``n`` re-analyses the module
left by step ``k - 1`` (already pruned, possibly fine-tuned), re-scores its channels
and removes what is needed for the *cumulative* fraction of the original channels
(or MACs) removed to follow the schedule:

- ``linear``: ``r_k = r_f * k / n``
- ``agp`` (automated gradual pruning, cubic): ``r_k = r_f * (1 - (1 - k / n) ** 3)``,
  large steps first while the network is redundant, small ones near the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import fx, nn

from ..errors import PlanError
from ..passes.figures import Figures
from ..passes.groups import ChannelGroup
from ..passes.importance import Importance, score_groups
from ..passes.plan import Plan, PlanEntry, Ratios, check_ratio, kept_count, make_plan, resolve_ratios
from ..pipeline import Analysis, CompileResult, analyze, apply_with_retry, search_budget
from ..progress import progress as progress_of

__all__ = ["SCHEDULES", "ScheduleResult", "ScheduleStep", "prune_iteratively", "schedule_ratios"]

SCHEDULES: dict[str, Callable[[float], float]] = {
    "linear": lambda progress: progress,
    "agp": lambda progress: 1.0 - (1.0 - progress) ** 3,
}

FineTune = Callable[[fx.GraphModule, int], Any]


@dataclass(frozen=True)
class ScheduleStep:
    """What one step reached.

    Attributes:
        step: 1 .. steps.
        progress: scheduled share of the final cut done after this step (``k / n`` linear,
            ``1 - (1 - k / n) ** 3`` agp): a group with final ratio ``r`` has lost ``r * progress``
            of its original channels, a budget ``b`` has removed ``(1 - b) * progress`` of the MACs.
        channels: channels left in each targeted group (keyed by group name); the original counts
            are in ``ScheduleResult.original_channels``.
        params, macs: figures of the module after this step.
        seconds: time to analyse, score, plan and rewrite (fine-tuning excluded).
    """

    step: int
    progress: float
    channels: Mapping[str, int]
    params: int
    macs: int
    seconds: float


@dataclass(frozen=True)
class ScheduleResult:
    """The final module, every step's :class:`~fxprune.CompileResult` and the history.

    ``steps[k].module`` is the module step ``k + 1`` emitted, fine-tuned in place when
    ``fine_tune`` trains it in place.
    """

    module: nn.Module
    steps: tuple[CompileResult, ...]
    history: tuple[ScheduleStep, ...]
    before: Figures
    original_channels: Mapping[str, int]
    kind: str

    @property
    def after(self) -> Figures:
        return Figures(self.history[-1].params, self.history[-1].macs) if self.history else self.before

    def removed_fraction(self, step: int) -> float:
        """Fraction of the targeted groups' original channels removed after ``step`` (1-based)."""
        left = self.history[step - 1].channels
        return 1.0 - sum(left.values()) / max(1, sum(self.original_channels[n] for n in left))

    def summary(self) -> str:
        lines = [f"fxprune {self.kind} schedule, {len(self.history)} steps"]
        for record in self.history:
            lines.append(f"  step {record.step}: progress {record.progress:.3f}, channels removed "
                         f"{self.removed_fraction(record.step):.3f}, params {record.params / self.before.params:.3f}x,"
                         f" MACs {record.macs / max(1, self.before.macs):.3f}x ({record.seconds:.2f} s)")
        return "\n".join(lines)


def schedule_ratios(final: float, steps: int, kind: str = "linear") -> tuple[float, ...]:
    """Cumulative fraction removed after each of ``steps`` steps, ending at ``final``.

    Example:
        >>> schedule_ratios(0.5, 2, "agp")
        (0.4375, 0.5)
    """
    if kind not in SCHEDULES:
        raise PlanError(f"unknown schedule '{kind}'; choose one of {sorted(SCHEDULES)}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise PlanError(f"steps must be a positive integer, got {steps!r}")
    shape = SCHEDULES[kind]
    return tuple(final * shape(k / steps) for k in range(1, steps + 1))


@dataclass(frozen=True)
class _Options:
    importance: Any
    ignore: tuple[str, ...]
    round_to: int | None
    global_ranking: bool
    max_ratio: float
    exact: bool


def prune_iteratively(model: nn.Module, example_inputs: Any, target_ratio: Ratios | None = None, *,
                      target_macs: float | None = None, target_params: float | None = None, steps: int = 3,
                      schedule: str = "linear", fine_tune: FineTune | None = None,
                      importance: str | Importance = "l1", ignore: Iterable[str] = (), round_to: int | None = None,
                      global_ranking: bool = False, max_ratio: float = 0.9, exact: bool = False,
                      progress: bool = True, capture: str = "auto", check_capture: bool = True) -> ScheduleResult:
    """Prune ``model`` to ``target_ratio`` (or a budget) in ``steps`` steps; ``model`` is not modified.

    Args:
        target_ratio: final fraction of channels to remove, as for ``fxprune.compile``: one float
            or a mapping of module-name patterns to ratios.
        target_macs, target_params: instead, a final budget as a fraction of the original; each step
            searches a uniform (or global) ratio meeting that step's scheduled budget.
        steps, schedule: number of steps and ``"linear"`` or ``"agp"`` (see the module docstring).
        fine_tune: ``fine_tune(module, step)``, called after *every* step including the last
            (``step`` = 1 .. steps, so ``steps`` calls), since the final cut needs recovery
            too; skip work in it for ``step == steps`` if you fine-tune separately. It trains
            ``module`` in place (a fresh optimizer over ``module.parameters()`` works) or returns
            a replacement module.
        importance, ignore, round_to, global_ranking, max_ratio, exact, capture, check_capture: as for
            ``fxprune.compile`` (every step's capture is checked);
            channels are re-scored at every step (a :class:`fxprune.Taylor` iterates its data once
            per step, so give it a list or a DataLoader, not a generator). With ``global_ranking``,
            ``max_ratio`` caps removal relative to each layer's *original* width across all steps.

    Raises:
        PlanError: no target or two targets, a bad schedule, or ratios out of range.

    Example:
        >>> result = prune_iteratively(model, (x,), 0.5, steps=4, schedule="agp",
        ...                            fine_tune=lambda m, step: train(m, loader, epochs=1))
        >>> print(result.summary())
    """
    budget = _budget(target_ratio, target_macs, target_params)
    kind = schedule
    shares = schedule_ratios(1.0, steps, kind)
    options = _Options(importance, tuple([ignore] if isinstance(ignore, str) else ignore), round_to,
                       global_ranking, 1.0 if max_ratio == 1 else check_ratio(max_ratio, "max_ratio"), exact)
    original = analyze(model, example_inputs, exact=exact, capture=capture, check_capture=check_capture)
    names = _module_names(model)
    wanted = _wanted(original, target_ratio if target_ratio is not None else 0.5, options, names)
    sizes = {original.groups[i].name: original.groups[i].size for i in wanted}
    current, analysis, results, history = model, original, [], []
    for step in progress_of(range(1, steps + 1), f"{kind} schedule", unit="step", enabled=progress):
        started = time.perf_counter()
        analysis = original if step == 1 else analyze(current, example_inputs, exact=exact, capture=capture,
                                                         check_capture=check_capture)
        scores = score_groups(analysis.groups, analysis.traced, options.importance)
        step_plan = _StepPlanner(original, budget, shares[step - 1], wanted, options, _module_names(current), scores)
        result = apply_with_retry(analysis, step_plan, started=started)
        current, seconds = result.module, time.perf_counter() - started
        if fine_tune is not None:
            replaced = fine_tune(current, step)
            current = replaced if isinstance(replaced, nn.Module) else current
        results.append(result)
        history.append(ScheduleStep(step, shares[step - 1], _channels(result, sizes), result.after.params,
                                    result.after.macs, seconds))
    return ScheduleResult(current, tuple(results), tuple(history), original.before, sizes, kind)


def _budget(ratio: Ratios | None, macs: float | None, params: float | None) -> tuple[str, Any]:
    given = [(k, v) for k, v in (("ratio", ratio), ("macs", macs), ("params", params)) if v is not None]
    if len(given) != 1:
        raise PlanError("give exactly one of target_ratio, target_macs or target_params")
    kind, value = given[0]
    if kind == "ratio":
        return kind, (check_ratio(value, "target_ratio") if not isinstance(value, Mapping) else 1.0)
    fraction = check_ratio(value, f"target_{kind}")
    if fraction <= 0:
        raise PlanError(f"target_{kind} must be in (0, 1): the fraction of the original to keep")
    return kind, fraction


def _module_names(module: nn.Module) -> list[str]:
    return [name for name, _ in module.named_modules() if name]


def _wanted(original: Analysis, ratios: Ratios, options: _Options, names: list[str]) -> dict[int, float]:
    """Final ratio of every targeted group of the original model."""
    if options.global_ranking and isinstance(ratios, Mapping):
        raise PlanError("global ranking takes one float target_ratio (the fraction of all channels), not patterns")
    return resolve_ratios(original.groups, ratios, options.ignore, names)


@dataclass(frozen=True)
class _StepPlanner:
    """The plan of one step, made against the analysis of the current module it is given."""

    original: Analysis
    budget: tuple[str, Any]
    progress: float
    wanted: Mapping[int, float]
    options: _Options
    names: list[str]
    scores: Mapping[int, np.ndarray]

    def __call__(self, analysis: Analysis) -> Plan:
        original, wanted, options, scores = self.original, self.wanted, self.options, self.scores
        floors = _floors(analysis, original, wanted, options) if options.global_ranking else {}

        def plan_at(ratios: Ratios) -> Plan:
            plan = make_plan(analysis.groups, scores, ratios, ignore=options.ignore, round_to=options.round_to,
                             module_names=self.names, global_ranking=options.global_ranking,
                             max_ratio=options.max_ratio)
            return _with_floors(plan, scores, floors)

        kind, value = self.budget
        if kind != "ratio":
            return search_budget(analysis, plan_at, kind, 1.0 - (1.0 - value) * self.progress, of=original.before)
        if options.global_ranking:
            left = sum(g.size for g in _matching(analysis, original, wanted).values())
            total = sum(original.groups[i].size for i in wanted)
            step = (left - (1.0 - value * self.progress) * total) / max(1, left)
            return plan_at(min(step, 0.995)) if step > 0 else Plan(())
        relative = {}
        for index, group in _matching(analysis, original, wanted).items():
            keep = kept_count(original.groups[index].size, wanted[index] * self.progress, options.round_to)
            if group.size > keep:
                relative[group.index] = (group.size - keep) / group.size
        return plan_at(relative) if relative else Plan(())


def _matching(analysis: Analysis, original: Analysis, wanted: Mapping[int, float]) -> dict[int, ChannelGroup]:
    """Current prunable groups keyed by the index of the original group they descend from."""
    by_name = {g.producers: g for g in analysis.groups.prunable}
    return {i: by_name[original.groups[i].producers] for i in wanted if original.groups[i].producers in by_name}


def _floors(analysis: Analysis, original: Analysis, wanted: Mapping[int, float], options: _Options) -> dict[int, int]:
    """Fewest channels each current group may keep: ``max_ratio`` of its original width."""
    return {group.index: kept_count(original.groups[index].size, options.max_ratio, options.round_to)
            for index, group in _matching(analysis, original, wanted).items()}


def _with_floors(plan: Plan, scores: Mapping[int, np.ndarray], floors: Mapping[int, int]) -> Plan:
    """Add back the best removed channels of groups that would fall under their floor."""
    entries = []
    for entry in plan.entries:
        floor = min(entry.size, floors.get(entry.group, 0))
        keep = entry.keep
        if len(keep) < floor:
            removed = np.setdiff1d(np.arange(entry.size), keep)
            extra = removed[np.argsort(-scores[entry.group][removed], kind="stable")[:floor - len(keep)]]
            keep = tuple(sorted({*keep, *extra.tolist()}))
        if len(keep) < entry.size:
            entries.append(PlanEntry(entry.group, entry.name, entry.size, entry.ratio, keep, entry.modules))
    return Plan(tuple(entries))


def _channels(result: CompileResult, sizes: Mapping[str, int]) -> dict[str, int]:
    """Channels left in every targeted group after a step, by group name."""
    removed = {entry.name: entry.removed for entry in result.plan.entries}
    left = {g.name: g.size - removed.get(g.name, 0) for g in result.groups if g.name in sizes}
    return {name: left.get(name, 1) for name in sizes}
