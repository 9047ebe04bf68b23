"""Tiny models for the CLI tests, built by ``package.module:factory`` specs such as ``tests.cli_factory:tiny2d``."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Gated", "gated", "not_a_model", "tiny2d", "tiny3d", "two_stream"]


class _Residual2d(nn.Module):
    """conv-bn-relu, a residual block (coupled channels) and a linear head."""

    def __init__(self, width: int = 16, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                                   nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width))
        self.head = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = torch.relu(x + self.block(x))
        return self.head(x.mean((2, 3)))


class Gated(nn.Module):
    """Two prunable conv blocks around a loop over channels picked by their values.

    Neither front end captures the loop (symbolic tracing cannot iterate a proxy; torch.export
    cannot guard on the number of channels ``nonzero`` finds), as in a detector's NMS; the two
    blocks capture on their own.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                      nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.Conv2d(8, 16, 1), nn.ReLU(), nn.Conv2d(16, 4, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.features(x)
        for channel in torch.nonzero(y.mean((0, 2, 3)) > y.mean()).flatten().tolist():
            y = y + y[:, channel:channel + 1]
        return self.head(y)


class _Tiny3d(nn.Module):
    """Two Conv3d with BatchNorm3d, pooling and a linear head."""

    def __init__(self, width: int = 8, classes: int = 5) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv3d(3, width, 3, padding=1), nn.BatchNorm3d(width), nn.ReLU(),
                                      nn.Conv3d(width, 2 * width, 3, padding=1), nn.BatchNorm3d(2 * width), nn.ReLU(),
                                      nn.AdaptiveAvgPool3d(1))
        self.head = nn.Linear(2 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.features(x), 1))


class _TwoStream(nn.Module):
    """SlowFast-like: ``forward([slow, fast])`` with a concat of the two pathways."""

    def __init__(self) -> None:
        super().__init__()
        self.slow = nn.Sequential(nn.Conv3d(3, 8, 1), nn.ReLU(), nn.AdaptiveAvgPool3d(1))
        self.fast = nn.Sequential(nn.Conv3d(3, 4, 1), nn.ReLU(), nn.AdaptiveAvgPool3d(1))
        self.head = nn.Linear(12, 3)

    def forward(self, clips: list[torch.Tensor]) -> torch.Tensor:
        slow, fast = clips
        return self.head(torch.cat([self.slow(slow), self.fast(fast)], 1).flatten(1))


def tiny2d() -> nn.Module:
    """A residual 2D CNN; input (N, 3, H, W)."""
    torch.manual_seed(0)
    return _Residual2d()


def tiny3d() -> nn.Module:
    """A 3D CNN; input (N, 3, T, H, W)."""
    torch.manual_seed(0)
    return _Tiny3d()


def two_stream() -> nn.Module:
    """A two-pathway 3D CNN taking ``[slow, fast]``."""
    torch.manual_seed(0)
    return _TwoStream()


def not_a_model() -> str:
    """A factory that returns something else (the CLI must refuse it)."""
    return "not a model"


def gated() -> nn.Module:
    torch.manual_seed(0)
    return Gated().eval()
