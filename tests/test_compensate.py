"""Bias compensation: folding removed channels' mean contribution into the next bias."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fxprune
from fxprune.drivers.compensate import compensate_bias


class ShiftedNet(nn.Module):
    """conv-bn-relu blocks whose BN shifts are large, so removed channels carry large means."""

    def __init__(self, width: int = 16, classes: int = 10) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)
        self.fc = nn.Linear(width * 4 * 4, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return self.fc(F.adaptive_avg_pool2d(x, 4).flatten(1))


@pytest.fixture()
def model() -> nn.Module:
    torch.manual_seed(0)
    net = ShiftedNet()
    with torch.no_grad():
        for bn in (net.bn1, net.bn2):
            bn.bias.uniform_(1.0, 3.0)
            bn.running_var.fill_(1.0)
    return net.eval()


def _error(module: nn.Module, model: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float((module.eval()(x) - model(x)).abs().mean())


def test_compensation_lowers_the_error_against_the_original(model: nn.Module) -> None:
    calibration, held_out = torch.randn(64, 3, 8, 8), torch.randn(64, 3, 8, 8)
    result = fxprune.compile(model, 0.5, example_inputs=(calibration[:1],))
    compensated = compensate_bias(result, (calibration,))
    plain, better = _error(result.module, model, held_out), _error(compensated, model, held_out)
    assert better < 0.5 * plain, f"compensated error {better:.4f} vs plain removal {plain:.4f}"
    assert compensated.conv2.bias is not None and compensated.conv2.bias.shape == (8,)
    assert compensated.fc.bias.shape == result.module.fc.bias.shape
    assert not torch.equal(compensated.fc.bias, result.module.fc.bias)  # a linear after flatten too


def test_inputs_are_left_alone(model: nn.Module) -> None:
    x = torch.randn(8, 3, 8, 8)
    result = fxprune.compile(model.train(), 0.5, example_inputs=(x,))
    state = copy.deepcopy(model.state_dict())
    pruned_state = copy.deepcopy(result.module.state_dict())
    compensated = compensate_bias(result, (x,))
    assert model.training and all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert result.module.conv2.bias is None
    assert all(torch.equal(pruned_state[k], v) for k, v in result.module.state_dict().items())
    assert compensated.conv2.bias.requires_grad and compensated is not result.module
    assert fxprune.verify(model, result, (x,)) < 1e-4  # the oracle still holds for the plain module


def test_the_fold_is_the_hand_formula(model: nn.Module) -> None:
    x = torch.randn(16, 3, 8, 8)
    result = fxprune.compile(model, {"conv1": 0.5}, example_inputs=(x,))
    removed = sorted(set(range(16)) - set(result.plan.entries[0].keep))
    with torch.no_grad():
        means = F.relu(model.bn1(model.conv1(x))).mean((0, 2, 3))
        expected = (model.conv2.weight.sum((2, 3))[:, removed] * means[removed]).sum(1)
    compensated = compensate_bias(result, (x,))
    torch.testing.assert_close(compensated.conv2.bias, expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(compensated.fc.bias, result.module.fc.bias)  # fc reads no removed channel


def test_calibration_batches_and_max_batches(model: nn.Module) -> None:
    batches = [(torch.randn(4, 3, 8, 8), torch.zeros(4, dtype=torch.long)) for _ in range(3)]
    result = fxprune.compile(model, 0.5, example_inputs=(batches[0][0],))
    first_two = compensate_bias(result, calibration=batches, max_batches=2)
    joined = compensate_bias(result, (torch.cat([b[0] for b in batches[:2]]),))
    torch.testing.assert_close(first_two.conv2.bias, joined.conv2.bias)
    bare = compensate_bias(result, calibration=[b[0] for b in batches])
    assert bare.conv2.bias.shape == (8,)


def test_nothing_removed_gives_an_equal_copy(model: nn.Module) -> None:
    x = torch.randn(2, 3, 8, 8)
    result = fxprune.compile(model, {"conv1": 0.01}, example_inputs=(x,))
    assert not result.plan.entries
    copy_ = compensate_bias(result, (x,))
    assert copy_ is not result.module and _error(copy_, model, x) == 0.0


def test_bad_arguments(model: nn.Module) -> None:
    x = torch.randn(2, 3, 8, 8)
    result = fxprune.compile(model, 0.5, example_inputs=(x,))
    with pytest.raises(fxprune.InputError, match="one data source"):
        compensate_bias(result)
    with pytest.raises(fxprune.InputError, match="one data source"):
        compensate_bias(result, (x,), calibration=[x])
    with pytest.raises(fxprune.InputError, match="no calibration batches"):
        compensate_bias(result, calibration=[])
    with pytest.raises(fxprune.InputError, match="max_batches"):
        compensate_bias(result, calibration=[x], max_batches=0)


def test_3d_model() -> None:
    from fxprune.models import c3d

    torch.manual_seed(0)
    model = c3d(width=0.125, input_size=32, clip_length=16, num_classes=5).eval()
    x = torch.randn(2, 3, 16, 32, 32)
    result = fxprune.compile(model, 0.5, example_inputs=(x,))
    compensated = compensate_bias(result, (x,))
    assert _error(compensated, model, x) < _error(result.module, model, x)
