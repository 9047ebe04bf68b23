"""Indexing forms beyond slices: an integer index into a channel fold, and a gather by a tensor.

``qkv[0]`` picks the query out of a packed (3, heads, head_dim) fold; ``table[index]``
gathers a relative position bias per head. Both keep the fold or the per-head axis
tracked, where plain integer indexing into channels, or advanced indexing, freezes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import fx

from ..ir.layout import Block, Layout
from .context import PropagateContext

__all__ = ["index_fold", "gather"]


def index_fold(ctx: PropagateContext, block: Block, picked: dict[int, int]) -> Block | None:
    """An integer index into some dims of a fold (``qkv[0]`` of a packed query/key/value).

    The indexed dims are tied, so that they keep every position and the index stays
    valid; the block goes on over its other dims. Indexing a plain channel dim freezes it.
    """
    axes = [block.axis_of(d) for d in picked]
    if len(axes) == len(block.dims):
        ctx.freeze(block, "integer index into channels")
        return None
    anchor = block.ids[tuple(slice(0, 1) if a in axes else slice(None) for a in range(len(block.dims)))]
    ctx.unify(np.broadcast_to(anchor, block.ids.shape), block.ids, "indexed channel fold")
    index = tuple(picked[d] if d in picked else slice(None) for d in block.dims)
    return Block(tuple(d for d in block.dims if d not in picked), np.ascontiguousarray(block.ids[index]))


def gather(ctx: PropagateContext, container: Layout, index: Any) -> Layout | None:
    """One tensor index along one dim (``table[index]``, a relative position bias gathered per head).

    The gathered dim's ids cannot be followed (the index is data): a block there is frozen.
    The other dims keep their ids, shifted by the rank of the index. None for other forms.
    """
    items = list(index) if isinstance(index, tuple) else [index]
    rank = len(container.shape)
    if items.count(Ellipsis) > 1 or any(not (i is Ellipsis or i == slice(None) or isinstance(i, fx.Node))
                                        for i in items):
        return None
    tensors = [a for a, i in enumerate(items) if isinstance(i, fx.Node)]
    value = ctx.val(items[tensors[0]]) if len(tensors) == 1 else None
    if not isinstance(value, torch.Tensor) or value.dtype == torch.bool:
        return None
    position = tensors[0] if Ellipsis not in items[:tensors[0]] else rank - (len(items) - tensors[0])
    shift = value.dim() - 1
    blocks = []
    for block in container.blocks:
        if position in block.dims:
            ctx.freeze(block, "gathered along channels")
        else:
            blocks.append(Block(tuple(d if d < position else d + shift for d in block.dims), block.ids))
    return Layout(ctx.shape(), tuple(blocks))
