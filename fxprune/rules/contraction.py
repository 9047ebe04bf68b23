"""Rules for contractions: matmul, ``@``, bmm, einsum.

Every spelling is written as an einsum over letters, one per operand dim. A letter is
*contracted* (summed over: absent from the output), *batch* (in the output and in
several operands) or *free* (in the output, from one operand). The ids of one letter
set are unified across operands; the output carries the blocks of its letters.

A block spanning letters of different roles is a width split into heads: ``q`` viewed
as ``(B, H, N, D)`` carries one block over ``H`` (batch) and ``D`` (contracted). The
attention mode decides which part is pruned: ``"heads"`` keeps the batch letters (the
block is tied along the others: whole heads go), ``"head_dim"`` keeps the others (tied
across heads: the same positions go in every head). Either way the kept set is a
rectangle, so the view that split the width stays valid.

Contracted ids of two activations (a query and a key width) have no weight that reads
them: they are recorded so that the oracle silences them at their producers. A
parameter operand (``x @ self.weight``) is a layer: its contracted axis reads, its free
axes produce.
"""

from __future__ import annotations

import operator
import string
from collections import Counter
from typing import Any

import numpy as np
import torch
from torch import fx

from ..ir.layout import Block, Layout
from .context import PropagateContext
from .layers import last_dim_contracted
from .registry import Rule, register_function, register_method

__all__ = ["contract", "matmul_letters", "einsum_letters"]

Operand = tuple[Any, Layout, str]  # (graph argument, its layout, one letter per dim)


def contract(ctx: PropagateContext, operands: list[Operand], output: str, shape: tuple[int, ...]) -> Layout:
    """The output layout of an einsum ``operands -> output``, unifying ids letter by letter."""
    for _, layout, letters in operands:
        if len(letters) != len(layout.shape) or len(set(letters)) != len(letters):
            raise ValueError(f"einsum subscripts {letters!r} do not fit an operand of rank {len(layout.shape)}")
    counts = Counter(letter for _, _, letters in operands for letter in letters)
    roles = {letter: "contracted" if letter not in output else "batch" if counts[letter] > 1 else "free"
             for letter in counts}
    chosen: dict[tuple[str, ...], np.ndarray] = {}
    carried: list[set[tuple[str, ...]]] = []  # the letter sets each operand tracks, once tied
    for arg, layout, letters in operands:
        carried.append(set())
        for block in layout.blocks:
            placed = _one_role(ctx, [letters[d] for d in block.dims], block.ids, roles)
            if placed is not None:
                carried[-1].add(placed[0])
                _mark(ctx, arg, *placed, roles)
                _join(ctx, chosen, *placed)
    frozen = _freeze_untracked(ctx, chosen, operands, carried)
    blocks = [Block(tuple(output.index(letter) for letter in key), ids)
              for key, ids in chosen.items() if all(letter in output for letter in key) and key not in frozen]
    return Layout(tuple(shape), tuple(blocks))


def _one_role(ctx: PropagateContext, letters: list[str], ids: np.ndarray,
              roles: dict[str, str]) -> tuple[tuple[str, ...], np.ndarray] | None:
    """A block's letters (sorted) and ids, tied down to letters of one role; None when frozen."""
    kinds = {roles[letter] for letter in letters}
    if len(kinds) > 1:
        if "batch" not in kinds:
            ctx.freeze(ids, "contraction over part of a channel fold")
            return None
        heads = ctx.attention == "heads"
        keep = [a for a, letter in enumerate(letters) if (roles[letter] == "batch") == heads]
        if len({roles[letters[a]] for a in keep}) > 1:
            ctx.freeze(ids, "contraction over part of a channel fold")
            return None
        anchor = ids[tuple(slice(None) if a in keep else slice(0, 1) for a in range(len(letters)))]
        ctx.unify(np.broadcast_to(anchor, ids.shape), ids, "whole heads" if heads else "the same widths in every head")
        ids = ids[tuple(slice(None) if a in keep else 0 for a in range(len(letters)))]
        letters = [letters[a] for a in keep]
    order = sorted(range(len(letters)), key=lambda a: letters[a])
    return tuple(letters[a] for a in order), np.ascontiguousarray(np.transpose(ids, [*order, len(order)]))


def _mark(ctx: PropagateContext, arg: Any, key: tuple[str, ...], ids: np.ndarray, roles: dict[str, str]) -> None:
    role = roles[key[0]]
    if isinstance(arg, fx.Node) and arg.op == "get_attr":  # a weight: x @ self.weight
        ctx.record.mark(ids, producer=role != "contracted", reader=role == "contracted")
    elif role == "contracted":
        ctx.record.contract(ids)


def _join(ctx: PropagateContext, chosen: dict[tuple[str, ...], np.ndarray], key: tuple[str, ...],
          ids: np.ndarray) -> None:
    clash = [other for other in chosen if set(other) & set(key) and other != key]
    if clash:
        ctx.freeze(ids, "operands of a contraction track different dims")
        for other in clash:
            ctx.freeze(chosen[other], "operands of a contraction track different dims")
    elif key not in chosen:
        chosen[key] = ids
    elif chosen[key].shape == ids.shape:
        ctx.unify(chosen[key], ids, "contraction")
    else:
        ctx.freeze(chosen[key], "contraction of differently folded channels")
        ctx.freeze(ids, "contraction of differently folded channels")


def _freeze_untracked(ctx: PropagateContext, chosen: dict[tuple[str, ...], np.ndarray],
                      operands: list[Operand], carried: list[set[tuple[str, ...]]]) -> set[tuple[str, ...]]:
    """A tracked letter meeting an operand that has it untracked (and larger than 1) is kept whole,
    and the output leaves it untracked (its size never changes)."""
    frozen = set()
    for key, ids in chosen.items():
        for (_, layout, letters), tracked in zip(operands, carried, strict=True):
            if not set(key) <= set(letters) or key in tracked:
                continue
            if any(layout.shape[letters.index(letter)] > 1 for letter in key):
                ctx.freeze(ids, "contracted with an untracked tensor")
                frozen.add(key)
    return frozen


def matmul_letters(rank_a: int, rank_b: int) -> tuple[str, str, str]:
    """Subscripts of ``torch.matmul`` for operands of these ranks (1-D operands as numpy treats them)."""
    core_a = "nk" if rank_a >= 2 else "k"
    core_b = "km" if rank_b >= 2 else "k"
    batch_a, batch_b = rank_a - len(core_a), rank_b - len(core_b)
    batch = string.ascii_uppercase[:max(batch_a, batch_b)]
    out = batch + ("n" if rank_a >= 2 else "") + ("m" if rank_b >= 2 else "")
    return batch[len(batch) - batch_a:] + core_a, batch[len(batch) - batch_b:] + core_b, out


def einsum_letters(equation: str, ranks: list[int]) -> tuple[list[str], str]:
    """Input subscripts and output of an einsum equation, ``...`` spelled out in capitals."""
    equation = equation.replace(" ", "")
    inputs, _, output = equation.partition("->")
    subscripts = inputs.split(",")
    if len(subscripts) != len(ranks):
        raise ValueError(f"einsum equation {equation!r} names {len(subscripts)} operands, got {len(ranks)}")
    widest = max((rank - len(s.replace("...", "")) for s, rank in zip(subscripts, ranks, strict=True) if "..." in s),
                 default=0)
    ellipsis = string.ascii_uppercase[:widest]
    spelled = [s.replace("...", ellipsis[widest - (rank - len(s.replace("...", ""))):])
               for s, rank in zip(subscripts, ranks, strict=True)]
    if "->" not in equation:
        counts = Counter("".join(s.replace("...", "") for s in subscripts))
        output = ("..." if widest else "") + "".join(sorted(c for c, n in counts.items() if n == 1))
    return spelled, output.replace("...", ellipsis)


def matmul(ctx: PropagateContext) -> Layout:
    a, b = ctx.node.args[0], ctx.arg(1, "other", ctx.node.kwargs.get("mat2"))
    la, lb = ctx.layout(a), ctx.layout(b)
    letters_a, letters_b, out = matmul_letters(len(la.shape), len(lb.shape))
    return contract(ctx, [(a, la, letters_a), (b, lb, letters_b)], out, ctx.shape())


def einsum(ctx: PropagateContext) -> Layout:
    equation, *tensors = ctx.node.args
    if len(tensors) == 1 and isinstance(tensors[0], (tuple, list)):
        tensors = list(tensors[0])
    layouts = [ctx.layout(t) for t in tensors]
    letters, out = einsum_letters(str(equation), [len(layout.shape) for layout in layouts])
    operands = [(t, layout, s) for t, layout, s in zip(tensors, layouts, letters, strict=True)]
    return contract(ctx, operands, out, ctx.shape())


# The MAC count scales by the kept share of the first operand's last dim (a 1-D second operand included).
MATMUL = Rule(matmul, contracts=last_dim_contracted)
register_function(torch.matmul, operator.matmul, torch.bmm, rule=MATMUL)
register_method("matmul", "bmm", "__matmul__", rule=MATMUL)
register_function(torch.einsum, rule=Rule(einsum))
