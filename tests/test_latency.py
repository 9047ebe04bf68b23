"""Latency budgets: the width ladder, the greedy path, the measured correction, the on-disk cache and the CLI.

The algorithm is tested with an injected fake backend whose "latency" is a
deterministic function of the widths, so no assertion depends on the machine's
speed; the ONNX Runtime backend is tested for what it promises regardless of speed
(the cache is used on a second run, its own measurement says the budget it measured
was met, at a generous budget).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import fxprune
from fxprune import cli
from fxprune.drivers.latency import LatencySearch, _correct
from fxprune.export import LatencySettings, OrtLatency
from fxprune.passes.importance import score_groups
from fxprune.passes.latency_plan import LatencyStep, candidate_widths, latency_path
from fxprune.passes.layer_widths import Layer, find_layers, layer_widths
from fxprune.passes.shapes import propagate_shapes


class Net(nn.Module):
    """A stem, a residual pair (coupled channels), a wide conv and a linear head."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                                   nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width))
        self.wide = nn.Sequential(nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(2 * width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = torch.relu(x + self.block(x))
        return self.head(self.wide(x).mean((2, 3)))


class FakeBackend:
    """Latency = MACs (millions) of the convs and linears: the fake prediction and the fake measurement agree
    up to ``bias`` ms per model, so the correction has something to correct."""

    def __init__(self, bias: float = 0.0) -> None:
        self.bias, self.models = bias, 0
        self.prepared: list[Layer] = []

    def prepare(self, layers: Sequence[Layer]) -> None:
        self.prepared = list(layers)

    def layer_ms(self, layer: Layer, in_channels: int, out_channels: int) -> float:
        kernel = int(np.prod(layer.attributes.get("kernel", [1])))
        return in_channels * out_channels * kernel * layer.activation * 1e-6

    def model_ms(self, module: nn.Module, example_inputs: Any) -> float:
        self.models += 1
        gm = fxprune.trace(module) if not isinstance(module, torch.fx.GraphModule) else module
        propagate_shapes(gm, tuple(example_inputs))
        groups = fxprune.find_groups(gm)
        return self.bias + sum(self.layer_ms(layer, layer.in_channels, layer.out_channels)
                               for layer in find_layers(gm, groups))

    def describe(self) -> str:
        return "fake"


@pytest.fixture
def net() -> tuple[nn.Module, tuple[torch.Tensor]]:
    torch.manual_seed(0)
    return Net().eval(), (torch.randn(1, 3, 16, 16),)


def test_candidate_widths_are_blocks_of_8_down_to_the_cap() -> None:
    assert candidate_widths(64) == (64, 56, 48, 40, 32, 24, 16, 8)
    widths = candidate_widths(200, min_keep=20)
    assert widths[0] == 200 and min(widths) >= 20 and all(w % 8 == 0 for w in widths[1:])
    assert candidate_widths(12) == (12, 9, 6, 3)


def test_layers_count_their_widths_from_the_kept_channels(net: tuple) -> None:
    model, x = net
    analysis = fxprune.analyze(model, x)
    layers = {layer.module: layer for layer in find_layers(analysis.traced, analysis.groups)}
    assert set(layers) == {"stem.0", "block.0", "block.3", "wide.0", "head"}
    residual = next(iter(layers["stem.0"].outputs.channels))  # stem, block.3 and wide.0's input share it
    assert residual in layers["wide.0"].inputs.channels and residual in layers["block.3"].outputs.channels
    kept = {residual: np.arange(32) < 8}
    assert layer_widths(layers["wide.0"], kept) == (8, 64)
    assert layer_widths(layers["stem.0"], kept) == (3, 8)


def test_path_cuts_the_cheapest_importance_per_millisecond_first(net: tuple) -> None:
    model, x = net
    analysis = fxprune.analyze(model, x)
    layers = find_layers(analysis.traced, analysis.groups)
    scores = score_groups(analysis.groups, analysis.traced)
    wide = next(iter(next(la for la in layers if la.module == "wide.0").outputs.channels))

    class OnlyWideCosts(FakeBackend):
        def layer_ms(self, layer: Layer, in_channels: int, out_channels: int) -> float:
            return out_channels * 1.0 if layer.module == "wide.0" else 1e-3 * in_channels * out_channels

    allowed = [g.index for g in analysis.groups.prunable]
    path = latency_path(analysis.groups, scores, layers, OnlyWideCosts(), allowed)
    predicted = [step.predicted_ms for step in path]
    assert predicted == sorted(predicted, reverse=True) and len(set(predicted)) == len(predicted)
    assert set(path[1].ratios) == {wide}  # the first cut goes where the milliseconds are
    kept = [step.kept_importance for step in path]
    assert kept[0] == pytest.approx(1.0) and kept == sorted(kept, reverse=True)


def test_compile_meets_a_latency_budget_by_measuring(net: tuple) -> None:
    model, x = net
    fake = FakeBackend(bias=0.5)  # the prediction misses a fixed 0.5 ms the measurement has
    result = fxprune.compile(model, example_inputs=x, target_latency=0.5, latency=fake)
    outcome = result.latency
    assert outcome.budget_ms == pytest.approx(0.5 * outcome.original_ms)
    assert outcome.measured_ms == pytest.approx(fake.model_ms(result.module, x))  # the returned module's figure
    assert outcome.met and outcome.measured_ms <= outcome.budget_ms
    assert outcome.measurements == fake.models - 1 <= 8  # the original, then a few corrections
    assert fxprune.verify(model, result, x) < 1e-4
    assert "latency target" in result.summary() and "measured" in result.summary()


@pytest.mark.parametrize("slope, offset", [(1.3, 0.2), (0.7, 0.0), (1.0, 3.0)])
def test_correction_finds_the_first_point_measured_within_the_budget(slope: float, offset: float) -> None:
    """Measured = slope * predicted + offset: the secant steps land on the best point in a few measurements."""
    path = [LatencyStep({}, 100.0 - i, 1.0 - i / 100) for i in range(100)]
    measured: list[int] = []

    def measure(index: int) -> float:
        measured.append(index)
        return slope * path[index].predicted_ms + offset

    search = LatencySearch(budget_ms=50.0, original_ms=measure(0))
    index = _correct(path, measure, search, corrections=6, stacklevel=2)
    best = next(i for i in range(100) if slope * path[i].predicted_ms + offset <= 50.0)
    assert index in (best, best + 1, best + 2) and search.measured_ms <= 50.0  # within 5% under: good enough
    assert search.measured_ms >= 0.95 * 50.0 or index == best
    assert len(measured) <= 1 + 6


def test_budget_in_milliseconds_and_the_original_already_fast_enough(net: tuple) -> None:
    model, x = net
    original = FakeBackend().model_ms(model, x)
    result = fxprune.compile(model, example_inputs=x, target_latency_ms=2 * original, latency=FakeBackend())
    assert not result.plan.entries and result.latency.met
    result = fxprune.compile(model, example_inputs=x, target_latency_ms=0.7 * original, latency=FakeBackend())
    assert result.plan.entries and result.latency.measured_ms <= 0.7 * original


def test_unreachable_latency_budget_warns_with_the_floor(net: tuple) -> None:
    model, x = net
    with pytest.warns(UserWarning, match=r"target latency .* cannot be reached: the smallest plan .* measures"):
        result = fxprune.compile(model, example_inputs=x, target_latency_ms=1e-6, latency=FakeBackend())
    assert not result.latency.met and result.latency.measured_ms > 1e-6
    assert "NOT met" in result.summary()


@pytest.mark.parametrize("kwargs, message", [
    ({"target_latency": 1.5}, "target_latency must be in"),
    ({"target_latency_ms": -1.0}, "target_latency_ms must be"),
    ({"target_latency_ms": 1.0, "target_latency": 0.5}, "one latency budget"),
    ({"target_latency": 0.5, "target_macs": 0.5}, "one budget"),
])
def test_bad_latency_budgets_are_plan_errors(net: tuple, kwargs: dict, message: str) -> None:
    model, x = net
    with pytest.raises(fxprune.PlanError, match=message):
        fxprune.compile(model, example_inputs=x, latency=FakeBackend(), **kwargs)


def _quick(tmp_path: Any, threads: int = 1) -> LatencySettings:
    return LatencySettings(threads=threads, runs=3, warmup=1, layer_runs=2, layer_warmup=0, cache_dir=tmp_path,
                           progress=False, session_config={"session.intra_op.allow_spinning": "0"})


def test_layer_cache_round_trip_measures_once(net: tuple, tmp_path: Any) -> None:
    model, x = net
    analysis = fxprune.analyze(model, x)
    layers = find_layers(analysis.traced, analysis.groups)
    first = OrtLatency(_quick(tmp_path))
    first.prepare(layers)
    assert first.layers_measured > len(layers)  # several widths per layer
    assert (tmp_path / "latency.json").exists()
    second = OrtLatency(_quick(tmp_path))
    second.prepare(layers)
    assert second.layers_measured == 0
    for layer in layers:
        widths = (max(1, layer.in_channels // 2), max(1, layer.out_channels // 2))
        assert second.layer_ms(layer, *widths) == first.layer_ms(layer, *widths) >= 0
    assert second.layers_measured == 0
    other = OrtLatency(_quick(tmp_path, threads=2))  # another thread count is another machine setting
    other.prepare(layers[:1])
    assert other.layers_measured > 0


def test_ort_budget_is_met_by_its_own_measurement(tmp_path: Any) -> None:
    """Real ONNX Runtime: a generous budget (0.9x) on a conv-heavy model; asserted on the figure it measured."""
    torch.manual_seed(0)
    model, x = Net(width=64).eval(), (torch.randn(1, 3, 48, 48),)
    result = fxprune.compile(model, example_inputs=x, target_latency=0.9, latency=_quick(tmp_path))
    assert result.latency.met, result.summary()
    assert result.latency.measured_ms <= result.latency.budget_ms
    assert fxprune.verify(model, result, x) < 1e-4


def test_cli_prune_to_a_latency_budget(tmp_path: Any, capsys: pytest.CaptureFixture) -> None:
    code = cli.main(["prune", "tests.cli_factory:tiny2d", "--input-shape", "1,3,32,32", "--target-latency-ms",
                     "1000", "--threads", "1", "--batch", "2", "--session-config",
                     "session.intra_op.allow_spinning=0", "--latency-runs", "3", "--latency-cache", str(tmp_path),
                     "--json", "--quiet"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    latency = data["latency"]
    assert latency["budget_ms"] == 1000 and latency["met"]
    assert "1 threads, session.intra_op.allow_spinning=0, batch 2, median of 3 runs" in latency["setting"]


def test_cli_latency_flags_are_checked(capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["prune", "tests.cli_factory:tiny2d", "--input-shape", "1,3,32,32", "--target-latency", "0.5",
                     "--ratio", "0.3", "--quiet"]) == 2
    assert "give one of --ratio" in capsys.readouterr().err
    assert cli.main(["prune", "tests.cli_factory:tiny2d", "--input-shape", "1,3,32,32", "--ratio", "0.3", "--int8",
                     "--quiet"]) == 2
    assert "--int8 on prune makes a latency target" in capsys.readouterr().err
    assert cli.main(["prune", "resnet18", "--session-config", "novalue"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert cli.main(["bench", "--help"]) == 0
    assert "--session-config" in capsys.readouterr().out
