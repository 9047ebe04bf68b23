"""Attention blocks in CNNs: CBAM, ECA, SK, split attention, non-local, GC, coordinate attention, SE variants.

Each block sits after a stem, usually inside a residual, so that its channels couple with the trunk's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .catalog import IMAGE, SMALL_IMAGE, case, conv_bn

__all__ = ["CASES"]


class CBAM(nn.Module):
    """Convolutional block attention module (Woo et al., 2018): a shared MLP over average and max pooled
    channels, then a 7x7 conv over the channel mean and max."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Conv2d(channels, channels // reduction, 1, bias=False), nn.ReLU(),
                                 nn.Conv2d(channels // reduction, channels, 1, bias=False))
        self.spatial = nn.Conv2d(2, 1, 7, padding=3)

    def forward(self, x: Tensor) -> Tensor:
        x = x * torch.sigmoid(self.mlp(F.adaptive_avg_pool2d(x, 1)) + self.mlp(F.adaptive_max_pool2d(x, 1)))
        s = torch.cat([x.mean(1, keepdim=True), torch.max(x, dim=1, keepdim=True)[0]], 1)
        return x * torch.sigmoid(self.spatial(s))


class ECA(nn.Module):
    """Efficient channel attention (Wang et al., 2020): a Conv1d slides along the channel axis."""

    def __init__(self, kernel: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 1, kernel, padding=kernel // 2, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        y = F.adaptive_avg_pool2d(x, 1)
        y = self.conv(y.squeeze(-1).transpose(-1, -2)).transpose(-1, -2).unsqueeze(-1)
        return x * torch.sigmoid(y)


class SelectiveKernel(nn.Module):
    """Selective kernel conv (Li et al., 2019): branches stacked on dim 1, a softmax over branches weighs them."""

    def __init__(self, channels: int, branches: int = 2, reduction: int = 4) -> None:
        super().__init__()
        self.convs = nn.ModuleList(conv_bn(channels, channels, 3 + 2 * i) for i in range(branches))
        self.fc = nn.Sequential(nn.Linear(channels, channels // reduction), nn.ReLU())
        self.fcs = nn.ModuleList(nn.Linear(channels // reduction, channels) for _ in range(branches))

    def forward(self, x: Tensor) -> Tensor:
        feats = torch.stack([conv(x) for conv in self.convs], dim=1)
        z = self.fc(feats.sum(1).mean((2, 3)))
        weights = torch.stack([fc(z) for fc in self.fcs], dim=1).softmax(dim=1)
        return (feats * weights[..., None, None]).sum(1)


class RadixSoftmax(nn.Module):
    """ResNeSt's ``rSoftMax``: softmax across the radix splits of each cardinal group."""

    def __init__(self, radix: int, cardinality: int) -> None:
        super().__init__()
        self.radix, self.cardinality = radix, cardinality

    def forward(self, x: Tensor) -> Tensor:
        batch = x.size(0)
        x = x.view(batch, self.cardinality, self.radix, -1).transpose(1, 2)
        return F.softmax(x, dim=1).reshape(batch, -1)


class SplitAttention(nn.Module):
    """ResNeSt split attention (Zhang et al., 2020) as in timm (radix 2, cardinality 1): the radix folded
    out with ``reshape``, summed, attended and summed back."""

    def __init__(self, in_channels: int, out_channels: int, radix: int = 2) -> None:
        super().__init__()
        self.radix = radix
        mid, attention = out_channels * radix, max(out_channels // 4, 4)
        self.conv = conv_bn(in_channels, mid, 3, groups=radix)
        self.fc1 = conv_bn(out_channels, attention, 1)
        self.fc2 = nn.Conv2d(attention, mid, 1)
        self.rsoftmax = RadixSoftmax(radix, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        b, rc, h, w = x.shape[0], x.shape[1], x.shape[2], x.shape[3]
        x = x.reshape((b, self.radix, rc // self.radix, h, w))
        attention = self.fc2(self.fc1(x.sum(dim=1).mean((2, 3), keepdim=True)))
        attention = self.rsoftmax(attention).view(b, -1, 1, 1)
        return (x * attention.reshape((b, self.radix, rc // self.radix, 1, 1))).sum(dim=1).contiguous()


class NonLocal(nn.Module):
    """Non-local block (Wang et al., 2018): embedded Gaussian attention by ``view``, ``permute`` and ``matmul``."""

    def __init__(self, channels: int, inner: int) -> None:
        super().__init__()
        self.inner = inner
        self.g, self.theta, self.phi = (nn.Conv2d(channels, inner, 1) for _ in range(3))
        self.w = nn.Sequential(nn.Conv2d(inner, channels, 1), nn.BatchNorm2d(channels))

    def forward(self, x: Tensor) -> Tensor:
        n = x.size(0)
        g = self.g(x).view(n, self.inner, -1).permute(0, 2, 1)
        theta = self.theta(x).view(n, self.inner, -1).permute(0, 2, 1)
        phi = self.phi(x).view(n, self.inner, -1)
        y = torch.matmul(torch.matmul(theta, phi).softmax(-1), g)
        return x + self.w(y.permute(0, 2, 1).contiguous().view(n, self.inner, x.size(2), x.size(3)))


class GlobalContext(nn.Module):
    """GCNet context block (Cao et al., 2019): softmax attention pooling by ``matmul``, then a bottleneck
    transform with ``LayerNorm([C/r, 1, 1])`` added to every position."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.mask = nn.Conv2d(channels, 1, 1)
        hidden = channels // reduction
        self.transform = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.LayerNorm([hidden, 1, 1]), nn.ReLU(),
                                       nn.Conv2d(hidden, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.size()
        mask = self.mask(x).view(n, 1, h * w).softmax(2).unsqueeze(-1)
        context = torch.matmul(x.view(n, c, h * w).unsqueeze(1), mask).view(n, c, 1, 1)
        return x + self.transform(context)


class CoordinateAttention(nn.Module):
    """Coordinate attention (Hou et al., 2021): pools along H and along W, concatenated on the spatial axis,
    a shared conv, ``split([h, w])`` back, one gate per direction."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        mid = max(4, channels // reduction)
        self.conv1 = conv_bn(channels, mid, 1, act=nn.Hardswish)
        self.conv_h, self.conv_w = nn.Conv2d(mid, channels, 1), nn.Conv2d(mid, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        _, _, h, w = x.size()
        pooled_h = F.adaptive_avg_pool2d(x, (None, 1))
        pooled_w = F.adaptive_avg_pool2d(x, (1, None)).permute(0, 1, 3, 2)
        y = self.conv1(torch.cat([pooled_h, pooled_w], dim=2))
        y_h, y_w = torch.split(y, [h, w], dim=2)
        return x * self.conv_h(y_h).sigmoid() * self.conv_w(y_w.permute(0, 1, 3, 2)).sigmoid()


class HardSwishSE(nn.Module):
    """MobileNetV3-style hand-written h-swish and h-sigmoid, and an SE gate broadcast with ``expand_as``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.squeeze, self.excite = nn.Conv2d(16, 4, 1), nn.Conv2d(4, 16, 1)
        self.out = nn.Conv2d(16, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        x = x * F.relu6(x + 3.0) / 6.0
        s = F.relu6(self.excite(F.relu(self.squeeze(x.mean((2, 3), keepdim=True)))) + 3.0) / 6.0
        return self.out(x * s.expand_as(x))


class MultiheadPooling(nn.Module):
    """CNN features as tokens, ``nn.MultiheadAttention`` over them, mean pooling (attention-pooling heads)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(conv_bn(3, 16, stride=2), conv_bn(16, 16, stride=2))
        self.attention = nn.MultiheadAttention(16, 2)
        self.fc = nn.Linear(16, 5)

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.features(x).flatten(2).permute(2, 0, 1)
        y, _ = self.attention(tokens, tokens, tokens)
        return self.fc(y.mean(0))


class ExpandedMap(nn.Module):
    """A one-channel attention map ``expand(-1, 16, -1, -1)`` to the channels it gates,
    next to ``x.repeat(1, 2, 1, 1)``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = conv_bn(3, 16)
        self.attention = nn.Conv2d(16, 1, 3, padding=1)
        self.out, self.out_repeated = nn.Conv2d(16, 4, 1), nn.Conv2d(32, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        f = self.conv(x)
        gate = torch.sigmoid(self.attention(f)).expand(-1, 16, -1, -1)
        return self.out(f * gate) + self.out_repeated(f.repeat(1, 2, 1, 1))


class AttentionNet(nn.Module):
    """Stem, an optional second conv, the attention block, an optional residual around them, a 1x1 head."""

    def __init__(self, block: nn.Module, second_conv: bool = True, residual: bool = False, stride: int = 1) -> None:
        super().__init__()
        self.residual = residual
        self.stem = conv_bn(3, 16, stride=stride)
        self.body = nn.Sequential(conv_bn(16, 16) if second_conv else nn.Identity(), block)
        self.out = nn.Conv2d(16, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        y = self.body(x)
        return self.out(F.relu(x + y) if self.residual else y)


class ResNeStBlock(nn.Module):
    """A ResNeSt bottleneck: 1x1, split attention, 1x1 + BN, residual, then a linear classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = conv_bn(3, 16)
        self.reduce = conv_bn(16, 16, 1)
        self.split_attention = SplitAttention(16, 16)
        self.expand = conv_bn(16, 16, 1, act=None)
        self.fc = nn.Linear(16, 5)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        x = F.relu(x + self.expand(self.split_attention(self.reduce(x))))
        return self.fc(x.mean((2, 3)))


CASES = (
    case("CBAM: shared MLP on avg + max, channel mean/max spatial attention",
         lambda: AttentionNet(CBAM(16), residual=True), IMAGE),
    case("ECA: Conv1d across the channel axis", lambda: AttentionNet(ECA()), IMAGE),
    case("SKNet: branches stacked on dim 1, softmax over branches",
         lambda: AttentionNet(SelectiveKernel(16), second_conv=False, residual=True), IMAGE),
    case("ResNeSt split attention: reshape radix fold, sum(dim=1), rSoftMax", ResNeStBlock, SMALL_IMAGE),
    case("non-local block: view + permute + matmul over channels",
         lambda: AttentionNet(NonLocal(16, 8), second_conv=False, stride=2), IMAGE),
    case("GCNet context block: matmul + LayerNorm([C, 1, 1])",
         lambda: AttentionNet(GlobalContext(16), second_conv=False), IMAGE),
    case("coordinate attention: cat/split on the H axis, permute",
         lambda: AttentionNet(CoordinateAttention(16), second_conv=False), (1, 3, 32, 24)),
    case("hand-written h-swish/h-sigmoid, SE gate with expand_as", HardSwishSE, IMAGE),
    case("CNN + nn.MultiheadAttention pooling", MultiheadPooling, IMAGE),
    case("1-channel map .expand(-1, 16, -1, -1) * x, x.repeat(1, 2, 1, 1)", ExpandedMap, SMALL_IMAGE),
)
