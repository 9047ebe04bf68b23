"""Channel propagation: walk the graph once, run every node's rule, and collect the record.

Each node's rule turns its inputs' layouts into its output's layout and writes unions,
freezes and pins on the :class:`~fxprune.ir.channel_graph.ChannelRecord`. Nodes
without a rule, rules that raise, and results that do not match the node's value
freeze what they touch, so an operator fxprune does not know never yields a wrong
model. :func:`fxprune.passes.groups.find_groups` solves the record into groups.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import fx
from torch.utils._pytree import tree_flatten, tree_map

from ..ir.channel_graph import ChannelRecord
from ..ir.layout import Block, Layout
from ..ir.parametrized import resizable
from ..rules import lookup, register_optional_rules
from ..rules.context import PropagateContext

__all__ = ["propagate_layouts"]


def propagate_layouts(module: fx.GraphModule, exact: bool,
                      attention: str = "heads") -> tuple[dict[fx.Node, Any], ChannelRecord]:
    register_optional_rules()
    record = ChannelRecord()
    layouts: dict[fx.Node, Any] = {}
    submodules = dict(module.named_modules())
    for node in module.graph.nodes:
        ctx = PropagateContext(node, record, layouts, exact, submodules.get(node.target)
                               if node.op == "call_module" else None, attention)
        if node.op == "placeholder":
            layouts[node] = ctx.opaque_output()
        elif node.op == "get_attr":
            layouts[node] = _attribute_layout(module, node, record)
        elif node.op == "output":
            ctx.freeze_inputs("model output")
        else:
            layouts[node] = _checked(ctx, _run_rule(ctx))
    record.resolve_folds()
    return layouts, record


def _run_rule(ctx: PropagateContext) -> Any:
    rule = lookup(ctx.node, ctx.module)
    if ctx.module is not None and not resizable(ctx.module):
        ctx.freeze_inputs(f"no rule for {type(ctx.module).__name__} with a parametrisation other than weight_norm")
        return ctx.opaque_output()
    if rule is None:
        op = type(ctx.module).__name__ if ctx.module is not None else getattr(ctx.node.target, "__name__",
                                                                                 str(ctx.node.target))
        ctx.freeze_inputs(f"no rule for {op}")  # the freeze adds where
        return ctx.opaque_output()
    try:
        return rule.propagate(ctx)
    except Exception as error:  # noqa: BLE001 - a form the rule does not handle: freezing is always safe
        ctx.freeze_inputs(f"unsupported form ({type(error).__name__}: {error})")
        return ctx.opaque_output()


def _attribute_layout(module: fx.GraphModule, node: fx.Node, record: ChannelRecord) -> Any:
    value = node.meta.get("val")
    if not isinstance(value, torch.Tensor):
        return None
    blocks = [Block((axis,), record.param_axis(str(node.target), axis, size)[:, None])
              for axis, size in enumerate(value.shape) if size > 1]
    return Layout(tuple(value.shape), tuple(blocks))


def _checked(ctx: PropagateContext, out: Any) -> Any:
    """Validate a rule's result against the node's value and normalise its blocks."""
    value = ctx.val(ctx.node)
    if not _matches(out, value):
        ctx.freeze_inputs(f"internal: rule result does not match the value of {ctx.where}")
        return ctx.opaque_output()
    return tree_map(lambda layout: _normalized(ctx, layout) if isinstance(layout, Layout) else layout, out,
                    is_leaf=lambda x: isinstance(x, Layout))


def _matches(out: Any, value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return isinstance(out, Layout) and out.shape == tuple(value.shape) and all(
            len(set(b.dims)) == len(b.dims) and b.ids.shape[:-1] == tuple(value.shape[d] for d in b.dims)
            for b in out.blocks)
    if not any(isinstance(v, torch.Tensor) for v in tree_flatten(value)[0]):  # x.shape, ints: no channels
        return not any(isinstance(o, Layout) for o in tree_flatten(out, is_leaf=lambda x: isinstance(x, Layout))[0])
    if isinstance(value, (tuple, list)):
        return isinstance(out, (tuple, list)) and len(out) == len(value) and all(
            _matches(o, v) for o, v in zip(out, value, strict=True))
    return False


def _normalized(ctx: PropagateContext, layout: Layout) -> Layout:
    """Blocks never keep size-1 dims; a multi-dim block is pruned along one axis only."""
    blocks = []
    for block in layout.blocks:
        axes = [a for a, d in enumerate(block.dims) if layout.shape[d] > 1]
        if not axes:
            ctx.freeze(block, "a single channel")
            continue
        ids = block.ids[tuple(slice(None) if a in axes else 0 for a in range(len(block.dims)))]
        block = Block(tuple(block.dims[a] for a in axes), ids)
        if len(axes) > 1:
            ctx.record.fold(ids, ctx.where)  # tied once every rule has run: record.resolve_folds
        blocks.append(block)
    return Layout(layout.shape, tuple(blocks))
