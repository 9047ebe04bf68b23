"""Rules for value-wise operators: activations, arithmetic, reductions, pooling."""

from __future__ import annotations

import operator
from dataclasses import replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from ..ir.layout import Block, Layout
from .context import PropagateContext
from .output_shapes import broadcast_binary, valuewise
from .registry import Rule, register_function, register_method, register_module

__all__ = ["broadcast", "unify_layouts", "passthrough", "spatial", "reduction"]


def passthrough(ctx: PropagateContext) -> Any:
    """Output positions are input positions: activations, dropout, dtype casts, copies."""
    layout = ctx.layout(ctx.node.args[0]) if ctx.node.args else None
    if isinstance(layout, Layout) and layout.shape == ctx.shape():
        return layout
    return broadcast(ctx)


def broadcast(ctx: PropagateContext) -> Layout:
    """Tensors combined position by position (with numpy broadcasting) are one channel each.

    Two inputs covering an output dim with the same block are unified; an input of
    size > 1 on a tracked dim that it does not track (a model input, an unknown
    op's result) freezes the channels it meets.
    """
    return unify_layouts(ctx, _tensor_operands(ctx), ctx.shape())


def unify_layouts(ctx: PropagateContext, operands: list[Layout], out_shape: tuple[int, ...]) -> Layout:
    """Unify operand layouts aligned from the right, as numpy broadcasting aligns them."""
    rank = len(out_shape)
    placed: list[tuple[Layout, list[Block]]] = []
    for layout in operands:
        offset = rank - len(layout.shape)
        placed.append((layout, [Block(tuple(d + offset for d in b.dims), b.ids) for b in layout.blocks]))
    chosen: dict[tuple[int, ...], Block] = {}
    for _, blocks in placed:
        for block in blocks:
            clash = [dims for dims in chosen if set(dims) & set(block.dims) and dims != block.dims]
            if len(clash) == 1 and _nested(ctx, chosen, clash[0], block):
                continue
            if clash:
                ctx.freeze(block, "operands track different dims")
                for dims in clash:
                    ctx.freeze(chosen[dims], "operands track different dims")
            elif block.dims in chosen:
                first = chosen[block.dims]
                if first.ids.shape == block.ids.shape:
                    ctx.unify(first.ids, block.ids, "elementwise")
                else:
                    ctx.freeze(first, "operands with different channel folding")
                    ctx.freeze(block, "operands with different channel folding")
            else:
                chosen[block.dims] = block
    for layout, blocks in placed:
        offset = rank - len(layout.shape)
        mine = {b.dims for b in blocks}
        for dims, block in chosen.items():
            sizes = [layout.shape[d - offset] for d in dims if d - offset >= 0]
            # a block over some of these dims, of size 1 on the others, was broadcast (see _nested)
            nested = any(set(m) < set(dims) and all(d - offset < 0 or layout.shape[d - offset] == 1
                                                     for d in set(dims) - set(m)) for m in mine)
            if dims not in mine and not nested and any(s > 1 for s in sizes):
                ctx.freeze(block, "combined with an untracked tensor")
    return Layout(out_shape, tuple(chosen.values()))


def _nested(ctx: PropagateContext, chosen: dict[tuple[int, ...], Block], dims: tuple[int, ...],
            block: Block) -> bool:
    """A block over some dims of another (a per-head norm beside the head split it normalises) is
    broadcast along the rest and unified with it position by position; the larger block is kept."""
    other = chosen[dims]
    small, big = (block, other) if set(block.dims) < set(dims) else (other, block)
    if not set(small.dims) < set(big.dims) or small.width != big.width:
        return False
    order = sorted(range(len(small.dims)), key=lambda a: big.dims.index(small.dims[a]))
    ids = np.transpose(small.ids, [*order, len(order)])
    shape = [big.ids.shape[a] if d in small.dims else 1 for a, d in enumerate(big.dims)] + [small.width]
    ctx.unify(np.broadcast_to(ids.reshape(shape), big.ids.shape), big.ids, "elementwise")
    del chosen[dims]
    chosen[big.dims] = big
    return True


def _tensor_operands(ctx: PropagateContext) -> list[Layout]:
    layouts = []
    for arg in [*ctx.node.args, *ctx.node.kwargs.values()]:
        layout = ctx.layout(arg)
        if isinstance(layout, Layout):
            layouts.append(layout)
    return layouts


def _normalize_dims(dim: Any, rank: int) -> list[int]:
    if dim is None:
        return list(range(rank))
    dims = dim if isinstance(dim, (tuple, list)) else [dim]
    return sorted(int(d) % rank for d in dims)


def reduction(ctx: PropagateContext) -> Any:
    """mean/sum/amax over dims: pass-through, but reducing a tracked dim changes values."""
    layout = ctx.layout(ctx.node.args[0])
    target = getattr(ctx.node.target, "__name__", str(ctx.node.target))
    if target in ("max", "min") and isinstance(ctx.val(ctx.arg(1, "other")), torch.Tensor):
        return broadcast(ctx)
    rank = len(layout.shape)
    dims = _normalize_dims(ctx.arg(1, "dim"), rank)
    keepdim = bool(ctx.arg(2, "keepdim", False))
    returns_indices = target in ("max", "min", "median", "mode") and ctx.arg(1, "dim") is not None
    indices_used = returns_indices and not all(_takes_values(user, ctx.node) for user in ctx.node.users)
    for block in layout.blocks:
        if set(block.dims) & set(dims):
            if indices_used:
                ctx.freeze(block, f"{target} returns channel indices")
            elif not set(block.dims) <= set(dims):
                # Reducing some dims of a fold leaves the others sized by what pruning keeps.
                ctx.freeze(block, f"{target} reduces over part of a channel fold")
            else:
                ctx.freeze(block, f"{target} reduces over channels", exact_only=True)
    kept = [d for d in range(rank) if d not in dims]
    dim_map = {d: d for d in range(rank)} if keepdim else {d: i for i, d in enumerate(kept)}
    reduced = [b for b in layout.blocks if not set(b.dims) & set(dims)]
    out = Layout(layout.shape, tuple(reduced)).renamed(_out_shape(ctx), dim_map)
    return (out, out) if returns_indices else out


def _takes_values(user: fx.Node, node: fx.Node) -> bool:
    """``user`` reads only the values of ``torch.max(x, dim)``'s (values, indices) pair."""
    return user.op == "call_function" and user.target is operator.getitem and user.args[0] is node \
        and user.args[1] in (0, "values")


def _out_shape(ctx: PropagateContext) -> tuple[int, ...]:
    value = ctx.val(ctx.node)
    if isinstance(value, (tuple, list)):
        value = value[0]
    return tuple(int(s) for s in value.shape)


def softmax(ctx: PropagateContext) -> Layout:
    """Normalising over a tracked dim couples every channel's value to the others."""
    layout = ctx.layout(ctx.node.args[0])
    dim = ctx.arg(1, "dim")
    if dim is None and ctx.module is not None:  # Softmax2d normalises over the channels (dim -3)
        dim = -3 if isinstance(ctx.module, nn.Softmax2d) else ctx.module.dim
    if dim is None:  # the legacy implicit dim of F.softmax(x) and nn.Softmax()
        dim = 0 if len(layout.shape) in (0, 1, 3) else 1
    block = layout.block_at(int(dim) % len(layout.shape)) if layout.shape else None
    if block is not None:
        ctx.freeze(block, "softmax over channels", exact_only=True)
    return layout


def spatial(count: int | None) -> Rule:
    """Pooling, interpolation: the last ``count`` dims are resampled; others pass through."""

    def propagate(ctx: PropagateContext) -> Layout:
        layout = ctx.layout(ctx.node.args[0])
        rank = len(layout.shape)
        n = rank - 2 if count is None else count
        resampled = set(range(rank - n, rank))
        for block in layout.blocks:
            if set(block.dims) & resampled:
                ctx.freeze(block, "pooled or resampled along channels")
        kept = [b for b in layout.blocks if not set(b.dims) & resampled]
        return Layout(ctx.shape(), tuple(kept))

    return Rule(propagate)


def pad(ctx: PropagateContext) -> Layout:
    """F.pad and the padding modules: widths pair up from the last dim backwards."""
    layout = ctx.layout(ctx.node.args[0])
    given: Any = ctx.module.padding if ctx.module is not None else ctx.arg(1, "pad")
    # Widths computed at run time (TF-style "same" padding) are a node or hold nodes: any
    # of them may be non-zero, but their count, which decides the dims they pad, is fixed.
    computed = isinstance(given, fx.Node) or any(isinstance(w, fx.Node) for w in given)
    widths = list(ctx.val(given)) if isinstance(given, fx.Node) else list(given)
    rank = len(layout.shape)
    padded = {rank - 1 - i // 2 for i, w in enumerate(widths) if computed or w != 0}
    for block in layout.blocks:
        if set(block.dims) & padded:
            ctx.freeze(block, "padding along channels")
    return Layout(ctx.shape(), tuple(b for b in layout.blocks if not set(b.dims) & padded))


PASSTHROUGH = Rule(passthrough)
BROADCAST = Rule(broadcast)
# The same rules, stating their output where it is the input's (see output_shapes): not for
# casts (dtype), contiguous (strides), *_like (a dtype= keyword) or comparisons (bool).
VALUEWISE = replace(PASSTHROUGH, shape=valuewise)
ARITHMETIC = replace(BROADCAST, shape=broadcast_binary)

register_module(
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Sigmoid, nn.Tanh, nn.Softplus, nn.Softsign,
    nn.Tanhshrink, nn.Threshold, nn.LogSigmoid, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d,
    nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout, rule=VALUEWISE)
register_function(
    F.relu, F.relu_, F.relu6, F.leaky_relu, F.elu, F.selu, F.celu, F.gelu, F.silu, F.mish,
    F.hardswish, F.hardsigmoid, F.hardtanh, F.sigmoid, F.tanh, F.softplus, F.dropout, F.dropout1d,
    F.dropout2d, F.dropout3d, F.alpha_dropout, F.logsigmoid, torch.relu, torch.relu_, torch.sigmoid,
    torch.tanh, torch.exp, torch.log, torch.sqrt, torch.rsqrt, torch.abs, torch.neg, torch.erf,
    torch.clamp, torch.clip, torch.sign, torch.square, torch.reciprocal, torch.nan_to_num,
    operator.neg, operator.pos, torch.clone, torch.detach, rule=VALUEWISE)
register_function(torch.zeros_like, torch.ones_like, torch.empty_like, torch.full_like, torch.rand_like,
                  torch.randn_like, rule=PASSTHROUGH)
register_method(
    "relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "exp", "log", "sqrt", "rsqrt", "abs",
    "neg", "clamp", "clamp_", "clip", "clamp_min", "clamp_max", "square", "reciprocal", "sign",
    "clone", "detach", "hardtanh_", "leaky_relu_", "nan_to_num", "erf", "exp_", "pow_", "zero_", rule=VALUEWISE)
register_method("contiguous", "float", "double", "half", "bfloat16", "to", "type", "type_as", "requires_grad_",
                rule=PASSTHROUGH)
register_function(
    operator.add, operator.sub, operator.mul, operator.truediv, operator.iadd, operator.isub, operator.imul,
    operator.itruediv, torch.add, torch.sub, torch.mul, torch.div, torch.true_divide, torch.maximum,
    torch.minimum, rule=ARITHMETIC)
register_function(
    operator.floordiv, operator.pow, operator.mod, operator.eq, operator.ne, operator.lt, operator.le,
    operator.gt, operator.ge, torch.pow, torch.fmax, torch.fmin, torch.where, torch.lerp, torch.addcmul,
    torch.addcdiv, torch.eq, torch.ne, torch.lt, torch.le, torch.gt, torch.ge, torch.masked_fill, rule=BROADCAST)
register_method("add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "maximum", "minimum", rule=ARITHMETIC)
register_method("pow", "masked_fill", "masked_fill_", "where", "lerp", "addcmul", "addcdiv", "expand_as",
                "eq", "ne", "lt", "le", "gt", "ge", "eq_", "ne_", "lt_", "le_", "gt_", "ge_", rule=BROADCAST)
register_function(torch.mean, torch.sum, torch.amax, torch.amin, torch.max, torch.min, torch.std,
                  torch.var, torch.prod, torch.logsumexp, torch.nansum, torch.nanmean,
                  torch.all, torch.any, rule=Rule(reduction))
register_method("mean", "sum", "amax", "amin", "max", "min", "std", "var", "prod", "logsumexp",
                "nansum", "nanmean", "all", "any", rule=Rule(reduction))
register_function(F.softmax, F.log_softmax, torch.softmax, torch.log_softmax, rule=Rule(softmax))
register_method("softmax", "log_softmax", rule=Rule(softmax))
register_module(nn.Softmax, nn.LogSoftmax, nn.Softmax2d, rule=Rule(softmax))
register_function(F.pad, rule=Rule(pad))
_PADS = ("Reflection", "Replication", "Constant", "Zero", "Circular")
register_module(*(getattr(nn, f"{kind}Pad{_n}d") for kind in _PADS for _n in (1, 2, 3)
                  if hasattr(nn, f"{kind}Pad{_n}d")), rule=Rule(pad))

for _n in (1, 2, 3):
    register_module(*(getattr(nn, f"{kind}{_n}d") for kind in (
        "MaxPool", "AvgPool", "AdaptiveAvgPool", "AdaptiveMaxPool", "LPPool") if hasattr(nn, f"{kind}{_n}d")),
        rule=spatial(_n))
    register_function(*(getattr(F, f"{kind}{_n}d") for kind in (
        "max_pool", "avg_pool", "adaptive_avg_pool", "adaptive_max_pool", "lp_pool")
        if hasattr(F, f"{kind}{_n}d")), rule=spatial(_n))
register_module(nn.Upsample, nn.UpsamplingNearest2d, nn.UpsamplingBilinear2d, rule=spatial(None))
register_function(F.interpolate, F.upsample, F.upsample_nearest, F.upsample_bilinear, rule=spatial(None))
