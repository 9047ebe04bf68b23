"""What a rule sees: the node, its inputs' layouts and shapes, and the record to write."""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import torch
from torch import fx, nn
from torch.utils._pytree import tree_flatten, tree_map

from ..ir.channel_graph import ChannelRecord
from ..ir.layout import Block, Layout
from ..ir.parametrized import find_tensor

__all__ = ["ATTENTION_MODES", "PropagateContext", "RewriteContext", "describe", "kept_along"]

#: What attention plans choose: whole heads, or the same widths in every head.
ATTENTION_MODES = ("heads", "head_dim")


def describe(node: fx.Node) -> str:
    """A short human name for a node: its op target and graph name."""
    if node.op == "call_module":
        return f"module '{node.target}'"
    target = getattr(node.target, "__name__", str(node.target))
    # fx names nodes after their targets (add, add_1, ...): say the name once.
    named_after = node.name == target or node.name.startswith(f"{target}_")
    return node.name if named_after else f"{target} ({node.name})"


class _NodeView:
    """Argument access shared by both contexts."""

    node: fx.Node

    def arg(self, index: int, name: str, default: Any = None) -> Any:
        if len(self.node.args) > index:
            return self.node.args[index]
        return self.node.kwargs.get(name, default)

    def val(self, arg: Any) -> Any:
        """The example value of a node argument (a fake tensor, an int) or the literal."""
        if isinstance(arg, fx.Node):
            return arg.meta.get("val")
        return arg

    def shape(self, arg: Any = None) -> tuple[int, ...]:
        value = self.val(self.node if arg is None else arg)
        return tuple(int(s) for s in value.shape)


class PropagateContext(_NodeView):
    """Analysis-time view of one node.

    ``attention`` (one of :data:`ATTENTION_MODES`) says how a contraction treats a block
    spanning its batch axes and its other axes (a head split of a width): ``"heads"`` keeps
    the batch axes (whole heads are pruned), ``"head_dim"`` the others (the same positions
    in every head).
    """

    def __init__(self, node: fx.Node, record: ChannelRecord, layouts: dict[fx.Node, Any],
                 exact: bool, module: nn.Module | None = None, attention: str = "heads") -> None:
        self.node, self.record, self.layouts, self.exact, self.module = node, record, layouts, exact, module
        self.attention = attention

    @property
    def where(self) -> str:
        return describe(self.node)

    def layout(self, arg: Any) -> Any:
        """Layout of an argument: a Layout for a tensor, a tuple for a tuple, else None."""
        return self.layouts.get(arg) if isinstance(arg, fx.Node) else None

    def input_layouts(self) -> list[Layout]:
        leaves, _ = tree_flatten((self.node.args, self.node.kwargs))
        found: list[Layout] = []
        for leaf in leaves:
            found.extend(_layouts_in(self.layout(leaf)))
        return found

    def param(self, qualified: str, axis: int, *, producer: bool = False, reader: bool = False) -> np.ndarray:
        """Ids of ``axis`` of a parameter or buffer, as a ``(size, 1)`` block array."""
        size = _tensor_of(qualified, self.node).shape[axis]
        ids = self.record.param_axis(qualified, axis, size)
        self.record.mark(ids, producer=producer, reader=reader)
        return ids[:, None]

    def unify(self, a: np.ndarray, b: np.ndarray, what: str = "") -> None:
        self.record.unify(a, b, f"{what or 'coupled'} at {self.where}")

    def freeze(self, target: Layout | Block | np.ndarray | None, reason: str, exact_only: bool = False) -> None:
        for ids in _ids_in(target):
            self.record.freeze(ids, f"{reason} at {self.where}", exact_only)

    def freeze_inputs(self, reason: str) -> None:
        for layout in self.input_layouts():
            self.freeze(layout, reason)

    def opaque_output(self) -> Any:
        """A layout for the output with nothing tracked (same structure as the value)."""
        return tree_map(lambda v: Layout(tuple(int(s) for s in v.shape)) if isinstance(v, torch.Tensor) else None,
                        self.val(self.node))

    def output(self, blocks: list[Block], shape: tuple[int, ...] | None = None) -> Layout:
        return Layout(self.shape() if shape is None else shape, tuple(blocks))


def _layouts_in(value: Any) -> list[Layout]:
    if isinstance(value, Layout):
        return [value]
    if isinstance(value, (tuple, list)):
        return [layout for item in value for layout in _layouts_in(item)]
    return []


def _ids_in(target: Any) -> list[np.ndarray]:
    if target is None:
        return []
    if isinstance(target, Layout):
        return [block.ids for block in target.blocks]
    if isinstance(target, Block):
        return [target.ids]
    return [np.asarray(target)]


def _tensor_of(qualified: str, node: fx.Node) -> torch.Tensor:
    tensor = find_tensor(cast(fx.GraphModule, node.graph.owning_module), qualified)  # also a weight-normalised weight
    if tensor is None:
        raise AttributeError(f"{qualified} is not a parameter, a buffer or a computed weight")
    return tensor


def kept_along(block: Block, keep: np.ndarray, axis: int) -> np.ndarray:
    """Indices along one axis of a block whose positions survive the pruning."""
    kept = np.all((block.ids < 0) | keep[np.maximum(block.ids, 0)], axis=-1)
    other = tuple(a for a in range(kept.ndim) if a != axis)
    return np.flatnonzero(kept.any(axis=other) if other else kept)


class RewriteContext(_NodeView):
    """Rewrite-time view of one node: what is kept along each tracked dim."""

    def __init__(self, node: fx.Node, layouts: dict[fx.Node, Any], keep: np.ndarray,
                 params: dict[tuple[str, int], np.ndarray]) -> None:
        self.node, self.layouts, self.keep, self.params = node, layouts, keep, params

    def kept(self, arg: Any, dim: int) -> np.ndarray | None:
        """Kept indices along ``dim`` of a tensor argument; None when nothing is removed there."""
        layout = self.layouts.get(arg) if isinstance(arg, fx.Node) else None
        if not isinstance(layout, Layout):
            return None
        dim = dim % len(layout.shape) if layout.shape else dim
        block = layout.block_at(dim)
        if block is None:
            return None
        kept = kept_along(block, self.keep, block.axis_of(dim))
        return None if kept.size == layout.shape[dim] else kept

    def new_size(self, arg: Any, dim: int) -> int:
        kept = self.kept(arg, dim)
        return self.shape(arg)[dim] if kept is None else int(kept.size)

    def param_kept(self, qualified: str, axis: int) -> np.ndarray | None:
        ids = self.params.get((qualified, axis))
        if ids is None:
            return None
        kept = np.flatnonzero(self.keep[ids])
        return None if kept.size == ids.size else kept
