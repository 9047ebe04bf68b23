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
from .run_time_sizes import from_channel_counts

__all__ = ["reshape", "shape_rewrite", "unflatten_rewrite"]


def reshape(ctx: PropagateContext) -> Layout:
    """view/reshape/flatten/unflatten/squeeze/unsqueeze: ids follow the memory order."""
    layout, lost = reshape_layout(ctx.layout(ctx.node.args[0]), ctx.shape())
    for block in lost:
        ctx.freeze(block, "reshape mixes channels with another tracked axis")
    return layout


def shape_rewrite(first_size_arg: int) -> Any:
    """Rewrite literal sizes (view shapes, expand sizes) of tracked output dims."""

    def rewrite(ctx: RewriteContext) -> tuple[Any, tuple, dict]:
        args: list[Any] = list(ctx.node.args)
        packed = len(args) == first_size_arg + 1 and isinstance(args[first_size_arg], (tuple, list))
        sizes = list(args[first_size_arg]) if packed else args[first_size_arg:]
        if "shape" in ctx.node.kwargs or "size" in ctx.node.kwargs:
            key = "shape" if "shape" in ctx.node.kwargs else "size"
            sizes, packed = list(cast(Sequence[Any], ctx.node.kwargs[key])), True
        # A size computed at run time from channel counts (C // heads, C read from another tensor,
        # which the plan may prune otherwise) is fixed by the plan: a tracked dim takes its kept count.
        layout = ctx.layouts.get(ctx.node)
        tracked = len(sizes) == len(ctx.shape()) and isinstance(layout, Layout)
        new = [ctx.new_size(ctx.node, d) if tracked and cast(Layout, layout).block_at(d) is not None and (
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


RESHAPE_VIEW = Rule(reshape, rewrite_args=shape_rewrite(1))
register_method("view", "reshape", rule=RESHAPE_VIEW)
register_function(torch.reshape, rule=RESHAPE_VIEW)
register_method("flatten", "squeeze", "unsqueeze", "view_as", "reshape_as", rule=Rule(reshape))
register_function(torch.flatten, torch.squeeze, torch.unsqueeze, rule=Rule(reshape))
register_method("unflatten", rule=Rule(reshape, rewrite_args=unflatten_rewrite))
register_function(torch.unflatten, rule=Rule(reshape, rewrite_args=unflatten_rewrite))
register_module(nn.Flatten, rule=Rule(reshape))
register_method("expand", rule=Rule(broadcast, rewrite_args=shape_rewrite(1)))
