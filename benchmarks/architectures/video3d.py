"""3D-convolution video networks: X3D, I3D and S3D, the I3D ``Unit3D`` with TF 'same' padding, R(2+1)D, CSN."""

from __future__ import annotations

import math

import torch
import torch.fx
import torch.nn.functional as F
from torch import Tensor, nn

import fxprune

from .catalog import CLIP, Shape, case, conv_bn

__all__ = ["CASES"]


class SqueezeExcite3d(nn.Module):
    """Squeeze-and-excitation on a 3D feature map, with 1x1x1 convs as in X3D."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.fc1 = nn.Conv3d(channels, channels // reduction, 1)
        self.fc2 = nn.Conv3d(channels // reduction, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(self.pool(x)))))


class Swish(nn.Module):
    """``x * sigmoid(x)`` written out, as X3D's reference code does."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(x)


class X3DBlock(nn.Module):
    """X3D bottleneck (Feichtenhofer, 2020): 1x1x1, depthwise 3x3x3, SE, swish, 1x1x1, residual."""

    def __init__(self, channels: int, inner: int) -> None:
        super().__init__()
        self.expand = conv_bn(channels, inner, 1, dims=3)
        self.depthwise = nn.Sequential(nn.Conv3d(inner, inner, 3, padding=1, groups=inner, bias=False),
                                       nn.BatchNorm3d(inner))
        self.se = SqueezeExcite3d(inner)
        self.act = Swish()
        self.project = nn.Sequential(nn.Conv3d(inner, channels, 1, bias=False), nn.BatchNorm3d(channels))

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x + self.project(self.act(self.se(self.depthwise(self.expand(x))))))


class X3D(nn.Module):
    """Tiny X3D: spatial then depthwise temporal stem, two bottlenecks, 1x1x1 head conv, linear classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.stem_xy = nn.Conv3d(3, 12, (1, 3, 3), (1, 2, 2), (0, 1, 1), bias=False)
        self.stem_t = nn.Conv3d(12, 12, (5, 1, 1), padding=(2, 0, 0), groups=12, bias=False)
        self.bn = nn.BatchNorm3d(12)
        self.blocks = nn.Sequential(X3DBlock(12, 27), X3DBlock(12, 27))
        self.head = conv_bn(12, 32, 1, dims=3)
        self.fc = nn.Linear(32, 5)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn(self.stem_t(self.stem_xy(x))))
        x = self.head(self.blocks(x))
        return self.fc(F.adaptive_avg_pool3d(x, 1).flatten(1))


class SeparableConv3d(nn.Module):
    """S3D's separable convolution (Xie et al., 2018): a (1,k,k) spatial then a (k,1,1) temporal conv."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 3) -> None:
        super().__init__()
        self.spatial = conv_bn(in_channels, out_channels, (1, kernel, kernel), dims=3)
        self.temporal = conv_bn(out_channels, out_channels, (kernel, 1, 1), dims=3)

    def forward(self, x: Tensor) -> Tensor:
        return self.temporal(self.spatial(x))


class Inception3d(nn.Module):
    """Inflated Inception module of I3D (Carreira and Zisserman, 2017), separable in S3D: four branches, concat."""

    def __init__(self, in_channels: int, separable: bool) -> None:
        super().__init__()

        def conv3(a: int, b: int) -> nn.Module:
            """The 3x3x3 conv of a branch, separable in S3D."""
            return SeparableConv3d(a, b) if separable else conv_bn(a, b, 3, dims=3)

        self.branch1 = conv_bn(in_channels, 8, 1, dims=3)
        self.branch2 = nn.Sequential(conv_bn(in_channels, 6, 1, dims=3), conv3(6, 10))
        self.branch3 = nn.Sequential(conv_bn(in_channels, 4, 1, dims=3), conv3(4, 6))
        self.branch4 = nn.Sequential(nn.MaxPool3d(3, 1, 1), conv_bn(in_channels, 6, 1, dims=3))

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class I3D(nn.Module):
    """Tiny I3D or S3D: stem, two inception modules, average pool and 1x1x1 conv logits."""

    def __init__(self, separable: bool) -> None:
        super().__init__()
        self.stem = SeparableConv3d(3, 16) if separable else conv_bn(3, 16, 3, dims=3)
        self.pool = nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1))
        self.mixed = nn.Sequential(Inception3d(16, separable), Inception3d(30, separable))
        self.logits = nn.Conv3d(30, 5, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.mixed(self.pool(self.stem(x)))
        x = F.avg_pool3d(x, kernel_size=(2, 16, 16))
        return self.logits(x).mean((2, 3, 4))


def _same_pad_widths(kernel: Shape, stride: Shape, sizes: Shape) -> list[int]:
    """TensorFlow 'SAME' padding as F.pad widths (last dim first), from the input sizes."""
    widths: list[int] = []
    for k, s, size in reversed(list(zip(kernel, stride, sizes, strict=True))):
        total = max(k - s, 0) if size % s == 0 else max(k - size % s, 0)
        widths += [total // 2, total - total // 2]
    return widths


class Unit3D(nn.Module):
    """piergiaj/pytorch-i3d ``Unit3D``: TF 'SAME' padding computed in forward from ``x.size()``.

    The ``if`` on the input size is data-dependent Python: fx cannot trace it unless the
    module is registered as a leaf.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: Shape, stride: Shape = (1, 1, 1)) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.conv3d = nn.Conv3d(in_channels, out_channels, kernel, stride, padding=0, bias=False)
        self.bn = nn.BatchNorm3d(out_channels, eps=0.001, momentum=0.01)

    def forward(self, x: Tensor) -> Tensor:
        _, _, t, h, w = x.size()
        return F.relu(self.bn(self.conv3d(F.pad(x, _same_pad_widths(self.kernel, self.stride, (t, h, w))))))


@torch.fx.wrap
def same_pad(x: Tensor, kernel: Shape, stride: Shape) -> Tensor:
    """Pad ``x`` TF-style inside one function that fx records as a single call (``torch.fx.wrap``)."""
    return F.pad(x, _same_pad_widths(kernel, stride, tuple(x.shape[2:])))


@torch.fx.wrap
def same_pad_widths(x: Tensor, kernel: Shape, stride: Shape) -> tuple[int, ...]:
    """The TF 'SAME' widths of ``x``, wrapped: in the traced graph they are a value, not constants."""
    return tuple(_same_pad_widths(kernel, stride, tuple(x.shape[2:])))


class Unit3DWrapped(Unit3D):
    """``Unit3D`` made traceable the documented way: the padding moves into a ``torch.fx.wrap`` function,
    either the whole pad or only the widths then given to ``F.pad``."""

    def __init__(self, in_channels: int, out_channels: int, kernel: Shape, stride: Shape = (1, 1, 1), *,
                 wrap_widths_only: bool = False) -> None:
        super().__init__(in_channels, out_channels, kernel, stride)
        self.wrap_widths_only = wrap_widths_only

    def forward(self, x: Tensor) -> Tensor:
        if self.wrap_widths_only:
            x = F.pad(x, same_pad_widths(x, self.kernel, self.stride))
        else:
            x = same_pad(x, self.kernel, self.stride)
        return F.relu(self.bn(self.conv3d(x)))


class I3DUnits(nn.Module):
    """An I3D stem of ``Unit3D`` layers and 1x1x1 conv logits."""

    def __init__(self, unit: type[Unit3D] = Unit3D, **unit_options: bool) -> None:
        super().__init__()
        self.units = nn.Sequential(unit(3, 16, (3, 7, 7), (1, 2, 2), **unit_options),
                                   unit(16, 24, (1, 1, 1), **unit_options),
                                   unit(24, 32, (3, 3, 3), (2, 2, 2), **unit_options))
        self.logits = nn.Conv3d(32, 5, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.logits(F.adaptive_avg_pool3d(self.units(x), 1)).flatten(1)


class SpatioTemporalConv(nn.Module):
    """R(2+1)D factorised conv (Tran et al., 2018): the middle width keeps the parameter count of a full 3D conv."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 3, stride: int = 1) -> None:
        super().__init__()
        t = d = kernel
        mid = math.floor(t * d * d * in_channels * out_channels / (d * d * in_channels + t * out_channels))
        self.spatial = nn.Conv3d(in_channels, mid, (1, d, d), (1, stride, stride), (0, d // 2, d // 2), bias=False)
        self.bn = nn.BatchNorm3d(mid)
        self.temporal = nn.Conv3d(mid, out_channels, (t, 1, 1), (stride, 1, 1), (t // 2, 0, 0), bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.temporal(F.relu(self.bn(self.spatial(x))))


class R21DBlock(nn.Module):
    """R(2+1)D residual block, with a factorised 1x1x1 projection when it downsamples."""

    def __init__(self, in_channels: int, out_channels: int, downsample: bool = False) -> None:
        super().__init__()
        stride = 2 if downsample else 1
        self.conv1 = SpatioTemporalConv(in_channels, out_channels, 3, stride)
        self.bn1 = nn.BatchNorm3d(out_channels)
        self.conv2 = SpatioTemporalConv(out_channels, out_channels, 3)
        self.bn2 = nn.BatchNorm3d(out_channels)
        self.down = (nn.Sequential(SpatioTemporalConv(in_channels, out_channels, 1, 2), nn.BatchNorm3d(out_channels))
                     if downsample else None)

    def forward(self, x: Tensor) -> Tensor:
        residual = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu((x if self.down is None else self.down(x)) + residual)


class R21D(nn.Module):
    """Tiny R(2+1)D whose head flattens with a literal ``view(-1, 32)``."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = SpatioTemporalConv(3, 16, 3)
        self.layers = nn.Sequential(R21DBlock(16, 16), R21DBlock(16, 32, downsample=True))
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(32, 5)

    def forward(self, x: Tensor) -> Tensor:
        x = self.layers(F.relu(self.stem(x)))
        return self.fc(self.pool(x).view(-1, 32))


class CSNBlock(nn.Module):
    """Interaction-reduced channel-separated bottleneck, ir-CSN (Tran et al., 2019): 1x1x1, depthwise 3x3x3, 1x1x1."""

    def __init__(self, in_channels: int, mid: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.reduce = conv_bn(in_channels, mid, 1, dims=3)
        self.depthwise = conv_bn(mid, mid, 3, (1, stride, stride), dims=3, groups=mid)
        self.expand = conv_bn(mid, out_channels, 1, dims=3, act=None)
        self.down = (None if in_channels == out_channels and stride == 1
                     else conv_bn(in_channels, out_channels, 1, (1, stride, stride), dims=3, act=None))

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.down is None else self.down(x)
        return F.relu(self.expand(self.depthwise(self.reduce(x))) + identity)


class CSN(nn.Module):
    """Tiny ir-CSN: a 3x7x7 stem and three channel-separated blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = conv_bn(3, 16, (3, 7, 7), (1, 2, 2), dims=3)
        self.blocks = nn.Sequential(CSNBlock(16, 8, 32), CSNBlock(32, 8, 32), CSNBlock(32, 16, 48, stride=2))
        self.fc = nn.Linear(48, 5)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.blocks(self.stem(x)).mean((2, 3, 4)))


CASES = (
    case("X3D bottlenecks: depthwise 3D conv, SE, swish, residual", X3D, CLIP),
    case("X3D compiled in train mode (BN statistics must not move)", X3D, (2, 3, 8, 32, 32), train_mode=True),
    case("I3D inception: maxpool branch, concat", lambda: I3D(separable=False), CLIP),
    case("S3D separable (1,3,3)+(3,1,1) inception", lambda: I3D(separable=True), CLIP),
    case("I3D Unit3D TF-same padding with `if` on x.size() (untraceable)", I3DUnits, CLIP,
         raises=fxprune.TraceError),
    case("I3D Unit3D registered as a leaf module", I3DUnits, CLIP, compile_options={"leaf_modules": [Unit3D]}),
    case("I3D Unit3D padding inside a torch.fx.wrap function", lambda: I3DUnits(Unit3DWrapped), CLIP),
    case("I3D Unit3D F.pad(x, widths from a torch.fx.wrap function)",
         lambda: I3DUnits(Unit3DWrapped, wrap_widths_only=True), CLIP),
    case("R(2+1)D computed middle widths, view(-1, 32) head", R21D, CLIP),
    case("ir-CSN blocks: 1x1x1, depthwise 3x3x3, 1x1x1, residual", CSN, (1, 3, 4, 32, 32)),
)
