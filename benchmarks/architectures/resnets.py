"""ResNet relatives: Res2Net, CIFAR option-A shortcuts, Inception-ResNet, RepVGG, DenseNet, BlurPool, two inputs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .catalog import IMAGE, case, conv_bn

__all__ = ["CASES"]


class Bottle2neck(nn.Module):
    """Res2Net bottleneck (Gao et al., 2019): ``split`` by width, hierarchical 3x3 convs each adding the
    previous output, concat. ``stage`` blocks skip the adds and average-pool the last split."""

    def __init__(self, in_channels: int, planes: int, width: int = 8, scale: int = 4, stage: bool = False,
                 stride: int = 1) -> None:
        super().__init__()
        self.width, self.stage, self.nums = width, stage, scale - 1
        self.conv1 = conv_bn(in_channels, width * scale, 1)
        self.convs = nn.ModuleList(conv_bn(width, width, 3, stride) for _ in range(self.nums))
        self.pool = nn.AvgPool2d(3, stride, 1)
        self.conv3 = conv_bn(width * scale, planes, 1, act=None)
        self.down = None if in_channels == planes and stride == 1 else nn.Sequential(
            nn.AvgPool2d(stride, stride) if stride > 1 else nn.Identity(), conv_bn(in_channels, planes, 1, act=None))

    def forward(self, x: Tensor) -> Tensor:
        splits = torch.split(self.conv1(x), self.width, 1)
        sp = out = self.convs[0](splits[0])
        for i in range(1, self.nums):
            sp = self.convs[i](splits[i] if self.stage else sp + splits[i])
            out = torch.cat((out, sp), 1)
        last = self.pool(splits[self.nums]) if self.stage else splits[self.nums]
        out = self.conv3(torch.cat((out, last), 1))
        return F.relu(out + (x if self.down is None else self.down(x)))


class Res2Net(nn.Module):
    """Tiny Res2Net: a stage block, a normal block and a strided stage block."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = conv_bn(3, 16)
        self.layers = nn.Sequential(Bottle2neck(16, 32, stage=True), Bottle2neck(32, 32),
                                    Bottle2neck(32, 32, stage=True, stride=2))
        self.fc = nn.Linear(32, 5)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.layers(self.stem(x)), 1), 1))


class OptionAShortcut(nn.Module):
    """CIFAR ResNet option-A shortcut (He et al., 2016): subsample and zero-pad channels with ``F.pad``."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = conv_bn(3, 8)
        self.block = nn.Sequential(conv_bn(8, 16, stride=2), conv_bn(16, 16, act=None))
        self.fc = nn.Linear(16, 5)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        shortcut = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 16 // 4, 16 // 4), "constant", 0)
        return self.fc(F.relu(self.block(x) + shortcut).mean((2, 3)))


class Block35(nn.Module):
    """Inception-ResNet-A (Szegedy et al., 2017): three branches concatenated, a 1x1 conv, a scaled residual
    written ``out * scale + x`` or, with ``scale_left``, ``x + 0.17 * out``."""

    def __init__(self, channels: int = 32, scale: float = 0.17, scale_left: bool = False) -> None:
        super().__init__()
        self.scale, self.scale_left = scale, scale_left
        self.branch0 = conv_bn(channels, 8, 1)
        self.branch1 = nn.Sequential(conv_bn(channels, 8, 1), conv_bn(8, 8))
        self.branch2 = nn.Sequential(conv_bn(channels, 8, 1), conv_bn(8, 12), conv_bn(12, 16))
        self.conv2d = nn.Conv2d(32, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv2d(torch.cat((self.branch0(x), self.branch1(x), self.branch2(x)), 1))
        return F.relu(x + 0.17 * out if self.scale_left else out * self.scale + x)


class InceptionResNet(nn.Module):
    """Two Inception-ResNet-A blocks and a head flattening with ``view(x.size(0), -1)``."""

    def __init__(self, scale_left: bool) -> None:
        super().__init__()
        self.stem = conv_bn(3, 32, stride=2)
        self.blocks = nn.Sequential(Block35(scale_left=scale_left), Block35(scale=0.1, scale_left=scale_left))
        self.fc = nn.Linear(32, 5)

    def forward(self, x: Tensor) -> Tensor:
        x = self.blocks(self.stem(x))
        return self.fc(F.adaptive_avg_pool2d(x, 1).view(x.size(0), -1))


class RepVGGBlock(nn.Module):
    """RepVGG train-time block (Ding et al., 2021): 3x3 + 1x1 + identity-BN branches summed, and
    ``id_out = 0`` when there is no identity branch."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.rbr_identity = nn.BatchNorm2d(in_channels) if out_channels == in_channels and stride == 1 else None
        self.rbr_dense = conv_bn(in_channels, out_channels, 3, stride, act=None)
        self.rbr_1x1 = conv_bn(in_channels, out_channels, 1, stride, act=None, padding=0)

    def forward(self, inputs: Tensor) -> Tensor:
        id_out = 0 if self.rbr_identity is None else self.rbr_identity(inputs)
        return F.relu(self.rbr_dense(inputs) + self.rbr_1x1(inputs) + id_out)


class RepVGG(nn.Module):
    """Tiny RepVGG: five blocks, global pooling, ``view(out.size(0), -1)``, linear."""

    def __init__(self) -> None:
        super().__init__()
        self.stages = nn.Sequential(RepVGGBlock(3, 16, 2), RepVGGBlock(16, 16), RepVGGBlock(16, 32, 2),
                                    RepVGGBlock(32, 32), RepVGGBlock(32, 32))
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(32, 5)

    def forward(self, x: Tensor) -> Tensor:
        out = self.gap(self.stages(x))
        return self.linear(out.view(out.size(0), -1))


class DenseGated(nn.Module):
    """DenseNet growth loop (Huang et al., 2017): each layer sees the concat of all before it; the
    transition output is split by slices into a GLU-like gate and a difference."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = conv_bn(3, 8)
        self.layers = nn.ModuleList([conv_bn(8, 4), conv_bn(12, 4), conv_bn(16, 4)])
        self.transition = nn.Conv2d(20, 8, 1)

    def forward(self, x: Tensor) -> Tensor:
        feats = [self.stem(x)]
        for layer in self.layers:
            feats.append(layer(torch.cat(feats, 1)))
        y = self.transition(torch.cat(feats, 1))
        a, b = y[:, :4], y[:, 4:]
        return torch.cat([a * torch.sigmoid(b), a - b], 1)


class BlurPool(nn.Module):
    """Anti-aliased downsampling (Zhang, 2019): a fixed binomial filter buffer ``(C, 1, 3, 3)`` applied by
    ``F.conv2d`` with ``groups`` read from ``x.shape[1]`` or, with ``literal_groups``, the constant C."""

    def __init__(self, channels: int, literal_groups: bool) -> None:
        super().__init__()
        a = torch.tensor([1.0, 2.0, 1.0])
        kernel = a[:, None] * a[None, :]
        self.register_buffer("filt", (kernel / kernel.sum())[None, None].repeat(channels, 1, 1, 1))
        self.channels, self.literal_groups = channels, literal_groups

    def forward(self, x: Tensor) -> Tensor:
        groups = self.channels if self.literal_groups else x.shape[1]
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), self.filt, stride=2, groups=groups)


class BlurNet(nn.Module):
    """Conv, BlurPool, conv, 1x1 head."""

    def __init__(self, literal_groups: bool) -> None:
        super().__init__()
        self.features = nn.Sequential(conv_bn(3, 16), BlurPool(16, literal_groups), conv_bn(16, 16))
        self.out = nn.Conv2d(16, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.features(x))


class RGBD(nn.Module):
    """Two inputs, RGB and depth, each through its own stem and fused by an add (RGB-D fusion nets)."""

    def __init__(self) -> None:
        super().__init__()
        self.rgb = nn.Sequential(conv_bn(3, 16, stride=2), conv_bn(16, 32, stride=2))
        self.depth = nn.Sequential(conv_bn(1, 16, stride=2), conv_bn(16, 32, stride=2))
        self.body = nn.Sequential(conv_bn(32, 32), conv_bn(32, 16))
        self.fc = nn.Linear(16, 5)

    def forward(self, rgb: Tensor, depth: Tensor) -> Tensor:
        return self.fc(self.body(self.rgb(rgb) + self.depth(depth)).mean((2, 3)))


CASES = (
    case("Res2Net split(width), hierarchical add, cat", Res2Net, IMAGE),
    case("CIFAR ResNet option-A shortcut (F.pad on channels)", OptionAShortcut, IMAGE),
    case("Inception-ResNet-A out * scale + x, view(x.size(0), -1)", lambda: InceptionResNet(False), IMAGE),
    case("Inception-ResNet-A x + 0.17 * branch", lambda: InceptionResNet(True), IMAGE),
    case("RepVGG train-time block: 3x3 + 1x1 + identity BN, id_out = 0 branch", RepVGG, IMAGE),
    case("DenseNet growth loop + slice-gated output (GLU-like)", DenseGated, IMAGE),
    case("BlurPool: F.conv2d with a buffer filter, groups=x.shape[1]", lambda: BlurNet(False), IMAGE),
    case("BlurPool: F.conv2d with a buffer filter, literal groups", lambda: BlurNet(True), IMAGE),
    case("two inputs, RGB + depth, fused by add", RGBD, IMAGE, (1, 1, 32, 32)),
)
