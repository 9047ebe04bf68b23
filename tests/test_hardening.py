"""Hardening: compile never mutates its input, is deterministic, and rejects bad input with
typed errors that say how to fix it.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import fxprune

TOLERANCE = 1e-4


class Net(nn.Module):
    """A small net with most stateful layer kinds: BN (running stats), GroupNorm, dropout,
    a residual add, a concat, a split, SE, a transposed conv and a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.block = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.GroupNorm(4, 8), nn.ReLU(),
                                   nn.Conv2d(8, 8, 3, padding=1, groups=8))
        self.side = nn.Conv2d(8, 4, 1)
        self.se_reduce, self.se_expand = nn.Conv2d(12, 4, 1), nn.Conv2d(4, 12, 1)
        self.up = nn.ConvTranspose2d(6, 6, 2, stride=2)
        self.drop = nn.Dropout(0.2)
        self.head = nn.Linear(12, 5)

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.bn(self.stem(x)))
        y = F.relu(self.block(y) + y)
        y = torch.cat([y, self.side(y)], 1)
        y = y * torch.sigmoid(self.se_expand(F.relu(self.se_reduce(y.mean((2, 3), keepdim=True)))))
        a, b = torch.split(y, [6, 6], 1)
        y = torch.cat([F.max_pool2d(self.up(a), 2), b], 1)
        return self.head(self.drop(y.mean((2, 3))))


def _net(train: bool = False) -> Net:
    torch.manual_seed(0)
    net = Net()
    with torch.no_grad():
        net.bn.running_mean.uniform_(-0.5, 0.5)
        net.bn.running_var.uniform_(0.5, 1.5)
    return net.train(train)


def _inputs() -> tuple[Tensor]:
    return (torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1)),)


def _fingerprint(model: nn.Module) -> dict[str, Any]:
    """Everything compile must leave as it was."""
    digest = hashlib.sha256()
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return {
        "tensors": digest.hexdigest(),
        "structure": str(model),
        "modes": [(name, m.training) for name, m in model.named_modules()],
        "requires_grad": [(name, p.requires_grad) for name, p in model.named_parameters()],
        "ids": [id(p) for p in model.parameters()],
        "hooks": [len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()],
    }


# --------------------------------------------------------------------------- (a) no mutation


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("exact", [False, True], ids=["default", "exact"])
def test_compile_never_mutates_the_model(train: bool, exact: bool) -> None:
    model = _net(train)
    before = _fingerprint(model)
    result = fxprune.compile(model, 0.5, example_inputs=_inputs(), exact=exact, round_to=2)
    fxprune.verify(model, result, _inputs())
    assert _fingerprint(model) == before
    assert result.module.training == train
    assert [m.training for m in result.module.modules()] == [train] * len(list(result.module.modules()))


def test_pruned_module_shares_no_storage_with_the_model() -> None:
    model = _net()
    result = fxprune.compile(model, 0.5, example_inputs=_inputs())
    pointers = {t.data_ptr() for t in [*model.parameters(), *model.buffers()] if t.numel()}
    assert not pointers & {t.data_ptr() for t in [*result.module.parameters(), *result.module.buffers()]}
    with torch.no_grad():
        for p in result.module.parameters():
            p.add_(1.0)
    assert _fingerprint(model)["tensors"] == _fingerprint(_net())["tensors"]


# --------------------------------------------------------------------------- (b) determinism


@pytest.mark.parametrize("options", [
    {}, {"exact": True, "round_to": 4}, {"importance": "l2"}, {"global_ranking": True},
], ids=["default", "exact-round4", "l2", "global"])
def test_compile_is_deterministic(options: dict[str, Any]) -> None:
    first = fxprune.compile(_net(), 0.5, example_inputs=_inputs(), **options)
    second = fxprune.compile(_net(), 0.5, example_inputs=_inputs(), **options)
    assert first.plan.to_json() == second.plan.to_json()
    assert first.plan.entries, "the plan prunes nothing: the test would prove little"
    a, b = first.module.state_dict(), second.module.state_dict()
    assert list(a) == list(b)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert first.module.code == second.module.code


def test_plan_round_trip_reproduces_the_module() -> None:
    first = fxprune.compile(_net(), 0.5, example_inputs=_inputs())
    again = fxprune.compile(_net(), fxprune.Plan.from_json(first.plan.to_json()), example_inputs=_inputs())
    a, b = first.module.state_dict(), again.module.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------- (c) bad input


def _compile(ratio: Any = 0.5, **options: Any) -> fxprune.CompileResult:
    options.setdefault("example_inputs", _inputs())
    return fxprune.compile(_net(), ratio, **options)


@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.5, float("nan"), float("inf"), "0.5", True, [0.5]])
def test_bad_ratio_says_what_a_ratio_is(ratio: Any) -> None:
    with pytest.raises(fxprune.PlanError, match=r"\[0, 1\)"):
        _compile(ratio)


def test_bad_ratio_in_a_mapping_names_its_pattern() -> None:
    with pytest.raises(fxprune.PlanError, match=r"ratio for 'stem'.*\[0, 1\)"):
        _compile({"stem": 1.2})


@pytest.mark.parametrize("pattern, close", [("stemm", "stem"), ("block.O", "block.0"), ("se_reduct", "se_reduce")])
def test_ratio_pattern_matching_nothing_lists_close_names(pattern: str, close: str) -> None:
    with pytest.raises(fxprune.PlanError, match=rf"'{pattern}' matches no module; close names: .*{close}"):
        _compile({pattern: 0.5})


def test_ignore_pattern_matching_nothing_lists_close_names() -> None:
    with pytest.raises(fxprune.PlanError, match=r"ignore pattern 'sid' matches no module; close names: side"):
        _compile(0.5, ignore=["sid"])


def test_ignore_accepts_one_pattern_as_a_string() -> None:
    result = _compile(0.5, ignore="stem")
    assert result.module.stem.out_channels == 8


@pytest.mark.parametrize("round_to", [0, -2, 2.5, "4", True])
def test_bad_round_to(round_to: Any) -> None:
    with pytest.raises(fxprune.PlanError, match="round_to must be a positive integer"):
        _compile(0.5, round_to=round_to)


@pytest.mark.parametrize("max_ratio", ["0.5", None, -1, float("nan")])
def test_bad_max_ratio(max_ratio: Any) -> None:
    with pytest.raises(fxprune.PlanError, match="max_ratio must be"):
        _compile(0.5, global_ranking=True, max_ratio=max_ratio)


@pytest.mark.parametrize("target", [0, 1.0, 1.5, -0.2, float("nan"), "0.5"])
def test_bad_budget_says_it_is_the_fraction_to_keep(target: Any) -> None:
    with pytest.raises(fxprune.PlanError, match=r"target_macs must be in \(0, 1\): the fraction of the original"):
        _compile(None, target_macs=target)


@pytest.mark.parametrize("exact", ["yes", "no", 1, None])
def test_exact_must_be_a_bool(exact: Any) -> None:
    with pytest.raises(fxprune.InputError, match="exact must be True or False"):
        _compile(0.5, exact=exact)


def test_unknown_importance_lists_the_choices() -> None:
    with pytest.raises(fxprune.InputError, match=r"unknown importance 'l3'; choose one of .*'l1'"):
        _compile(0.5, importance="l3")


@pytest.mark.parametrize("inputs, why", [
    ((torch.randn(2, 4, 8, 8),), "wrong channels"),
    ((torch.randn(3, 8, 8),), "wrong rank"),
    ((torch.randn(2, 3, 8, 8, dtype=torch.float64),), "wrong dtype"),
    ((torch.ones(2, 3, 8, 8, dtype=torch.int64),), "integer dtype"),
    ((), "too few"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_example_inputs_that_do_not_fit(inputs: tuple, why: str) -> None:
    with pytest.raises(fxprune.InputError, match="Check their number, shapes and dtype"):
        _compile(0.5, example_inputs=inputs)


def test_too_many_example_inputs() -> None:
    x = _inputs()[0]
    with pytest.raises(fxprune.InputError, match=r"2 example inputs do not fit Net.forward\(x\)"):
        _compile(0.5, example_inputs=(x, x))


@pytest.mark.parametrize("inputs, match", [
    (None, "example_inputs is required"), ({"x": 1}, "must be a tensor or a tuple"),
])
def test_missing_or_malformed_example_inputs(inputs: Any, match: str) -> None:
    with pytest.raises(fxprune.InputError, match=match):
        _compile(0.5, example_inputs=inputs)


def test_not_a_module() -> None:
    with pytest.raises(fxprune.InputError, match=r"needs an nn\.Module"):
        fxprune.compile(lambda x: x, 0.5, example_inputs=_inputs())


def test_unknown_concrete_args_name_the_real_arguments() -> None:
    with pytest.raises(fxprune.InputError, match=r"concrete_args names \['flag'\].*arguments are \['x'\]"):
        _compile(0.5, concrete_args={"flag": True})


def test_bad_leaf_modules() -> None:
    with pytest.raises(fxprune.InputError, match="leaf_modules must hold module types or qualified names"):
        _compile(0.5, leaf_modules=[3])


class DataDependent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 8, 1), nn.Conv2d(8, 4, 1)

    def forward(self, x: Tensor, flip: bool = False) -> Tensor:
        y = self.conv1(x)
        if y.sum() > 0:  # data-dependent: cannot be traced
            y = -y
        return self.conv2(y)


class FlagControlled(DataDependent):
    def forward(self, x: Tensor, flip: bool = False) -> Tensor:
        y = self.conv1(x)
        if flip:
            y = -y
        return self.conv2(y)


def test_data_dependent_control_flow_names_the_ways_out() -> None:
    with pytest.raises(fxprune.TraceError) as caught:
        fxprune.compile(DataDependent(), 0.5, example_inputs=_inputs())
    assert "leaf_modules" in str(caught.value) and "concrete_args" in str(caught.value)


def test_control_flow_on_an_argument_is_fixed_by_concrete_args() -> None:
    model = FlagControlled().eval()
    with pytest.raises(fxprune.TraceError, match="concrete_args"):  # `flip` traced as a tensor
        fxprune.compile(model, 0.5, example_inputs=_inputs() + (True,), capture="fx")
    inputs = _inputs() + (True,)  # torch.fx asserts that the specialised value is passed
    exported = fxprune.compile(model, 0.5, example_inputs=inputs, exact=True)  # torch.export specialises it
    assert exported.capture.front_end == "export" and fxprune.verify(model, exported, inputs) < TOLERANCE
    result = fxprune.compile(model, 0.5, example_inputs=inputs, concrete_args={"flip": True}, exact=True)
    assert result.module.conv1.out_channels == 4
    assert fxprune.verify(model, result, inputs) < TOLERANCE


def test_data_dependent_block_as_a_leaf_module_is_frozen_not_fatal() -> None:
    class Outer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem, self.inner, self.mid, self.head = nn.Conv2d(3, 8, 1), DataDependent(), nn.Conv2d(4, 8, 1), \
                nn.Conv2d(8, 2, 1)

        def forward(self, x: Tensor) -> Tensor:
            return self.head(F.relu(self.mid(self.inner(F.relu(self.stem(x))[:, :3]))))

    model = Outer().eval()
    result = fxprune.compile(model, 0.5, example_inputs=_inputs(), leaf_modules=[DataDependent], exact=True)
    assert result.module.mid.out_channels == 4
    assert fxprune.verify(model, result, _inputs()) < TOLERANCE


# --------------------------------------------------------------------------- degenerate models


class NothingPrunable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.conv(x))


def test_nothing_prunable_returns_an_unchanged_module_and_says_why() -> None:
    model = NothingPrunable().eval()
    result = fxprune.compile(model, 0.5, example_inputs=_inputs())
    x = _inputs()[0]
    with torch.no_grad():
        assert torch.equal(result.module(x), model(x))
    assert result.after.params == result.before.params
    summary = result.summary()
    assert "nothing is prunable" in summary and "model output" in summary


class Unsupported(nn.Module):
    """cumsum over channels has no rule: only its group may be frozen."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c, self.d = nn.Conv2d(3, 8, 1), nn.Conv2d(8, 8, 1), nn.Conv2d(8, 8, 1), nn.Conv2d(8, 2, 1)

    def forward(self, x: Tensor) -> Tensor:
        y = torch.relu(self.a(x))
        z = torch.cumsum(self.b(y), dim=1)
        return self.d(torch.relu(self.c(z)))


def test_unsupported_op_freezes_only_its_groups_and_is_named() -> None:
    model = Unsupported().eval()
    result = fxprune.compile(model, 0.5, example_inputs=_inputs(), exact=True)
    by_name = {g.name: g for g in result.groups}
    assert "cumsum" in (by_name["b"].reason or "")
    assert by_name["a"].prunable and by_name["c"].prunable
    assert "cumsum" in result.summary()
    assert result.module.b.out_channels == 8
    assert result.module.a.out_channels == 4 and result.module.c.out_channels == 4
    assert fxprune.verify(model, result, _inputs()) < TOLERANCE


class RepeatedUnsupported(nn.Module):
    """Four cumsums over channels, each freezing its own group."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(3 if i == 0 else 8, 8, 1) for i in range(4))
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x: Tensor) -> Tensor:
        for conv in self.convs:
            x = torch.cumsum(conv(x), dim=1)
        return self.head(x)


def test_summary_folds_one_reason_met_in_many_places() -> None:
    summary = fxprune.compile(RepeatedUnsupported().eval(), 0.5, example_inputs=_inputs()).summary()
    assert "   4 x no rule for cumsum: at cumsum, cumsum_1, cumsum_2 and 1 more" in summary
    assert "cumsum (cumsum" not in summary  # the node is named once


@pytest.mark.parametrize("exact", [False, True])
def test_ratio_close_to_one_keeps_a_channel_everywhere(exact: bool) -> None:
    model = _net()
    result = fxprune.compile(model, 0.999, example_inputs=_inputs(), exact=exact)
    for name, module in result.module.named_modules():
        weight = getattr(module, "weight", None)
        if isinstance(weight, Tensor):
            assert min(weight.shape) >= 1, name
    for entry in result.plan.entries:
        assert len(entry.keep) >= 1
    x = _inputs()[0]
    with torch.no_grad():
        assert result.module(x).shape == model(x).shape
    if exact:
        assert fxprune.verify(model, result, _inputs()) < TOLERANCE


def test_zero_ratio_changes_nothing() -> None:
    model = _net()
    result = fxprune.compile(model, 0.0, example_inputs=_inputs())
    assert not result.plan.entries and result.after.params == result.before.params
    x = _inputs()[0]
    with torch.no_grad():
        assert torch.equal(result.module(x), model(x))
