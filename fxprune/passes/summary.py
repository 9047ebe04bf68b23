"""The human summary of a compile: figures, group counts, why groups were frozen."""

from __future__ import annotations

from collections import Counter

from .figures import Figures, human_count
from .groups import Groups
from .plan import Plan

__all__ = ["summarize"]


def _ratio(after: int, before: int) -> str:
    return f"{after / before:.3f}x" if before else "n/a"


def summarize(name: str, before: Figures, after: Figures, groups: Groups, plan: Plan, seconds: float) -> str:
    """A short report: figures, group counts, why groups were frozen, and caveats."""
    pruned = {e.group for e in plan.entries}
    frozen = [g for g in groups if not g.prunable]
    lines = [
        f"fxprune {name} ({'exact' if groups.exact else 'default'} mode, {seconds:.2f} s)",
        f"  params  {human_count(before.params):>9} -> {human_count(after.params):>9}  "
        f"({_ratio(after.params, before.params)})",
        f"  MACs    {human_count(before.macs):>9} -> {human_count(after.macs):>9}  ({_ratio(after.macs, before.macs)})",
        f"  groups  {len(groups)} found: {len(pruned)} pruned, {len(groups.prunable) - len(pruned)} kept whole, "
        f"{len(frozen)} frozen",
    ]
    if not len(groups):
        lines.append("  nothing is prunable: no conv or linear layer produces channels fxprune can track "
                     "(an exported ATen graph? compile the original nn.Module instead)")
    elif not groups.prunable:
        lines.append("  nothing is prunable: every channel group is frozen (reasons below)")
    lines += _folded("frozen because:", [g.frozen_by for g in frozen], 12)
    pinned = [g for g in groups if g.prunable and g.pinned.size]
    if pinned:
        lines.append(f"  pinned  {sum(g.pinned.size for g in pinned)} channels of {len(pinned)} prunable group(s) "
                     "are kept: they meet untracked tensors (model inputs, constants)")
    lines += _folded("pruned although kept values change (exact=True freezes these):",
                     [g.caveats for g in groups if g.index in pruned], 8)
    return "\n".join(lines)


def _folded(title: str, reasons_per_group: list[tuple[str, ...]], most: int) -> list[str]:
    """Reasons counted per group with their places folded: "3 x no rule for roll: at a, b and 1 more"."""
    counts: Counter[str] = Counter()
    places: dict[str, dict[str, None]] = {}
    for reasons in reasons_per_group:
        whats = set()
        for reason in reasons:
            what, sep, where = reason.rpartition(" at ")
            what, where = (what, where) if sep else (reason, "")
            whats.add(what)
            if where:
                places.setdefault(what, {})[where] = None
        counts.update(whats)
    if not counts:
        return []
    lines = [f"  {title}"]
    for what, count in counts.most_common(most):
        found = list(places.get(what, {}))
        where = f": at {', '.join(found[:3])}" + (f" and {len(found) - 3} more" if len(found) > 3 else "") \
            if found else ""
        lines.append(f"    {count:>4} x {what}{where}")
    if len(counts) > most:
        lines.append(f"    ... and {len(counts) - most} more reasons (see result.groups)")
    return lines
