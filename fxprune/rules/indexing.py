"""Rules for indexing: ``x[..., a:b]``, integer indices, and picking an element of a tuple."""

from __future__ import annotations

import operator
from typing import Any

import numpy as np
from torch import fx

from ..ir.layout import Block, Layout
from .context import PropagateContext, RewriteContext
from .folds import gather, index_fold
from .registry import Rule, register_function

__all__ = ["getitem", "getitem_rewrite", "slice_layout"]


def slice_layout(ctx: PropagateContext, layout: Layout, cuts: dict[int, slice],
                 shape: tuple[int, ...], dim_map: dict[int, int] | None = None) -> Layout:
    """The layout of ``layout`` cut along some dims; a block left with a single channel freezes."""
    blocks = []
    for block in layout.blocks:
        index = tuple(cuts.get(d, slice(None)) for d in block.dims)
        ids = block.ids[index]
        if any(ids.shape[a] <= 1 for a in range(len(block.dims))):
            ctx.freeze(block, "a single channel sliced out")
            continue
        blocks.append(Block(block.dims, ids))
    sliced = Layout(layout.shape, tuple(blocks))
    return sliced.renamed(shape, dim_map or {d: d for d in range(len(shape))})



def getitem(ctx: PropagateContext) -> Any:
    """Indexing a tuple picks a layout; indexing a tensor slices its ids."""
    container = ctx.layout(ctx.node.args[0])
    index: Any = ctx.node.args[1]  # an int for a tuple, any index expression for a tensor
    if isinstance(container, (tuple, list)):
        return container[index]
    if not isinstance(container, Layout):
        return None
    plan = _index_plan(index, len(container.shape))
    if plan is None:
        gathered = gather(ctx, container, index)
        if gathered is None:
            ctx.freeze(container, "advanced indexing")
            return ctx.opaque_output()
        return gathered
    cuts, dim_map, dropped = plan
    kept = []
    for block in container.blocks:
        for d in block.dims:
            cut = cuts.get(d)
            if cut is not None and (cut.step not in (None, 1) or not _literal(cut)):
                ctx.freeze(block, "strided or dynamic slice of channels")
        picked = {d: i for d, i in dropped.items() if d in block.dims}
        folded = index_fold(ctx, block, picked) if picked else block
        if folded is not None:
            kept.append(folded)
    return slice_layout(ctx, Layout(container.shape, tuple(kept)), cuts, ctx.shape(), dim_map)


def _literal(cut: slice) -> bool:
    return all(v is None or isinstance(v, int) for v in (cut.start, cut.stop, cut.step))


def _index_plan(index: Any, rank: int) -> tuple[dict[int, slice], dict[int, int], dict[int, int]] | None:
    items = list(index) if isinstance(index, tuple) else [index]
    if any(not (i is None or i is Ellipsis or isinstance(i, (int, slice))) for i in items):
        return None
    explicit = sum(1 for i in items if i is not None and i is not Ellipsis)
    expanded: list[Any] = []
    for item in items:
        expanded.extend([slice(None)] * (rank - explicit) if item is Ellipsis else [item])
    expanded.extend([slice(None)] * (rank - sum(1 for i in expanded if i is not None)))
    cuts: dict[int, slice] = {}
    dim_map: dict[int, int] = {}
    dropped: dict[int, int] = {}
    in_dim, out_dim = 0, 0
    for item in expanded:
        if item is None:
            out_dim += 1
        elif isinstance(item, int):
            dropped[in_dim] = item
            in_dim += 1
        else:
            cuts[in_dim], dim_map[in_dim] = item, out_dim
            in_dim, out_dim = in_dim + 1, out_dim + 1
    return cuts, dim_map, dropped


def getitem_rewrite(ctx: RewriteContext) -> tuple[Any, tuple, dict]:
    source, index = ctx.node.args
    layout = ctx.layouts.get(source) if isinstance(source, fx.Node) else None
    if not isinstance(layout, Layout):
        return ctx.node.target, ctx.node.args, ctx.node.kwargs
    plan = _index_plan(index, len(layout.shape))
    if plan is None:  # advanced indexing: its channels were frozen
        return ctx.node.target, ctx.node.args, ctx.node.kwargs
    cuts = plan[0]
    items = list(index) if isinstance(index, tuple) else [index]
    new_cuts = {}
    for dim, cut in cuts.items():
        kept = ctx.kept(source, dim)
        if kept is None or cut == slice(None):
            continue
        start, stop, _ = cut.indices(layout.shape[dim])
        new_cuts[dim] = slice(int(np.searchsorted(kept, start)), int(np.searchsorted(kept, stop)))
    if not new_cuts:
        return ctx.node.target, ctx.node.args, ctx.node.kwargs
    rebuilt = [new_cuts.get(d, c) for d, c in sorted(cuts.items())]
    return ctx.node.target, (source, _reinsert(items, rebuilt, len(layout.shape))), {}


def _reinsert(items: list[Any], slices: list[slice], rank: int) -> tuple:
    """Rebuild an index tuple with every slice replaced, in order, keeping None/int/Ellipsis."""
    explicit = sum(1 for i in items if i is not None and i is not Ellipsis)
    out: list[Any] = []
    queue = list(slices)
    for item in items:
        if item is Ellipsis:
            out.extend(queue.pop(0) for _ in range(rank - explicit))
        elif isinstance(item, slice):
            out.append(queue.pop(0))
        else:
            out.append(item)
    out.extend(queue)
    return tuple(out)


register_function(operator.getitem, rule=Rule(getitem, rewrite_args=getitem_rewrite))
