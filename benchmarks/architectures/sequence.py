"""1D convolutional sequence models: the TCN with causal chomps and weight norm, and a gated (GLU) conv."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .catalog import case

__all__ = ["CASES"]


class Chomp1d(nn.Module):
    """Drop the last ``size`` steps, the right padding, so that the conv is causal (TCN's ``Chomp1d``)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, x: Tensor) -> Tensor:
        return x[:, :, :-self.size].contiguous()


def _weight_norm(conv: nn.Conv1d, kind: str) -> nn.Conv1d:
    """Wrap ``conv`` in weight normalisation: ``"parametrization"`` (current API), ``"legacy"`` (the
    deprecated ``nn.utils.weight_norm`` forward pre-hook that the TCN reference code uses) or ``"none"``."""
    if kind == "parametrization":
        return nn.utils.parametrizations.weight_norm(conv)
    if kind == "legacy":
        return nn.utils.weight_norm(conv)
    return conv


class TemporalBlock(nn.Module):
    """TCN residual block (Bai et al., 2018): two dilated causal Conv1d, chomped, with a 1x1 projection
    shortcut when the width changes."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, dilation: int, weight_norm: str) -> None:
        super().__init__()
        pad = (kernel - 1) * dilation
        conv1 = nn.Conv1d(in_channels, out_channels, kernel, padding=pad, dilation=dilation)
        conv2 = nn.Conv1d(out_channels, out_channels, kernel, padding=pad, dilation=dilation)
        self.net = nn.Sequential(_weight_norm(conv1, weight_norm), Chomp1d(pad), nn.ReLU(), nn.Dropout(0.2),
                                 _weight_norm(conv2, weight_norm), Chomp1d(pad), nn.ReLU())
        self.down = nn.Conv1d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.net(x) + (x if self.down is None else self.down(x)))


class TCN(nn.Module):
    """Three temporal blocks with dilations 1, 2, 4, classified from the last time step."""

    def __init__(self, weight_norm: str = "none") -> None:
        super().__init__()
        self.blocks = nn.Sequential(TemporalBlock(4, 16, 3, 1, weight_norm), TemporalBlock(16, 16, 3, 2, weight_norm),
                                    TemporalBlock(16, 24, 3, 4, weight_norm))
        self.fc = nn.Linear(24, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.blocks(x)[:, :, -1])


class GatedConv1d(nn.Module):
    """Gated convolution (Dauphin et al., 2017): ``F.glu`` halves the channels into value and gate."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(4, 32, 3, padding=1)
        self.conv2 = nn.Conv1d(16, 8, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(F.glu(self.conv1(x), dim=1))


SEQUENCE = (1, 4, 64)

CASES = (
    case("TCN dilated Conv1d, causal chomp x[:, :, :-pad]", TCN, SEQUENCE),
    case("TCN with parametrizations.weight_norm", lambda: TCN("parametrization"), SEQUENCE),
    case("TCN with legacy nn.utils.weight_norm (forward pre-hooks)", lambda: TCN("legacy"), SEQUENCE),
    case("F.glu over channels (gated Conv1d)", GatedConv1d, SEQUENCE),
)
