"""The one output comparison behind capture's check and save's check (fxprune/passes/compare.py)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import fx, nn

from fxprune.errors import ExportError
from fxprune.passes.capture import output_mismatch
from fxprune.passes.compare import TOLERANCE, tensor_leaves, value_difference
from fxprune.serialize.capture import check_program


def test_value_difference_is_relative_to_the_expected_magnitude() -> None:
    small, large = torch.full((4,), 0.5), torch.full((4,), 1e4)
    assert value_difference(small, small + TOLERANCE / 2) is None  # the floor: max(1, |expected|)
    assert value_difference(small, small + 2 * TOLERANCE) == pytest.approx(2 * TOLERANCE, rel=1e-2)
    assert value_difference(large, large + 0.5) is None  # 0.5 <= 1e-4 * 1e4
    assert value_difference(large, large + 2.0) == pytest.approx(2.0, rel=1e-2)


def test_value_difference_on_nan_and_empty_tensors() -> None:
    nan = value_difference(torch.ones(3), torch.tensor([1.0, math.nan, 1.0]))
    assert nan is not None and math.isnan(nan)
    assert value_difference(torch.ones(0, 3), torch.ones(0, 3)) is None


def test_tensor_leaves_keep_pytree_order_and_drop_other_values() -> None:
    a, b, c = torch.zeros(1), torch.ones(2), torch.ones(3)
    leaves = tensor_leaves({"x": (a, 3, None), "y": [b, {"z": c}]})
    assert [t.shape for t in leaves] == [(1,), (2,), (3,)] and leaves[0] is a


class _Program:
    """Stands in for an ExportedProgram: ``module()`` returns a callable."""

    def __init__(self, function: nn.Module) -> None:
        self.function = function

    def module(self) -> nn.Module:
        return self.function


class _Shifted(nn.Module):
    def __init__(self, model: nn.Module, shift: float) -> None:
        super().__init__()
        self.model, self.shift = model, shift

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, index = self.model(x)
        return out + self.shift, index


class _Model(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.conv(x)
        return y, y.flatten(1).argmax(1)


def test_save_and_capture_checks_agree_on_values() -> None:
    torch.manual_seed(0)
    model, x = _Model().eval(), torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        expected = model(x)
    check_program(model, _Program(_Shifted(model, TOLERANCE / 10)), (x,))  # within the tolerance
    with pytest.raises(ExportError, match=r"differs from the module by 0\.1"):
        check_program(model, _Program(_Shifted(model, 0.1)), (x,))
    graph = fx.symbolic_trace(model)
    assert output_mismatch(graph, (x,), expected) is None
    shifted = (expected[0] + 0.1, expected[1])
    assert output_mismatch(graph, (x,), shifted) == "computes other values than the model (max difference 0.1)"
    assert output_mismatch(graph, (x,), (expected[0], expected[1] + 1)) == "computes other values than the model"
