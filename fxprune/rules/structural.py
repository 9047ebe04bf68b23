"""Rules for operators that move positions: cat, split, slicing, reshape, permute."""

from __future__ import annotations

import operator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from ..ir.layout import OPAQUE, Block, Layout, reshape_layout
from .context import PropagateContext, RewriteContext, kept_along
from .elementwise import broadcast, unify_layouts
from .indexing import gather, index_fold
from .registry import Rule, register_function, register_method, register_module
from .run_time_sizes import from_channel_counts

__all__ = ["cat", "split", "getitem", "reshape", "permute"]


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
        return tuple(Layout(layout.shape, tuple([*others, index_fold(ctx, block, {dim: i})])).renamed(
            tuple(o.shape), dim_map) for i, o in enumerate(outputs))
    segments, start = [], 0
    for out in outputs:
        size = int(out.shape[dim])
        segments.append(_slice_layout(ctx, layout, {dim: slice(start, start + size)}, tuple(out.shape)))
        start += size
    return tuple(segments)


def _slice_layout(ctx: PropagateContext, layout: Layout, cuts: dict[int, slice],
                  shape: tuple[int, ...], dim_map: dict[int, int] | None = None) -> Layout:
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


def getitem(ctx: PropagateContext) -> Any:
    """Indexing a tuple picks a layout; indexing a tensor slices its ids."""
    container = ctx.layout(ctx.node.args[0])
    index = ctx.node.args[1]
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
        if picked:
            block = index_fold(ctx, block, picked)
        if block is not None:
            kept.append(block)
    return _slice_layout(ctx, Layout(container.shape, tuple(kept)), cuts, ctx.shape(), dim_map)


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
    cuts, dim_map, dropped, in_dim, out_dim = {}, {}, {}, 0, 0
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
    layout = ctx.layouts.get(source)
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
    out, queue = [], list(slices)
    for item in items:
        if item is Ellipsis:
            out.extend(queue.pop(0) for _ in range(rank - explicit))
        elif isinstance(item, slice):
            out.append(queue.pop(0))
        else:
            out.append(item)
    out.extend(queue)
    return tuple(out)


def reshape(ctx: PropagateContext) -> Layout:
    """view/reshape/flatten/unflatten/squeeze/unsqueeze: ids follow the memory order."""
    layout, lost = reshape_layout(ctx.layout(ctx.node.args[0]), ctx.shape())
    for block in lost:
        ctx.freeze(block, "reshape mixes channels with another tracked axis")
    return layout


def shape_rewrite(first_size_arg: int) -> Any:
    """Rewrite literal sizes (view shapes, expand sizes) of tracked output dims."""

    def rewrite(ctx: RewriteContext) -> tuple[Any, tuple, dict]:
        args = list(ctx.node.args)
        packed = len(args) == first_size_arg + 1 and isinstance(args[first_size_arg], (tuple, list))
        sizes = list(args[first_size_arg]) if packed else args[first_size_arg:]
        if "shape" in ctx.node.kwargs or "size" in ctx.node.kwargs:
            key = "shape" if "shape" in ctx.node.kwargs else "size"
            sizes, packed = list(ctx.node.kwargs[key]), True
        # A size computed at run time from channel counts (C // heads, C read from another tensor,
        # which the plan may prune otherwise) is fixed by the plan: a tracked dim takes its kept count.
        tracked = len(sizes) == len(ctx.shape()) and isinstance(ctx.layouts.get(ctx.node), Layout)
        new = [ctx.new_size(ctx.node, d) if tracked and ctx.layouts[ctx.node].block_at(d) is not None and (
            (isinstance(s, fx.Node) and from_channel_counts(ctx, s))
            or (isinstance(s, int) and s >= 0 and ctx.kept(ctx.node, d) is not None))
            else s for d, s in enumerate(sizes)]
        if "shape" in ctx.node.kwargs or "size" in ctx.node.kwargs:
            return ctx.node.target, tuple(args), {**ctx.node.kwargs, key: tuple(new)}
        rest = [tuple(new)] if packed else new
        return ctx.node.target, (*args[:first_size_arg], *rest), dict(ctx.node.kwargs)

    return rewrite


def unflatten_rewrite(ctx: RewriteContext) -> tuple[Any, tuple, dict]:
    x = ctx.node.args[0]
    dim = int(ctx.arg(1, "dim")) % len(ctx.shape(x))
    sizes = list(ctx.arg(2, "sizes"))
    new = [ctx.new_size(ctx.node, dim + i) if isinstance(s, int) and s >= 0 else s for i, s in enumerate(sizes)]
    return ctx.node.target, (x, dim, tuple(new)), {}


def permute(ctx: PropagateContext) -> Layout:
    """permute/transpose/movedim: the ids move with their dims."""
    layout = ctx.layout(ctx.node.args[0])
    rank = len(layout.shape)
    order = _permutation(ctx, rank)
    return layout.renamed(ctx.shape(), {src: dst for dst, src in enumerate(order)})


def _permutation(ctx: PropagateContext, rank: int) -> list[int]:
    name = getattr(ctx.node.target, "__name__", ctx.node.target)
    args = ctx.node.args[1:]
    if name in ("transpose", "swapaxes", "swapdims"):
        a, b = (int(ctx.arg(i, k)) % rank for i, k in ((1, "dim0"), (2, "dim1")))
        order = list(range(rank))
        order[a], order[b] = order[b], order[a]
        return order
    if name == "t":
        return list(range(rank))[::-1]
    if name in ("movedim", "moveaxis"):
        src, dst = ctx.arg(1, "source"), ctx.arg(2, "destination")
        src = [src] if isinstance(src, int) else list(src)
        dst = [dst] if isinstance(dst, int) else list(dst)
        return _movedim_order(rank, src, dst)
    dims = args[0] if len(args) == 1 and isinstance(args[0], (tuple, list)) else args
    dims = ctx.node.kwargs.get("dims", dims)
    return [int(d) % rank for d in dims]


def _movedim_order(rank: int, src: list[int], dst: list[int]) -> list[int]:
    src = [s % rank for s in src]
    dst = [d % rank for d in dst]
    order = [-1] * rank
    for s, d in zip(src, dst):
        order[d] = s
    rest = iter(d for d in range(rank) if d not in src)
    return [o if o >= 0 else next(rest) for o in order]


def size_query(ctx: PropagateContext) -> Layout | None:
    """x.size(), x.shape, x.numel(): plain ints, recomputed at run time from pruned tensors.

    That is right where the int only sizes a reshape (``x.view(b, c // g, g, h, w)``: the
    pruned shapes are checked after the rewrite), wrong anywhere else (``y * x.size(1)``):
    a channel count read as a value freezes its channels.
    """
    layout = ctx.layout(ctx.node.args[0]) if ctx.node.args else None
    if not isinstance(layout, Layout):
        return None
    if ctx.node.target is getattr and ctx.node.args[1:] == ("data",):
        return layout  # legacy ``x.data``: the same tensor, detached
    for dims, value in _queried_dims(ctx.node, len(layout.shape)):
        for block in {id(b): b for d in dims if (b := layout.block_at(d)) is not None}.values():
            if value is None or not _sizes_only(value):
                ctx.freeze(block, "channel count read as a value")
    return None


def _queried_dims(node: fx.Node, rank: int) -> list[tuple[list[int], fx.Node | None]]:
    """(dims, the node holding their sizes) per use; None where the use is not understood."""
    name = getattr(node.target, "__name__", node.target)
    if name in ("dim", "ndimension") or (name == "getattr" and node.args[1:] != ("shape",)):
        return []
    if name in ("numel", "nelement"):
        return [(list(range(rank)), node)]
    if name == "len":
        return [([0], node)]
    dim = node.args[1] if len(node.args) > 1 and name == "size" else node.kwargs.get("dim")
    if isinstance(dim, int):
        return [([dim % rank], node)]
    found: list[tuple[list[int], fx.Node | None]] = []
    for user in node.users:  # the whole shape: follow indexing into it
        index = user.args[1] if user.target is operator.getitem and user.args[0] is node else None
        if isinstance(index, int):
            found.append(([index % rank], user))
        elif isinstance(index, slice):
            found.append((list(range(rank))[index], user))
        else:
            found.append((list(range(rank)), user))
    return found


_SIZE_CONSUMERS = {"view", "reshape", "expand", "unflatten", torch.reshape, torch.unflatten, F.layer_norm}
_INT_ARITHMETIC = {operator.add, operator.sub, operator.mul, operator.floordiv, operator.neg, operator.getitem}


def _sizes_only(value: fx.Node) -> bool:
    """Whether an int (or tuple of ints) only reaches size arguments of reshapes, through int arithmetic."""
    for user in value.users:
        if user.target in _SIZE_CONSUMERS and user.args and user.args[0] is not value:
            continue
        if user.target in _INT_ARITHMETIC and not isinstance(user.meta.get("val"), torch.Tensor) \
                and _sizes_only(user):
            continue
        return False
    return True


RESHAPE_VIEW = Rule(reshape, rewrite_args=shape_rewrite(1))
register_method("view", "reshape", rule=RESHAPE_VIEW)
register_function(torch.reshape, rule=RESHAPE_VIEW)
register_method("flatten", "squeeze", "unsqueeze", "view_as", "reshape_as", rule=Rule(reshape))
register_function(torch.flatten, torch.squeeze, torch.unsqueeze, rule=Rule(reshape))
register_method("unflatten", rule=Rule(reshape, rewrite_args=unflatten_rewrite))
register_function(torch.unflatten, rule=Rule(reshape, rewrite_args=unflatten_rewrite))
register_module(nn.Flatten, rule=Rule(reshape))
register_method("expand", rule=Rule(broadcast, rewrite_args=shape_rewrite(1)))
register_function(torch.cat, torch.concat, torch.concatenate, rule=Rule(cat))
register_function(torch.stack, rule=Rule(stack))
SPLIT = Rule(split, rewrite_args=split_rewrite)
register_method("split", "chunk", "tensor_split", "unbind", rule=SPLIT)
register_function(torch.split, torch.chunk, torch.tensor_split, torch.unbind, rule=SPLIT)
register_function(operator.getitem, rule=Rule(getitem, rewrite_args=getitem_rewrite))
register_method("permute", "transpose", "swapaxes", "swapdims", "movedim", "moveaxis", "t", rule=Rule(permute))
register_function(torch.permute, torch.transpose, torch.swapaxes, torch.swapdims, torch.movedim,
                  torch.moveaxis, torch.t, rule=Rule(permute))
register_method("size", "dim", "numel", "ndimension", "nelement", rule=Rule(size_query))
register_function(getattr, len, torch.numel, rule=Rule(size_query))
