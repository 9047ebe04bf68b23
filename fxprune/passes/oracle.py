"""The test oracle: a pruned model computes what the masked original computes.

The reference is a copy of the original in which every channel-mixing consumer of
a pruned channel (a conv's or linear's input slice; for a transposed conv its
weight dim 0) has that slice zeroed. A removed channel that a contraction of two
activations sums over (a query/key width of attention) has no such consumer: every
parameter slice of it is zeroed instead, from the producing rows on, so that its
products vanish. Removed channels then cannot reach any kept output, so
``pruned(x)`` must equal ``reference(x)`` up to float rounding.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ..ir.parametrized import bake_parametrizations, deepcopy_module
from .capture_export import fresh_inputs
from .compare import tensor_leaves
from .groups import Groups
from .plan import Plan, keep_mask

__all__ = ["masked_reference", "max_difference"]


def masked_reference(model: nn.Module, groups: Groups, plan: Plan) -> nn.Module:
    """A copy of ``model`` with the input slices that read removed channels zeroed."""
    # Computed weights (weight normalisation) become plain parameters of the same value,
    # so their slices can be zeroed.
    reference = bake_parametrizations(deepcopy_module(model))
    keep = keep_mask(groups, plan)
    params = dict(reference.named_parameters(remove_duplicate=False))
    record = groups.record
    silenced = _silenced(groups, keep)
    with torch.no_grad():
        for (tensor, axis), ids in record.params.items():
            if tensor not in params:
                continue
            if record.spaces_of(ids[:1]) & record.readers:
                removed = np.flatnonzero(~keep[ids])
            else:
                removed = np.flatnonzero(silenced[groups.roots[ids]])
            if removed.size:
                params[tensor].index_fill_(axis, torch.as_tensor(removed, device=params[tensor].device), 0.0)
    return reference


def _silenced(groups: Groups, keep: np.ndarray) -> np.ndarray:
    """For every channel root: removed, and summed over by a contraction of activations."""
    silenced = np.zeros(groups.record.size, dtype=bool)
    for ids in groups.record.contracted:
        silenced[groups.roots[ids]] = True
    removed = np.zeros(groups.record.size, dtype=bool)
    removed[groups.roots[~keep]] = True
    return silenced & removed


def max_difference(first: nn.Module, second: nn.Module, example_inputs: tuple[Any, ...]) -> float:
    """Largest absolute difference between the outputs of two modules in eval mode."""
    outputs = []
    for module in (first, second):
        module = deepcopy_module(module).eval()
        with torch.no_grad():
            outputs.append(tensor_leaves(module(*fresh_inputs(example_inputs))))  # forwards may edit a list input
    if len(outputs[0]) != len(outputs[1]):
        return float("inf")
    worst = 0.0
    for a, b in zip(*outputs, strict=True):
        if a.shape != b.shape:
            return float("inf")
        if a.numel():
            worst = max(worst, float((a.double() - b.double()).abs().max()))
    return worst
