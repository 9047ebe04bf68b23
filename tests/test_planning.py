"""Ranking and planning: Taylor against a hand computation, global vs per-layer plans,
MACs budgets, plans applied to another checkpoint, BN-scale and random criteria."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fxprune
from fxprune.passes.importance import score_groups
from fxprune.passes.plan import Plan, PlanEntry, make_plan


class Residual(nn.Module):
    """conv1 and conv2 share a residual stream (one group); conv3 is its own group."""

    def __init__(self, width: int = 8, classes: int = 5) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.fc = nn.Linear(2 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.conv1(x)))
        h = F.relu(self.bn2(self.conv2(h))) + h
        return self.fc(F.relu(self.conv3(h)).mean((2, 3)))


class Chain(nn.Module):
    """Two independent groups of equal width (conv1, conv2) and a head."""

    def __init__(self, width: int = 16, classes: int = 4) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)
        self.fc = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.conv1(x)))
        return self.fc(F.relu(self.bn2(self.conv2(h))).mean((2, 3)))


def _randomize_bn(model: nn.Module, seed: int) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
                module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
    return model.eval()


def _model(cls: type, seed: int, **kwargs: int) -> nn.Module:
    torch.manual_seed(seed)
    return _randomize_bn(cls(**kwargs), seed)


def _group(groups: fxprune.Groups, name: str) -> fxprune.ChannelGroup:
    return next(g for g in groups if g.name == name)


def _kept(result: fxprune.CompileResult, name: str) -> int:
    entry = next((e for e in result.plan.entries if e.name == name), None)
    return _group(result.groups, name).size if entry is None else len(entry.keep)


# --------------------------------------------------------------------------- Taylor


def _hand_taylor(model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]],
                 names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """sum over samples of |mean over positions of a * dL/da| / N, per conv output, with hooks."""
    model = copy.deepcopy(model).eval()
    totals = dict.fromkeys(names, 0.0)
    samples = 0
    for inputs, target in batches:
        outputs: dict[str, torch.Tensor] = {}
        hooks = [getattr(model, n).register_forward_hook(lambda m, i, o, n=n, kept=outputs: kept.__setitem__(n, o))
                 for n in names]
        loss = F.cross_entropy(model(inputs), target)
        for hook in hooks:
            hook.remove()
        grads = torch.autograd.grad(loss, [outputs[n] for n in names])
        for name, grad in zip(names, grads, strict=True):
            product = (outputs[name] * grad).mean((2, 3)).abs().sum(0)
            totals[name] = totals[name] + product.double().detach().numpy()
        samples += inputs.shape[0]
    return {name: total / samples for name, total in totals.items()}


def test_taylor_matches_a_hand_computation() -> None:
    model = _model(Residual, 0)
    generator = torch.Generator().manual_seed(1)
    batches = [(torch.randn(4, 3, 8, 8, generator=generator), torch.randint(0, 5, (4,), generator=generator))
               for _ in range(3)]
    analysis = fxprune.analyze(model, (batches[0][0],))
    scores = score_groups(analysis.groups, analysis.traced, fxprune.Taylor(batches, F.cross_entropy))
    hand = _hand_taylor(model, batches, ("conv1", "conv2", "conv3"))

    stream, head = _group(analysis.groups, "conv1"), _group(analysis.groups, "conv3")
    assert set(stream.producers) == {"conv1", "conv2"}, "the residual add must couple conv1 and conv2"
    expected = np.zeros(stream.size)
    for name in ("conv1", "conv2"):  # a group's score sums the outputs carrying its channels
        member = next(m for m in stream.members if m.tensor == f"{name}.weight" and m.axis == 0)
        np.add.at(expected, member.channels, hand[name])
    np.testing.assert_allclose(scores[stream.index], expected, rtol=1e-5, atol=1e-12)
    member = next(m for m in head.members if m.tensor == "conv3.weight" and m.axis == 0)
    np.testing.assert_allclose(scores[head.index][member.channels], hand["conv3"], rtol=1e-5, atol=1e-12)


def test_taylor_compile_passes_the_oracle_and_leaves_the_model_alone() -> None:
    model = _model(Residual, 0).train()
    state = copy.deepcopy(model.state_dict())
    x = torch.randn(4, 3, 8, 8)
    taylor = fxprune.Taylor([(x, torch.tensor([0, 1, 2, 3]))], F.cross_entropy)
    result = fxprune.compile(model, 0.5, example_inputs=(x,), importance=taylor)
    assert result.plan.entries and fxprune.verify(model, result, (x,)) < 1e-4
    assert model.training and all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


# --------------------------------------------------------------------------- global vs per layer


def test_global_ranking_takes_more_from_a_layer_scaled_down() -> None:
    model = _model(Chain, 0)
    weak = torch.arange(12)  # 12 of conv2's 16 channels become nearly irrelevant
    with torch.no_grad():
        for tensor in (model.conv2.weight, model.bn2.weight, model.bn2.bias):
            tensor[weak] *= 1e-3
        model.fc.weight[:, weak] *= 1e-3
    x = torch.randn(2, 3, 8, 8)
    per_layer = fxprune.compile(model, 0.4, example_inputs=(x,))
    global_ = fxprune.compile(model, 0.4, example_inputs=(x,), global_ranking=True)
    assert (_kept(per_layer, "conv1"), _kept(per_layer, "conv2")) == (10, 10)  # floor(16 * 0.4) = 6 each
    assert (_kept(global_, "conv1"), _kept(global_, "conv2")) == (16, 4)  # the 12 weak channels go
    removed = next(e for e in global_.plan.entries if e.name == "conv2")
    assert set(range(16)) - set(removed.keep) == set(weak.tolist())
    for result in (per_layer, global_):
        assert fxprune.verify(model, result, (x,)) < 1e-4


def test_global_ranking_respects_max_ratio() -> None:
    model = _model(Chain, 0)
    with torch.no_grad():
        model.conv2.weight *= 1e-3
        model.conv2.weight[0] *= 1e3
    x = torch.randn(2, 3, 8, 8)
    result = fxprune.compile(model, 0.45, example_inputs=(x,), global_ranking=True, max_ratio=0.5)
    assert _kept(result, "conv2") >= 8 and _kept(result, "conv1") >= 8


# --------------------------------------------------------------------------- budgets


def _widened(plan: Plan, scores: dict[int, np.ndarray], step: int) -> Plan:
    """Every entry keeps ``step`` more of its best channels."""
    entries = []
    for entry in plan.entries:
        order = np.argsort(-scores[entry.group], kind="stable")
        keep = tuple(sorted(int(c) for c in order[:min(entry.size, len(entry.keep) + step)]))
        entries.append(PlanEntry(entry.group, entry.name, entry.size, entry.ratio, keep, entry.modules))
    return Plan(tuple(entries))


def test_target_macs_lands_within_one_round_to_step() -> None:
    model = _model(Residual, 0, width=32)
    x = torch.randn(1, 3, 16, 16)
    result = fxprune.compile(model, example_inputs=(x,), target_macs=0.5, round_to=4)
    reached = result.after.macs / result.before.macs
    assert reached <= 0.5 + 1e-3, f"budget missed: {reached:.4f}"
    analysis = fxprune.analyze(model, (x,))
    scores = score_groups(analysis.groups, analysis.traced, "l1")
    wider = analysis.estimate(_widened(result.plan, scores, 4)).macs / analysis.before.macs
    assert wider > 0.5, f"one round_to step wider still meets the budget ({wider:.4f}): search stopped early"
    assert all(len(e.keep) % 4 == 0 for e in result.plan.entries)
    assert fxprune.verify(model, result, (x,)) < 1e-4
    assert "budget  macs target 0.500x" in result.summary()


def test_unreachable_budget_warns_and_returns_the_smallest_plan() -> None:
    # The last conv's 64 output channels are the model output (frozen) and hold most of
    # the MACs; shrinking its input to one channel leaves about a quarter of them.
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Conv2d(4, 64, 3, padding=1)).eval()
    x = torch.randn(1, 3, 8, 8)
    with pytest.warns(UserWarning, match=r"target_macs=0.1 cannot be reached: .* keeps 0\.2"):
        result = fxprune.compile(model, example_inputs=(x,), target_macs=0.1)
    assert result.module.get_submodule("0").out_channels == 1
    assert "reached 0.2" in result.summary()
    assert fxprune.verify(model, result, (x,)) < 1e-4


def test_estimate_matches_the_rewritten_module() -> None:
    model = _model(Residual, 0, width=16)
    x = torch.randn(1, 3, 16, 16)
    analysis = fxprune.analyze(model, (x,))
    plan = make_plan(analysis.groups, score_groups(analysis.groups, analysis.traced), 0.5)
    result = fxprune.apply_plan(analysis, plan)
    assert analysis.estimate(plan) == result.after


# --------------------------------------------------------------------------- plans as data


def test_plan_json_round_trip_applies_to_another_checkpoint() -> None:
    first, second = _model(Residual, 0), _model(Residual, 1)
    x = torch.randn(2, 3, 8, 8)
    result = fxprune.compile(first, {"conv3": 0.5, "*": 0.25}, example_inputs=(x,))
    plan = Plan.from_json(result.plan.to_json())
    assert plan == result.plan
    other = fxprune.compile(second, plan, example_inputs=(x,))
    assert other.plan == result.plan  # applied as saved, not re-ranked on the new weights
    assert fxprune.verify(second, other, (x,)) < 1e-4
    assert other.after == result.after
    assert other.module.conv3.out_channels == 8 and other.module.conv1.out_channels == 6
    with torch.no_grad():
        assert not torch.allclose(other.module(x), result.module(x))


def test_plan_for_another_architecture_is_rejected() -> None:
    x = torch.randn(2, 3, 8, 8)
    plan = fxprune.compile(_model(Residual, 0), 0.5, example_inputs=(x,)).plan
    with pytest.raises(fxprune.PlanError, match="another architecture"):
        fxprune.compile(_model(Chain, 0), plan, example_inputs=(x,))


# --------------------------------------------------------------------------- other criteria


def test_bn_scale_removes_the_smallest_gammas() -> None:
    model = _model(Chain, 0)
    small = [1, 4, 9, 13]
    with torch.no_grad():
        model.bn1.weight[small] = 1e-3
        model.conv1.weight[small] *= 100  # l1 would keep these: only bn_scale looks at gamma
    x = torch.randn(2, 3, 8, 8)
    result = fxprune.compile(model, {"conv1": 0.25}, example_inputs=(x,), importance="bn_scale")
    entry = next(e for e in result.plan.entries if e.name == "conv1")
    assert set(range(16)) - set(entry.keep) == set(small)
    l1 = fxprune.compile(model, {"conv1": 0.25}, example_inputs=(x,), importance="l1")
    assert set(small) <= set(l1.plan.entries[0].keep)
    assert fxprune.verify(model, result, (x,)) < 1e-4


def test_random_is_reproducible_and_passes_the_oracle() -> None:
    model = _model(Residual, 0, width=16)
    x = torch.randn(2, 3, 8, 8)
    first = fxprune.compile(model, 0.5, example_inputs=(x,), importance="random")
    again = fxprune.compile(model, 0.5, example_inputs=(x,), importance="random")
    l1 = fxprune.compile(model, 0.5, example_inputs=(x,), importance="l1")
    assert first.plan == again.plan and first.plan != l1.plan
    assert first.after == l1.after  # same ratios, different channels
    assert fxprune.verify(model, first, (x,)) < 1e-4


def test_callable_importance_and_bad_scores() -> None:
    model = _model(Chain, 0)
    x = torch.randn(2, 3, 8, 8)
    result = fxprune.compile(model, {"conv2": 0.5}, example_inputs=(x,),
                             importance=lambda group, module: torch.arange(group.size, dtype=torch.float))
    assert next(e for e in result.plan.entries if e.name == "conv2").keep == tuple(range(8, 16))
    with pytest.raises(fxprune.InputError, match="finite scores"):
        fxprune.compile(model, 0.5, example_inputs=(x,), importance=lambda group, module: [1.0])
    with pytest.raises(fxprune.InputError, match="unknown importance"):
        fxprune.compile(model, 0.5, example_inputs=(x,), importance="l3")


def test_pinned_channels_are_kept_and_a_plan_dropping_them_is_refused() -> None:
    try:
        from operator_models import CASES
    except ImportError:  # tests/ imported as a package
        from tests.operator_models import CASES
    case = CASES["coord_conv"]
    model, inputs = case.build(), case.inputs()
    analysis = fxprune.analyze(model, inputs)
    group = next(g for g in analysis.groups if g.pinned.size)
    assert group.prunable and group.pinned.size == 5  # two coordinate maps and the three input channels
    plan = make_plan(analysis.groups, score_groups(analysis.groups, analysis.traced), 0.9)
    entry = next(e for e in plan.entries if e.group == group.index)
    assert set(group.pinned.tolist()) <= set(entry.keep)
    dropped = PlanEntry(entry.group, entry.name, entry.size, entry.ratio,
                        tuple(k for k in entry.keep if k != int(group.pinned[0])), entry.modules)
    with pytest.raises(fxprune.PlanError, match="meet untracked values and must be kept"):
        fxprune.apply_plan(analysis, Plan(tuple(dropped if e is entry else e for e in plan.entries)))
    assert "pinned  5 channels of 1 prunable group(s)" in fxprune.compile(model, 0.5, example_inputs=inputs).summary()
