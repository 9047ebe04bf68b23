"""Detection and tracking: YOLO blocks (Focus, C2f, C3, SPPF), a torchvision FPN neck, Siamese trackers."""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

import fxprune

from .catalog import IMAGE, LARGE_IMAGE, Inputs, case, conv_bn

__all__ = ["CASES"]


class Conv(nn.Module):
    """Ultralytics ``Conv``: conv (no bias), BN, SiLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 1, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = nn.SiLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    """Ultralytics ``Bottleneck``: two 3x3 convs with a shortcut."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.cv1, self.cv2 = Conv(channels, channels, 3), Conv(channels, channels, 3)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.cv2(self.cv1(x))


class C2f(nn.Module):
    """YOLOv8 ``C2f``: split the 1x1 conv output in two halves, chain bottlenecks on the last, concat all.

    ``split`` halves with ``split((c, c), 1)`` (ultralytics ``forward_split``) instead of ``chunk(2, 1)``.
    ``unpacked`` names the halves ``a, b = ...``, which fx traces; ultralytics' ``list(...)`` of the halves
    iterates a traced value, which it cannot.
    """

    def __init__(self, in_channels: int, out_channels: int, split: bool, unpacked: bool, blocks: int = 2) -> None:
        super().__init__()
        self.c, self.split, self.unpacked = out_channels // 2, split, unpacked
        self.cv1 = Conv(in_channels, 2 * self.c)
        self.cv2 = Conv((2 + blocks) * self.c, out_channels)
        self.m = nn.ModuleList(Bottleneck(self.c) for _ in range(blocks))

    def forward(self, x: Tensor) -> Tensor:
        x = self.cv1(x)
        halves = x.split((self.c, self.c), 1) if self.split else x.chunk(2, 1)
        if self.unpacked:
            a, b = halves
            y = [a, b]
        else:
            y = list(halves)
        y.extend(m(y[-1]) for m in self.m)
        return self.cv2(torch.cat(y, 1))


class C3(nn.Module):
    """YOLOv5 ``C3``: a bottleneck path and a 1x1 path, concatenated and fused."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        hidden = out_channels // 2
        self.cv1, self.cv2 = Conv(in_channels, hidden), Conv(in_channels, hidden)
        self.cv3 = Conv(2 * hidden, out_channels)
        self.m = Bottleneck(hidden)

    def forward(self, x: Tensor) -> Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class SPPF(nn.Module):
    """YOLOv5 ``SPPF``: one 5x5 max pool applied three times in a row, every stage concatenated."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 5) -> None:
        super().__init__()
        hidden = in_channels // 2
        self.cv1, self.cv2 = Conv(in_channels, hidden), Conv(hidden * 4, out_channels)
        self.m = nn.MaxPool2d(kernel, 1, kernel // 2)

    def forward(self, x: Tensor) -> Tensor:
        x = self.cv1(x)
        y1 = self.m(x)
        y2 = self.m(y1)
        return self.cv2(torch.cat((x, y1, y2, self.m(y2)), 1))


class Focus(nn.Module):
    """YOLOv5 (v1 to v5) ``Focus``: space-to-depth of the input by four strided slices, then a conv."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = Conv(in_channels * 4, out_channels, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(torch.cat([x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]], 1))


class TinyYOLO(nn.Module):
    """A YOLO with Focus, C2f, C3, SPPF, an upsampling neck and two detect heads reshaped to
    ``(batch, anchors, ny, nx, outputs)``; ``unpack_shape`` reads sizes as ``bs, _, ny, nx = y.shape``."""

    def __init__(self, split: bool = False, unpacked: bool = True, unpack_shape: bool = False) -> None:
        super().__init__()
        self.unpack_shape = unpack_shape
        self.focus = Focus(3, 16)
        self.b1 = nn.Sequential(Conv(16, 32, 3, 2), C2f(32, 32, split, unpacked))
        self.b2 = nn.Sequential(Conv(32, 32, 3, 2), C3(32, 32), SPPF(32, 32))
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.neck = C2f(64, 32, split, unpacked)
        self.detect = nn.ModuleList([nn.Conv2d(32, 3 * 7, 1), nn.Conv2d(32, 3 * 7, 1)])

    def forward(self, x: Tensor) -> list[Tensor]:
        p3 = self.b1(self.focus(x))
        p4 = self.b2(p3)
        n3 = self.neck(torch.cat([self.up(p4), p3], 1))
        outs = []
        for detect, feature in zip(self.detect, (n3, p4), strict=True):
            y = detect(feature)
            if self.unpack_shape:
                bs, _, ny, nx = y.shape
            else:
                bs, ny, nx = y.shape[0], y.shape[2], y.shape[3]
            outs.append(y.view(bs, 3, 7, ny, nx).permute(0, 1, 3, 4, 2).contiguous())
        return outs


class BackboneFPN(nn.Module):
    """Backbone levels into torchvision's ``FeaturePyramidNetwork`` (BatchNorm, P6/P7), one head shared by
    every level, a dict of maps out."""

    def __init__(self) -> None:
        super().__init__()
        self.c3 = conv_bn(3, 8, stride=2)
        self.c4 = conv_bn(8, 16, stride=2)
        self.c5 = conv_bn(16, 32, stride=2)
        self.fpn = FeaturePyramidNetwork([8, 16, 32], 16, extra_blocks=LastLevelP6P7(16, 16), norm_layer=nn.BatchNorm2d)
        self.head = nn.Conv2d(16, 4, 3, padding=1)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        c3 = self.c3(x)
        c4 = self.c4(c3)
        features = self.fpn(OrderedDict([("0", c3), ("1", c4), ("2", self.c5(c4))]))
        return {name: self.head(feature) for name, feature in features.items()}


def pyramid_inputs() -> Inputs:
    """One argument, the ordered dict of three backbone levels that torchvision's FPN takes."""
    return (OrderedDict([("c3", torch.randn(1, 8, 16, 16)), ("c4", torch.randn(1, 16, 8, 8)),
                         ("c5", torch.randn(1, 32, 4, 4))]),)


class SiamFC(nn.Module):
    """SiamFC (Bertinetto et al., 2016): the template's features are the conv weight over the search features."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(conv_bn(3, 16), conv_bn(16, 16, stride=2), nn.Conv2d(16, 16, 3, padding=1))

    def forward(self, template: Tensor, search: Tensor) -> Tensor:
        return F.conv2d(self.backbone(search), self.backbone(template)) * 0.01


class SiamRPNDepthwise(nn.Module):
    """SiamRPN++ (Li et al., 2019) depthwise cross-correlation: ``view(1, b*c, ...)`` and a conv with
    ``groups=b*c``, then a head."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(conv_bn(3, 16), conv_bn(16, 16, stride=2))
        self.conv_kernel, self.conv_search = conv_bn(16, 16, 3), conv_bn(16, 16, 3)
        self.head = nn.Sequential(nn.Conv2d(16, 16, 1), nn.ReLU(), nn.Conv2d(16, 4, 1))

    def forward(self, template: Tensor, search: Tensor) -> Tensor:
        kernel = self.conv_kernel(self.backbone(template))
        search = self.conv_search(self.backbone(search))
        batch, channel = kernel.size(0), kernel.size(1)
        search = search.view(1, batch * channel, search.size(2), search.size(3))
        kernel = kernel.view(batch * channel, 1, kernel.size(2), kernel.size(3))
        out = F.conv2d(search, kernel, groups=batch * channel)
        return self.head(out.view(batch, channel, out.size(2), out.size(3)))


TRACKER_INPUTS = ((1, 3, 8, 8), (1, 3, 24, 24))

CASES = (
    case("YOLOv8 C2f as list(chunk(2, 1)) (untraceable)", lambda: TinyYOLO(unpacked=False), IMAGE,
         raises=fxprune.TraceError),
    case("YOLOv8 C2f as list(split((c, c), 1)) (untraceable)", lambda: TinyYOLO(split=True, unpacked=False), IMAGE,
         raises=fxprune.TraceError),
    case("YOLO: Focus, C2f as `a, b = chunk(2, 1)`, C3, SPPF, Upsample, SiLU", TinyYOLO, IMAGE),
    case("YOLO with C2f as `a, b = split((c, c), 1)`", lambda: TinyYOLO(split=True), IMAGE),
    case("YOLO detect head reading `bs, _, ny, nx = y.shape`", lambda: TinyYOLO(unpack_shape=True), IMAGE),
    case("torchvision FeaturePyramidNetwork on a dict input", lambda: FeaturePyramidNetwork(
        [8, 16, 32], 16, extra_blocks=LastLevelMaxPool()), inputs=pyramid_inputs),
    case("backbone -> torchvision FPN(norm_layer=BN, P6P7) -> shared head, dict output", BackboneFPN, LARGE_IMAGE),
    case("SiamFC cross-correlation F.conv2d(search, template)", SiamFC, *TRACKER_INPUTS),
    case("SiamRPN++ depthwise xcorr: view(1, b*c, ...), groups=b*c", SiamRPNDepthwise, *TRACKER_INPUTS),
)
