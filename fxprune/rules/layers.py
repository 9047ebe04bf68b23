"""Rules for layers with weights: conv, transposed conv, linear, norms, PReLU.

Each layer exists twice, as a module and as a function (``F.conv2d(x, self.w)``,
as timm's custom layers are written). Both forms share one coupling function per
layer that works on id arrays; the module form takes its ids from the parameter
registry, the functional form from the layouts of its weight arguments.
"""

from __future__ import annotations

import copy
from typing import Any, TypeVar, cast

import numpy as np
import torch
from torch import fx, nn

from ..ir.layout import Block, Layout
from .context import PropagateContext, RewriteContext
from .output_shapes import conv_output, linear_output, normalising
from .registry import Rule, register_module
from .reshape import reshape

_M = TypeVar("_M", bound=nn.Module)

__all__ = ["couple_conv", "slice_module", "slice_tensor", "channel_norm", "layer_norm", "input_rank",
           "last_dim_contracted"]


def couple_conv(ctx: PropagateContext, x_ids: np.ndarray | None, w_out: np.ndarray | None,
                w_in: np.ndarray | None, groups: int, transposed: bool) -> np.ndarray | None:
    """Couple a convolution's input channels; return its output channel ids.

    groups == 1: input ids are unified with the weight's input axis, the output is
    the weight's output axis. groups > 1: output channel j is computed from input
    group j // (C_out / groups) alone, so a group is removed whole: every input
    channel of a group is one channel, and the output carries the group's id.
    Depthwise convs (with or without a multiplier) are the case of groups of one.
    """
    if x_ids is not None and x_ids.shape[-1] != 1:
        ctx.freeze(x_ids, "convolution over folded channels")
        x_ids = None
    if groups == 1:
        if x_ids is not None:
            if w_in is not None:
                ctx.unify(x_ids, w_in, "conv input")
            else:
                ctx.freeze(x_ids, "conv weight is not tracked")
        return w_out
    if x_ids is None or transposed or w_out is None:
        ctx.freeze(x_ids, "grouped convolution")
        ctx.freeze(w_out, "grouped convolution")
        return None
    grid = x_ids[:, 0].reshape(groups, -1)
    if grid.shape[1] > 1:
        ctx.unify(np.repeat(grid[:, :1], grid.shape[1] - 1, axis=1), grid[:, 1:], "grouped conv group")
    out = np.repeat(grid[:, 0], w_out.shape[0] // groups)[:, None]
    ctx.unify(w_out, out, "grouped conv output")
    return out


def _conv_output(ctx: PropagateContext, x: Layout, spatial: int, out: np.ndarray | None) -> Layout:
    cdim = len(x.shape) - spatial - 1
    for block in x.blocks:
        if block.dims != (cdim,):
            ctx.freeze(block, "convolution along channels")
    return ctx.output([Block((cdim,), out)] if out is not None else [])


def conv_module(ctx: PropagateContext) -> Layout:
    module, name = cast(nn.modules.conv._ConvNd, ctx.module), ctx.node.target
    x = ctx.layout(ctx.node.args[0])
    spatial = module.weight.ndim - 2
    transposed = isinstance(module, nn.modules.conv._ConvTransposeNd)
    in_axis, out_axis = (0, 1) if transposed else (1, 0)
    grouped = module.groups > 1
    w_out = None if (transposed and grouped) else ctx.param(f"{name}.weight", out_axis, producer=True)
    w_in = None if grouped else ctx.param(f"{name}.weight", in_axis, reader=True)
    out = couple_conv(ctx, x.ids_at(len(x.shape) - spatial - 1), w_out, w_in, module.groups, transposed)
    if module.bias is not None and out is not None:
        ctx.unify(ctx.param(f"{name}.bias", 0), out, "conv bias")
    return _conv_output(ctx, x, spatial, out)


def slice_module(module: _M, ctx: RewriteContext) -> _M:
    """A shallow copy of ``module`` whose parameters and buffers keep only kept slices."""
    new = copy.copy(module)
    new._parameters, new._buffers = dict(module._parameters), dict(module._buffers)
    stores: tuple[dict[str, Any], ...] = (new._parameters, new._buffers)  # a buffer is no Parameter
    for store in stores:
        for key, tensor in store.items():
            if tensor is None:
                continue
            sliced = slice_tensor(tensor, f"{ctx.node.target}.{key}", ctx)
            store[key] = nn.Parameter(sliced, tensor.requires_grad) if isinstance(tensor, nn.Parameter) else sliced
    return new


def slice_tensor(tensor: torch.Tensor, qualified: str, ctx: RewriteContext) -> torch.Tensor:
    """A fresh copy of a parameter or buffer holding only its kept slices."""
    sliced = tensor.detach()
    for axis in range(tensor.ndim):
        kept = ctx.param_kept(qualified, axis)
        if kept is not None:
            sliced = sliced.index_select(axis, torch.as_tensor(kept, device=tensor.device))
    return sliced.clone() if sliced.data_ptr() == tensor.data_ptr() else sliced


def conv_resize(module: nn.Module, ctx: RewriteContext) -> nn.Module:
    module = cast(nn.modules.conv._ConvNd, module)
    new = slice_module(module, ctx)
    weight = new.weight
    transposed = isinstance(module, nn.modules.conv._ConvTransposeNd)
    if module.groups > 1:
        per_group = module.weight.shape[0] // module.groups
        new.groups = weight.shape[0] // per_group
    if transposed:
        new.in_channels, new.out_channels = weight.shape[0], weight.shape[1] * new.groups
    else:
        new.out_channels, new.in_channels = weight.shape[0], weight.shape[1] * new.groups
    return new


def linear_module(ctx: PropagateContext) -> Layout:
    name, x = ctx.node.target, ctx.layout(ctx.node.args[0])
    w_out = ctx.param(f"{name}.weight", 0, producer=True)
    bias = ctx.param(f"{name}.bias", 0) if cast(nn.Linear, ctx.module).bias is not None else None
    return _linear(ctx, x, w_out, ctx.param(f"{name}.weight", 1, reader=True), bias)


def _linear(ctx: PropagateContext, x: Layout, w_out: Any, w_in: Any, bias: Any) -> Layout:
    last = len(x.shape) - 1
    x_ids = x.ids_at(last)
    if x_ids is not None and (x_ids.shape[-1] != 1 or w_in is None):
        ctx.freeze(x_ids, "linear over folded channels")
    elif x_ids is not None:
        ctx.unify(x_ids, w_in, "linear input")
    if bias is not None and w_out is not None:
        ctx.unify(bias, w_out, "linear bias")
    for block in x.blocks:
        if last in block.dims and block.dims != (last,):
            ctx.freeze(block, "linear over folded channels")
    kept = [b for b in x.blocks if last not in b.dims]
    return ctx.output(kept + ([Block((last,), w_out)] if w_out is not None else []))


def linear_resize(module: nn.Module, ctx: RewriteContext) -> nn.Module:
    new = slice_module(cast(nn.Linear, module), ctx)
    new.out_features, new.in_features = new.weight.shape
    return new


def channel_norm(ctx: PropagateContext, x: Layout, vectors: list[Any], groups: int | None = None,
                 data_stats: bool = False) -> Layout:
    """Per-channel affine and statistics (BatchNorm, InstanceNorm, GroupNorm, PReLU).

    GroupNorm normalises each group of channels together, so a group is removed
    whole, which keeps the statistics of the kept groups exact (``groups`` is None for
    per-channel norms; GroupNorm(1, C) is one group). Statistics computed
    from the data (training-mode BatchNorm, InstanceNorm) span every other dim, so
    a tracked block there changes values when pruned.
    """
    cdim = 1 if len(x.shape) > 1 else 0
    if data_stats:
        for block in x.blocks:
            if block.dims != (cdim,):
                ctx.freeze(block, "normalisation statistics span channels", exact_only=True)
    x_ids = x.ids_at(cdim)
    if x_ids is None or x_ids.shape[-1] != 1:
        ctx.freeze(x_ids, "normalisation over folded channels")
        for vector in vectors:
            ctx.freeze(vector, "normalisation over folded channels")
        return x
    if groups is not None:
        grid = x_ids[:, 0].reshape(groups, -1)
        if grid.shape[1] > 1:
            ctx.unify(np.repeat(grid[:, :1], grid.shape[1] - 1, axis=1), grid[:, 1:], "group norm group")
    for vector in vectors:
        if vector is not None:
            ctx.unify(x_ids, vector, "norm parameter")
    return x


def _module_vectors(ctx: PropagateContext, names: tuple[str, ...]) -> list[np.ndarray]:
    module = ctx.module
    present = [n for n in names if getattr(module, n, None) is not None and getattr(module, n).numel() > 1]
    return [ctx.param(f"{ctx.node.target}.{n}", 0) for n in present]


def norm_module(ctx: PropagateContext) -> Layout:
    vectors = _module_vectors(ctx, ("weight", "bias", "running_mean", "running_var"))
    module = cast(nn.Module, ctx.module)
    groups = getattr(module, "num_groups", None)
    data_stats = module.training or getattr(module, "running_mean", None) is None
    return channel_norm(ctx, ctx.layout(ctx.node.args[0]), vectors, groups, data_stats)


def norm_resize(module: nn.Module, ctx: RewriteContext) -> nn.Module:
    new = slice_module(module, ctx)
    channels = ctx.new_size(ctx.node.args[0], 1)
    if isinstance(new, nn.GroupNorm):
        new.num_groups = channels // (new.num_channels // new.num_groups)
        new.num_channels = channels
    elif isinstance(new, nn.PReLU):
        new.num_parameters = new.weight.numel()
    else:
        cast(nn.modules.batchnorm._NormBase, new).num_features = channels  # BatchNorm, InstanceNorm
    return new


def layer_norm(ctx: PropagateContext, x: Layout, count: int, params: list[list[Any]]) -> Layout:
    """LayerNorm over the last ``count`` dims: affine per position, statistics across them."""
    rank = len(x.shape)
    for axis in range(count):
        x_ids = x.ids_at(rank - count + axis)
        for per_axis in params:
            if per_axis[axis] is not None:
                if x_ids is not None and x_ids.shape[-1] == 1:
                    ctx.unify(x_ids, per_axis[axis], "layer norm parameter")
                else:
                    ctx.freeze(per_axis[axis], "layer norm over untracked positions")
    for block in x.blocks:
        if set(block.dims) & set(range(rank - count, rank)):
            ctx.freeze(block, "layer norm statistics span channels", exact_only=True)
    return x


def layer_norm_module(ctx: PropagateContext) -> Layout:
    module, name = cast(nn.LayerNorm, ctx.module), ctx.node.target
    count = len(module.normalized_shape)
    params = [[ctx.param(f"{name}.{p}", a) if module.normalized_shape[a] > 1 else None for a in range(count)]
              for p in ("weight", "bias") if getattr(module, p, None) is not None]
    return layer_norm(ctx, ctx.layout(ctx.node.args[0]), count, params)


def layer_norm_resize(module: nn.Module, ctx: RewriteContext) -> nn.Module:
    module = cast(nn.LayerNorm, module)
    new = slice_module(module, ctx)
    x = ctx.node.args[0]
    rank = len(ctx.shape(x))
    count = len(module.normalized_shape)
    new.normalized_shape = tuple(ctx.new_size(x, d) for d in range(rank - count, rank))
    return new


def prelu_module(ctx: PropagateContext) -> Layout:
    x = ctx.layout(ctx.node.args[0])
    if cast(nn.PReLU, ctx.module).num_parameters == 1:
        return x
    return channel_norm(ctx, x, [ctx.param(f"{ctx.node.target}.weight", 0)])


def unflatten_resize(module: nn.Module, ctx: RewriteContext) -> nn.Module:
    module = cast(nn.Unflatten, module)
    new = copy.copy(module)
    dim = module.dim % len(ctx.shape())
    new.unflattened_size = tuple(ctx.new_size(ctx.node, dim + i) for i in range(len(module.unflattened_size)))
    return new


def input_rank(node: fx.Node) -> int | None:
    """The rank of the node's first input, from its fake value (None when it is not a tensor)."""
    x = node.args[0] if node.args else None
    value = x.meta.get("val") if isinstance(x, fx.Node) else None
    return value.ndim if isinstance(value, torch.Tensor) else None


def last_dim_contracted(node: fx.Node, module: nn.Module | None) -> int | None:
    """A linear sums over its input's last dim."""
    rank = input_rank(node)
    return None if rank is None else rank - 1


def _conv_contracted(node: fx.Node, module: nn.Module | None) -> int | None:
    """A conv with ``groups == 1`` sums over its input's channel dim (grouped convs over part of it)."""
    rank, conv = input_rank(node), cast(nn.modules.conv._ConvNd, module)
    return None if rank is None or conv.groups != 1 else rank - (conv.weight.ndim - 2) - 1


def _conv_mixes_channels(module: nn.Module) -> bool:
    # A transposed conv's weight is laid out (in, out, ...): its input is weight dim 0.
    conv = cast(nn.modules.conv._ConvNd, module)
    return not conv.transposed and conv.groups == 1


register_module(nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
                rule=Rule(conv_module, resize=conv_resize, shape=conv_output, contracts=_conv_contracted,
                          mixes_channels=_conv_mixes_channels, producer=True))
register_module(nn.Linear, rule=Rule(linear_module, resize=linear_resize, shape=linear_output,
                                     contracts=last_dim_contracted, mixes_channels=lambda module: True,
                                     producer=True))
register_module(nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.InstanceNorm1d,
                nn.InstanceNorm2d, nn.InstanceNorm3d, nn.GroupNorm,
                rule=Rule(norm_module, resize=norm_resize, shape=normalising, norm=True))
register_module(nn.PReLU, rule=Rule(prelu_module, resize=norm_resize, shape=normalising))
register_module(nn.LayerNorm, rule=Rule(layer_norm_module, resize=layer_norm_resize, shape=normalising, norm=True))
register_module(nn.Unflatten, rule=Rule(reshape, resize=unflatten_resize))
