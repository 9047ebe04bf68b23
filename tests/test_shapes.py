"""Shape propagation: fake values and MACs match a real run, formula shortcuts included."""

from __future__ import annotations

import pytest
import torch
from torch import fx, nn
from torch.utils.flop_counter import FlopCounterMode

from fxprune.passes.shapes import propagate_shapes


class Layers(nn.Module):
    """Every conv/linear configuration the formula shortcut handles, and some it must not."""

    def __init__(self, dims: int) -> None:
        super().__init__()
        conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dims]
        self.plain = conv(3, 8, 3)
        self.strided = conv(8, 8, 3, stride=2, padding=1, dilation=1)
        self.dilated = conv(8, 6, 3, padding=2, dilation=2, groups=2)
        self.same = conv(6, 6, 4, padding="same", padding_mode="reflect")
        self.valid = conv(6, 4, 2, padding="valid", bias=False)
        self.depthwise = conv(4, 8, 3, groups=4, stride=(1,) * (dims - 1) + (2,))
        self.head = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.valid(self.same(self.dilated(self.strided(self.plain(x)))))
        x = self.depthwise(x)
        return self.head(x.movedim(1, -1))  # a linear over a 3-5-D tensor


CASES = [
    (1, (2, 3, 33)),
    (2, (2, 3, 17, 20)),
    (3, (1, 3, 9, 13, 12)),
]


@pytest.mark.parametrize("dims, shape", CASES, ids=["1d", "2d", "3d"])
def test_fake_values_and_macs_match_a_real_run(dims: int, shape: tuple[int, ...]) -> None:
    model = Layers(dims).eval()
    x = torch.randn(shape)
    traced = fx.symbolic_trace(model)
    macs = propagate_shapes(traced, (x,))
    real: dict[str, torch.Size] = {}
    for name, module in model.named_children():
        module.register_forward_hook(lambda m, args, out, name=name: real.__setitem__(name, out.shape))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    assert macs == counter.get_total_flops() // 2
    for node in traced.graph.nodes:
        if node.op == "call_module":
            assert node.meta["val"].shape == real[node.target], node.target
    assert sum(n.meta["flops"] for n in traced.graph.nodes) == counter.get_total_flops()


def test_channels_last_input_keeps_the_real_strides() -> None:
    # The shortcut only answers for contiguous inputs; a channels-last conv output
    # has channels-last strides, which a later .view would depend on.
    model = nn.Sequential(nn.Conv2d(3, 8, 3)).eval()
    x = torch.randn(2, 3, 10, 10).to(memory_format=torch.channels_last)
    traced = fx.symbolic_trace(model)
    propagate_shapes(traced, (x,))
    out = next(n for n in traced.graph.nodes if n.op == "call_module").meta["val"]
    assert out.stride() == model(x).stride()


def test_a_conv_too_big_for_its_input_still_reports_the_input_error() -> None:
    from fxprune.errors import InputError

    traced = fx.symbolic_trace(nn.Sequential(nn.Conv2d(3, 8, 5)))
    with pytest.raises(InputError, match="do not fit the model"):
        propagate_shapes(traced, (torch.randn(1, 3, 4, 4),))
