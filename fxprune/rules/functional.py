"""Functional layers with explicit weights: ``F.conv2d(x, self.weight)`` and friends.

The weights are ordinary graph values (``get_attr`` parameters, or tensors computed
from them as in weight standardisation), so their channel ids come from layouts.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch.nn.functional as F
from torch import fx, nn

from ..ir.layout import Layout
from .context import PropagateContext, RewriteContext
from .layers import _conv_output, _linear, channel_norm, couple_conv, input_rank, last_dim_contracted, layer_norm
from .output_shapes import normalising
from .registry import Rule, register_function

__all__: list[str] = []


def _axis_ids(ctx: PropagateContext, arg: Any, axis: int) -> np.ndarray | None:
    layout = ctx.layout(arg)
    return layout.ids_at(axis) if isinstance(layout, Layout) else None


def _from_data(value: Any) -> bool:
    """Whether a graph value depends on a model input (an activation), not only on parameters."""
    todo, seen = [value] if isinstance(value, fx.Node) else [], set()
    while todo:
        node = todo.pop()
        if node.op == "placeholder":
            return True
        if node not in seen:
            seen.add(node)
            todo.extend(node.all_input_nodes)
    return False


def _vector(ctx: PropagateContext, arg: Any) -> np.ndarray | None:
    """Ids of a per-channel vector argument; None for None or a one-element tensor."""
    value = ctx.val(arg)
    if value is None or getattr(value, "numel", lambda: 0)() <= 1:
        return None
    ids = _axis_ids(ctx, arg, 0)
    if ids is None:  # a computed vector fxprune cannot slice: keep every channel it meets
        return np.full((value.shape[0], 1), -1)
    return ids


def conv(transposed: bool) -> Rule:
    def propagate(ctx: PropagateContext) -> Layout:
        x, weight = ctx.node.args[0], ctx.arg(1, "weight")
        groups = int(ctx.val(ctx.arg(6, "groups", 1)))  # a literal, or computed (SiamRPN's b * c)
        w_shape = ctx.shape(weight)
        spatial = len(w_shape) - 2
        in_axis, out_axis = (0, 1) if transposed else (1, 0)
        w_out, w_in = _axis_ids(ctx, weight, out_axis), _axis_ids(ctx, weight, in_axis)
        if w_out is not None:
            ctx.record.mark(w_out, producer=True)
        if w_in is not None and _from_data(weight):
            # A weight computed from the inputs (SiamFC's cross-correlation) sums channels
            # of two activations: no parameter slice to zero, every kept output changes.
            ctx.freeze(w_in, "convolution with a data-dependent weight sums over channels", exact_only=True)
        elif w_in is not None and groups == 1:
            ctx.record.mark(w_in, reader=True)
        if groups > 1:
            ctx.freeze(w_in, "grouped convolution weight")
        layout = ctx.layout(x)
        out = couple_conv(ctx, layout.ids_at(len(layout.shape) - spatial - 1), w_out, w_in, groups, transposed)
        bias = _vector(ctx, ctx.arg(2, "bias"))
        if bias is not None and out is not None:
            ctx.unify(bias, out, "conv bias")
        return _conv_output(ctx, layout, spatial, out)

    return Rule(propagate, rewrite_args=_groups_rewrite, producer=True,
                contracts=None if transposed else _conv_contracted)


def _conv_contracted(node: fx.Node, module: nn.Module | None) -> int | None:
    """``F.conv2d(x, w, b, stride, padding, dilation, groups)`` with groups == 1 sums over x's channels."""
    rank, weight = input_rank(node), node.args[1] if len(node.args) > 1 else node.kwargs.get("weight")
    groups = node.args[6] if len(node.args) > 6 else node.kwargs.get("groups", 1)
    value = weight.meta.get("val") if isinstance(weight, fx.Node) else None
    if rank is None or value is None or groups != 1:  # a computed groups (a node) is not known to be 1
        return None
    return rank - (value.ndim - 2) - 1


def _groups_rewrite(ctx: RewriteContext) -> tuple[Any, tuple, dict]:
    groups = ctx.arg(6, "groups", 1)
    if isinstance(groups, fx.Node) or groups == 1:  # a computed count follows the pruned sizes
        return ctx.node.target, ctx.node.args, ctx.node.kwargs
    out_shape = ctx.shape()
    cdim = len(out_shape) - (len(ctx.shape(ctx.arg(1, "weight"))) - 2) - 1
    new_groups = groups * ctx.new_size(ctx.node, cdim) // out_shape[cdim]
    return _set_arg(ctx, 6, "groups", new_groups)


def _set_arg(ctx: RewriteContext, index: int, name: str, value: Any) -> tuple[Any, tuple, dict]:
    args, kwargs = list(ctx.node.args), dict(ctx.node.kwargs)
    if len(args) > index:
        args[index] = value
    else:
        kwargs[name] = value
    return ctx.node.target, tuple(args), kwargs


def linear(ctx: PropagateContext) -> Layout:
    weight = ctx.arg(1, "weight")
    w_out, w_in = _axis_ids(ctx, weight, 0), _axis_ids(ctx, weight, 1)
    if w_out is not None:
        ctx.record.mark(w_out, producer=True)
    if w_in is not None and _from_data(weight):
        ctx.freeze(w_in, "linear with a data-dependent weight sums over channels", exact_only=True)
    elif w_in is not None:
        ctx.record.mark(w_in, reader=True)
    return _linear(ctx, ctx.layout(ctx.node.args[0]), w_out, w_in, _vector(ctx, ctx.arg(2, "bias")))


def batch_norm(ctx: PropagateContext) -> Layout:
    # F.batch_norm(input, running_mean, running_var, weight, bias, ...);
    # F.instance_norm(input, running_mean, running_var, weight, bias, ...)
    names = ("running_mean", "running_var", "weight", "bias")
    vectors = [_vector(ctx, ctx.arg(i + 1, n)) for i, n in enumerate(names)]
    data_stats = ctx.node.target is F.instance_norm or bool(ctx.arg(5, "training", False)) \
        or ctx.arg(1, "running_mean") is None
    return channel_norm(ctx, ctx.layout(ctx.node.args[0]), vectors, data_stats=data_stats)


def group_norm(ctx: PropagateContext) -> Layout:
    groups = int(ctx.arg(1, "num_groups"))
    vectors = [_vector(ctx, ctx.arg(i, n)) for i, n in ((2, "weight"), (3, "bias"))]
    return channel_norm(ctx, ctx.layout(ctx.node.args[0]), vectors, groups, data_stats=True)


def _group_norm_rewrite(ctx: RewriteContext) -> tuple[Any, tuple, dict]:
    x = ctx.node.args[0]
    groups = int(ctx.arg(1, "num_groups"))
    return _set_arg(ctx, 1, "num_groups", groups * ctx.new_size(x, 1) // ctx.shape(x)[1])


def prelu(ctx: PropagateContext) -> Layout:
    return channel_norm(ctx, ctx.layout(ctx.node.args[0]), [_vector(ctx, ctx.arg(1, "weight"))])


def functional_layer_norm(ctx: PropagateContext) -> Layout:
    count = len(ctx.val(ctx.arg(1, "normalized_shape")))  # a literal, or a node such as x.shape[-1:]
    params = []
    for index, name in ((2, "weight"), (3, "bias")):
        arg = ctx.arg(index, name)
        if arg is not None:
            params.append([_axis_ids(ctx, arg, a) for a in range(count)])
    return layer_norm(ctx, ctx.layout(ctx.node.args[0]), count, params)


def _layer_norm_rewrite(ctx: RewriteContext) -> tuple[Any, tuple, dict]:
    x = ctx.node.args[0]
    rank = len(ctx.shape(x))
    normalized_shape = ctx.arg(1, "normalized_shape")
    if isinstance(normalized_shape, fx.Node):  # computed from the pruned tensor at run time
        return ctx.node.target, ctx.node.args, ctx.node.kwargs
    count = len(normalized_shape)
    return _set_arg(ctx, 1, "normalized_shape", tuple(ctx.new_size(x, d) for d in range(rank - count, rank)))


register_function(F.conv1d, F.conv2d, F.conv3d, rule=conv(transposed=False))
register_function(F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d, rule=conv(transposed=True))
register_function(F.linear, rule=Rule(linear, contracts=last_dim_contracted, producer=True))
register_function(F.batch_norm, F.instance_norm, rule=Rule(batch_norm, shape=normalising))
register_function(F.group_norm, rule=Rule(group_norm, rewrite_args=_group_norm_rewrite, shape=normalising))
register_function(F.layer_norm, rule=Rule(functional_layer_norm, rewrite_args=_layer_norm_rewrite,
                                          shape=normalising))
register_function(F.prelu, rule=Rule(prelu, shape=normalising))
