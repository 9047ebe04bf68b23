"""Tiny hand-built models, one channel-coupling rule each, for the operator tests.

Every model is small (a handful of channels, spatial sizes of a few pixels), built
deterministically (seeded weights, randomised normalisation statistics so that
norm layers are not the identity) and returned in eval mode.

The table :data:`CASES` maps a case name to a :class:`Case` describing how to build
the model, how to make its (seeded) example inputs and what exact-mode pruning at
ratio 0.5 must do to it.  ``tests/test_operators.py`` is parametrised over it.

Names in ``expect_pruned`` / ``expect_frozen`` are qualified names in the original
model.  A name that resolves to a submodule designates that module's output
channels (``weight.shape[0]``; ``weight.shape[1] * groups`` for transposed convs).
A name that resolves to a parameter (functional layers whose weights are
``get_attr`` nodes, layer-scale vectors, positional embeddings) designates that
parameter's channel axis: its first axis of size > 1 in the original model, i.e.
axis 0 of an ``(out, in, ...)`` weight or of a ``(C, 1, 1)`` scale, axis 1 of a
``(1, C, H, W)`` embedding.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch.fx import PH

__all__ = ["Case", "CASES", "ROUND_TO_CASE", "TRAIN_CASE"]


@dataclass(frozen=True)
class Case:
    """One operator test case.

    Attributes:
        build: returns a fresh, deterministic model in eval mode.
        inputs: returns the seeded example inputs, as the positional-argument tuple.
        expect_pruned: names whose output channels MUST shrink under exact-mode
            pruning at ratio 0.5.
        expect_frozen: names whose output channels MUST keep their size under
            exact-mode pruning at ratio 0.5 (model outputs, producers feeding a
            channel softmax / LayerNorm / reduction, unsupported ops, ...).
        exact_prunes: whether exact mode at ratio 0.5 must remove parameters at all;
            when False it must remove none.
        concrete_args: ``concrete_args`` for tracing (``torch.fx.PH`` leaves for a
            model whose forward takes a list or dict of tensors), else None.
        rule: one line naming the coupling rule the case exercises.
    """

    build: Callable[[], nn.Module]
    inputs: Callable[[], tuple]
    expect_pruned: tuple[str, ...] = ()
    expect_frozen: tuple[str, ...] = ()
    exact_prunes: bool = True
    concrete_args: dict[str, Any] | None = None
    rule: str = ""


# --------------------------------------------------------------------------- helpers

_NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)


def _randomize_norms(model: nn.Module, gen: torch.Generator) -> None:
    """Give every norm layer non-trivial affine parameters and running statistics."""
    with torch.no_grad():
        for m in model.modules():
            if not isinstance(m, _NORMS):
                continue
            if getattr(m, "weight", None) is not None:
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
            if getattr(m, "bias", None) is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
            if getattr(m, "running_mean", None) is not None:
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
            if getattr(m, "running_var", None) is not None:
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)


def _builder(cls: Callable[..., nn.Module], *args: Any, seed: int = 0) -> Callable[[], nn.Module]:
    """A zero-argument factory building ``cls(*args)`` deterministically, in eval mode."""

    def build() -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = cls(*args)
        _randomize_norms(model, torch.Generator().manual_seed(seed + 1))
        return model.eval()

    return build


def _randn(*shapes: tuple[int, ...], seed: int = 0) -> Callable[[], tuple[Tensor, ...]]:
    """A factory of seeded standard-normal input tensors, one per shape."""

    def inputs() -> tuple[Tensor, ...]:
        gen = torch.Generator().manual_seed(seed)
        return tuple(torch.randn(shape, generator=gen) for shape in shapes)

    return inputs


def _param(*shape: int, scale: float = 0.3) -> nn.Parameter:
    """A parameter drawn from the (seeded) global generator."""
    return nn.Parameter(torch.randn(*shape) * scale)


IMG = (2, 3, 8, 8)
SEQ = (2, 3, 16)
VID = (2, 3, 4, 8, 8)


# --------------------------------------------------------------------------- chains


class ConvBnRelu2d(nn.Module):
    """conv-bn-relu twice, then a 1x1 head: the plain producer/consumer rule."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.relu2 = nn.ReLU()
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        return self.head(x)


class Conv1dChain(nn.Module):
    """Conv1d-BatchNorm1d-ReLU chain."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm1d(8)
        self.conv2 = nn.Conv1d(8, 8, 3, padding=1)
        self.head = nn.Conv1d(8, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.conv2(x))
        return self.head(x)


class Conv3dChain(nn.Module):
    """Conv3d-BatchNorm3d-ReLU-MaxPool3d, Conv3d, AdaptiveAvgPool3d, flatten, Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm3d(8)
        self.pool1 = nn.MaxPool3d(2)
        self.conv2 = nn.Conv3d(8, 8, 3, padding=1)
        self.pool2 = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool1(F.relu(self.bn1(self.conv1(x))))
        x = self.pool2(F.relu(self.conv2(x)))
        return self.fc(torch.flatten(x, 1))


# --------------------------------------------------------------------------- residuals


class ResidualIdentity(nn.Module):
    """Basic block with an identity shortcut: stem and block_b share one group."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.block_a = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn_a = nn.BatchNorm2d(8)
        self.block_b = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn_b = nn.BatchNorm2d(8)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.stem(x))
        y = F.relu(self.bn_a(self.block_a(x)))
        y = self.bn_b(self.block_b(y))
        return self.head(F.relu(x + y))


class ResidualProjection(nn.Module):
    """Strided block with a 1x1 projection shortcut: block_b and shortcut share a group."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.block_a = nn.Conv2d(8, 12, 3, stride=2, padding=1, bias=False)
        self.bn_a = nn.BatchNorm2d(12)
        self.block_b = nn.Conv2d(12, 12, 3, padding=1, bias=False)
        self.bn_b = nn.BatchNorm2d(12)
        self.shortcut = nn.Conv2d(8, 12, 1, stride=2, bias=False)
        self.bn_s = nn.BatchNorm2d(12)
        self.head = nn.Conv2d(12, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.stem(x))
        y = F.relu(self.bn_a(self.block_a(x)))
        y = self.bn_b(self.block_b(y))
        return self.head(F.relu(y + self.bn_s(self.shortcut(x))))


class BinaryBranches(nn.Module):
    """Two conv branches combined elementwise by ``op`` (sub, mul or div)."""

    def __init__(self, op: str) -> None:
        super().__init__()
        self.op = op
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.conv_a = nn.Conv2d(8, 8, 3, padding=1)
        self.conv_b = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.stem(x))
        a = self.conv_a(x)
        b = self.conv_b(x)
        if self.op == "sub":
            y = a - b
        elif self.op == "mul":
            y = a * b
        else:
            y = a / (torch.sigmoid(b) + 0.5)
        return self.head(F.relu(y))


# --------------------------------------------------------------------------- concat / split


class Concat(nn.Module):
    """Two branches of different widths concatenated on channels."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.conv_a = nn.Conv2d(8, 6, 3, padding=1)
        self.conv_b = nn.Conv2d(8, 10, 1)
        self.head = nn.Conv2d(16, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.stem(x))
        y = torch.cat([self.conv_a(x), self.conv_b(x)], dim=1)
        return self.head(F.relu(y))


class NestedConcat(nn.Module):
    """DenseNet-like growth: each layer's output is appended to a running concat."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.conv1 = nn.Conv2d(8, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(12, 4, 3, padding=1)
        self.head = nn.Conv2d(16, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        c1 = torch.cat([x, self.conv1(F.relu(x))], 1)
        c2 = torch.cat([c1, self.conv2(F.relu(c1))], 1)
        return self.head(F.relu(c2))


class ConcatFuse(nn.Module):
    """Three branches concatenated, then one BatchNorm and a 1x1 conv over all of them."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_a = nn.Conv2d(3, 4, 1)
        self.conv_b = nn.Conv2d(3, 6, 3, padding=1)
        self.conv_c = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(18)
        self.fuse = nn.Conv2d(18, 8, 1)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        y = torch.cat([self.conv_a(x), self.conv_b(x), self.conv_c(x)], dim=1)
        y = F.relu(self.fuse(F.relu(self.bn(y))))
        return self.head(y)


class SplitSizes(nn.Module):
    """``torch.split(x, [4, 8], dim=1)`` into two convs joined by an add."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 12, 3, padding=1)
        self.conv_a = nn.Conv2d(4, 6, 3, padding=1)
        self.conv_b = nn.Conv2d(8, 6, 3, padding=1)
        self.head = nn.Conv2d(6, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.stem(x))
        a, b = torch.split(x, [4, 8], dim=1)
        return self.head(F.relu(self.conv_a(a) + self.conv_b(b)))


class Chunk(nn.Module):
    """``x.chunk(2, dim=1)`` into two convs joined by a concat."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.conv_a = nn.Conv2d(4, 6, 3, padding=1)
        self.conv_b = nn.Conv2d(4, 6, 1)
        self.head = nn.Conv2d(12, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.stem(x))
        a, b = x.chunk(2, dim=1)
        return self.head(F.relu(torch.cat([self.conv_a(a), self.conv_b(b)], 1)))


class ChannelSlice(nn.Module):
    """Slicing ``x[:, :3]`` and ``x[:, 3:]`` with literal bounds."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.conv_a = nn.Conv2d(3, 4, 3, padding=1)
        self.conv_b = nn.Conv2d(5, 4, 3, padding=1)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.stem(x))
        y = torch.cat([self.conv_a(x[:, :3]), self.conv_b(x[:, 3:])], dim=1)
        return self.head(F.relu(y))


# --------------------------------------------------------------------------- grouped convs


class Depthwise(nn.Module):
    """Depthwise conv (groups == C) ties its output channels to its input channels."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.pw = nn.Conv2d(8, 8, 1)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn0(self.stem(x)))
        x = F.relu(self.bn1(self.dw(x)))
        return self.head(F.relu(self.pw(x)))


class DepthwiseMultiplier(nn.Module):
    """Depthwise conv with channel multiplier 2 (groups=C, out=2C)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.dw = nn.Conv2d(8, 16, 3, padding=1, groups=8)
        self.pw = nn.Conv2d(16, 8, 1)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.stem(x))
        x = F.relu(self.dw(x))
        return self.head(F.relu(self.pw(x)))


class GroupedConv(nn.Module):
    """Grouped conv with groups=4: channels must stay evenly split across groups."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.gconv = nn.Conv2d(16, 16, 3, padding=1, groups=4)
        self.pw = nn.Conv2d(16, 8, 1)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.stem(x))
        x = F.relu(self.gconv(x))
        return self.head(F.relu(self.pw(x)))


# --------------------------------------------------------------------------- attention / broadcast


class SqueezeExcite(nn.Module):
    """SE: pool -> 1x1 -> relu -> 1x1 -> sigmoid, broadcast-multiplied back."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.se_reduce = nn.Conv2d(8, 4, 1)
        self.se_expand = nn.Conv2d(4, 8, 1)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.stem(x))
        s = torch.sigmoid(self.se_expand(F.relu(self.se_reduce(self.pool(x)))))
        return self.head(x * s)


class SpatialAttention(nn.Module):
    """CBAM-style spatial attention: mean/amax over channels (exact mode freezes conv1)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1)
        self.spatial = nn.Conv2d(2, 1, 3, padding=1)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(F.relu(self.conv0(x)))
        stats = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)
        return self.head(x * torch.sigmoid(self.spatial(stats)))


class ChannelSoftmax(nn.Module):
    """Softmax over the channel dim: exact mode freezes its producer conv1 only."""

    def __init__(self) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(F.relu(self.conv0(x)))
        return self.head(x.softmax(dim=1))


class ChannelSoftmaxOnly(nn.Module):
    """The only inner channel space feeds a channel softmax: nothing prunes in exact mode."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(torch.softmax(self.conv1(x), dim=1))


# --------------------------------------------------------------------------- reshape into Linear


class FlattenLinear(nn.Module):
    """``torch.flatten(x, 1)`` of a 4-D map into Linear: each channel owns H*W columns."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(8 * 4 * 4, 5)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.conv1(x))
        x = self.pool(F.relu(self.conv2(x)))
        return self.fc(torch.flatten(x, 1))


class C3DView(nn.Module):
    """C3D head: ``x.view(-1, C*T*H*W)`` with a literal int into Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(3, 8, 3, padding=1)
        self.pool1 = nn.MaxPool3d(2)
        self.conv2 = nn.Conv3d(8, 8, 3, padding=1)
        self.pool2 = nn.MaxPool3d(2)
        self.fc = nn.Linear(32, 5)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool1(F.relu(self.conv1(x)))
        x = self.pool2(F.relu(self.conv2(x)))
        x = x.view(-1, 32)  # 8 channels * 1 * 2 * 2
        return self.fc(x)


class MeanLinear(nn.Module):
    """Global average as ``x.mean((2, 3))`` into Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.conv2(F.relu(self.conv1(x))))
        return self.fc(x.mean((2, 3)))


# --------------------------------------------------------------------------- transposed convs


class ConvTranspose2dModel(nn.Module):
    """ConvTranspose2d (weight is (in, out, k, k)) feeding a conv."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.deconv = nn.ConvTranspose2d(8, 6, 2, stride=2)
        self.head = nn.Conv2d(6, 4, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.stem(x))
        return self.head(F.relu(self.deconv(x)))


class ConvTranspose3dModel(nn.Module):
    """ConvTranspose3d feeding a Conv3d."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv3d(3, 8, 3, padding=1)
        self.deconv = nn.ConvTranspose3d(8, 6, 2, stride=2)
        self.head = nn.Conv3d(6, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.stem(x))
        return self.head(F.relu(self.deconv(x)))


# --------------------------------------------------------------------------- functional layers


class FunctionalConv(nn.Module):
    """``F.conv2d`` with weights and biases held as parameters (get_attr nodes)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1_weight = _param(8, 3, 3, 3)
        self.conv1_bias = _param(8, scale=0.1)
        self.conv2_weight = _param(8, 8, 3, 3, scale=0.2)
        self.conv2_bias = _param(8, scale=0.1)
        self.head_weight = _param(4, 8, 1, 1)
        self.head_bias = _param(4, scale=0.1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(F.conv2d(x, self.conv1_weight, self.conv1_bias, padding=1))
        x = F.relu(F.conv2d(x, self.conv2_weight, self.conv2_bias, padding=1))
        return F.conv2d(x, self.head_weight, self.head_bias)


class StdConv2d(nn.Conv2d):
    """Weight-standardised conv, exactly as timm's ``StdConv2d`` computes it."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int = 0,
                 bias: bool = False, eps: float = 1e-6) -> None:
        super().__init__(in_channels, out_channels, kernel_size, padding=padding, bias=bias)
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        weight = F.batch_norm(
            self.weight.reshape(1, self.out_channels, -1), None, None,
            training=True, momentum=0., eps=self.eps).reshape_as(self.weight)
        return F.conv2d(x, weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class StdConvModel(nn.Module):
    """Two StdConv2d layers: std2's input space is reduced over by its standardisation."""

    def __init__(self) -> None:
        super().__init__()
        self.std1 = StdConv2d(3, 8, 3, padding=1)
        self.std2 = StdConv2d(8, 8, 3, padding=1, bias=True)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.std1(x))
        x = F.relu(self.std2(x))
        return self.head(x)


class FunctionalBatchNorm(nn.Module):
    """``F.batch_norm`` in inference mode with get_attr weight/bias and buffer statistics."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.bn_weight = nn.Parameter(torch.rand(8) + 0.5)
        self.bn_bias = _param(8, scale=0.1)
        self.register_buffer("bn_mean", torch.randn(8) * 0.1)
        self.register_buffer("bn_var", torch.rand(8) + 0.5)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        x = F.batch_norm(x, self.bn_mean, self.bn_var, self.bn_weight, self.bn_bias, training=False, eps=1e-5)
        return self.head(F.relu(x))


class FunctionalLinear(nn.Module):
    """``F.linear`` MLP on 2-D features with get_attr weights."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1_weight = _param(16, 6)
        self.fc1_bias = _param(16, scale=0.1)
        self.fc2_weight = _param(5, 16)
        self.fc2_bias = _param(5, scale=0.1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(F.linear(x, self.fc1_weight, self.fc1_bias))
        return F.linear(x, self.fc2_weight, self.fc2_bias)


class FunctionalLayerNorm(nn.Module):
    """``F.layer_norm`` over features freezes fc1 in exact mode; fc2's width still prunes."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1_weight = _param(16, 6)
        self.fc1_bias = _param(16, scale=0.1)
        self.ln_weight = nn.Parameter(torch.rand(16) + 0.5)
        self.ln_bias = _param(16, scale=0.1)
        self.fc2_weight = _param(16, 16, scale=0.2)
        self.fc2_bias = _param(16, scale=0.1)
        self.fc3_weight = _param(5, 16, scale=0.2)
        self.fc3_bias = _param(5, scale=0.1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.linear(x, self.fc1_weight, self.fc1_bias)
        x = F.layer_norm(x, (16,), self.ln_weight, self.ln_bias, eps=1e-5)
        x = F.gelu(F.linear(x, self.fc2_weight, self.fc2_bias))
        return F.linear(x, self.fc3_weight, self.fc3_bias)


# --------------------------------------------------------------------------- norms / activations


class ConvNeXtBlock(nn.Module):
    """ConvNeXt block: dwconv, permute to channels-last, LayerNorm, MLP, permute back, residual."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x
        x = self.dwconv(x)
        x = x.permute(0, 2, 3, 1)
        x = self.norm(x)
        x = self.pwconv2(self.act(self.pwconv1(x)))
        x = x.permute(0, 3, 1, 2)
        return shortcut + x


class ConvNeXtModel(nn.Module):
    """Stem, one ConvNeXt block, head: exact mode freezes the residual stream only."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 2, stride=2)
        self.block = ConvNeXtBlock(8)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.block(self.stem(x)))


class GroupNormModel(nn.Module):
    """GroupNorm(4, 8) after conv1; conv2 is a plain, freely prunable layer."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.gn = nn.GroupNorm(4, 8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.gn(self.conv1(x)))
        x = F.relu(self.conv2(x))
        return self.head(x)


class InstanceNormModel(nn.Module):
    """InstanceNorm2d(affine=True) normalises per channel, so it prunes exactly."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.norm = nn.InstanceNorm2d(8, affine=True)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(F.relu(self.norm(self.conv1(x))))


class PReLUModel(nn.Module):
    """PReLU with one slope per channel."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.act = nn.PReLU(num_parameters=8)
        self.head = nn.Conv2d(8, 4, 1)
        with torch.no_grad():
            self.act.weight.copy_(torch.rand(8) * 0.5)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.act(self.conv1(x)))


# --------------------------------------------------------------------------- resampling / pooling


class Resample(nn.Module):
    """``F.interpolate`` (nearest) and ``nn.Upsample`` (bilinear) between convs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.conv1(x))
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        x = self.up(self.conv2(x))
        return self.head(F.relu(x))


class Pool1d(nn.Module):
    """Max/avg/adaptive pooling in 1-D, module and functional forms."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(3, 8, 3, padding=1)
        self.maxpool = nn.MaxPool1d(2)
        self.conv2 = nn.Conv1d(8, 8, 3, padding=1)
        self.avgpool = nn.AvgPool1d(2)
        self.adaptive = nn.AdaptiveMaxPool1d(2)
        self.head = nn.Conv1d(8, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(F.relu(self.conv1(x)))
        x = self.avgpool(F.relu(self.conv2(x)))
        x = F.adaptive_avg_pool1d(self.adaptive(x) + F.max_pool1d(x, 2), 2)
        return self.head(x)


class Pool2d(nn.Module):
    """Max/avg/adaptive pooling in 2-D, module and functional forms."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.maxpool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.avgpool = nn.AvgPool2d(2, ceil_mode=True)
        self.adaptive = nn.AdaptiveMaxPool2d((2, 2))
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(F.relu(self.conv1(x)))
        x = self.avgpool(F.relu(self.conv2(x)))
        x = self.adaptive(x) + F.adaptive_avg_pool2d(F.avg_pool2d(x, 1), (2, 2))
        return self.head(x)


class Pool3d(nn.Module):
    """Max/avg/adaptive pooling in 3-D, then flatten into Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(3, 8, 3, padding=1)
        self.maxpool = nn.MaxPool3d(2)
        self.conv2 = nn.Conv3d(8, 8, 3, padding=1)
        self.avgpool = nn.AvgPool3d((1, 2, 2))
        self.adaptive = nn.AdaptiveMaxPool3d((1, 2, 2))
        self.fc = nn.Linear(8 * 4, 5)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(F.relu(self.conv1(x)))
        x = self.avgpool(F.relu(self.conv2(x)))
        x = self.adaptive(x) + F.adaptive_avg_pool3d(x, (1, 2, 2))
        return self.fc(torch.flatten(x, 1))


# --------------------------------------------------------------------------- layout ops


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """Verbatim ``torchvision.models.shufflenetv2.channel_shuffle``."""
    batchsize, num_channels, height, width = x.size()
    channels_per_group = num_channels // groups

    # reshape
    x = x.view(batchsize, groups, channels_per_group, height, width)

    x = torch.transpose(x, 1, 2).contiguous()

    # flatten
    x = x.view(batchsize, -1, height, width)

    return x


class ShuffleUnit(nn.Module):
    """ShuffleNetV2 stride-1 unit: chunk, branch on the second half, concat, shuffle."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        c = channels // 2
        self.branch2 = nn.Sequential(
            nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
            nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False), nn.BatchNorm2d(c),
            nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        x1, x2 = x.chunk(2, dim=1)
        out = torch.cat((x1, self.branch2(x2)), dim=1)
        return channel_shuffle(out, 2)


class ChannelShuffle(nn.Module):
    """Two ShuffleNetV2 units: shuffle (view/transpose/view) followed by the next chunk."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.unit1 = ShuffleUnit(8)
        self.unit2 = ShuffleUnit(8)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.stem(x))
        return self.head(self.unit2(self.unit1(x)))


class TransposeRoundTrip(nn.Module):
    """``transpose(1, 2)`` and ``permute`` round trips around elementwise ops."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x).transpose(1, 2)
        x = F.relu(x).transpose(1, 2)
        x = self.conv2(x).permute(0, 2, 3, 1)
        x = F.gelu(x * 2.0).permute(0, 3, 1, 2)
        return self.head(x)


class CatNonChannel(nn.Module):
    """``torch.cat`` on dim=2: both inputs' channel spaces are unified."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_a = nn.Conv2d(3, 8, 3, padding=1)
        self.conv_b = nn.Conv2d(3, 8, 1)
        self.conv_c = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        y = torch.cat([self.conv_a(x), self.conv_b(x)], dim=2)
        y = F.relu(self.conv_c(F.relu(y)))
        return self.head(y)


class WhereMaximum(nn.Module):
    """``torch.where`` and ``torch.maximum`` of conv branches couple them."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_a = nn.Conv2d(3, 8, 3, padding=1)
        self.conv_b = nn.Conv2d(3, 8, 3, padding=1)
        self.conv_c = nn.Conv2d(3, 8, 1)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        a, b = self.conv_a(x), self.conv_b(x)
        y = torch.where(a > b, a, 0.5 * b)
        return self.head(torch.maximum(y, self.conv_c(x)))


# --------------------------------------------------------------------------- signatures / reuse


class ListInput(nn.Module):
    """forward takes a list of two tensors; two stems fused by a concat."""

    def __init__(self) -> None:
        super().__init__()
        self.stem_a = nn.Conv2d(3, 4, 3, padding=1)
        self.stem_b = nn.Conv2d(1, 4, 3, padding=1)
        self.conv = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, xs: list[Tensor]) -> Tensor:
        y = torch.cat([self.stem_a(xs[0]), self.stem_b(xs[1])], dim=1)
        return self.head(F.relu(self.conv(F.relu(y))))


class DictInput(nn.Module):
    """forward takes a dict of two tensors, an image and an auxiliary map."""

    def __init__(self) -> None:
        super().__init__()
        self.stem_image = nn.Conv2d(3, 8, 3, padding=1)
        self.stem_aux = nn.Conv2d(1, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, inputs: dict[str, Tensor]) -> Tensor:
        y = self.stem_image(inputs["image"]) + self.stem_aux(inputs["aux"])
        return self.head(F.relu(y))


class TwoOutputs(nn.Module):
    """Returns a tuple of two heads: both heads' channels are model outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.mid = nn.Conv2d(8, 8, 3, padding=1)
        self.head_a = nn.Conv2d(8, 4, 1)
        self.head_b = nn.Conv2d(8, 2, 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = F.relu(self.mid(F.relu(self.stem(x))))
        return self.head_a(x), self.head_b(x)


class SharedConv(nn.Module):
    """One conv module called twice: its input and output spaces become one group."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.shared = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.stem(x))
        x = F.relu(self.shared(x))
        x = F.relu(self.shared(x))
        return self.head(x)


class LayerScale(nn.Module):
    """Residual branch scaled by a (C, 1, 1) parameter: ``x * self.gamma``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.gamma = nn.Parameter(0.1 + torch.rand(8, 1, 1))
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.conv1(x))
        x = x + self.conv2(x) * self.gamma
        return self.head(F.relu(x))


class PositionalEmbedding(nn.Module):
    """A learned (1, C, H, W) embedding added to a conv output."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.pos_embed = _param(1, 8, 8, 8, scale=0.1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.conv1(x) + self.pos_embed)
        return self.head(F.relu(self.conv2(x)))


# --------------------------------------------------------------------------- unsupported ops


class UnsupportedChannelOp(nn.Module):
    """An op fxprune has no rule for, applied over conv1's channels; conv0 is untouched."""

    def __init__(self, op: str) -> None:
        super().__init__()
        self.op = op
        self.conv0 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Conv2d(5 if op == "rfft" else 8, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(F.relu(self.conv0(x)))
        if self.op == "cumsum":
            x = torch.cumsum(x, dim=1)
        elif self.op == "rfft":
            x = torch.fft.rfft(x, dim=1).abs()  # 8 channels -> 5 frequency bins
        else:
            x = x.flip(1)
        return self.head(F.relu(x))


class PixelShuffleNet(nn.Module):
    """Super-resolution tail: conv -> pixel shuffle (functional or module) -> conv; unshuffle on the way in."""

    def __init__(self, functional: bool) -> None:
        super().__init__()
        self.functional = functional
        self.down = nn.PixelUnshuffle(2)
        self.conv1 = nn.Conv2d(12, 16, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)
        self.head = nn.Conv2d(4, 3, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.conv1(self.down(x)))  # (N, 16, 4, 4): 4 groups of 2x2 sub-pixels
        x = F.pixel_shuffle(x, 2) if self.functional else self.shuffle(x)
        return self.head(x)


class PaddingModules(nn.Module):
    """Reflection and constant padding modules around convs (style-transfer nets, causal 3D convs)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(3, 8, 3)
        self.pad1 = nn.ReplicationPad3d(1)
        self.conv2 = nn.Conv3d(8, 8, (2, 3, 3))
        self.pad2 = nn.ConstantPad3d((1, 1, 1, 1, 1, 0), 0.0)  # causal in time
        self.head = nn.Conv3d(8, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.conv1(self.pad1(x)))
        return self.head(F.relu(self.conv2(self.pad2(x))))


class FlipRoll(nn.Module):
    """flip over width and channels, roll over height (shifted windows): channels follow."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.conv1(x))
        x = torch.roll(x, shifts=2, dims=2) + x.flip(1, 3)
        return self.head(F.relu(self.conv2(torch.flip(x, (2,)))))


class GatedConv(nn.Module):
    """Gated linear unit over channels (gated TCNs): a's channel i is gated by b's channel i."""

    def __init__(self, module: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(3, 16, 3, padding=1)
        self.glu = nn.GLU(dim=1) if module else None
        self.head = nn.Conv1d(8, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        return self.head(self.glu(x) if self.glu is not None else F.glu(x, dim=1))


class ChannelMaxValues(nn.Module):
    """CBAM's spatial attention: torch.max(x, 1)[0] uses the values only, not the channel indices."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.gate = nn.Conv2d(2, 1, 3, padding=1)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.conv1(x))
        pooled = torch.cat([torch.max(x, dim=1, keepdim=True)[0], x.mean(1, keepdim=True)], dim=1)
        return self.head(x * torch.sigmoid(self.gate(pooled)))


class Maxout(nn.Module):
    """Maxout over channel pairs: view(n, 8, 2, h, w).amax(2) reduces half of a channel fold."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        n, _, h, w = x.shape
        return self.head(self.conv1(x).view(n, 8, 2, h, w).amax(2))


class CrossCorrelation(nn.Module):
    """SiamFC: one branch's features are the conv weight applied to the other's."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.branch = nn.Conv2d(8, 8, 3)

    def forward(self, z: Tensor, x: Tensor) -> Tensor:
        return F.conv2d(self.branch(F.relu(self.stem(x))), self.branch(F.relu(self.stem(z))))


class CoordConv(nn.Module):
    """CoordConv: pruned features concatenated with untracked coordinates and the raw input."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8 + 2 + 3, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        n, _, h, w = x.shape
        ys = torch.linspace(-1, 1, h).view(1, 1, h, 1).expand(n, 1, h, w)
        xs = torch.linspace(-1, 1, w).view(1, 1, 1, w).expand(n, 1, h, w)
        x = torch.cat([F.relu(self.conv1(x)), ys, xs, x], dim=1)
        return self.head(F.relu(self.conv2(x)))


class WeightNormed(nn.Module):
    """Weight-normalised convs (TCNs, WaveNet), in the parametrisation form or the legacy hook form,
    and a spectral-normalised one, which fxprune cannot rebuild and must freeze."""

    def __init__(self, form: str) -> None:
        super().__init__()
        import warnings

        from torch.nn.utils.parametrizations import spectral_norm, weight_norm

        def normed(conv: nn.Module) -> nn.Module:
            if form == "legacy":
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", FutureWarning)
                    return nn.utils.weight_norm(conv)
            return weight_norm(conv) if form == "parametrization" else spectral_norm(conv)

        self.conv1 = normed(nn.Conv1d(3, 8, 3, padding=2, dilation=2))
        conv2 = nn.Conv1d(8, 8, 3, padding=1)
        self.conv2 = weight_norm(conv2) if form == "spectral" else normed(conv2)
        self.head = nn.Conv1d(8, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(F.relu(self.conv2(F.relu(self.conv1(x)))))


# --------------------------------------------------------------------------- focused-test models


class WideChain(nn.Module):
    """32-channel conv chain for ``round_to`` tests."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 32, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(32)
        self.conv3 = nn.Conv2d(32, 32, 1)
        self.head = nn.Conv2d(32, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return self.head(F.relu(self.conv3(x)))


def _list_inputs() -> tuple[list[Tensor]]:
    gen = torch.Generator().manual_seed(0)
    return ([torch.randn(IMG, generator=gen), torch.randn((2, 1, 8, 8), generator=gen)],)


def _dict_inputs() -> tuple[dict[str, Tensor]]:
    gen = torch.Generator().manual_seed(0)
    return ({"image": torch.randn(IMG, generator=gen), "aux": torch.randn((2, 1, 8, 8), generator=gen)},)


# --------------------------------------------------------------------------- the table

CASES: dict[str, Case] = {
    # chains
    "conv_bn_relu_2d": Case(
        _builder(ConvBnRelu2d), _randn(IMG),
        expect_pruned=("conv1", "bn1", "conv2", "bn2"), expect_frozen=("head",),
        rule="producer -> BatchNorm -> consumer"),
    "conv1d_chain": Case(
        _builder(Conv1dChain), _randn(SEQ),
        expect_pruned=("conv1", "bn1", "conv2"), expect_frozen=("head",),
        rule="Conv1d chain"),
    "conv3d_chain": Case(
        _builder(Conv3dChain), _randn(VID),
        expect_pruned=("conv1", "bn1", "conv2"), expect_frozen=("fc",),
        rule="Conv3d + BatchNorm3d + MaxPool3d + AdaptiveAvgPool3d"),
    # residuals and elementwise binaries
    "residual_identity": Case(
        _builder(ResidualIdentity), _randn(IMG),
        expect_pruned=("stem", "block_a", "block_b", "bn_b"), expect_frozen=("head",),
        rule="add couples stem and block_b"),
    "residual_projection": Case(
        _builder(ResidualProjection), _randn(IMG),
        expect_pruned=("stem", "block_a", "block_b", "shortcut", "bn_s"), expect_frozen=("head",),
        rule="add couples block_b and the projection shortcut"),
    "binary_sub": Case(
        _builder(BinaryBranches, "sub"), _randn(IMG),
        expect_pruned=("stem", "conv_a", "conv_b"), expect_frozen=("head",), rule="a - b couples a, b"),
    "binary_mul": Case(
        _builder(BinaryBranches, "mul"), _randn(IMG),
        expect_pruned=("stem", "conv_a", "conv_b"), expect_frozen=("head",), rule="a * b couples a, b"),
    "binary_div": Case(
        _builder(BinaryBranches, "div"), _randn(IMG),
        expect_pruned=("stem", "conv_a", "conv_b"), expect_frozen=("head",), rule="a / f(b) couples a, b"),
    "where_maximum": Case(
        _builder(WhereMaximum), _randn(IMG),
        expect_pruned=("conv_a", "conv_b", "conv_c"), expect_frozen=("head",),
        rule="torch.where / torch.maximum couple their operands"),
    # concat / split
    "concat": Case(
        _builder(Concat), _randn(IMG),
        expect_pruned=("stem", "conv_a", "conv_b"), expect_frozen=("head",),
        rule="cat on channels: consumer columns are the union of segments"),
    "nested_concat": Case(
        _builder(NestedConcat), _randn(IMG),
        expect_pruned=("stem", "conv1", "conv2"), expect_frozen=("head",),
        rule="cat of a cat (DenseNet growth)"),
    "concat_fuse": Case(
        _builder(ConcatFuse), _randn(IMG),
        expect_pruned=("conv_a", "conv_b", "conv_c", "bn", "fuse"), expect_frozen=("head",),
        rule="cat -> BatchNorm over the concat -> 1x1 conv reading all segments"),
    "split_sizes": Case(
        _builder(SplitSizes), _randn(IMG),
        expect_pruned=("stem", "conv_a", "conv_b"), expect_frozen=("head",),
        rule="torch.split(x, [4, 8], dim=1) sizes are rewritten"),
    "chunk": Case(
        _builder(Chunk), _randn(IMG),
        expect_pruned=("stem", "conv_a", "conv_b"), expect_frozen=("head",),
        rule="chunk(2, dim=1) halves stay consistent"),
    "channel_slice": Case(
        _builder(ChannelSlice), _randn(IMG),
        expect_pruned=("stem", "conv_a", "conv_b"), expect_frozen=("head",),
        rule="x[:, :k] / x[:, k:] bounds are rewritten"),
    "cat_non_channel": Case(
        _builder(CatNonChannel), _randn(IMG),
        expect_pruned=("conv_a", "conv_b", "conv_c"), expect_frozen=("head",),
        rule="cat on dim=2 unifies both inputs' channels"),
    # grouped convs
    "depthwise": Case(
        _builder(Depthwise), _randn(IMG),
        expect_pruned=("stem", "bn0", "dw", "bn1", "pw"), expect_frozen=("head",),
        rule="depthwise conv ties output to input channels"),
    "depthwise_multiplier": Case(
        _builder(DepthwiseMultiplier), _randn(IMG),
        expect_pruned=("stem", "dw", "pw"), expect_frozen=("head",),
        rule="groups=C, out=2C: each input channel owns two outputs"),
    "grouped_conv": Case(
        _builder(GroupedConv), _randn(IMG),
        expect_pruned=("stem", "gconv", "pw"), expect_frozen=("head",),
        rule="groups=4 stay evenly sized"),
    # attention / broadcast
    "squeeze_excite": Case(
        _builder(SqueezeExcite), _randn(IMG),
        expect_pruned=("stem", "se_reduce", "se_expand"), expect_frozen=("head",),
        rule="SE gate multiply couples stem and se_expand; squeeze width is free"),
    "spatial_attention": Case(
        _builder(SpatialAttention), _randn(IMG),
        expect_pruned=("conv0",), expect_frozen=("conv1", "spatial", "head"),
        rule="mean/amax over channels freeze conv1 (exact); a 1-channel gate broadcasts"),
    "channel_softmax": Case(
        _builder(ChannelSoftmax), _randn(IMG),
        expect_pruned=("conv0",), expect_frozen=("conv1", "head"),
        rule="softmax over channels freezes its producer (exact)"),
    "channel_softmax_only": Case(
        _builder(ChannelSoftmaxOnly), _randn(IMG),
        expect_frozen=("conv1", "head"), exact_prunes=False,
        rule="nothing prunable in exact mode"),
    # reshape into Linear
    "flatten_linear": Case(
        _builder(FlattenLinear), _randn(IMG),
        expect_pruned=("conv1", "conv2"), expect_frozen=("fc",),
        rule="torch.flatten(x, 1) -> Linear: H*W columns per channel"),
    "c3d_view_linear": Case(
        _builder(C3DView), _randn(VID),
        expect_pruned=("conv1", "conv2"), expect_frozen=("fc",),
        rule="x.view(-1, C*T*H*W) literal is rewritten"),
    "mean_linear": Case(
        _builder(MeanLinear), _randn(IMG),
        expect_pruned=("conv1", "conv2"), expect_frozen=("fc",),
        rule="x.mean((2, 3)) -> Linear"),
    # transposed convs
    "conv_transpose2d": Case(
        _builder(ConvTranspose2dModel), _randn((2, 3, 4, 4)),
        expect_pruned=("stem", "deconv"), expect_frozen=("head",),
        rule="ConvTranspose2d weight is (in, out/groups, k, k)"),
    "conv_transpose3d": Case(
        _builder(ConvTranspose3dModel), _randn((2, 3, 2, 4, 4)),
        expect_pruned=("stem", "deconv"), expect_frozen=("head",),
        rule="ConvTranspose3d weight is (in, out/groups, k, k, k)"),
    # functional layers with get_attr parameters
    "functional_conv": Case(
        _builder(FunctionalConv), _randn(IMG),
        expect_pruned=("conv1_weight", "conv1_bias", "conv2_weight"), expect_frozen=("head_weight",),
        rule="F.conv2d with get_attr weight and bias"),
    "std_conv": Case(
        _builder(StdConvModel), _randn(IMG),
        expect_pruned=("std2.weight",), expect_frozen=("std1.weight", "head"),
        rule="timm StdConv2d: per-output standardisation; reduces over its input channels"),
    "functional_batch_norm": Case(
        _builder(FunctionalBatchNorm), _randn(IMG),
        expect_pruned=("stem", "bn_weight", "bn_bias"), expect_frozen=("head",),
        rule="F.batch_norm with get_attr parameters and buffers"),
    "functional_linear": Case(
        _builder(FunctionalLinear), _randn((4, 6)),
        expect_pruned=("fc1_weight", "fc1_bias"), expect_frozen=("fc2_weight",),
        rule="F.linear with get_attr weights"),
    "functional_layer_norm": Case(
        _builder(FunctionalLayerNorm), _randn((4, 6)),
        expect_pruned=("fc2_weight",), expect_frozen=("fc1_weight", "ln_weight", "fc3_weight"),
        rule="F.layer_norm over features freezes its producer (exact)"),
    # norms / activations
    "convnext_block": Case(
        _builder(ConvNeXtModel), _randn(IMG),
        expect_pruned=("block.pwconv1",),
        expect_frozen=("stem", "block.dwconv", "block.norm", "block.pwconv2", "head"),
        rule="channels-last LayerNorm freezes the residual stream; the 4C hidden width prunes"),
    "group_norm": Case(
        _builder(GroupNormModel), _randn(IMG),
        expect_pruned=("conv2",), expect_frozen=("head",),
        rule="GroupNorm(4): only whole groups (or nothing) may go in exact mode"),
    "instance_norm": Case(
        _builder(InstanceNormModel), _randn(IMG),
        expect_pruned=("conv1", "norm"), expect_frozen=("head",),
        rule="InstanceNorm2d(affine=True) is per-channel"),
    "prelu": Case(
        _builder(PReLUModel), _randn(IMG),
        expect_pruned=("conv1", "act"), expect_frozen=("head",),
        rule="PReLU(num_parameters=C) slopes follow the channels"),
    # resampling / pooling
    "interpolate_upsample": Case(
        _builder(Resample), _randn((2, 3, 4, 4)),
        expect_pruned=("conv1", "conv2"), expect_frozen=("head",),
        rule="F.interpolate / nn.Upsample are channel-preserving"),
    "pool1d": Case(
        _builder(Pool1d), _randn(SEQ),
        expect_pruned=("conv1", "conv2"), expect_frozen=("head",), rule="1-D pooling"),
    "pool2d": Case(
        _builder(Pool2d), _randn(IMG),
        expect_pruned=("conv1", "conv2"), expect_frozen=("head",), rule="2-D pooling"),
    "pool3d": Case(
        _builder(Pool3d), _randn(VID),
        expect_pruned=("conv1", "conv2"), expect_frozen=("fc",), rule="3-D pooling"),
    # layout ops
    "channel_shuffle": Case(
        _builder(ChannelShuffle), _randn(IMG),
        expect_pruned=("unit1.branch2.0", "unit1.branch2.3", "unit2.branch2.0", "unit2.branch2.3"),
        expect_frozen=("head",),
        rule="torchvision ShuffleNetV2 channel_shuffle followed by chunk"),
    "transpose_round_trip": Case(
        _builder(TransposeRoundTrip), _randn(IMG),
        expect_pruned=("conv1", "conv2"), expect_frozen=("head",),
        rule="transpose(1, 2) / permute round trips move the channel axis and back"),
    # signatures / reuse / parameters in the graph
    "list_input": Case(
        _builder(ListInput), _list_inputs,
        expect_pruned=("stem_a", "stem_b", "conv"), expect_frozen=("head",),
        concrete_args={"xs": [PH, PH]},
        rule="forward(xs: list) with two stems fused by a concat"),
    "dict_input": Case(
        _builder(DictInput), _dict_inputs,
        expect_pruned=("stem_image", "stem_aux"), expect_frozen=("head",),
        concrete_args={"inputs": {"image": PH, "aux": PH}},
        rule="forward(inputs: dict) with two stems fused by an add"),
    "two_outputs": Case(
        _builder(TwoOutputs), _randn(IMG),
        expect_pruned=("stem", "mid"), expect_frozen=("head_a", "head_b"),
        rule="a tuple of outputs: every output keeps its channels"),
    "shared_conv": Case(
        _builder(SharedConv), _randn(IMG),
        expect_pruned=("stem", "shared"), expect_frozen=("head",),
        rule="a module called twice ties its input and output spaces"),
    "layer_scale": Case(
        _builder(LayerScale), _randn(IMG),
        expect_pruned=("conv1", "conv2", "gamma"), expect_frozen=("head",),
        rule="x * gamma (C, 1, 1) parameter follows the channels"),
    "positional_embedding": Case(
        _builder(PositionalEmbedding), _randn(IMG),
        expect_pruned=("conv1", "pos_embed", "conv2"), expect_frozen=("head",),
        rule="x + pos_embed (1, C, H, W) parameter follows the channels"),
    # unsupported ops
    "unsupported_cumsum": Case(
        _builder(UnsupportedChannelOp, "cumsum"), _randn(IMG),
        expect_pruned=("conv0",), expect_frozen=("conv1", "head"),
        rule="torch.cumsum(x, dim=1) freezes only the group it touches"),
    "unsupported_rfft": Case(
        _builder(UnsupportedChannelOp, "rfft"), _randn(IMG),
        expect_pruned=("conv0",), expect_frozen=("conv1", "head"),
        rule="torch.fft.rfft over channels (changes their count) freezes only its group"),
    "flip_channels": Case(
        _builder(UnsupportedChannelOp, "flip"), _randn(IMG),
        expect_pruned=("conv0",), expect_frozen=("head",),
        rule="x.flip(1): either supported (reversed indices) or frozen; never wrong"),
    "pixel_shuffle_functional": Case(
        _builder(PixelShuffleNet, True), _randn(IMG),
        expect_pruned=("conv1",), expect_frozen=("head",),
        rule="F.pixel_shuffle: the r*r sub-pixel channels of an output channel go together"),
    "pixel_shuffle_modules": Case(
        _builder(PixelShuffleNet, False), _randn(IMG),
        expect_pruned=("conv1",), expect_frozen=("head",),
        rule="nn.PixelUnshuffle repeats a channel r*r times; nn.PixelShuffle gathers r*r"),
    "padding_modules": Case(
        _builder(PaddingModules), _randn(VID),
        expect_pruned=("conv1", "conv2"), expect_frozen=("head",),
        rule="nn.ReplicationPad3d / nn.ConstantPad3d pad spatial dims: channels pass through"),
    "flip_roll": Case(
        _builder(FlipRoll), _randn(IMG),
        expect_pruned=("conv1", "conv2"), expect_frozen=("head",),
        rule="flip reverses channel ids (also over channels); roll over spatial dims passes them"),
    "glu_functional": Case(
        _builder(GatedConv, False), _randn(SEQ),
        expect_pruned=("conv1",), expect_frozen=("head",),
        rule="F.glu over channels unifies the two halves channel by channel"),
    "glu_module": Case(
        _builder(GatedConv, True), _randn(SEQ),
        expect_pruned=("conv1",), expect_frozen=("head",),
        rule="nn.GLU(dim=1), the module form"),
    "channel_max_values": Case(
        _builder(ChannelMaxValues), _randn(IMG),
        expect_frozen=("conv1", "head"), exact_prunes=False,
        rule="torch.max(x, 1)[0] over channels: exact mode freezes (values change), default prunes"),
    "maxout": Case(
        _builder(Maxout), _randn(IMG),
        expect_frozen=("conv1", "head"), exact_prunes=False,
        rule="amax over part of a channel fold freezes it in every mode"),
    "cross_correlation": Case(
        _builder(CrossCorrelation), _randn((1, 3, 6, 6), (1, 3, 12, 12)),
        expect_pruned=("stem",), expect_frozen=("branch",),
        rule="F.conv2d with an activation as weight sums over channels: frozen in exact mode"),
    "coord_conv": Case(
        _builder(CoordConv), _randn(IMG),
        expect_pruned=("conv1", "conv2"), expect_frozen=("head",),
        rule="a concat with untracked tensors pins only their weight slices; the features still prune"),
    "weight_norm": Case(
        _builder(WeightNormed, "parametrization"), _randn(SEQ),
        expect_pruned=("conv1", "conv2"), expect_frozen=("head",),
        rule="parametrizations.weight_norm: slice the computed weight, apply weight_norm again"),
    "weight_norm_legacy": Case(
        _builder(WeightNormed, "legacy"), _randn(SEQ),
        expect_pruned=("conv1", "conv2"), expect_frozen=("head",),
        rule="the hook-based nn.utils.weight_norm, likewise"),
    "spectral_norm_frozen": Case(
        _builder(WeightNormed, "spectral"), _randn(SEQ),
        expect_pruned=("conv2",), expect_frozen=("head",),
        rule="a parametrisation fxprune cannot rebuild (spectral_norm) freezes what it touches"),
}
"""Every operator case, by name.  See :class:`Case` for the meaning of the fields."""

ROUND_TO_CASE = Case(
    _builder(WideChain), _randn((2, 3, 6, 6)),
    expect_pruned=("conv1", "conv2", "conv3"), expect_frozen=("head",),
    rule="32-channel chain for round_to",
)
"""A chain of 32-channel convs: channel counts after ``round_to=4`` must be multiples of 4."""

TRAIN_CASE = CASES["conv_bn_relu_2d"]
"""The model the fine-tuning test prunes and trains for one step."""
