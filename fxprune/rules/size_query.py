"""Rules for size queries: ``x.size()``, ``x.shape``, ``x.numel()``, ``len(x)``."""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import fx

from ..ir.layout import Layout
from .context import PropagateContext
from .registry import Rule, register_function, register_method

__all__ = ["size_query"]


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


register_method("size", "dim", "numel", "ndimension", "nelement", rule=Rule(size_query))
register_function(getattr, len, torch.numel, rule=Rule(size_query))
