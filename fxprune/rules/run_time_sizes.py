"""Sizes computed in the graph: which of them the plan fixes.

``x.view(b, n, c // heads, heads)`` with ``c`` read from another tensor's shape is right
unpruned and wrong once that tensor and this one are pruned differently. A size read only
from tracked dims (channel counts) is fixed by the plan, so the rewrite may write it as
the kept count; one that reads a batch or other untracked size stays computed.
"""

from __future__ import annotations

import operator
from typing import cast

import torch
from torch import fx

from ..ir.layout import Layout
from .context import RewriteContext

__all__ = ["from_channel_counts", "size_read"]


def from_channel_counts(ctx: RewriteContext, size: fx.Node) -> bool:
    """Whether an int computed in the graph is read only from tracked dims (channel counts), so
    that the plan fixes it; a batch or other untracked size read on the way keeps it computed."""
    todo, seen = [size], set()
    while todo:
        node = todo.pop()
        if node in seen:
            continue
        seen.add(node)
        read = size_read(node)
        if read is not None:
            tensor, dim = read
            layout = ctx.layouts.get(tensor)
            if not isinstance(layout, Layout) or layout.block_at(dim % len(layout.shape)) is None:
                return False
        elif isinstance(node.meta.get("val"), (torch.Tensor, tuple, list, torch.Size)):
            return False  # a tensor's value, or a whole shape, reached without reading one dim
        else:
            todo.extend(node.all_input_nodes)
    return True


def size_read(node: fx.Node) -> tuple[fx.Node, int] | None:
    """(tensor, dim) when ``node`` is ``x.size(d)`` or ``x.shape[d]``."""
    if node.op == "call_method" and node.target == "size" and len(node.args) == 2 and isinstance(node.args[1], int):
        return cast(fx.Node, node.args[0]), node.args[1]
    if node.target is operator.getitem and isinstance(node.args[1], int) and isinstance(node.args[0], fx.Node):
        shape = node.args[0]
        whole = (shape.op == "call_method" and shape.target == "size" and len(shape.args) == 1) or (
            shape.target is getattr and shape.args[1:] == ("shape",))
        if whole and isinstance(shape.args[0], fx.Node):
            return shape.args[0], node.args[1]
    return None
