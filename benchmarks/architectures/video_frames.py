"""Video models built from 2D convs run per frame.

TSM shifts, TSN and TRN consensus heads, per-frame stacks, ConvGRU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import fxprune

from .catalog import CLIP, case, conv_bn

__all__ = ["CASES"]


def shift_by_cat(x: Tensor, segments: int, fold: int | None = None) -> Tensor:
    """Temporal shift of TSM (Lin et al., 2019) with ``cat`` and ``zeros_like``: a quarter of the channels
    moves one frame back, a quarter one frame forward. ``fold`` defaults to ``channels // 4``, read from
    the tensor; a literal ``fold`` makes the channel slices constants."""
    nt, c, h, w = x.size()
    fold = c // 4 if fold is None else fold
    x = x.view(nt // segments, segments, c, h, w)
    left = torch.cat((x[:, 1:, :fold], torch.zeros_like(x[:, :1, :fold])), 1)
    right = torch.cat((torch.zeros_like(x[:, :1, fold:2 * fold]), x[:, :-1, fold:2 * fold]), 1)
    return torch.cat((left, right, x[:, :, 2 * fold:]), 2).view(nt, c, h, w)


def shift_in_place(x: Tensor, segments: int) -> Tensor:
    """The official TSM shift: slice assignment into ``zeros_like``, which fx cannot trace."""
    nt, c, h, w = x.size()
    x = x.view(nt // segments, segments, c, h, w)
    fold = c // 4
    out = torch.zeros_like(x)
    out[:, :-1, :fold] = x[:, 1:, :fold]
    out[:, 1:, fold:2 * fold] = x[:, :-1, fold:2 * fold]
    out[:, :, 2 * fold:] = x[:, :, 2 * fold:]
    return out.view(nt, c, h, w)


class TSMNet(nn.Module):
    """A 2D backbone over the frames of an ``(N, C, T, H, W)`` clip with a shifted residual block, as in TSM."""

    def __init__(self, shift: str, frames: int = 8, width: int = 16) -> None:
        super().__init__()
        self.shift, self.frames = shift, frames
        self.stem = conv_bn(3, width)
        self.conv1 = conv_bn(width, width)
        self.conv2 = conv_bn(width, width, act=None)
        self.fc = nn.Linear(width, 5)

    def shifted(self, x: Tensor) -> Tensor:
        """``x`` with the temporal shift this net was built with."""
        if self.shift == "in place":
            return shift_in_place(x, self.frames)
        return shift_by_cat(x, self.frames, 4 if self.shift == "literal fold" else None)

    def forward(self, x: Tensor) -> Tensor:
        n, c, t, h, w = x.shape
        x = self.stem(x.transpose(1, 2).reshape(n * t, c, h, w))
        x = F.relu(x + self.conv2(self.conv1(self.shifted(x))))
        return self.fc(x.mean((2, 3)).view(n, t, -1).mean(1))


class TSN(nn.Module):
    """Temporal segment network heads (Wang et al., 2016) over ``(N*T, 3, H, W)`` frames, and the TRN relation MLP.

    ``head`` picks the consensus: ``literal`` views ``(-1, T, C)`` with Python ints, ``size`` uses
    ``(-1, T) + x.size()[1:]`` (TSN's code), ``fc first`` scores each frame then averages (mmaction's
    TSNHead), ``relation`` feeds the ``T*C`` concatenation to an MLP (TRN, Zhou et al., 2018).
    """

    def __init__(self, head: str, frames: int = 4, channels: int = 24) -> None:
        super().__init__()
        self.head, self.frames, self.channels = head, frames, channels
        self.base = nn.Sequential(conv_bn(3, 16, stride=2), conv_bn(16, channels, stride=2))
        self.fc = nn.Linear(channels, 5)
        self.relation = nn.Sequential(nn.ReLU(), nn.Linear(frames * channels, 32), nn.ReLU(), nn.Linear(32, 5))

    def forward(self, x: Tensor) -> Tensor:
        f = self.base(x).mean((2, 3))
        if self.head == "literal":
            return self.fc(f.view(-1, self.frames, self.channels).mean(1))
        if self.head == "size":
            return self.fc(f.view((-1, self.frames) + f.size()[1:]).mean(dim=1))
        if self.head == "fc first":
            scores = self.fc(F.dropout(f, 0.5, self.training))
            return scores.view(-1, self.frames, scores.size(1)).mean(1)
        f = f.view(-1, self.frames, self.channels)
        return self.relation(f.view(f.size(0), self.frames * self.channels))


class TSNConv1dHead(nn.Module):
    """Per-frame 2D features, then a temporal Conv1d and BatchNorm1d over ``(N, C, T)`` before the classifier."""

    def __init__(self, frames: int = 8) -> None:
        super().__init__()
        self.frames = frames
        self.features = nn.Sequential(conv_bn(3, 16, stride=2), conv_bn(16, 16, stride=2))
        self.temporal = nn.Conv1d(16, 24, 3, padding=1)
        self.bn = nn.BatchNorm1d(24)
        self.fc = nn.Linear(24, 5)

    def forward(self, x: Tensor) -> Tensor:
        n = x.shape[0]
        f = self.features(x.permute(0, 2, 1, 3, 4).flatten(0, 1)).mean((2, 3))
        f = f.view(n, self.frames, -1).transpose(1, 2)
        return self.fc(F.relu(self.bn(self.temporal(f))).mean(-1))


class FrameStack(nn.Module):
    """A 2D conv per frame, ``torch.stack`` along time, then a residual 3D block (a hybrid 2D/3D net)."""

    def __init__(self, frames: int = 4) -> None:
        super().__init__()
        self.frames = frames
        self.frame_conv = conv_bn(3, 16, stride=2)
        self.conv_a = conv_bn(16, 16, 3, dims=3)
        self.conv_b = conv_bn(16, 16, 3, dims=3, act=None)
        self.fc = nn.Linear(16, 5)

    def forward(self, x: Tensor) -> Tensor:
        v = torch.stack([self.frame_conv(x[:, :, t]) for t in range(self.frames)], dim=2)
        v = F.relu(v + self.conv_b(self.conv_a(v)))
        return self.fc(v.mean((2, 3, 4)))


class ConvGRUCell(nn.Module):
    """Convolutional GRU (Ballas et al., 2016): reset and update gates from one conv, split with ``chunk``."""

    def __init__(self, in_channels: int, hidden: int) -> None:
        super().__init__()
        self.gates = nn.Conv2d(in_channels + hidden, 2 * hidden, 3, padding=1)
        self.candidate = nn.Conv2d(in_channels + hidden, hidden, 3, padding=1)

    def forward(self, x: Tensor, h: Tensor) -> Tensor:
        r, z = torch.sigmoid(self.gates(torch.cat([x, h], 1))).chunk(2, 1)
        c = torch.tanh(self.candidate(torch.cat([x, r * h], 1)))
        return (1 - z) * h + z * c


class ConvGRUNet(nn.Module):
    """A ConvGRU unrolled over the frames of a clip, its state started with ``new_zeros``."""

    def __init__(self, frames: int = 3) -> None:
        super().__init__()
        self.frames = frames
        self.encoder = conv_bn(3, 8)
        self.cell = ConvGRUCell(8, 16)
        self.out = nn.Conv2d(16, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = x.new_zeros((x.shape[0], 16, x.shape[3], x.shape[4]))
        for t in range(self.frames):
            h = self.cell(self.encoder(x[:, :, t]), h)
        return self.out(h)


FRAMES = (8, 3, 32, 32)

CASES = (
    case("TSM shift via cat + zeros_like, fold = channels // 4", lambda: TSMNet("cat"), CLIP),
    case("TSM shift via cat, literal fold", lambda: TSMNet("literal fold"), CLIP),
    case("TSM in-place slice-assignment shift (untraceable)", lambda: TSMNet("in place"), CLIP,
         raises=fxprune.TraceError),
    case("TSN consensus view(-1, T, C literal).mean(1)", lambda: TSN("literal"), FRAMES),
    case("TSN consensus view((-1, T) + x.size()[1:]).mean(1)", lambda: TSN("size"), FRAMES),
    case("TSN fc per frame, then view(-1, T, s.size(1)).mean(1)", lambda: TSN("fc first"), FRAMES),
    case("TRN relation MLP over view(N, T*C)", lambda: TSN("relation"), FRAMES),
    case("TSN per-frame 2D, view(n, T, -1).transpose, Conv1d + BN1d head", TSNConv1dHead, CLIP),
    case("per-frame 2D conv, torch.stack(dim=2), residual 3D block", FrameStack, (1, 3, 4, 32, 32)),
    case("ConvGRU over time: chunked gates, new_zeros initial state", ConvGRUNet, (1, 3, 3, 16, 16)),
)
