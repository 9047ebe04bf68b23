"""The sensitivity report: measured points, ratios derived from them by tolerance or MACs budget, plots.

Returned by :func:`fxprune.sensitivity`; see :mod:`fxprune.drivers.sensitivity`.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import FxPruneError, InputError, PlanError
from ..passes.figures import Figures
from ..passes.plan import Plan, check_ratio, make_plan
from ..pipeline import Analysis

__all__ = ["DEFAULT_RATIOS", "SensitivityReport", "SensitivityRow"]

DEFAULT_RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass(frozen=True)
class SensitivityRow:
    """One measured point: group ``group`` alone pruned at ``ratio``."""

    group: int
    name: str
    size: int
    ratio: float
    removed: int
    metric: float
    params: int
    macs: int


@dataclass(frozen=True)
class SensitivityReport:
    """Metric of the model with each group pruned alone, at each ratio.

    ``analysis`` and ``scores`` are kept (not serialised) so that
    :meth:`derive_ratios` can estimate the MACs of combined plans; a report read
    back with :meth:`from_json` derives ratios by tolerance only.
    """

    rows: tuple[SensitivityRow, ...]
    baseline: float
    before: Figures
    analysis: Analysis | None = field(default=None, repr=False, compare=False)
    scores: Mapping[int, np.ndarray] | None = field(default=None, repr=False, compare=False)

    @property
    def groups(self) -> tuple[int, ...]:
        """Indices of the measured groups, in the order measured."""
        return tuple(dict.fromkeys(row.group for row in self.rows))

    def curve(self, group: int) -> tuple[SensitivityRow, ...]:
        """The rows of one group, by increasing ratio."""
        return tuple(sorted((r for r in self.rows if r.group == group), key=lambda r: r.ratio))

    def to_csv(self, path: str | Path) -> None:
        """One line per point, with a header; the baseline is a row with group -1 and ratio 0."""
        names = list(SensitivityRow.__dataclass_fields__)
        with Path(path).open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(names)
            writer.writerow([-1, "baseline", 0, 0.0, 0, self.baseline, self.before.params, self.before.macs])
            writer.writerows([getattr(row, name) for name in names] for row in self.rows)

    def to_json(self, path: str | Path) -> None:
        data = {"format": "fxprune-sensitivity", "version": 1, "baseline": self.baseline,
                "before": asdict(self.before), "rows": [asdict(row) for row in self.rows]}
        Path(path).write_text(json.dumps(data, indent=2))

    @classmethod
    def from_json(cls, path: str | Path) -> SensitivityReport:
        """Read a report written by :meth:`to_json` (without the analysis)."""
        try:
            data = json.loads(Path(path).read_text())
            rows = tuple(SensitivityRow(**row) for row in data["rows"])
            return cls(rows, float(data["baseline"]), Figures(**data["before"]))
        except (ValueError, KeyError, TypeError) as error:
            raise InputError(f"{path} is not an fxprune sensitivity report: {error}") from error

    def plot(self, path: str | Path, *, legend: int = 10) -> None:
        """Save a PNG of metric against ratio, one line per group.

        Only the ``legend`` most sensitive groups (largest drop at any ratio) are
        coloured and named; the others are drawn thin and grey.
        """
        _plot(self, Path(path), legend)

    def derive_ratios(self, tolerance: float | None = None, *, target_macs: float | None = None) -> dict[int, float]:
        """Per-group ratios (group index -> ratio), ready for ``make_plan`` or ``fxprune.compile``.

        Args:
            tolerance: for each group, the largest measured ratio such that the metric
                at it and at every smaller ratio stays within ``tolerance`` (in metric
                units) of the baseline. Groups that fail at the smallest ratio are left out.
            target_macs: instead, a budget as a fraction of the original MACs: ratios
                grow greedily where the metric drops least per MAC saved, until the
                estimated MACs of all groups pruned together meet the budget.

        Raises:
            PlanError: both or neither option given, or a budget the measured ratios cannot reach.

        Example:
            >>> ratios = report.derive_ratios(tolerance=0.01)
            >>> result = fxprune.compile(model, ratios, example_inputs=(x,))
        """
        if (tolerance is None) == (target_macs is None):
            raise PlanError("give one of tolerance= (metric units) or target_macs= (fraction of MACs to keep)")
        if tolerance is not None:
            if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not tolerance >= 0:
                raise PlanError(f"tolerance must be a number >= 0 in metric units, got {tolerance!r}")
            return {g: r for g in self.groups if (r := self._tolerated(g, float(tolerance))) > 0}
        fraction = check_ratio(target_macs, "target_macs")
        if fraction <= 0:
            raise PlanError("target_macs must be in (0, 1): the fraction of the original MACs to keep")
        return self._greedy(fraction)

    def _tolerated(self, group: int, tolerance: float) -> float:
        ratio = 0.0
        for row in self.curve(group):
            if row.metric < self.baseline - tolerance:
                break
            ratio = row.ratio
        return ratio

    def _greedy(self, fraction: float) -> dict[int, float]:
        if self.analysis is None or self.scores is None:
            raise PlanError("deriving ratios for a MACs budget needs the analysis: use the report returned by "
                            "sensitivity(), not one read from JSON")
        goal = fraction * self.before.macs
        points = {g: [(0.0, self.baseline, self.before.macs)] + [(r.ratio, r.metric, r.macs) for r in self.curve(g)]
                  for g in self.groups}
        position = dict.fromkeys(points, 0)
        chosen: dict[int, float] = {}
        while self.analysis.estimate(self._plan(chosen)).macs > goal:
            step = _cheapest_step(points, position)
            if step is None:
                raise PlanError(f"target_macs={fraction} cannot be reached with the measured ratios; measure "
                                "larger ratios or more groups, or use fxprune.compile(target_macs=...)")
            group, index = step
            position[group] = index
            chosen[group] = points[group][index][0]
        return chosen

    def _plan(self, chosen: Mapping[int, float]) -> Plan:
        if not chosen or self.analysis is None or self.scores is None:
            return Plan(())
        return make_plan(self.analysis.groups, self.scores, dict(chosen))


def _cheapest_step(points: Mapping[int, list[tuple[float, float, int]]],
                   position: Mapping[int, int]) -> tuple[int, int] | None:
    """The (group, point) with the least metric drop per MAC saved from where each group stands."""
    best: tuple[float, int, int, int] | None = None
    for group, curve in points.items():
        _, metric, macs = curve[position[group]]
        for index in range(position[group] + 1, len(curve)):
            saved = macs - curve[index][2]
            if saved > 0:
                key = ((metric - curve[index][1]) / saved, -saved, group, index)
                best = key if best is None or key < best else best
    return None if best is None else (best[2], best[3])


def _plot(report: SensitivityReport, path: Path, legend: int) -> None:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise FxPruneError("plotting needs matplotlib: pip install 'fxprune[plot]'") from error
    # A bare Figure with the Agg canvas draws off-screen without touching pyplot's global backend.
    figure = Figure(figsize=(8, 5), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    drops = {g: report.baseline - min(r.metric for r in report.curve(g)) for g in report.groups}
    named = set(sorted(drops, key=lambda g: -drops[g])[:max(0, legend)])
    for group in report.groups:
        curve = report.curve(group)
        x, y = [0.0] + [r.ratio for r in curve], [report.baseline] + [r.metric for r in curve]
        if group in named:
            axes.plot(x, y, marker="o", markersize=3, label=f"#{group} {curve[0].name} ({curve[0].size})")
        else:
            axes.plot(x, y, color="0.75", linewidth=0.8, zorder=0)
    axes.axhline(report.baseline, color="black", linestyle="--", linewidth=0.8, label="baseline")
    hidden = len(report.groups) - len(named)
    title = "Sensitivity: each group pruned alone"
    axes.set_title(title + (f" ({hidden} least sensitive groups in grey)" if hidden else ""))
    axes.set_xlabel("fraction of the group's channels removed")
    axes.set_ylabel("metric (higher is better)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small", loc="best")
    figure.tight_layout()
    figure.savefig(path, format="png")
