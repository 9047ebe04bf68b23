"""Normalisation idioms: LayerNorm2d in three spellings, a ConvNeXt, GroupNorm, BiT weight standardisation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .catalog import IMAGE, case

__all__ = ["CASES"]


class PermuteLayerNorm2d(nn.Module):
    """LayerNorm over channels of an NCHW map: permute to channels-last, ``nn.LayerNorm``, permute back."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=1e-6)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class TimmLayerNorm2d(nn.LayerNorm):
    """timm's ``LayerNorm2d``: an ``nn.LayerNorm`` subclass calling ``F.layer_norm`` between permutes."""

    def forward(self, x: Tensor) -> Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class ChannelsFirstLayerNorm(nn.Module):
    """The official ConvNeXt ``LayerNorm(data_format="channels_first")``: mean and variance over dim 1 by hand."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.rand(channels) + 0.5)
        self.bias = nn.Parameter(torch.randn(channels) * 0.1)

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(1, keepdim=True)
        variance = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(variance + 1e-6)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class NormBetweenConvs(nn.Module):
    """The simplest use of a LayerNorm2d: between two convs, no residual."""

    def __init__(self, norm: type[nn.Module]) -> None:
        super().__init__()
        self.conv1, self.norm, self.conv2 = nn.Conv2d(3, 16, 3, padding=1), norm(16), nn.Conv2d(16, 8, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(self.norm(self.conv1(x)))


class ConvNeXtBlock(nn.Module):
    """ConvNeXt block (Liu et al., 2022): depthwise 7x7, channels-last LayerNorm and Linear MLP, layer scale."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(channels, channels, 7, padding=3, groups=channels)
        self.norm = nn.LayerNorm(channels, eps=1e-6)
        self.pw1, self.pw2 = nn.Linear(channels, 4 * channels), nn.Linear(4 * channels, channels)
        self.gamma = nn.Parameter(torch.rand(channels))

    def forward(self, x: Tensor) -> Tensor:
        y = self.depthwise(x).permute(0, 2, 3, 1)
        y = self.gamma * self.pw2(F.gelu(self.pw1(self.norm(y))))
        return x + y.permute(0, 3, 1, 2)


class ConvNeXt(nn.Module):
    """Tiny ConvNeXt: patchify stem and downsampling with a LayerNorm2d, two blocks, pooled LayerNorm head."""

    def __init__(self, norm: type[nn.Module]) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 4, 4), norm(16))
        self.stage1 = ConvNeXtBlock(16)
        self.down = nn.Sequential(norm(16), nn.Conv2d(16, 32, 2, 2))
        self.stage2 = ConvNeXtBlock(32)
        self.head_norm = nn.LayerNorm(32)
        self.fc = nn.Linear(32, 5)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stage2(self.down(self.stage1(self.stem(x))))
        return self.fc(self.head_norm(x.mean((-2, -1))))


class GroupNormNet(nn.Module):
    """Convs without bias followed by GroupNorm with 4, 8 and 1 groups (GN(1) normalises over C, H, W),
    and a residual on a channel slice ``x[:, :16]``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.gn1 = nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.GroupNorm(4, 16)
        self.conv2, self.gn2 = nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.GroupNorm(8, 32)
        self.conv3, self.gn3 = nn.Conv2d(32, 16, 1, bias=False), nn.GroupNorm(1, 16)
        self.out = nn.Conv2d(16, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.gn1(self.conv1(x)))
        x = F.relu(self.gn2(self.conv2(x)))
        return self.out(F.relu(self.gn3(self.conv3(x)) + x[:, :16]))


class StdConv2d(nn.Conv2d):
    """timm's ``StdConv2d``: weight standardisation (Qiao et al., 2019) with ``F.batch_norm`` on the weight."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, padding: int = 0, eps: float = 1e-6) -> None:
        super().__init__(in_channels, out_channels, kernel, padding=padding, bias=False)
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        weight = F.batch_norm(self.weight.reshape(1, self.out_channels, -1), None, None, training=True,
                              momentum=0.0, eps=self.eps).reshape_as(self.weight)
        return F.conv2d(x, weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class PreActBiT(nn.Module):
    """BiT ResNetV2 pre-activation bottleneck (Kolesnikov et al., 2020): GroupNorm + ReLU before each StdConv2d."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = StdConv2d(3, 16, 3, padding=1)
        self.block = nn.Sequential(
            nn.GroupNorm(4, 16), nn.ReLU(), StdConv2d(16, 8, 1),
            nn.GroupNorm(4, 8), nn.ReLU(), StdConv2d(8, 8, 3, padding=1),
            nn.GroupNorm(4, 8), nn.ReLU(), StdConv2d(8, 16, 1))
        self.head = nn.Sequential(nn.GroupNorm(4, 16), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Conv2d(16, 5, 1))

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        return self.head(x + self.block(x)).flatten(1)


CASES = (
    case("LayerNorm2d (permute + nn.LayerNorm) between convs", lambda: NormBetweenConvs(PermuteLayerNorm2d), IMAGE),
    case("timm LayerNorm2d subclass (F.layer_norm) between convs", lambda: NormBetweenConvs(TimmLayerNorm2d), IMAGE),
    case("ConvNeXt channels_first LayerNorm (mean over dim 1)", lambda: NormBetweenConvs(ChannelsFirstLayerNorm),
         IMAGE),
    case("ConvNeXt with permute LayerNorm2d, channels-last Linear MLP", lambda: ConvNeXt(PermuteLayerNorm2d), IMAGE),
    case("ConvNeXt with timm LayerNorm2d", lambda: ConvNeXt(TimmLayerNorm2d), IMAGE),
    case("conv(bias=False) + GroupNorm(4/8/1), channel-slice residual", GroupNormNet, IMAGE),
    case("BiT pre-activation: timm StdConv2d (F.batch_norm on the weight) + GroupNorm", PreActBiT, IMAGE),
)
