"""Cost of a plan before it is applied: parameters exactly, MACs by per-node scaling.

Budget search evaluates many candidate plans; rewriting each would cost a shape
propagation. Instead every node's FLOPs, recorded once by the FLOP counter, are
scaled by the fraction of its output kept and, for operators whose rule names the
input dim they contract (``Rule.contracts``: convolutions, linears), by the fraction
of that dim kept.
"""

from __future__ import annotations

import numpy as np
from torch import fx, nn

from ..ir.layout import Layout
from ..rules import lookup
from ..rules.context import kept_along
from .groups import Groups

__all__ = ["estimate_params", "estimate_macs"]

def _kept_fraction(layout: Layout, keep: np.ndarray, dims: set[int] | None = None) -> float:
    fraction = 1.0
    for block in layout.blocks:
        for axis, dim in enumerate(block.dims):
            if dims is None or dim in dims:
                fraction *= kept_along(block, keep, axis).size / layout.shape[dim]
    return fraction


def estimate_params(module: nn.Module, groups: Groups, keep: np.ndarray) -> int:
    """Exact parameter count after applying ``keep``: every sliced axis is registered."""
    axes: dict[str, list[np.ndarray]] = {}
    for (tensor, _), ids in groups.record.params.items():
        axes.setdefault(tensor, []).append(ids)
    total = 0
    for name, param in module.named_parameters():
        count = param.numel()
        for ids in axes.get(name, []):
            count = count * int(keep[ids].sum()) // ids.size
        total += count
    return total


def _contracted_dim(node: fx.Node, modules: dict[str, nn.Module]) -> int | None:
    """The input dim the node sums over as a whole, as its rule states (``Rule.contracts``)."""
    module = modules.get(str(node.target)) if node.op == "call_module" else None
    rule = lookup(node, module) if node.op != "call_module" or module is not None else None
    return rule.contracts(node, module) if rule is not None and rule.contracts is not None else None


def estimate_macs(module: fx.GraphModule, groups: Groups, keep: np.ndarray) -> int:
    """MACs of the pruned module, from the FLOPs recorded on ``module``'s nodes."""
    modules = dict(module.named_modules())
    total = 0.0
    for node in module.graph.nodes:
        flops = node.meta.get("flops", 0)
        layout = groups.layouts.get(node)
        if not flops or not isinstance(layout, Layout):
            total += flops
            continue
        fraction = _kept_fraction(layout, keep)
        dim = _contracted_dim(node, modules)
        source = groups.layouts.get(node.args[0]) if dim is not None else None
        if isinstance(source, Layout) and dim is not None:
            fraction *= _kept_fraction(source, keep, {dim})
        total += flops * fraction
    return int(total) // 2
