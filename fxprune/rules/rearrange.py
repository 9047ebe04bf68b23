"""Rules for ops that move positions around: permute, transpose, movedim, pixel (un)shuffle, flip, roll, GLU.

Each is array surgery on the channel ids, checked against one question: after
pruning, does the op applied to the kept channels give the kept positions of the
op applied to all of them? Flip does (reversal commutes with taking a subset);
roll along channels does not (the shift wraps over a different count), so it
freezes what it rolls.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..ir.layout import Block, Layout
from .context import PropagateContext
from .elementwise import _normalize_dims
from .registry import Rule, register_function, register_method, register_module

__all__ = ["permute"]


def _channel_ids(ctx: PropagateContext, layout: Layout, dim: int, what: str) -> np.ndarray | None:
    """The ``(size, 1)`` ids of ``dim`` when it is a plain channel dim; else freeze and None."""
    ids = layout.ids_at(dim)
    if ids is not None and ids.shape[-1] == 1:
        return ids
    block = layout.block_at(dim)
    if block is not None:
        ctx.freeze(block, f"{what} of a folded channel dim")
    return None


def _factor(ctx: PropagateContext, name: str) -> int:
    if ctx.module is not None:
        return int(getattr(ctx.module, name))
    return int(ctx.arg(1, name))


def _others(layout: Layout, dim: int) -> list[Block]:
    """Blocks of dims the op leaves alone (all but the last three: channel, height, width)."""
    rank = len(layout.shape)
    moved = {dim, rank - 2, rank - 1}
    return [b for b in layout.blocks if not set(b.dims) & moved]


def _freeze_spatial(ctx: PropagateContext, layout: Layout, what: str) -> None:
    rank = len(layout.shape)
    for block in layout.blocks:
        if set(block.dims) & {rank - 2, rank - 1}:
            ctx.freeze(block, f"{what} mixes a tracked spatial dim")


def _pixel_rearrange(ctx: PropagateContext, factor: str,
                     what: str) -> tuple[int, int, list[Block], np.ndarray | None]:
    """The channel dim, r*r, the blocks left alone and the channel ids of a pixel (un)shuffle."""
    layout = ctx.layout(ctx.node.args[0])
    dim = len(layout.shape) - 3
    _freeze_spatial(ctx, layout, what)
    return dim, _factor(ctx, factor) ** 2, _others(layout, dim), _channel_ids(ctx, layout, dim, what)


def pixel_shuffle(ctx: PropagateContext) -> Layout:
    """(C*r*r, H, W) -> (C, H*r, W*r): output channel c gathers input channels c*r*r ... c*r*r+r*r-1.

    Those r*r channels live or die together, so they are unified into one channel and
    the output carries its id.
    """
    dim, r2, blocks, ids = _pixel_rearrange(ctx, "upscale_factor", "pixel shuffle")
    if ids is not None:
        cells = ids.reshape(-1, r2)
        for k in range(1, r2):
            ctx.unify(cells[:, 0], cells[:, k], "pixel shuffle")
        blocks.append(Block((dim,), cells[:, :1].copy()))
    return Layout(ctx.shape(), tuple(blocks))


def pixel_unshuffle(ctx: PropagateContext) -> Layout:
    """(C, H*r, W*r) -> (C*r*r, H, W): output channels c*r*r ... c*r*r+r*r-1 all carry channel c."""
    dim, r2, blocks, ids = _pixel_rearrange(ctx, "downscale_factor", "pixel unshuffle")
    if ids is not None:
        blocks.append(Block((dim,), np.repeat(ids, r2, axis=0)))
    return Layout(ctx.shape(), tuple(blocks))


def flip(ctx: PropagateContext) -> Layout:
    layout = ctx.layout(ctx.node.args[0])
    # x.flip(2, 3) passes the dims as varargs; torch.flip(x, (2, 3)) as one sequence.
    dims = ctx.node.args[1:] if len(ctx.node.args) > 2 else ctx.arg(1, "dims")
    flipped = _normalize_dims(dims, len(layout.shape))
    blocks = []
    for block in layout.blocks:
        ids = block.ids
        for dim in set(block.dims) & set(flipped):
            ids = np.flip(ids, axis=block.axis_of(dim))
        blocks.append(Block(block.dims, np.ascontiguousarray(ids)))
    return Layout(layout.shape, tuple(blocks))


def roll(ctx: PropagateContext) -> Layout:
    layout = ctx.layout(ctx.node.args[0])
    dims = ctx.arg(2, "dims")
    if dims is None:  # rolls the flattened tensor: every position may move anywhere
        for block in layout.blocks:
            ctx.freeze(block, "roll over the flattened tensor")
        return Layout(layout.shape)
    rolled = set(_normalize_dims(dims, len(layout.shape)))
    for block in layout.blocks:
        if set(block.dims) & rolled:
            ctx.freeze(block, "roll along channels")
    return Layout(layout.shape, tuple(b for b in layout.blocks if not set(b.dims) & rolled))


def glu(ctx: PropagateContext) -> Layout:
    """a * sigmoid(b) for the two halves of ``dim``: channel i of each half is one channel."""
    layout = ctx.layout(ctx.node.args[0])
    rank = len(layout.shape)
    dim = int(cast(nn.GLU, ctx.module).dim if ctx.module is not None else ctx.arg(1, "dim", -1)) % rank
    blocks = [b for b in layout.blocks if dim not in b.dims]
    ids = _channel_ids(ctx, layout, dim, "GLU")
    if ids is not None:
        half = ids.shape[0] // 2
        ctx.unify(ids[:half], ids[half:], "GLU halves")
        blocks.append(Block((dim,), ids[:half].copy()))
    return Layout(ctx.shape(), tuple(blocks))


def permute(ctx: PropagateContext) -> Layout:
    """permute/transpose/movedim: the ids move with their dims."""
    layout = ctx.layout(ctx.node.args[0])
    rank = len(layout.shape)
    order = _permutation(ctx, rank)
    return layout.renamed(ctx.shape(), {src: dst for dst, src in enumerate(order)})


def _permutation(ctx: PropagateContext, rank: int) -> list[int]:
    name = getattr(ctx.node.target, "__name__", ctx.node.target)
    args: Any = ctx.node.args[1:]
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
    dims: Any = args[0] if len(args) == 1 and isinstance(args[0], (tuple, list)) else args
    dims = ctx.node.kwargs.get("dims", dims)
    return [int(d) % rank for d in dims]


def _movedim_order(rank: int, src: list[int], dst: list[int]) -> list[int]:
    src = [s % rank for s in src]
    dst = [d % rank for d in dst]
    order = [-1] * rank
    for s, d in zip(src, dst, strict=True):
        order[d] = s
    rest = iter(d for d in range(rank) if d not in src)
    return [o if o >= 0 else next(rest) for o in order]


register_function(F.pixel_shuffle, torch.pixel_shuffle, rule=Rule(pixel_shuffle))
register_function(F.pixel_unshuffle, torch.pixel_unshuffle, rule=Rule(pixel_unshuffle))
register_module(nn.PixelShuffle, rule=Rule(pixel_shuffle))
register_module(nn.PixelUnshuffle, rule=Rule(pixel_unshuffle))
register_function(torch.flip, rule=Rule(flip))
register_method("flip", rule=Rule(flip))
register_function(torch.roll, rule=Rule(roll))
register_method("roll", rule=Rule(roll))
register_function(F.glu, rule=Rule(glu))
register_module(nn.GLU, rule=Rule(glu))
register_method("permute", "transpose", "swapaxes", "swapdims", "movedim", "moveaxis", "t", rule=Rule(permute))
register_function(torch.permute, torch.transpose, torch.swapaxes, torch.swapdims, torch.movedim,
                  torch.moveaxis, torch.t, rule=Rule(permute))
