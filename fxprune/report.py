"""Before/after figures and the human summary of a compile."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from torch import nn

from .passes.groups import Groups
from .passes.plan import Plan

__all__ = ["Figures", "count_params", "summarize"]


@dataclass(frozen=True)
class Figures:
    """Size of a model: parameters, and multiply-accumulates for the example inputs
    (counted by ``torch.utils.flop_counter``: FLOPs / 2)."""

    params: int
    macs: int


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _human(value: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f}{unit}"
    return f"{value:.0f}"


def _ratio(after: int, before: int) -> str:
    return f"{after / before:.3f}x" if before else "n/a"


def summarize(name: str, before: Figures, after: Figures, groups: Groups, plan: Plan, seconds: float) -> str:
    """A short report: figures, group counts, why groups were frozen, and caveats."""
    pruned = {e.group for e in plan.entries}
    frozen = [g for g in groups if not g.prunable]
    lines = [
        f"fxprune {name} ({'exact' if groups.exact else 'default'} mode, {seconds:.2f} s)",
        f"  params  {_human(before.params):>9} -> {_human(after.params):>9}  ({_ratio(after.params, before.params)})",
        f"  MACs    {_human(before.macs):>9} -> {_human(after.macs):>9}  ({_ratio(after.macs, before.macs)})",
        f"  groups  {len(groups)} found: {len(pruned)} pruned, {len(groups.prunable) - len(pruned)} kept whole, "
        f"{len(frozen)} frozen",
    ]
    if not len(groups):
        lines.append("  nothing is prunable: no conv or linear layer produces channels fxprune can track "
                     "(an exported ATen graph? compile the original nn.Module instead)")
    elif not groups.prunable:
        lines.append("  nothing is prunable: every channel group is frozen (reasons below)")
    reasons = Counter(reason for g in frozen for reason in g.frozen_by)
    if reasons:
        lines.append("  frozen because:")
        lines += [f"    {count:>4} x {reason}" for reason, count in reasons.most_common(12)]
        if len(reasons) > 12:
            lines.append(f"    ... and {len(reasons) - 12} more reasons (see result.groups)")
    pinned = [g for g in groups if g.prunable and g.pinned.size]
    if pinned:
        lines.append(f"  pinned  {sum(g.pinned.size for g in pinned)} channels of {len(pinned)} prunable group(s) "
                     "are kept: they meet untracked tensors (model inputs, constants)")
    caveats = Counter(c for g in groups if g.index in pruned for c in g.caveats)
    if caveats:
        lines.append("  pruned although kept values change (exact=True freezes these):")
        lines += [f"    {count:>4} x {reason}" for reason, count in caveats.most_common(8)]
    return "\n".join(lines)
