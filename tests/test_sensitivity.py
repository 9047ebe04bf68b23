"""Sensitivity analysis on a tiny 3D network; deriving ratios by tolerance and by MACs budget."""

from __future__ import annotations

import copy
import csv
import json
import math

import pytest
import torch
from torch import nn

import fxprune
from fxprune.drivers.sensitivity import SensitivityReport, SensitivityRow, sensitivity
from fxprune.models import c3d
from fxprune.passes.figures import Figures

RATIOS = (0.25, 0.75)


def _evaluate(reference: torch.Tensor, x: torch.Tensor):
    def evaluate(module: nn.Module) -> float:
        with torch.no_grad():
            return -float((module.eval()(x) - reference).abs().mean())
    return evaluate


@pytest.fixture(scope="module")
def c3d_case() -> tuple[nn.Module, torch.Tensor, SensitivityReport, dict]:
    torch.manual_seed(0)
    model = c3d(width=0.125, input_size=32, clip_length=16, num_classes=5).eval()
    x = torch.randn(1, 3, 16, 32, 32)
    with torch.no_grad():
        reference = model(x)
    state = copy.deepcopy(model.state_dict())
    report = sensitivity(model, (x,), _evaluate(reference, x), ratios=RATIOS, progress=False)
    return model, x, report, state


def test_every_prunable_group_is_measured_on_the_3d_model(c3d_case) -> None:
    model, x, report, state = c3d_case
    groups = fxprune.analyze(model, (x,)).groups
    assert report.groups == tuple(g.index for g in groups.prunable)
    assert len(report.rows) == len(groups.prunable) * len(RATIOS)
    assert report.baseline == 0.0 and all(row.metric <= 0 for row in report.rows)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items()), "the model was modified"
    for row in report.rows:
        assert row.removed == math.floor(row.size * row.ratio + 1e-9)
        assert row.macs < report.before.macs and row.params < report.before.params


def test_a_point_equals_compiling_that_group_alone(c3d_case) -> None:
    model, x, report, _ = c3d_case
    row = next(r for r in report.rows if r.name == "conv3a" and r.ratio == 0.75)
    result = fxprune.compile(model, {row.group: row.ratio}, example_inputs=(x,))
    with torch.no_grad():
        reference = model(x)
    assert _evaluate(reference, x)(result.module) == pytest.approx(row.metric)
    assert (result.after.params, result.after.macs) == (row.params, row.macs)


def test_writes_csv_and_json(c3d_case, tmp_path) -> None:
    _, _, report, _ = c3d_case
    report.to_csv(tmp_path / "s.csv")
    report.to_json(tmp_path / "s.json")
    with (tmp_path / "s.csv").open() as handle:
        lines = list(csv.DictReader(handle))
    assert len(lines) == len(report.rows) + 1 and lines[0]["name"] == "baseline"
    assert [float(line["metric"]) for line in lines[1:]] == [row.metric for row in report.rows]
    data = json.loads((tmp_path / "s.json").read_text())
    assert data["format"] == "fxprune-sensitivity" and len(data["rows"]) == len(report.rows)
    again = SensitivityReport.from_json(tmp_path / "s.json")
    assert again == report and again.derive_ratios(0.01) == report.derive_ratios(0.01)


def test_plot_writes_a_png(c3d_case, tmp_path) -> None:
    pytest.importorskip("matplotlib")
    _, _, report, _ = c3d_case
    report.plot(tmp_path / "s.png", legend=3)
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_derived_ratios_respect_the_tolerance(c3d_case) -> None:
    model, x, report, _ = c3d_case
    tolerance = 0.5 * max(report.baseline - r.metric for r in report.rows)
    ratios = report.derive_ratios(tolerance)
    assert ratios, "some group must tolerate pruning at half the worst drop"
    for group in report.groups:
        chosen = ratios.get(group, 0.0)
        assert all(r.metric >= report.baseline - tolerance for r in report.curve(group) if r.ratio <= chosen)
        larger = [r for r in report.curve(group) if r.ratio > chosen]
        assert not larger or larger[0].metric < report.baseline - tolerance
    assert fxprune.compile(model, ratios, example_inputs=(x,)).plan.entries


def test_derive_by_tolerance_stops_at_the_first_failure() -> None:
    rows = []
    for group, metrics in enumerate(([0.99, 0.98, 0.97], [0.5, 0.99, 0.99], [0.99, 0.8, 0.99])):
        rows += [SensitivityRow(group, f"conv{group}", 8, ratio, int(8 * ratio), metric, 10, 10)
                 for ratio, metric in zip((0.25, 0.5, 0.75), metrics, strict=True)]
    report = SensitivityReport(tuple(rows), 1.0, Figures(20, 20))
    assert report.derive_ratios(0.025) == {0: 0.5, 2: 0.25}  # group 1 fails first; group 2 is not monotone
    assert report.derive_ratios(0.0) == {}
    with pytest.raises(fxprune.PlanError, match="needs the analysis"):
        report.derive_ratios(target_macs=0.5)


def test_derive_for_a_macs_budget(c3d_case) -> None:
    model, x, report, _ = c3d_case
    ratios = report.derive_ratios(target_macs=0.7)
    result = fxprune.compile(model, ratios, example_inputs=(x,))
    assert result.after.macs <= 0.7 * result.before.macs
    assert set(ratios) <= set(report.groups) and all(r in RATIOS for r in ratios.values())
    with pytest.raises(fxprune.PlanError, match="cannot be reached"):
        report.derive_ratios(target_macs=0.001)
    with pytest.raises(fxprune.PlanError, match="give one of"):
        report.derive_ratios(0.1, target_macs=0.5)


def test_greedy_prefers_the_cheapest_drop_per_mac() -> None:
    from fxprune.drivers.sensitivity_report import _cheapest_step

    points = {0: [(0.0, 1.0, 100), (0.5, 0.9, 50)], 1: [(0.0, 1.0, 100), (0.5, 0.95, 90), (0.9, 0.95, 40)]}
    assert _cheapest_step(points, {0: 0, 1: 0}) == (1, 2)  # 0.05 for 60 MACs beats 0.1 for 50
    assert _cheapest_step(points, {0: 1, 1: 2}) is None


def test_bad_arguments_raise_typed_errors() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3)).eval()
    x = torch.randn(1, 3, 8, 8)
    with pytest.raises(fxprune.PlanError, match="must be in"):
        sensitivity(model, (x,), lambda m: 1.0, ratios=(0.0, 0.5), progress=False)
    with pytest.raises(fxprune.PlanError, match="frozen"):
        sensitivity(model, (x,), lambda m: 1.0, groups=[1], progress=False)
    with pytest.raises(fxprune.PlanError, match="does not exist"):
        sensitivity(model, (x,), lambda m: 1.0, groups=[7], progress=False)
    with pytest.raises(fxprune.InputError, match="finite number"):
        sensitivity(model, (x,), lambda m: float("nan"), progress=False)


def test_progress_bar_and_tensor_metrics(capsys) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3)).eval()
    x = torch.randn(1, 3, 8, 8)
    report = sensitivity(model, (x,), lambda m: m(x).sum().detach(), ratios=(0.5,), progress=True)
    assert len(report.rows) == 1 and isinstance(report.rows[0].metric, float)
    assert "sensitivity" in capsys.readouterr().err
