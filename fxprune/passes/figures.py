"""Figures: the size of a model (parameters, MACs) and how a count is printed."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

__all__ = ["Figures", "count_params", "human_count"]


@dataclass(frozen=True)
class Figures:
    """Size of a model: parameters, and multiply-accumulates for the example inputs
    (counted by ``torch.utils.flop_counter``: FLOPs / 2)."""

    params: int
    macs: int


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def human_count(value: float) -> str:
    """A count with a G, M or K suffix: ``human_count(11_689_512) == "11.69M"``."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f}{unit}"
    return f"{value:.0f}"
