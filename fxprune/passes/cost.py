"""Cost of a plan before it is applied: parameters exactly, MACs by per-node scaling.

Budget search evaluates many candidate plans; rewriting each would cost a shape
propagation. Instead every node's FLOPs, recorded once by the FLOP counter, are
scaled by the fraction of its output kept and, for operators whose rule names the
input dim they contract (``Rule.contracts``: convolutions, linears), by the fraction
of that dim kept.
"""

from __future__ import annotations

from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from ..ir.layout import Layout
from ..rules import lookup
from ..rules.context import kept_along
from ..rules.contraction import einsum_letters
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


def _attention_fraction(node: fx.Node, groups: Groups, keep: np.ndarray) -> float:
    """Kept fraction of ``scaled_dot_product_attention``: its two products, query x key over the
    query width and scores x value over the value width, each scaled by what it keeps."""
    q = groups.layouts.get(cast(fx.Node, node.args[0]))
    out = groups.layouts.get(node)
    if not isinstance(q, Layout) or not isinstance(out, Layout):
        return 1.0
    width_qk, width_v = q.shape[-1], out.shape[-1]
    return (width_qk * _kept_fraction(q, keep) + width_v * _kept_fraction(out, keep)) / (width_qk + width_v)


def _module_attention_fraction(node: fx.Node, module: nn.MultiheadAttention, groups: Groups,
                               keep: np.ndarray) -> float:
    """Kept fraction of ``nn.MultiheadAttention``: projections by kept rows x columns, attention
    by kept query/key and value rows (token counts cancel for self-attention)."""
    params = groups.record.params
    name, embed = node.target, module.embed_dim

    def kept(tensor: str, axis: int, size: int, part: slice = slice(None)) -> float:
        ids = params.get((f"{name}.{tensor}", axis))
        return float(size if ids is None else keep[ids[part]].sum())

    packed = module._qkv_same_embed_dim
    rows = [kept("in_proj_weight" if packed else f"{p}_proj_weight", 0, embed,
                 slice(i * embed, (i + 1) * embed) if packed else slice(None)) for i, p in enumerate("qkv")]
    columns = [kept("in_proj_weight" if packed else f"{p}_proj_weight", 1, width)
               for p, width in zip("qkv", (embed, module.kdim, module.vdim), strict=True)]
    out_rows, out_columns = kept("out_proj.weight", 0, embed), kept("out_proj.weight", 1, embed)
    before = embed * (embed + module.kdim + module.vdim) + 2 * embed + embed * embed
    after = sum(r * c for r, c in zip(rows, columns, strict=True)) + rows[0] + rows[2] + out_rows * out_columns
    return after / before


def _einsum_contracted_fraction(node: fx.Node, groups: Groups, keep: np.ndarray) -> float:
    """Kept fraction of the letters an einsum sums over, read from the first operand holding each."""
    equation, *tensors = node.args
    if len(tensors) == 1 and isinstance(tensors[0], (tuple, list)):
        tensors = list(tensors[0])
    found = [groups.layouts.get(cast(fx.Node, t)) for t in tensors]
    layouts = [layout for layout in found if isinstance(layout, Layout)]
    if len(layouts) != len(found):
        return 1.0
    letters, output = einsum_letters(str(equation), [len(layout.shape) for layout in layouts])
    fraction = 1.0
    for letter in {c for s in letters for c in s} - set(output):
        layout, spelled = next((la, s) for la, s in zip(layouts, letters, strict=True) if letter in s)
        fraction *= _kept_fraction(layout, keep, {spelled.index(letter)})
    return fraction


def _fraction(node: fx.Node, layout: Layout, modules: dict[str, nn.Module], groups: Groups,
              keep: np.ndarray) -> float:
    if node.target is F.scaled_dot_product_attention:
        return _attention_fraction(node, groups, keep)
    if node.target is torch.einsum:
        return _kept_fraction(layout, keep) * _einsum_contracted_fraction(node, groups, keep)
    module = modules.get(str(node.target)) if node.op == "call_module" else None
    if isinstance(module, nn.MultiheadAttention):
        return _module_attention_fraction(node, module, groups, keep)
    fraction = _kept_fraction(layout, keep)
    dim = _contracted_dim(node, modules)
    source = groups.layouts.get(cast(fx.Node, node.args[0])) if dim is not None else None
    if isinstance(source, Layout) and dim is not None:
        fraction *= _kept_fraction(source, keep, {dim})
    return fraction


def estimate_macs(module: fx.GraphModule, groups: Groups, keep: np.ndarray) -> int:
    """MACs of the pruned module, from the FLOPs recorded on ``module``'s nodes."""
    modules = dict(module.named_modules())
    total = 0.0
    for node in module.graph.nodes:
        flops = node.meta.get("flops", 0)
        layout = groups.layouts.get(node)
        if not flops or (not isinstance(layout, Layout) and node.op != "call_module"):
            total += flops
            continue
        if not isinstance(layout, Layout):  # a module returning a tuple: only attention has a formula
            module_ = modules.get(node.target)
            fraction = _module_attention_fraction(node, module_, groups, keep) \
                if isinstance(module_, nn.MultiheadAttention) else 1.0
            total += flops * fraction
            continue
        total += flops * _fraction(node, layout, modules, groups, keep)
    return int(total) // 2

