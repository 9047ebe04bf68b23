"""Rules for reshapes: view, reshape, flatten, unflatten, squeeze, unsqueeze, expand.

Ids follow the memory order (:func:`fxprune.ir.layout.reshape_layout`); literal sizes
of tracked dims are rewritten to the kept counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch
from torch import fx, nn

from ..ir.layout import Layout, reshape_layout
from .context import PropagateContext, RewriteContext
from .elementwise import broadcast
from .registry import Rule, register_function, register_method, register_module

__all__ = ["reshape", "shape_rewrite", "unflatten_rewrite"]


def reshape(ctx: PropagateContext) -> Layout:
    """view/reshape/flatten/unflatten/squeeze/unsqueeze: ids follow the memory order."""
    layout, lost = reshape_layout(ctx.layout(ctx.node.args[0]), ctx.shape())
    for block in lost:
        ctx.freeze(block, "reshape mixes channels with another tracked axis")
    computed = _computed_size_dims(ctx, len(layout.shape))
    for block in layout.blocks:
        sized = [d for d in block.dims if layout.shape[d] > 1]
        if len(sized) > 1 and computed & set(sized):
            # The fold is pruned along its longest dim (see passes/propagate._normalized). A literal size
            # there is rewritten, but a size computed from x.size() beside it is not: they clash.
            primary = max(sized, key=lambda d: (layout.shape[d], block.dims.index(d)))
            if primary not in computed:
                ctx.freeze(block, "reshape folds channels by a literal and a computed size")
    return layout


def _computed_size_dims(ctx: PropagateContext, rank: int) -> set[int]:
    """Output dims of a view/reshape whose size argument is computed at run time."""
    if getattr(ctx.node.target, "__name__", ctx.node.target) not in ("view", "reshape"):
        return set()
    sizes: Any = ctx.node.kwargs.get("shape", ctx.node.kwargs.get("size", ctx.node.args[1:]))
    if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
        sizes = sizes[0]
    if len(sizes) == 1 and isinstance(sizes[0], fx.Node):  # x.view(y.shape): all computed
        return set(range(rank))
    return {d for d, size in enumerate(sizes) if isinstance(size, fx.Node)}


def shape_rewrite(first_size_arg: int) -> Any:
    """Rewrite literal sizes (view shapes, expand sizes) of tracked output dims."""

    def rewrite(ctx: RewriteContext) -> tuple[Any, tuple, dict]:
        args: list[Any] = list(ctx.node.args)
        packed = len(args) == first_size_arg + 1 and isinstance(args[first_size_arg], (tuple, list))
        sizes = list(args[first_size_arg]) if packed else args[first_size_arg:]
        if "shape" in ctx.node.kwargs or "size" in ctx.node.kwargs:
            key = "shape" if "shape" in ctx.node.kwargs else "size"
            sizes, packed = list(cast(Sequence[Any], ctx.node.kwargs[key])), True
        new = [ctx.new_size(ctx.node, d) if isinstance(s, int) and s >= 0 and ctx.kept(ctx.node, d) is not None
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


RESHAPE_VIEW = Rule(reshape, rewrite_args=shape_rewrite(1))
register_method("view", "reshape", rule=RESHAPE_VIEW)
register_function(torch.reshape, rule=RESHAPE_VIEW)
register_method("flatten", "squeeze", "unsqueeze", "view_as", "reshape_as", rule=Rule(reshape))
register_function(torch.flatten, torch.squeeze, torch.unsqueeze, rule=Rule(reshape))
register_method("unflatten", rule=Rule(reshape, rewrite_args=unflatten_rewrite))
register_function(torch.unflatten, rule=Rule(reshape, rewrite_args=unflatten_rewrite))
register_module(nn.Flatten, rule=Rule(reshape))
register_method("expand", rule=Rule(broadcast, rewrite_args=shape_rewrite(1)))
