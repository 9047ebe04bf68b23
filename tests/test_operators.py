"""Per-operator tests: every channel-coupling rule on a tiny model (see operator_models.py).

The oracle: in exact mode the pruned model must compute what the original computes once
every consumer's weight slices that read removed channels are zeroed
(``fxprune.verify`` returns the max abs difference).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import pytest
import torch
import torch.nn as nn
from torch import Tensor

import fxprune

try:
    from operator_models import CASES, ROUND_TO_CASE, TRAIN_CASE, Case
except ImportError:  # tests/ imported as a package
    from tests.operator_models import CASES, ROUND_TO_CASE, TRAIN_CASE, Case

RATIO = 0.5
EXTREME_RATIO = 0.99
TOLERANCE = 1e-4
NAMES = sorted(CASES)
UNSUPPORTED = ("unsupported_cumsum", "unsupported_rfft")
_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


# --------------------------------------------------------------------------- helpers


def _leaves(value: Any) -> list[Tensor]:
    """The tensors of a (nested) tuple / list / dict output, in order."""
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _leaves(v)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _leaves(v)]
    raise TypeError(f"unexpected output type {type(value).__name__}")


@torch.no_grad()
def _run(module: nn.Module, inputs: tuple) -> list[Tensor]:
    return _leaves(module(*inputs))


def _shapes(outputs: list[Tensor]) -> list[tuple[int, ...]]:
    return [tuple(t.shape) for t in outputs]


def _tolerance(model: nn.Module, inputs: tuple) -> float:
    """``TOLERANCE`` scaled by the magnitude of the original output."""
    peak = max(float(t.abs().max()) for t in _run(model, inputs))
    return TOLERANCE * max(1.0, peak)


def _num_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _snapshot(module: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _assert_state_equal(module: nn.Module, snapshot: dict[str, Tensor]) -> None:
    state = module.state_dict()
    assert state.keys() == snapshot.keys()
    for key, value in snapshot.items():
        assert torch.equal(state[key], value), f"{key} was modified"


def _module_out_channels(module: nn.Module) -> int:
    if isinstance(module, _TRANSPOSED):
        return module.weight.shape[1] * module.groups
    weight = getattr(module, "weight", None)
    if isinstance(weight, Tensor):
        return weight.shape[0]
    running_mean = getattr(module, "running_mean", None)
    if isinstance(running_mean, Tensor):
        return running_mean.shape[0]
    raise TypeError(f"cannot tell the output channels of {type(module).__name__}")


def _channel_axis(param: Tensor) -> int:
    """First axis of size > 1: 0 for (out, in, ...) weights and (C, 1, 1) scales, 1 for (1, C, H, W)."""
    return next(axis for axis, size in enumerate(param.shape) if size > 1)


def _channels(root: nn.Module, name: str, original: nn.Module) -> int:
    """Output channels of submodule ``name``, or the channel-axis size of parameter ``name``."""
    try:
        module = root.get_submodule(name)
    except AttributeError:
        axis = _channel_axis(original.get_parameter(name))
        return root.get_parameter(name).shape[axis]
    return _module_out_channels(module)


def _compile(case: Case, model: nn.Module, ratio: float, **options: Any) -> Any:
    return fxprune.compile(
        model, ratio, example_inputs=case.inputs(), concrete_args=case.concrete_args, **options)


@dataclass(frozen=True)
class Compiled:
    """An original model, its example inputs and the result of pruning it."""

    model: nn.Module
    inputs: tuple
    result: Any


@functools.cache
def _compiled(name: str, exact: bool, ratio: float = RATIO) -> Compiled:
    """Build case ``name`` and prune it once; shared by the read-only tests below."""
    case = CASES[name]
    model = case.build()
    return Compiled(model, case.inputs(), _compile(case, model, ratio, exact=exact))


# --------------------------------------------------------------------------- exact mode, every case


@pytest.mark.parametrize("name", NAMES)
def test_exact_prune_matches_oracle(name: str) -> None:
    c = _compiled(name, exact=True)
    err = fxprune.verify(c.model, c.result, c.inputs)
    assert err <= _tolerance(c.model, c.inputs)


@pytest.mark.parametrize("name", NAMES)
def test_exact_prune_through_export_matches_oracle(name: str) -> None:
    """The torch.export front end: the same groups and sizes as symbolic tracing, as exact."""
    c, case = _compiled(name, exact=True), CASES[name]
    exported = fxprune.compile(c.model, RATIO, example_inputs=c.inputs, exact=True, capture="export")
    assert exported.capture.front_end == "export"
    assert fxprune.verify(c.model, exported, c.inputs) <= _tolerance(c.model, c.inputs)
    assert len(exported.groups.prunable) == len(c.result.groups.prunable)
    assert exported.after.params == c.result.after.params
    for target in case.expect_pruned:
        assert 0 < _channels(exported.module, target, c.model) < _channels(c.model, target, c.model)


@pytest.mark.parametrize("name", NAMES)
def test_exact_prune_keeps_output_shapes(name: str) -> None:
    c = _compiled(name, exact=True)
    assert _shapes(_run(c.result.module, c.inputs)) == _shapes(_run(c.model, c.inputs))


@pytest.mark.parametrize("name", NAMES)
def test_exact_prune_shrinks_expected_channels(name: str) -> None:
    c = _compiled(name, exact=True)
    for target in CASES[name].expect_pruned:
        before = _channels(c.model, target, c.model)
        after = _channels(c.result.module, target, c.model)
        assert 0 < after < before, f"{target}: {before} -> {after}"


@pytest.mark.parametrize("name", NAMES)
def test_exact_prune_keeps_frozen_channels(name: str) -> None:
    c = _compiled(name, exact=True)
    for target in CASES[name].expect_frozen:
        before = _channels(c.model, target, c.model)
        after = _channels(c.result.module, target, c.model)
        assert after == before, f"{target}: {before} -> {after}"


@pytest.mark.parametrize("name", NAMES)
def test_exact_prune_param_count(name: str) -> None:
    c = _compiled(name, exact=True)
    before, after = _num_params(c.model), _num_params(c.result.module)
    if CASES[name].exact_prunes:
        assert after < before, f"params {before} -> {after}"
        assert c.result.after.params < c.result.before.params
        assert c.result.after.macs <= c.result.before.macs
    else:
        assert after == before, f"params {before} -> {after}"


@pytest.mark.parametrize("name", NAMES)
def test_frozen_groups_explain_why(name: str) -> None:
    c = _compiled(name, exact=True)
    for group in c.result.groups:
        if not group.prunable:
            assert group.reason, f"frozen group without a reason: {group.members}"


@pytest.mark.parametrize("name", NAMES)
def test_compile_leaves_original_untouched(name: str) -> None:
    case = CASES[name]
    model = case.build()
    snapshot = _snapshot(model)
    _compile(case, model, RATIO, exact=True)
    _assert_state_equal(model, snapshot)
    assert not model.training


# --------------------------------------------------------------------------- default mode, every case


@pytest.mark.parametrize("name", NAMES)
def test_default_prune_keeps_output_shapes(name: str) -> None:
    c = _compiled(name, exact=False)
    assert _shapes(_run(c.result.module, c.inputs)) == _shapes(_run(c.model, c.inputs))


@pytest.mark.parametrize("name", NAMES)
def test_default_prune_removes_params_when_prunable(name: str) -> None:
    c = _compiled(name, exact=False)
    before, after = _num_params(c.model), _num_params(c.result.module)
    if any(g.prunable and g.size > 1 for g in c.result.groups):
        assert after < before, f"params {before} -> {after}"
    else:
        assert after == before, f"params {before} -> {after}"


@pytest.mark.parametrize("name", UNSUPPORTED)
def test_unsupported_op_freezes_only_its_group_in_default_mode(name: str) -> None:
    c = _compiled(name, exact=False)
    touched, untouched = (_channels(c.result.module, n, c.model) for n in ("conv1", "conv0"))
    assert touched == _channels(c.model, "conv1", c.model), f"conv1 pruned to {touched}"
    assert untouched < _channels(c.model, "conv0", c.model), f"conv0 not pruned: {untouched}"


# --------------------------------------------------------------------------- ratio extremes


@pytest.mark.parametrize("name", NAMES)
def test_ratio_zero_is_numerically_identical(name: str) -> None:
    c = _compiled(name, exact=True, ratio=0.0)
    assert _num_params(c.result.module) == _num_params(c.model)
    for got, want in zip(_run(c.result.module, c.inputs), _run(c.model, c.inputs), strict=True):
        torch.testing.assert_close(got, want, rtol=0.0, atol=0.0)


@pytest.mark.parametrize("name", NAMES)
def test_extreme_ratio_keeps_a_channel_everywhere(name: str) -> None:
    c = _compiled(name, exact=True, ratio=EXTREME_RATIO)
    for key, tensor in c.result.module.state_dict().items():
        assert tensor.numel() > 0, f"{key} lost every channel: {tuple(tensor.shape)}"
    for target in CASES[name].expect_pruned:
        assert _channels(c.result.module, target, c.model) >= 1


@pytest.mark.parametrize("name", NAMES)
def test_extreme_ratio_matches_oracle(name: str) -> None:
    c = _compiled(name, exact=True, ratio=EXTREME_RATIO)
    assert _shapes(_run(c.result.module, c.inputs)) == _shapes(_run(c.model, c.inputs))
    assert fxprune.verify(c.model, c.result, c.inputs) <= _tolerance(c.model, c.inputs)


# --------------------------------------------------------------------------- round_to


@functools.cache
def _rounded() -> Compiled:
    model = ROUND_TO_CASE.build()
    result = _compile(ROUND_TO_CASE, model, 0.3, exact=True, round_to=4)
    return Compiled(model, ROUND_TO_CASE.inputs(), result)


def test_round_to_gives_multiples_of_four() -> None:
    c = _rounded()
    for target in ROUND_TO_CASE.expect_pruned:
        channels = _channels(c.result.module, target, c.model)
        assert channels % 4 == 0 and 0 < channels < 32, f"{target}: {channels}"


def test_round_to_matches_oracle() -> None:
    c = _rounded()
    assert fxprune.verify(c.model, c.result, c.inputs) <= _tolerance(c.model, c.inputs)


# --------------------------------------------------------------------------- fine-tuning the result


def _trainable_pruned(frozen: str = "bn1.weight") -> tuple[nn.Module, nn.Module, tuple]:
    """TRAIN_CASE in train mode with ``frozen`` set to requires_grad=False, and its pruned module."""
    model = TRAIN_CASE.build()
    model.get_parameter(frozen).requires_grad_(False)
    model.train()
    result = _compile(TRAIN_CASE, model, RATIO, exact=True)
    return model, result.module, TRAIN_CASE.inputs()


def test_pruned_module_trains_one_sgd_step() -> None:
    _, pruned, inputs = _trainable_pruned()
    assert pruned.training
    before = {n: p.detach().clone() for n, p in pruned.named_parameters()}
    optimizer = torch.optim.SGD([p for p in pruned.parameters() if p.requires_grad], lr=0.1)

    loss = pruned(*inputs).square().mean()
    loss.backward()
    for name, param in pruned.named_parameters():
        if param.requires_grad:
            assert param.grad is not None and torch.isfinite(param.grad).all(), name
    optimizer.step()

    assert any(not torch.equal(p, before[n]) for n, p in pruned.named_parameters() if p.requires_grad)
    assert torch.isfinite(pruned(*inputs)).all()


def test_pruned_module_preserves_requires_grad() -> None:
    _, pruned, inputs = _trainable_pruned("bn1.weight")
    assert all(isinstance(p, nn.Parameter) for p in pruned.parameters())
    assert not pruned.get_parameter("bn1.weight").requires_grad
    assert pruned.get_parameter("conv1.weight").requires_grad
    pruned(*inputs).sum().backward()
    assert pruned.get_parameter("bn1.weight").grad is None


def test_training_pruned_module_leaves_original_untouched() -> None:
    model, pruned, inputs = _trainable_pruned()
    snapshot = _snapshot(model)
    optimizer = torch.optim.SGD(pruned.parameters(), lr=0.1)
    pruned(*inputs).square().mean().backward()
    optimizer.step()
    _assert_state_equal(model, snapshot)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_pruned_module_preserves_training_mode(training: bool) -> None:
    model = TRAIN_CASE.build().train(training)
    result = _compile(TRAIN_CASE, model, RATIO, exact=True)
    assert model.training is training
    assert all(m.training is training for m in result.module.modules())


def test_compile_in_train_mode_leaves_running_stats_untouched() -> None:
    model = TRAIN_CASE.build().train()
    snapshot = _snapshot(model)
    _compile(TRAIN_CASE, model, RATIO, exact=True)
    _assert_state_equal(model, snapshot)


class _ViewSizedByAnotherTensor(nn.Module):
    """b is reshaped with a size computed at run time from a's batch and channels: fine unpruned, wrong once
    a and b differ (a size read from channel counts alone is rewritten, see test_attention.py)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_a, self.conv_b = nn.Conv2d(3, 8, 1), nn.Conv2d(3, 8, 1)
        self.head_a, self.head_b = nn.Conv2d(8, 4, 1), nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = self.conv_a(x), self.conv_b(x)
        n, c, h, w = a.shape
        b = b.flatten(2).reshape(n * c, h, w)  # unbatched for head_b: the example has one sample
        return self.head_a(a), self.head_b(b)


def test_a_rewrite_it_cannot_do_freezes_the_groups_around_it() -> None:
    model = _ViewSizedByAnotherTensor().eval()
    x = torch.randn(1, 3, 5, 5)
    result = fxprune.compile(model, {"conv_a": 0.5, "conv_b": 0.25}, example_inputs=(x,), exact=True)
    assert fxprune.verify(model, result, (x,)) <= 1e-5
    assert [t.shape for t in result.module(x)] == [t.shape for t in model(x)]
    assert "could not resize" in result.summary()
    # both groups meet at that reshape (one as data, one through its sizes): both stay whole
    assert all(not g.prunable for g in result.groups)


def test_schedules_and_sensitivity_get_the_same_retry_through_the_pipeline() -> None:
    model = _ViewSizedByAnotherTensor().eval()
    x = torch.randn(1, 3, 5, 5)
    schedule = fxprune.prune_iteratively(model, (x,), {"conv_a": 0.5, "conv_b": 0.25}, steps=2, exact=True,
                                         progress=False)
    assert all("could not resize" in step.summary() for step in schedule.steps)
    assert [t.shape for t in schedule.module(x)] == [t.shape for t in model(x)]
    report = fxprune.sensitivity(model, (x,), lambda module: 1.0, ratios=(0.5,), exact=True, progress=False)
    # each group alone fails at the reshape too; frozen, it is measured as unpruned
    assert len(report.rows) == 2 and all(row.removed == 0 and row.metric == 1.0 for row in report.rows)
