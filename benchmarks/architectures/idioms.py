"""Tensor idioms around channels: flatten heads, space-to-depth, roll, flip, einsum, maxout, CReLU, CoordConv, ..."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .catalog import IMAGE, SMALL_IMAGE, case, conv_bn

__all__ = ["CASES"]


class FlattenHead(nn.Module):
    """A classifier ``Flatten, Linear, BatchNorm1d, ReLU, Dropout, Linear`` (VGG/AlexNet style) after global
    pooling, after pooling to ``pool x pool`` (flattened channels then carry several features each), or
    straight on the ``C x H x W`` map when ``pool`` is None."""

    def __init__(self, pool: int | None) -> None:
        super().__init__()
        self.features = nn.Sequential(conv_bn(3, 16, stride=2), conv_bn(16, 32, stride=2))
        self.pool = nn.AdaptiveAvgPool2d(pool) if pool else nn.Identity()
        flat = 32 * (pool or 8) ** 2
        self.classifier = nn.Sequential(nn.Flatten(1), nn.Linear(flat, 64), nn.BatchNorm1d(64), nn.ReLU(),
                                        nn.Dropout(0.5), nn.Linear(64, 5))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.pool(self.features(x)))


class SpaceToDepth(nn.Module):
    """Space-to-depth and back (einops ``b c (h 2) (w 2) -> b (c 2 2) h w``) with reshape and permute, sizes
    read from ``x.shape`` or, with ``literal``, written as constants."""

    def __init__(self, literal: bool) -> None:
        super().__init__()
        self.literal = literal
        self.conv1, self.conv2 = conv_bn(3, 8), conv_bn(32, 16)
        self.out = nn.Conv2d(4, 3, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        b, c, h, w = (-1, 8, 32, 32) if self.literal else x.shape
        x = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(b, c * 4, h // 2, w // 2)
        x = self.conv2(x)
        x = x.reshape(b, 4, 2, 2, h // 2, w // 2).permute(0, 1, 4, 2, 5, 3).reshape(b, 4, h, w)
        return self.out(x)


class TwoConvs(nn.Module):
    """Two conv blocks and a 1x1 head: the frame that the following idioms put their channel op in."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2, self.out = conv_bn(3, 16), conv_bn(16, 16), nn.Conv2d(16, 4, 1)


class Roll(TwoConvs):
    """Shifted windows in a conv net (the Swin idiom): ``torch.roll`` over H and W and back."""

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        y = torch.roll(self.conv2(torch.roll(x, shifts=(2, 2), dims=(2, 3))), shifts=(-2, -2), dims=(2, 3))
        return self.out(x + y)


class Flip(TwoConvs):
    """``torch.flip`` on the width axis and ``x.flip(1)``, which reverses the channels."""

    def forward(self, x: Tensor) -> Tensor:
        f = self.conv1(x)
        g = self.conv2(f)
        return self.out(g + torch.flip(g, dims=[3]) + f.flip(1))


class Einsum(nn.Module):
    """A 1x1 conv written as ``einsum("nchw,oc->nohw")`` with a parameter."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = conv_bn(3, 16)
        self.weight = nn.Parameter(torch.randn(8, 16) * 0.2)
        self.out = nn.Conv2d(8, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(torch.einsum("nchw,oc->nohw", self.conv(x), self.weight))


class MaxOut(nn.Module):
    """Maxout over channel pairs (Goodfellow et al., 2013): ``view(n, c // 2, 2, h, w).amax(2)``, the channel
    count literal (8) or computed from the shape."""

    def __init__(self, computed_sizes: bool) -> None:
        super().__init__()
        self.computed_sizes = computed_sizes
        self.conv, self.out = nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(8, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        f = self.conv(x)
        n, h, w = f.shape[0], f.shape[2], f.shape[3]
        pairs = f.shape[1] // 2 if self.computed_sizes else 8
        return self.out(f.view(n, pairs, 2, h, w).amax(2))


class NegativeDims(nn.Module):
    """Channel ops addressed with negative dims: ``cat`` and ``chunk`` on dim -3 (one of them with the input),
    ``squeeze(-1)`` twice and a literal ``view(-1, 16)``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2, self.conv3 = conv_bn(3, 16), conv_bn(16 + 3, 16), conv_bn(8, 8)
        self.fc = nn.Linear(16, 5)

    def forward(self, x: Tensor) -> Tensor:
        f = self.conv2(torch.cat([x, self.conv1(x)], dim=-3))
        a, b = f.chunk(2, dim=-3)
        f = torch.cat((self.conv3(a), b), -3)
        return self.fc(F.adaptive_avg_pool2d(f, 1).squeeze(-1).squeeze(-1).view(-1, 16))


class CReLU(nn.Module):
    """Concatenated ReLU of PVANet (Shang et al., 2016): ``cat([x, -x])``, the same channels twice, then BN + ReLU."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn, self.out = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(16), nn.Conv2d(16, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        f = self.conv(x)
        return self.out(F.relu(self.bn(torch.cat([f, -f], 1))))


class PermutedAdd(TwoConvs):
    """``split([6, 10])`` concatenated in reverse order and added back: couples channel i with another one."""

    def forward(self, x: Tensor) -> Tensor:
        f = self.conv1(x)
        a, b = f.split([6, 10], 1)
        return self.out(self.conv2(f + torch.cat([b, a], 1)))


class CosineClassifier(nn.Module):
    """A metric-learning head: embedding ``F.normalize(dim=1)`` and a cosine classifier over normalised weights."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(conv_bn(3, 16, stride=2), conv_bn(16, 32, stride=2))
        self.embed = nn.Linear(32, 16)
        self.weight = nn.Parameter(torch.randn(5, 16))

    def forward(self, x: Tensor) -> Tensor:
        e = F.normalize(self.embed(self.features(x).mean((2, 3))), dim=1)
        return F.linear(e, F.normalize(self.weight, dim=1))


class CoordConv(nn.Module):
    """CoordConv (Liu et al., 2018): ``linspace`` coordinate channels concatenated to the features."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = conv_bn(3, 16)
        self.conv2 = nn.Conv2d(16 + 2, 16, 3, padding=1)
        self.out = nn.Conv2d(16, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        f = self.conv1(x)
        n, h, w = f.shape[0], f.shape[2], f.shape[3]
        xx = torch.linspace(-1, 1, w).view(1, 1, 1, -1).expand(n, 1, h, w)
        yy = torch.linspace(-1, 1, h).view(1, 1, -1, 1).expand(n, 1, h, w)
        return self.out(F.relu(self.conv2(torch.cat([f, xx, yy], 1))))


class DataAttribute(nn.Module):
    """Legacy code passing ``activation.data`` on, outside any size query."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.out = conv_bn(3, 16), nn.Conv2d(16, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.conv(x).data)


BATCH2 = (2, 3, 32, 32)

CASES = (
    case("Flatten, Linear, BatchNorm1d, Linear head after global pooling", lambda: FlattenHead(1), BATCH2),
    case("Flatten, Linear, BatchNorm1d, Linear head after AdaptiveAvgPool2d(2)", lambda: FlattenHead(2), BATCH2),
    case("Flatten, Linear, BatchNorm1d, Linear head on the whole C x H x W map", lambda: FlattenHead(None), BATCH2),
    case("space-to-depth/depth-to-space via reshape/permute, sizes from x.shape",
         lambda: SpaceToDepth(literal=False), IMAGE),
    case("space-to-depth/depth-to-space, literal sizes", lambda: SpaceToDepth(literal=True), IMAGE),
    case("torch.roll over H, W (shifted window)", Roll, IMAGE),
    case("torch.flip on W and x.flip(1) on channels", Flip, SMALL_IMAGE),
    case("einsum 1x1 conv with a Parameter", Einsum, IMAGE),
    case("maxout view(n, 8, 2, h, w).amax(2), literal channels", lambda: MaxOut(computed_sizes=False), SMALL_IMAGE),
    case("maxout view(n, c // 2, 2, h, w).amax(2), computed channels", lambda: MaxOut(computed_sizes=True),
         SMALL_IMAGE),
    case("negative dims: cat/chunk dim=-3, squeeze(-1), view(-1, 16)", NegativeDims, (2, 3, 16, 16)),
    case("CReLU cat([x, -x], 1): the same channels twice", CReLU, SMALL_IMAGE),
    case("split([6, 10]) reversed cat + residual add", PermutedAdd, SMALL_IMAGE),
    case("F.normalize(dim=1) embedding + cosine classifier", CosineClassifier, BATCH2),
    case("CoordConv: cat([f, linspace coordinates], 1)", CoordConv, SMALL_IMAGE),
    case("activation.data passed on (legacy code)", DataAttribute, SMALL_IMAGE),
)
