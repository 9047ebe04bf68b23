"""``PrunedMultiheadAttention``: what ``nn.MultiheadAttention`` computes, at pruned widths.

``nn.MultiheadAttention`` ties its input width, its inner width (heads x head_dim) and
its output width to one ``embed_dim``, and its query and key widths to the value width.
Pruning separates them, so the resize emits this module: the same call signature, the
same result (attention weights included), with each projection holding its kept rows
and the softmax scale of the original head_dim.
"""

from __future__ import annotations

import math
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .context import RewriteContext

__all__ = ["PrunedMultiheadAttention", "attention_from"]


class PrunedMultiheadAttention(nn.Module):
    """Multi-head attention with independent input, query/key, value and output widths.

    Args:
        projections: query, key and value ``nn.Linear`` (input width -> heads x width).
        out_proj: the output projection (heads x value width -> output width).
        num_heads: heads kept.
        scale: the softmax scale (the original ``1/sqrt(head_dim)``).
        batch_first: as in ``nn.MultiheadAttention``.
        dropout: attention dropout probability (training mode only).
        kept_heads: indices of the kept heads among the original ones, to select the
            per-head rows of a 3-D ``attn_mask``.
    """

    def __init__(self, projections: tuple[nn.Linear, nn.Linear, nn.Linear], out_proj: nn.Linear, num_heads: int,
                 scale: float, batch_first: bool, dropout: float, kept_heads: Tensor, original_heads: int) -> None:
        super().__init__()
        self.q_proj, self.k_proj, self.v_proj = projections
        self.out_proj = out_proj
        self.num_heads, self.scale, self.batch_first, self.dropout = num_heads, scale, batch_first, dropout
        self.original_heads = original_heads
        self.register_buffer("kept_heads", kept_heads, persistent=False)

    def forward(self, query: Tensor, key: Tensor, value: Tensor, key_padding_mask: Tensor | None = None,
                need_weights: bool = True, attn_mask: Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[Tensor, Tensor | None]:
        unbatched = query.dim() == 2
        if unbatched:
            query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
            key_padding_mask = None if key_padding_mask is None else key_padding_mask.unsqueeze(0)
        if not self.batch_first or unbatched:  # as (batch, length, width)
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        batch, length, source = query.shape[0], query.shape[1], key.shape[1]
        q, k, v = (proj(x).view(batch, x.shape[1], self.num_heads, -1).transpose(1, 2)
                   for proj, x in ((self.q_proj, query), (self.k_proj, key), (self.v_proj, value)))
        mask = self._mask(attn_mask, key_padding_mask, batch, length, source, q.dtype)
        if is_causal and mask is None:
            mask = torch.full((length, source), float("-inf"), dtype=q.dtype, device=q.device).triu(1)
        scores = (q @ k.transpose(-2, -1)) * self.scale
        if mask is not None:
            scores = scores + mask
        weights = scores.softmax(-1)
        attended = F.dropout(weights, self.dropout, self.training) @ v
        out = self.out_proj(attended.transpose(1, 2).reshape(batch, length, -1))
        if not self.batch_first or unbatched:
            out = out.transpose(0, 1)
        if unbatched:
            out = out.squeeze(1)
        if not need_weights:
            return out, None
        weights = weights.mean(1) if average_attn_weights else weights
        return out, weights.squeeze(0) if unbatched else weights

    def _mask(self, attn_mask: Tensor | None, key_padding_mask: Tensor | None, batch: int, length: int,
              source: int, dtype: torch.dtype) -> Tensor | None:
        """One additive mask broadcast to (batch, heads, L, S); boolean masks mark what is left out."""
        mask = None
        if attn_mask is not None:
            mask = _additive(attn_mask, dtype)
            if mask.dim() == 3:  # (batch * original heads, L, S): the kept heads' rows
                kept_heads = cast(Tensor, self.kept_heads)  # a buffer
                mask = mask.view(batch, self.original_heads, length, source).index_select(1, kept_heads)
        if key_padding_mask is not None:
            padding = _additive(key_padding_mask, dtype).view(batch, 1, 1, source)
            mask = padding if mask is None else mask + padding
        return mask


def _additive(mask: Tensor, dtype: torch.dtype) -> Tensor:
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, float("-inf"))
    return mask.to(dtype)


def _linear(weight: Tensor, bias: Tensor | None) -> nn.Linear:
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device=weight.device,
                      dtype=weight.dtype)
    with torch.no_grad():
        layer.weight.copy_(weight)
        if bias is not None:
            layer.bias.copy_(bias)
    return layer


def _heads_kept(rows: np.ndarray, head_dim: int) -> tuple[np.ndarray, int]:
    """Kept heads and kept width per head from the kept rows of a projection; they must be a rectangle."""
    heads, widths = np.unique(rows // head_dim), np.unique(rows % head_dim)
    if heads.size * widths.size != rows.size:
        raise ValueError("the kept rows of an attention projection are not the same in every head")
    return heads, int(widths.size)


def attention_from(module: nn.MultiheadAttention, ctx: RewriteContext) -> PrunedMultiheadAttention:
    """The pruned module for a leaf ``nn.MultiheadAttention``, from the kept rows and columns."""
    name, embed, heads = ctx.node.target, module.embed_dim, module.num_heads
    head_dim = embed // heads
    if module._qkv_same_embed_dim:
        weights = list(module.in_proj_weight.detach().chunk(3))
        row_ids = [f"{name}.in_proj_weight"] * 3
    else:
        weights = [getattr(module, f"{p}_proj_weight").detach() for p in "qkv"]
        row_ids = [f"{name}.{p}_proj_weight" for p in "qkv"]
    biases = list(module.in_proj_bias.detach().chunk(3)) if module.in_proj_bias is not None else [None] * 3
    projections: list[nn.Linear] = []
    kept_heads = np.arange(0)
    for i, (weight, bias, qualified) in enumerate(zip(weights, biases, row_ids, strict=True)):
        rows = _kept(ctx, qualified, 0, embed * 3 if module._qkv_same_embed_dim else embed)
        rows = rows[(rows >= i * embed) & (rows < (i + 1) * embed)] - i * embed if module._qkv_same_embed_dim else rows
        columns = _kept(ctx, qualified, 1, weight.shape[1])
        index = torch.as_tensor(rows, device=weight.device)
        weight = weight.index_select(0, index).index_select(1, torch.as_tensor(columns, device=weight.device))
        projections.append(_linear(weight, None if bias is None else bias.index_select(0, index)))
        kept_heads, _ = _heads_kept(rows, head_dim)
    out_rows = _kept(ctx, f"{name}.out_proj.weight", 0, embed)
    out_columns = _kept(ctx, f"{name}.out_proj.weight", 1, embed)
    weight = module.out_proj.weight.detach()[out_rows][:, out_columns]
    bias = module.out_proj.bias.detach()[out_rows] if module.out_proj.bias is not None else None
    query, key, value = projections
    return PrunedMultiheadAttention((query, key, value), _linear(weight, bias), int(kept_heads.size),
                                    1.0 / math.sqrt(head_dim), module.batch_first, module.dropout,
                                    torch.as_tensor(kept_heads), heads).train(module.training)


def _kept(ctx: RewriteContext, qualified: str, axis: int, size: int) -> np.ndarray:
    kept = ctx.param_kept(qualified, axis)
    return np.arange(size) if kept is None else kept
