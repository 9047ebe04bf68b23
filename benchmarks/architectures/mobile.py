"""Mobile and efficient nets: GhostNet, MobileNetV2 (pre-torchvision code), ShuffleNetV1 shuffles, LightCNN."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .catalog import IMAGE, SMALL_IMAGE, case, conv_bn

__all__ = ["CASES"]


class GhostModule(nn.Module):
    """GhostNet module (Han et al., 2020): a primary 1x1 conv, cheap depthwise 'ghost' features from it,
    concatenated and sliced to ``out_channels``, which cuts the ghost part when the ratio does not divide."""

    def __init__(self, in_channels: int, out_channels: int, ratio: int = 2, relu: bool = True) -> None:
        super().__init__()
        self.out_channels = out_channels
        primary = math.ceil(out_channels / ratio)
        act = nn.ReLU if relu else None
        self.primary_conv = conv_bn(in_channels, primary, 1, act=act)
        self.cheap_operation = conv_bn(primary, primary * (ratio - 1), 3, groups=primary, act=act)

    def forward(self, x: Tensor) -> Tensor:
        x1 = self.primary_conv(x)
        out = torch.cat([x1, self.cheap_operation(x1)], dim=1)
        return out[:, :self.out_channels, :, :]


class GhostNet(nn.Module):
    """Stem, a ghost module to ``width`` channels, a ghost bottleneck with a residual, a linear classifier."""

    def __init__(self, width: int, ratio: int = 2) -> None:
        super().__init__()
        self.stem = conv_bn(3, 16)
        self.ghost = GhostModule(16, width, ratio)
        self.bottleneck = nn.Sequential(GhostModule(width, 24), GhostModule(24, width, relu=False))
        self.fc = nn.Linear(width, 5)

    def forward(self, x: Tensor) -> Tensor:
        x = self.ghost(self.stem(x))
        x = x + self.bottleneck(x)
        return self.fc(x.mean((2, 3)))


class InvertedResidual(nn.Module):
    """MobileNetV2 inverted residual (Sandler et al., 2018) as in torchvision before 0.8 and tonylins' code:
    one ``nn.Sequential`` and a ``use_res_connect`` flag."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden_dim = round(inp * expand_ratio)
        self.use_res_connect = stride == 1 and inp == oup
        expand = [] if expand_ratio == 1 else [
            nn.Conv2d(inp, hidden_dim, 1, 1, 0, bias=False), nn.BatchNorm2d(hidden_dim), nn.ReLU6(inplace=True)]
        self.conv = nn.Sequential(
            *expand,
            nn.Conv2d(hidden_dim, hidden_dim, 3, stride, 1, groups=hidden_dim, bias=False),
            nn.BatchNorm2d(hidden_dim), nn.ReLU6(inplace=True),
            nn.Conv2d(hidden_dim, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup))

    def forward(self, x: Tensor) -> Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    """Tiny MobileNetV2 whose head pools with ``x.mean(3).mean(2)``."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_bn(3, 16, stride=2, act=nn.ReLU6)]
        channels = 16
        for expand_ratio, out_channels, repeats, stride in [(1, 8, 1, 1), (6, 12, 2, 2), (6, 16, 2, 2)]:
            for i in range(repeats):
                layers.append(InvertedResidual(channels, out_channels, stride if i == 0 else 1, expand_ratio))
                channels = out_channels
        layers.append(conv_bn(channels, 64, 1, act=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(64, 5))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x).mean(3).mean(2))


def channel_shuffle(x: Tensor, groups: int, sizes_from_data: bool = False) -> Tensor:
    """ShuffleNet's channel shuffle (Zhang et al., 2018): view ``(b, g, c/g, h, w)``, transpose, flatten back.

    ``sizes_from_data`` reads the sizes from ``x.data.size()``, as jaxony/ShuffleNet does.
    """
    b, c, h, w = (x.data if sizes_from_data else x).size()
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).contiguous().view(b, -1, h, w)


class ShuffleUnit(nn.Module):
    """ShuffleNetV1 unit: grouped 1x1, channel shuffle, depthwise 3x3, grouped 1x1; a residual add, or when
    strided a concat with the average-pooled input. ``shuffle`` is ``"size"``, ``"data"`` or ``"none"``."""

    def __init__(self, in_channels: int, out_channels: int, groups: int, stride: int, first_group: bool = True,
                 shuffle: str = "size") -> None:
        super().__init__()
        self.stride, self.groups, self.shuffle = stride, groups, shuffle
        mid = out_channels // 4
        out = out_channels - in_channels if stride == 2 else out_channels
        self.group_conv1 = conv_bn(in_channels, mid, 1, groups=groups if first_group else 1)
        self.depthwise = conv_bn(mid, mid, 3, stride, groups=mid, act=None)
        self.group_conv2 = conv_bn(mid, out, 1, groups=groups, act=None)

    def forward(self, x: Tensor) -> Tensor:
        y = self.group_conv1(x)
        if self.shuffle != "none":
            y = channel_shuffle(y, self.groups, sizes_from_data=self.shuffle == "data")
        y = self.group_conv2(self.depthwise(y))
        if self.stride == 2:
            return F.relu(torch.cat([F.avg_pool2d(x, 3, 2, 1), y], 1))
        return F.relu(x + y)


class ShuffleNetV1(nn.Module):
    """Tiny ShuffleNetV1 with 3 groups: two strided units and two residual ones."""

    def __init__(self, shuffle: str = "size", groups: int = 3) -> None:
        super().__init__()
        self.stem = conv_bn(3, 24, stride=2)
        self.units = nn.Sequential(ShuffleUnit(24, 48, groups, 2, first_group=False, shuffle=shuffle),
                                   ShuffleUnit(48, 48, groups, 1, shuffle=shuffle),
                                   ShuffleUnit(48, 96, groups, 2, shuffle=shuffle),
                                   ShuffleUnit(96, 96, groups, 1, shuffle=shuffle))
        self.fc = nn.Linear(96, 5)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(F.adaptive_avg_pool2d(self.units(self.stem(x)), 1).flatten(1))


class PlainShuffle(nn.Module):
    """A channel shuffle between ungrouped convs, as ShuffleNetV2-style repositories place it."""

    def __init__(self, sizes_from_data: bool) -> None:
        super().__init__()
        self.sizes_from_data = sizes_from_data
        self.conv1, self.conv2, self.conv3 = conv_bn(3, 24), conv_bn(24, 24), conv_bn(24, 16)
        self.fc = nn.Linear(16, 5)

    def forward(self, x: Tensor) -> Tensor:
        y = channel_shuffle(self.conv1(x), 2, self.sizes_from_data)
        return self.fc(self.conv3(self.conv2(y)).mean((2, 3)))


class MaxFeatureMap(nn.Module):
    """LightCNN max-feature-map (Wu et al., 2018): a conv to twice the width, split in halves, ``torch.max(a, b)``."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 3) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.conv = nn.Conv2d(in_channels, 2 * out_channels, kernel, padding=kernel // 2)

    def forward(self, x: Tensor) -> Tensor:
        a, b = torch.split(self.conv(x), self.out_channels, 1)
        return torch.max(a, b)


class LightCNN(nn.Module):
    """Three max-feature-map layers and a linear classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.mfm1, self.mfm2, self.mfm3 = MaxFeatureMap(3, 8), MaxFeatureMap(8, 16), MaxFeatureMap(16, 8, 1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x: Tensor) -> Tensor:
        x = self.mfm3(self.mfm2(F.max_pool2d(self.mfm1(x), 2)))
        return self.fc(x.mean((2, 3)))


CASES = (
    case("Ghost module, even width: the slice keeps everything", lambda: GhostNet(16), IMAGE),
    case("Ghost module, odd width 15: the slice cuts the ghost features", lambda: GhostNet(15), IMAGE),
    case("Ghost module ratio 3, width 20: depthwise multiplier 2, slice", lambda: GhostNet(20, 3), IMAGE),
    case("MobileNetV2 InvertedResidual (Sequential, use_res_connect), mean(3).mean(2)", MobileNetV2, IMAGE),
    case("ShuffleNetV1 grouped 1x1 + shuffle with x.size()", ShuffleNetV1, IMAGE),
    case("ShuffleNetV1 shuffle with x.data.size()", lambda: ShuffleNetV1("data"), IMAGE),
    case("ShuffleNetV1 units without the shuffle (grouped 1x1 only)", lambda: ShuffleNetV1("none"), IMAGE),
    case("channel shuffle after plain convs, x.size()", lambda: PlainShuffle(False), SMALL_IMAGE),
    case("channel shuffle after plain convs, x.data.size()", lambda: PlainShuffle(True), SMALL_IMAGE),
    case("LightCNN max-feature-map: split halves + torch.max(a, b)", LightCNN, SMALL_IMAGE),
)
