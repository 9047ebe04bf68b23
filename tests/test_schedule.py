"""Iterative pruning schedules (linear, AGP) with fine-tuning hooks, and YAML configurations."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fxprune
from fxprune.config import ConfigError, PruneConfig, ScheduleSpec, load_config, parse_config
from fxprune.drivers.schedule import ScheduleResult, prune_iteratively, schedule_ratios
from fxprune.passes.plan import kept_count


class Net(nn.Module):
    def __init__(self, width: int = 16, classes: int = 4) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.fc = nn.Linear(2 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.conv1(x)))
        h = F.relu(self.bn2(self.conv2(h))) + h
        return self.fc(F.relu(self.conv3(h)).mean((2, 3)))


@pytest.fixture()
def model() -> nn.Module:
    torch.manual_seed(0)
    return Net().eval()


X = torch.randn(4, 3, 8, 8)
Y = torch.tensor([0, 1, 2, 3])


def _sgd_step(module: nn.Module) -> float:
    """One training step with a fresh optimizer; returns the loss."""
    module.train()
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    loss = F.cross_entropy(module(X), Y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    module.eval()
    return float(loss.detach())


# --------------------------------------------------------------------------- schedules


def test_schedule_ratios() -> None:
    assert schedule_ratios(0.6, 3, "linear") == pytest.approx((0.2, 0.4, 0.6))
    assert schedule_ratios(0.6, 3, "agp") == pytest.approx([0.6 * (1 - (1 - k / 3) ** 3) for k in (1, 2, 3)])
    assert schedule_ratios(0.5, 1, "agp") == (0.5,)
    with pytest.raises(fxprune.PlanError, match="unknown schedule"):
        schedule_ratios(0.5, 3, "cubic")
    with pytest.raises(fxprune.PlanError, match="positive integer"):
        schedule_ratios(0.5, 0)


@pytest.mark.parametrize("kind", ["linear", "agp"])
def test_cumulative_ratios_follow_the_schedule(model: nn.Module, kind: str) -> None:
    result = prune_iteratively(model, (X,), 0.6, steps=3, schedule=kind, progress=False)
    assert isinstance(result, ScheduleResult) and len(result.steps) == len(result.history) == 3
    sizes = result.original_channels
    assert sizes == {"conv1": 16, "conv3": 32}
    for record, cumulative in zip(result.history, schedule_ratios(0.6, 3, kind), strict=True):
        assert record.channels == {name: kept_count(size, cumulative) for name, size in sizes.items()}
    assert result.module.conv3.out_channels == kept_count(32, 0.6)
    assert result.after == result.steps[-1].after
    assert fxprune.verify(result.steps[0].module, result.steps[1], (X,)) < 1e-4  # every step is an ordinary plan


def test_agp_prunes_early_linear_evenly(model: nn.Module) -> None:
    linear = prune_iteratively(model, (X,), 0.6, steps=4, schedule="linear", progress=False)
    agp = prune_iteratively(model, (X,), 0.6, steps=4, schedule="agp", progress=False)
    assert agp.removed_fraction(1) > linear.removed_fraction(1)
    assert agp.history[0].macs < linear.history[0].macs
    assert agp.removed_fraction(4) == pytest.approx(linear.removed_fraction(4))
    removed = [agp.removed_fraction(k) - agp.removed_fraction(k - 1) if k > 1 else agp.removed_fraction(1)
               for k in range(1, 5)]
    assert removed == sorted(removed, reverse=True)
    assert "agp schedule, 4 steps" in agp.summary()


def test_fine_tune_is_called_after_every_step(model: nn.Module) -> None:
    calls: list[tuple[int, nn.Module]] = []
    losses: list[float] = []

    def fine_tune(module: nn.Module, step: int) -> None:
        calls.append((step, module))
        before = [p.detach().clone() for p in module.parameters()]
        losses.append(_sgd_step(module))
        assert any(not torch.equal(a, b) for a, b in zip(before, module.parameters(), strict=True))

    state = copy.deepcopy(model.state_dict())
    result = prune_iteratively(model, (X,), 0.5, steps=3, schedule="agp", fine_tune=fine_tune, progress=False)
    assert [step for step, _ in calls] == [1, 2, 3]
    assert [module for _, module in calls] == [r.module for r in result.steps]
    assert result.module is calls[-1][1]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert not model.training and all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert result.module(X).shape == (4, 4)


def test_fine_tune_may_return_a_replacement(model: nn.Module) -> None:
    replacements: list[nn.Module] = []

    def fine_tune(module: nn.Module, step: int) -> nn.Module:
        replacements.append(copy.deepcopy(module))
        return replacements[-1]

    result = prune_iteratively(model, (X,), 0.5, steps=2, fine_tune=fine_tune, progress=False)
    assert result.module is replacements[-1]


def test_budget_schedule_meets_each_step(model: nn.Module) -> None:
    result = prune_iteratively(model, (X,), target_macs=0.4, steps=3, schedule="linear", progress=False)
    before = result.before.macs
    for record in result.history:
        assert record.macs <= (1 - 0.6 * record.progress) * before * 1.001
    assert result.after.macs <= 0.4 * before
    assert result.history[0].macs > 0.6 * before  # not all in the first step


def test_global_ranking_schedule_caps_layers_against_their_original_width(model: nn.Module) -> None:
    with torch.no_grad():
        model.conv3.weight.mul_(1e-3)
        model.conv3.weight[:4].mul_(1e3)
    result = prune_iteratively(model, (X,), 0.5, steps=3, global_ranking=True, max_ratio=0.75, progress=False)
    assert result.removed_fraction(3) == pytest.approx(0.5, abs=0.03)
    assert all(record.channels["conv3"] >= 8 for record in result.history)


def test_pattern_targets_and_bad_arguments(model: nn.Module) -> None:
    result = prune_iteratively(model, (X,), {"conv3": 0.5}, steps=2, progress=False)
    assert [r.channels for r in result.history] == [{"conv3": 24}, {"conv3": 16}]
    with pytest.raises(fxprune.PlanError, match="exactly one"):
        prune_iteratively(model, (X,), 0.5, target_macs=0.5, progress=False)
    with pytest.raises(fxprune.PlanError, match="exactly one"):
        prune_iteratively(model, (X,), progress=False)
    with pytest.raises(fxprune.PlanError, match="matches no module"):
        prune_iteratively(model, (X,), {"nothing*": 0.5}, progress=False)
    with pytest.raises(fxprune.PlanError, match="unknown schedule"):
        prune_iteratively(model, (X,), 0.5, schedule="exp", progress=False)


def test_taylor_rescoring_every_step(model: nn.Module) -> None:
    taylor = fxprune.Taylor([(X, Y)], F.cross_entropy)
    result = prune_iteratively(model, (X,), 0.5, steps=2, importance=taylor, progress=False)
    assert result.module.conv3.out_channels == 16


# --------------------------------------------------------------------------- YAML configs

GOOD = """\
version: 1
importance: l1          # l1 | l2 | bn_scale | random | taylor
ratios:                 # or a single float
  "conv3": 0.5
  "*": 0.25
ignore: ["fc"]
round_to: 2
exact: false
global_ranking: false
target_macs: null
schedule: {steps: 3, kind: agp}
"""


def test_load_config(tmp_path) -> None:
    path = tmp_path / "prune.yaml"
    path.write_text(GOOD)
    config = load_config(path)
    assert config == PruneConfig(importance="l1", ratios={"conv3": 0.5, "*": 0.25}, ignore=("fc",), round_to=2,
                                 schedule=ScheduleSpec(3, "agp"), source=str(path))
    assert list(config.ratios) == ["conv3", "*"]  # order matters: the first match wins
    assert parse_config("ratios: 0.3").ratios == 0.3
    assert parse_config("target_macs: 0.5\nignore: conv1").ignore == ("conv1",)
    assert parse_config("ratios: {0: 0.5, 2: 0.25}").ratios == {0: 0.5, 2: 0.25}


BAD = [
    ("ratios: 0.5\nround_to: [8\nexact: true\n", "YAML syntax error", "round_to", 3),
    ("ratios: 0.5\n  oops: 1\n", "YAML syntax error", "ratios", 2),
    ("version: 1\nratios: 0.5\nexakt: false\n", "unknown key 'exakt'; did you mean 'exact'", "exakt", 3),
    ("ratios: 0.5\nexact: 1\n", "must be true or false", "exact", 2),
    ("ratios: 0.5\nround_to: eight\n", "positive integer", "round_to", 2),
    ("ratios: 0.5\nround_to: 0\n", "positive integer", "round_to", 2),
    ("ratios: 1.5\n", "[0, 1)", "ratios", 1),
    ("ratios:\n  conv1: 0.2\n  conv3: -0.1\n", "[0, 1)", "ratios.conv3", 3),
    ("ratios:\n  conv1: 0.2\n  conv1: 0.3\n", "given twice (first at line 2)", "ratios.conv1", 3),
    ("ratios: [0.5]\n", "not a list", "ratios", 1),
    ("ratios: {}\n", "mapping is empty", "ratios", 1),
    ("ratios: {a: 0.5, 2: 0.5}\n", "must all be module-name patterns", "ratios", 1),
    ("ratios: 0.5\nimportance: l3\n", "one of l1, l2, bn_scale, random, taylor", "importance", 2),
    ("ratios: 0.5\nignore: [1, 2]\n", "list of module-name patterns", "ignore", 2),
    ("ratios: 0.5\ntarget_macs: 0.5\n", "exclude each other", "ratios", 1),
    ("target_macs: 1.5\n", "(0, 1)", "target_macs", 1),
    ("target_macs: 0.5\ntarget_params: 0.5\n", "one budget", "target_params", 2),
    ("ratios: {a: 0.5}\nglobal_ranking: true\n", "one float", "global_ranking", 2),
    ("ratios: 0.5\nmax_ratio: 0\n", "(0, 1)", "max_ratio", 2),
    ("ratios: 0.5\nschedule: {steps: 0}\n", "positive integer", "schedule.steps", 2),
    ("ratios: 0.5\nschedule:\n  steps: 2\n  kind: cubic\n", "one of linear, agp", "schedule.kind", 4),
    ("ratios: 0.5\nschedule:\n  steps: 2\n  every: 3\n", "unknown key", "schedule.every", 4),
    ("ratios: 0.5\nschedule: {kind: agp}\n", "'steps' is missing", "schedule", 2),
    ("ratios: 0.5\nschedule: 3\n", "must be a mapping", "schedule", 2),
    ("version: 2\nratios: 0.5\n", "unsupported version", "version", 1),
    ("ratios: 0.5\nexact: true\nexact: false\n", "given twice (first at line 2)", "exact", 3),
    ("ratios: 0.5\ncalibration_batches: -1\n", "positive integer", "calibration_batches", 2),
    ("ratios: 0.5\ncapture: torchscript\n", "one of auto, fx, export", "capture", 2),
    ("ratios: 0.5\ncheck_capture: 1\n", "true or false", "check_capture", 2),
    ("ratios: !!python/name:os.system 0.5\n", "YAML syntax error", "ratios", 1),
]


@pytest.mark.parametrize("text, problem, key, line", BAD, ids=[f"{b[2]}-{i}" for i, b in enumerate(BAD)])
def test_malformed_config_names_key_and_line(tmp_path, text: str, problem: str, key: str, line: int) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}, line {line}:"), message
    assert f"'{key}'" in message and problem in message, message
    assert isinstance(caught.value, fxprune.FxPruneError)


@pytest.mark.parametrize("text, problem", [("", "empty"), ("- 1\n- 2\n", "must be a mapping"),
                                           ("exact: true\n", "'ratios' is missing")])
def test_config_without_settings(text: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        parse_config(text, "c.yaml")


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config("/nonexistent/prune.yaml")


def test_config_runs_compile_like_compile(model: nn.Module) -> None:
    config = parse_config("importance: l2\nratios: {conv3: 0.5, '*': 0.25}\nround_to: 2\n")
    calls: list[int] = []
    result = config.run(model, (X,), fine_tune=lambda module, step: calls.append(step))
    expected = fxprune.compile(model, {"conv3": 0.5, "*": 0.25}, example_inputs=(X,), importance="l2", round_to=2)
    assert isinstance(result, fxprune.CompileResult) and result.plan == expected.plan and calls == [1]


def test_config_runs_a_schedule_and_taylor(model: nn.Module) -> None:
    config = parse_config(GOOD.replace("importance: l1", "importance: taylor"))
    with pytest.raises(ConfigError, match="line 2: 'taylor' needs calibration"):
        config.run(model, (X,))
    calls: list[int] = []
    result = config.run(model, (X,), calibration=[(X, Y)], fine_tune=lambda m, step: calls.append(step),
                        progress=False)
    assert isinstance(result, ScheduleResult) and calls == [1, 2, 3]
    assert result.module.conv3.out_channels == 16 and result.module.conv1.out_channels == 12


def test_config_pattern_error_points_at_the_file(model: nn.Module) -> None:
    config = parse_config("version: 1\nratios: {'layer9.*': 0.5}\n", "c.yaml")
    with pytest.raises(ConfigError, match=r"c.yaml: .*layer9.*matches no module.*'ratios' at line 2"):
        config.run(model, (X,))
