"""Rules for vector norms over dims: ``x.norm(p, dim)``, ``torch.linalg.vector_norm`` (``F.normalize``).

Swin V2 normalises queries and keys per head (cosine attention): the norm runs over the
head width, one part of the head split. With ``attention="heads"`` the reduced dims of such
a fold are tied, so each reduced line is removed whole and the norms kept are exact; under
``"head_dim"``, or over a plain channel dim, the norm changes when channels go (an
exact-mode freeze).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..ir.layout import Block, Layout
from .context import PropagateContext
from .elementwise import _normalize_dims
from .registry import Rule, register_function, register_method

__all__ = ["vector_norm", "normalize"]


def vector_norm(ctx: PropagateContext) -> Layout:
    layout = ctx.layout(ctx.node.args[0])
    rank = len(layout.shape)
    dims = _normalize_dims(ctx.arg(2, "dim"), rank)
    keepdim = bool(ctx.arg(3, "keepdim", False))
    blocks = []
    for block in layout.blocks:
        reduced = [a for a, d in enumerate(block.dims) if d in dims]
        if not reduced:
            blocks.append(block)
        elif len(reduced) == len(block.dims):
            ctx.freeze(block, "norm over channels", exact_only=True)
        elif ctx.attention != "heads":  # the same widths in every head: each head's norm changes
            ctx.freeze(block, "norm over channels", exact_only=True)
            blocks.append(Block(tuple(d for d in block.dims if d not in dims),
                                block.ids[tuple(0 if a in reduced else slice(None) for a in range(len(block.dims)))]))
        else:
            anchor = block.ids[tuple(slice(0, 1) if a in reduced else slice(None) for a in range(len(block.dims)))]
            ctx.unify(np.broadcast_to(anchor, block.ids.shape), block.ids, "norm over part of a channel fold")
            index = tuple(0 if a in reduced else slice(None) for a in range(len(block.dims)))
            blocks.append(Block(tuple(d for d in block.dims if d not in dims), np.ascontiguousarray(block.ids[index])))
    kept = [d for d in range(rank) if d not in dims]
    dim_map = {d: d for d in range(rank)} if keepdim else {d: i for i, d in enumerate(kept)}
    return Layout(layout.shape, tuple(blocks)).renamed(ctx.shape(), dim_map)


def normalize(ctx: PropagateContext) -> Layout:
    """``F.normalize(x, p, dim)``: x divided by its norm over ``dim``; the same ties as the norm."""
    layout = ctx.layout(ctx.node.args[0])
    dim = int(ctx.arg(2, "dim", 1)) % len(layout.shape)
    for block in layout.blocks:
        if block.dims == (dim,) or (dim in block.dims and ctx.attention != "heads"):
            ctx.freeze(block, "norm over channels", exact_only=True)
        elif dim in block.dims:
            axis = block.axis_of(dim)
            anchor = block.ids[tuple(slice(0, 1) if a == axis else slice(None) for a in range(len(block.dims)))]
            ctx.unify(np.broadcast_to(anchor, block.ids.shape), block.ids, "norm over part of a channel fold")
    return layout


register_function(torch.linalg.vector_norm, torch.norm, rule=Rule(vector_norm))
register_function(F.normalize, rule=Rule(normalize))
register_method("norm", rule=Rule(vector_norm))
