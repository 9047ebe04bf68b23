"""Timing helpers shared by the benchmark and the latency model: interleaved timed calls, MACs, batch resizing.

Example:
    >>> times = time_calls({"a": lambda: session.run(None, feeds)}, runs=20, warmup=5)
    >>> median(times["a"])
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils._pytree import tree_map

from ..passes.shapes import flop_counter

__all__ = ["count_macs", "median", "p90", "time_calls", "with_batch"]


def count_macs(model: nn.Module, inputs: tuple[Any, ...]) -> int:
    """Multiply-accumulates of one forward (FLOPs / 2, counted as fxprune counts a graph's)."""
    with torch.inference_mode(), flop_counter() as counter:
        model(*inputs)
    return counter.get_total_flops() // 2


def time_calls(calls: Mapping[str, Callable[[], object]], runs: int, warmup: int) -> dict[str, list[float]]:
    """Milliseconds per run of each call, the calls taking turns run by run."""
    for call in calls.values():
        for _ in range(warmup):
            call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(runs):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append((time.perf_counter() - start) * 1e3)
    return times


def with_batch(inputs: tuple[Any, ...], batch: int) -> tuple[Any, ...]:
    """Every tensor with dim 0 resized to ``batch`` (samples repeated cyclically or dropped)."""
    def resize(value: Any) -> Any:
        if not isinstance(value, torch.Tensor) or value.dim() == 0 or value.shape[0] == batch:
            return value
        index = torch.arange(batch) % value.shape[0]
        return value[index].contiguous()

    return tree_map(resize, inputs)


def median(times: list[float]) -> float:
    return statistics.median(times)


def p90(times: list[float]) -> float:
    return float(np.percentile(times, 90))
