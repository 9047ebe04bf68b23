"""Video building blocks: SlowFast lateral fusion, causal temporal padding, a 3D UNet, temporal gates, 3D to 2D."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .catalog import Inputs, case, conv_bn

__all__ = ["CASES"]


class SlowFast(nn.Module):
    """SlowFast (Feichtenhofer et al., 2019) in the pytorchvideo style.

    The fast pathway (more frames, ``1/beta`` of the channels) joins the slow one through a
    time-strided Conv3d + BN + ReLU concatenated on channels; early slow stages have temporal
    kernel 1. The input is the list ``[slow, fast]``.
    """

    def __init__(self, alpha: int = 4, beta_inv: int = 4, width: int = 16, classes: int = 5) -> None:
        super().__init__()
        fast = width // beta_inv

        def fuse(channels: int) -> nn.Sequential:
            """The fast-to-slow lateral connection: a conv strided by ``alpha`` in time."""
            return nn.Sequential(nn.Conv3d(channels, 2 * channels, (5, 1, 1), (alpha, 1, 1), (2, 0, 0), bias=False),
                                 nn.BatchNorm3d(2 * channels), nn.ReLU())

        self.slow_stem = conv_bn(3, width, (1, 7, 7), (1, 2, 2), dims=3)
        self.fast_stem = conv_bn(3, fast, (5, 7, 7), (1, 2, 2), dims=3)
        self.fuse0 = fuse(fast)
        self.slow_res2 = conv_bn(width + 2 * fast, 2 * width, (1, 3, 3), dims=3)
        self.fast_res2 = conv_bn(fast, 2 * fast, (3, 3, 3), dims=3)
        self.fuse1 = fuse(2 * fast)
        self.slow_res3 = conv_bn(2 * width + 4 * fast, 4 * width, (3, 3, 3), (1, 2, 2), dims=3)
        self.fast_res3 = conv_bn(2 * fast, 4 * fast, (3, 3, 3), (1, 2, 2), dims=3)
        self.slow_pool = nn.AdaptiveAvgPool3d(1)
        self.fast_pool = nn.AdaptiveAvgPool3d(1)
        self.proj = nn.Linear(4 * width + 4 * fast, classes)

    def forward(self, pathways: list[Tensor]) -> Tensor:
        slow, fast = pathways
        slow, fast = self.slow_stem(slow), self.fast_stem(fast)
        slow = torch.cat([slow, self.fuse0(fast)], 1)
        slow, fast = self.slow_res2(slow), self.fast_res2(fast)
        slow = torch.cat([slow, self.fuse1(fast)], 1)
        slow, fast = self.slow_res3(slow), self.fast_res3(fast)
        return self.proj(torch.cat([self.slow_pool(slow), self.fast_pool(fast)], 1).flatten(1))


def slowfast_inputs() -> Inputs:
    """One argument, the pathway list: 2 slow frames and 8 fast ones."""
    return ([torch.randn(1, 3, 2, 32, 32), torch.randn(1, 3, 8, 32, 32)],)


class CausalConv3d(nn.Module):
    """Causal 3D convs: two frames of padding before the clip and none after, so no output sees the future.

    The padding is ``F.pad`` or an ``nn.ConstantPad3d`` module.
    """

    def __init__(self, functional: bool) -> None:
        super().__init__()
        self.functional = functional
        self.pad = nn.ConstantPad3d((1, 1, 1, 1, 2, 0), 0.0)
        self.conv1 = nn.Conv3d(3, 16, 3)
        self.conv2 = nn.Conv3d(16, 16, 3)
        self.out = nn.Conv3d(16, 4, 1)

    def padded(self, x: Tensor) -> Tensor:
        """``x`` padded by 2 frames before, 0 after, and 1 pixel on each side."""
        return F.pad(x, (1, 1, 1, 1, 2, 0)) if self.functional else self.pad(x)

    def forward(self, x: Tensor) -> Tensor:
        f = F.relu(self.conv1(self.padded(x)))
        return self.out(f + F.relu(self.conv2(self.padded(f))))


class UNet3d(nn.Module):
    """3D U-Net (Cicek et al., 2016) decoder step: trilinear ``nn.Upsample`` and ``ConvTranspose3d`` both
    concatenated with the skip."""

    def __init__(self) -> None:
        super().__init__()
        self.enc1, self.enc2 = conv_bn(3, 8, dims=3), conv_bn(8, 16, dims=3)
        self.up = nn.Upsample(scale_factor=2, mode="trilinear", align_corners=False)
        self.up_conv = nn.ConvTranspose3d(16, 8, 2, 2)
        self.dec1 = conv_bn(8 + 16 + 8, 8, dims=3)
        self.out = nn.Conv3d(8, 2, 1)

    def forward(self, x: Tensor) -> Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool3d(e1, 2))
        return self.out(self.dec1(torch.cat([e1, self.up(e2), self.up_conv(e2)], 1)))


class TemporalGate(nn.Module):
    """Channel gates over time: Conv1d on the spatially pooled ``(N, C, T)`` features, broadcast back
    with two ``unsqueeze`` (the gating of temporal-attention video blocks)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc = nn.Conv1d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(self.fc(x.mean((3, 4))).unsqueeze(-1).unsqueeze(-1))


class GateNet(nn.Module):
    """Two 3D conv blocks, each followed by a temporal gate."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.gate1 = conv_bn(3, 16, 3, dims=3), TemporalGate(16)
        self.conv2, self.gate2 = conv_bn(16, 24, 3, (1, 2, 2), dims=3), TemporalGate(24)
        self.fc = nn.Linear(24, 5)

    def forward(self, x: Tensor) -> Tensor:
        x = self.gate2(self.conv2(self.gate1(self.conv1(x))))
        return self.fc(x.mean((2, 3, 4)))


class PoolTo2D(nn.Module):
    """3D convs, time pooled away with ``AdaptiveAvgPool3d((1, None, None)).squeeze(2)``, then 2D convs."""

    def __init__(self) -> None:
        super().__init__()
        self.features3d = nn.Sequential(conv_bn(3, 16, 3, dims=3), conv_bn(16, 24, 3, dims=3))
        self.time_pool = nn.AdaptiveAvgPool3d((1, None, None))
        self.features2d = nn.Sequential(conv_bn(24, 32), conv_bn(32, 16))
        self.out = nn.Conv2d(16, 2, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.features2d(self.time_pool(self.features3d(x)).squeeze(2)))


CASES = (
    case("SlowFast: time-strided fusion conv + cat, list input", SlowFast, inputs=slowfast_inputs),
    case("causal Conv3d padding with F.pad", lambda: CausalConv3d(functional=True), (1, 3, 8, 16, 16)),
    case("causal Conv3d padding with nn.ConstantPad3d", lambda: CausalConv3d(functional=False), (1, 3, 8, 16, 16)),
    case("3D UNet: trilinear nn.Upsample + ConvTranspose3d + cat", UNet3d, (1, 3, 8, 16, 16)),
    case("temporal gate: x * sigmoid(Conv1d(x.mean((3, 4)))) unsqueezed twice", GateNet, (1, 3, 4, 16, 16)),
    case("AdaptiveAvgPool3d((1, None, None)).squeeze(2) into 2D convs", PoolTo2D, (1, 3, 4, 16, 16)),
)
