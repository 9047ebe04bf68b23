"""Rules for attention: ``F.scaled_dot_product_attention`` and ``nn.MultiheadAttention``.

``scaled_dot_product_attention(q, k, v, attn_mask)`` is two contractions (see
:mod:`.contraction`): ``q (..., L, E) x k (..., S, E) -> scores (..., L, S)``, the mask
added to the scores, a softmax over ``S``, then ``scores x v (..., S, Ev) -> (..., L, Ev)``.
Its default scale is ``1/sqrt(E)``: when ``E`` shrinks the rewrite passes the original
scale explicitly, so that removing query/key widths changes only their own products.

``nn.MultiheadAttention`` is a leaf module (its forward is a long function); its rule
couples its projections head by head as the attention mode says, and its resize builds
a :class:`~fxprune.rules.attention_module.PrunedMultiheadAttention` with the kept rows.
"""

from __future__ import annotations

import math
import operator
import string
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..ir.layout import Block, Layout
from .attention_module import attention_from
from .context import PropagateContext, RewriteContext
from .contraction import contract
from .elementwise import unify_layouts
from .registry import Rule, register_function, register_module

__all__ = ["sdpa", "multihead_attention"]


def _batch_shape(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(torch.broadcast_shapes(*(s[:-2] for s in shapes)))


def sdpa(ctx: PropagateContext) -> Layout:
    q, k, v = ctx.node.args[0], ctx.arg(1, "key"), ctx.arg(2, "value")
    mask = ctx.arg(3, "attn_mask")
    lq, lk, lv = ctx.layout(q), ctx.layout(k), ctx.layout(v)
    batch = _batch_shape(lq.shape, lk.shape, lv.shape)
    letters = string.ascii_uppercase[:len(batch)]

    def spelled(layout: Layout, last_two: str) -> str:
        return letters[len(letters) - (len(layout.shape) - 2):] + last_two

    scores_shape = (*batch, lq.shape[-2], lk.shape[-2])
    scores = contract(ctx, [(q, lq, spelled(lq, "le")), (k, lk, spelled(lk, "se"))], letters + "ls", scores_shape)
    mask_layout = ctx.layout(mask)
    if isinstance(mask_layout, Layout):  # a per-head bias or mask joins the scores position by position
        scores = unify_layouts(ctx, [scores, mask_layout], scores_shape)
    block = scores.block_at(len(scores_shape) - 1)
    if block is not None:
        ctx.freeze(block, "softmax over channels", exact_only=True)
    return contract(ctx, [(None, scores, letters + "ls"), (v, lv, spelled(lv, "sf"))], letters + "lf", ctx.shape())


def sdpa_rewrite(ctx: RewriteContext) -> tuple[Any, tuple, dict]:
    """Keep the original ``1/sqrt(E)`` when the query width shrinks and no scale was given."""
    q = ctx.node.args[0]
    args, kwargs = list(ctx.node.args), dict(ctx.node.kwargs)
    if ctx.kept(q, -1) is not None and ctx.arg(6, "scale") is None:
        if len(args) > 6:
            args[6] = 1.0 / math.sqrt(ctx.shape(q)[-1])
        else:
            kwargs["scale"] = 1.0 / math.sqrt(ctx.shape(q)[-1])
    return ctx.node.target, tuple(args), kwargs


def _head_ids(ids: np.ndarray, heads: int) -> np.ndarray:
    """``(E, 1)`` ids of a projection's rows as ``(heads, head_dim, 1)``."""
    return ids.reshape(heads, -1, 1)


def _tie(ctx: PropagateContext, grid: np.ndarray, keep_heads: bool) -> np.ndarray:
    """Tie a ``(heads, head_dim, 1)`` grid to its head axis or its head_dim axis; the kept ids."""
    if keep_heads:
        anchor = grid[:, :1]
        ctx.unify(np.broadcast_to(anchor, grid.shape), grid, "whole heads")
        return anchor[:, 0]
    anchor = grid[:1]
    ctx.unify(np.broadcast_to(anchor, grid.shape), grid, "the same widths in every head")
    return anchor[0]


def _projection_rows(ctx: PropagateContext, module: nn.MultiheadAttention) -> list[np.ndarray]:
    """Output-row ids of the query, key and value projections, as ``(E, 1)`` arrays (biases unified)."""
    name, embed = ctx.node.target, module.embed_dim
    if module._qkv_same_embed_dim:
        rows = ctx.param(f"{name}.in_proj_weight", 0, producer=True)
        parts = [rows[i * embed:(i + 1) * embed] for i in range(3)]
    else:
        parts = [ctx.param(f"{name}.{p}_proj_weight", 0, producer=True) for p in "qkv"]
    if module.in_proj_bias is not None:
        bias = ctx.param(f"{name}.in_proj_bias", 0)
        for i, part in enumerate(parts):
            ctx.unify(bias[i * embed:(i + 1) * embed], part, "projection bias")
    return parts


def _read_inputs(ctx: PropagateContext, module: nn.MultiheadAttention, inputs: list[Any]) -> None:
    """Each input's last dim is read by its projection's weight columns."""
    name = ctx.node.target
    for i, arg in enumerate(inputs):
        layout = ctx.layout(arg)
        if not isinstance(layout, Layout):
            continue
        weight = f"{name}.in_proj_weight" if module._qkv_same_embed_dim else f"{name}.{'qkv'[i]}_proj_weight"
        columns = ctx.param(weight, 1, reader=True)
        last = len(layout.shape) - 1
        for block in layout.blocks:
            if block.dims != (last,) or block.width != 1:
                ctx.freeze(block, "attention over folded channels")
            else:
                ctx.unify(block.ids, columns, "attention input")


def multihead_attention(ctx: PropagateContext) -> tuple[Layout, Any]:
    module, name = cast(nn.MultiheadAttention, ctx.module), ctx.node.target
    if module.bias_k is not None or module.add_zero_attn:
        raise ValueError("add_bias_kv / add_zero_attn are not supported")
    inputs = [ctx.arg(0, "query"), ctx.arg(1, "key"), ctx.arg(2, "value")]
    _read_inputs(ctx, module, inputs)
    heads = module.num_heads
    q, k, v = (_head_ids(rows, heads) for rows in _projection_rows(ctx, module))
    keep_heads = ctx.attention == "heads"
    q_kept, k_kept, v_kept = (_tie(ctx, grid, keep_heads) for grid in (q, k, v))
    columns = _head_ids(ctx.param(f"{name}.out_proj.weight", 1, reader=True), heads)
    ctx.unify(columns, v, "attention output projection")
    if keep_heads:
        ctx.unify(q_kept, k_kept, "one head")
        ctx.unify(q_kept, v_kept, "one head")
    else:
        ctx.unify(q_kept, k_kept, "query and key width")
        ctx.record.contract(q_kept)
    out = ctx.param(f"{name}.out_proj.weight", 0, producer=True)
    if module.out_proj.bias is not None:
        ctx.unify(ctx.param(f"{name}.out_proj.bias", 0), out, "projection bias")
    values = ctx.val(ctx.node)
    out_layout = Layout(tuple(values[0].shape), (Block((values[0].dim() - 1,), out),))
    weights = values[1]
    if isinstance(weights, torch.Tensor) and _weights_used(ctx):
        if weights.dim() == 4 and keep_heads:  # per-head weights would need their own layout
            ctx.freeze(q_kept, "attention weights returned per head")
        elif keep_heads:  # weights averaged over heads change when a head goes
            ctx.freeze(q_kept, "attention weights averaged over heads", exact_only=True)
    weights_layout = Layout(tuple(weights.shape)) if isinstance(weights, torch.Tensor) else None
    return out_layout, weights_layout


def _weights_used(ctx: PropagateContext) -> bool:
    return any(user.target is not operator.getitem or user.args[1] != 0 for user in ctx.node.users)


def multihead_attention_resize(module: nn.Module, ctx: RewriteContext) -> nn.Module:
    return attention_from(cast(nn.MultiheadAttention, module), ctx)


register_function(F.scaled_dot_product_attention, rule=Rule(sdpa, rewrite_args=sdpa_rewrite))
register_module(nn.MultiheadAttention, rule=Rule(multihead_attention, resize=multihead_attention_resize))
