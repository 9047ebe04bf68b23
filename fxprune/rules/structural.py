"""Rules for operators that join tensors along a dim or split them: cat, stack, split, chunk, unbind.

Indexing lives in :mod:`.indexing`, reshapes in :mod:`.reshape`, permutes in
:mod:`.rearrange` and size queries in :mod:`.size_query`; their rules are
re-exported here for code written against this module before it was split.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..ir.layout import OPAQUE, Block, Layout
from .context import PropagateContext, RewriteContext, kept_along
from .elementwise import unify_layouts
from .folds import index_fold
from .indexing import getitem, slice_layout
from .output_shapes import concatenated
from .rearrange import permute
from .registry import Rule, register_function, register_method
from .reshape import reshape

__all__ = ["cat", "stack", "split", "split_rewrite", "getitem", "reshape", "permute"]


def _without(layout: Layout, dim: int) -> Layout:
    return Layout(layout.shape, tuple(b for b in layout.blocks if dim not in b.dims))


def cat(ctx: PropagateContext) -> Layout:
    """Concatenated ids along the cat dim; the other dims of all inputs are unified."""
    tensors = list(ctx.arg(0, "tensors"))
    out_shape = ctx.shape()
    dim = int(ctx.arg(1, "dim", 0)) % len(out_shape)
    pieces = []
    for tensor in tensors:
        layout = ctx.layout(tensor)
        block = layout.block_at(dim)
        if block is not None and (block.dims != (dim,) or block.width != 1):
            ctx.freeze(block, "concatenating folded channels")
            block = None
        pieces.append(block.ids if block is not None else np.full((layout.shape[dim], 1), OPAQUE))
    others = unify_layouts(ctx, [_without(ctx.layout(t), dim) for t in tensors], out_shape)
    ids = np.concatenate(pieces)
    blocks = list(others.blocks) + ([Block((dim,), ids)] if (ids >= 0).any() else [])
    return Layout(out_shape, tuple(blocks))


def stack(ctx: PropagateContext) -> Layout:
    tensors = list(ctx.arg(0, "tensors"))
    out_shape = ctx.shape()
    dim = int(ctx.arg(1, "dim", 0)) % len(out_shape)
    joined = unify_layouts(ctx, [ctx.layout(t) for t in tensors], ctx.shape(tensors[0]))
    return joined.renamed(out_shape, {d: d + (d >= dim) for d in range(len(out_shape) - 1)})


def split(ctx: PropagateContext) -> tuple[Layout, ...]:
    """Each output is a segment of the input along the split dim."""
    layout = ctx.layout(ctx.node.args[0])
    target = getattr(ctx.node.target, "__name__", ctx.node.target)
    default_dim = 0
    dim = int(ctx.arg(2, "dim", default_dim)) % len(layout.shape)
    outputs = ctx.val(ctx.node)
    if target == "unbind":
        dim = int(ctx.arg(1, "dim", 0)) % len(layout.shape)
        block = layout.block_at(dim)
        dim_map = {d: d - (d > dim) for d in range(len(layout.shape)) if d != dim}
        if block is None or block.dims == (dim,):
            ctx.freeze(block, "unbind along channels")
            return tuple(_without(layout, dim).renamed(tuple(o.shape), dim_map) for o in outputs)
        others = [b for b in layout.blocks if b is not block]
        folds = [index_fold(ctx, block, {dim: i}) for i in range(len(outputs))]
        return tuple(Layout(layout.shape, (*others, *([] if fold is None else [fold]))).renamed(
            tuple(o.shape), dim_map) for fold, o in zip(folds, outputs, strict=True))
    segments, start = [], 0
    for out in outputs:
        size = int(out.shape[dim])
        segments.append(slice_layout(ctx, layout, {dim: slice(start, start + size)}, tuple(out.shape)))
        start += size
    return tuple(segments)


def split_rewrite(ctx: RewriteContext) -> tuple[Any, tuple, dict]:
    """Split sizes become the kept counts of each segment; chunk becomes split."""
    layouts = ctx.layouts[ctx.node]
    x = ctx.node.args[0]
    dim = int(ctx.arg(2, "dim", 0))
    if getattr(ctx.node.target, "__name__", ctx.node.target) == "unbind":
        return ctx.node.target, ctx.node.args, ctx.node.kwargs
    dim %= len(ctx.shape(x))
    sizes = [_new_size(layout, dim, ctx.keep) for layout in layouts]
    old = [int(v.shape[dim]) for v in ctx.val(ctx.node)]
    if sizes == old:
        return ctx.node.target, ctx.node.args, ctx.node.kwargs
    target = "split" if ctx.node.op == "call_method" else torch.split
    return target, (x, sizes), {"dim": dim}


def _new_size(layout: Layout, dim: int, keep: np.ndarray) -> int:
    block = layout.block_at(dim)
    return layout.shape[dim] if block is None else int(kept_along(block, keep, block.axis_of(dim)).size)



register_function(torch.cat, torch.concat, torch.concatenate, rule=Rule(cat, shape=concatenated))
register_function(torch.stack, rule=Rule(stack))
SPLIT = Rule(split, rewrite_args=split_rewrite)
register_method("split", "chunk", "tensor_split", "unbind", rule=SPLIT)
register_function(torch.split, torch.chunk, torch.tensor_split, torch.unbind, rule=SPLIT)
