"""The rewrite: a new, smaller GraphModule built node by node from a plan.

Touched modules are replaced by copies holding only their kept slices, under the
same qualified names; sliced ``get_attr`` tensors likewise; literal channel counts
in call arguments are rewritten by each operator's rule. Everything else is a deep
copy, so the result shares no storage with the input model.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import fx, nn
from torch.utils._pytree import tree_flatten

from ..errors import RewriteError
from ..ir.layout import Layout
from ..ir.parametrized import deepcopy_module, resize_weight_normed
from ..rules import lookup
from ..rules.context import RewriteContext, kept_along
from ..rules.layers import slice_tensor
from .groups import Groups
from .plan import Plan, keep_mask

__all__ = ["rewrite", "expected_shape", "check_shapes"]


def rewrite(module: fx.GraphModule, groups: Groups, plan: Plan) -> fx.GraphModule:
    """Emit the pruned module; ``module`` is left as it was.

    Example:
        >>> pruned = rewrite(gm, groups, plan)
    """
    keep = keep_mask(groups, plan)
    submodules = dict(module.named_modules())
    memo: dict[int, Any] = {}
    attributes: dict[str, Any] = {}
    graph = fx.Graph()
    graph._codegen = copy.deepcopy(module.graph._codegen)
    env: dict[fx.Node, fx.Node] = {}
    for node in module.graph.nodes:
        ctx = RewriteContext(node, groups.layouts, keep, groups.record.params)
        new_node = graph.node_copy(node, lambda n: env[n])
        if node.op == "call_module" and node.target not in attributes:
            attributes[node.target] = _module_for(submodules[node.target], node, ctx, memo)
        elif node.op == "get_attr" and node.target not in attributes:
            attributes[node.target] = _attribute_for(module, node.target, ctx, memo)
        elif node.op in ("call_function", "call_method"):
            rule = lookup(node)
            if rule is not None and rule.rewrite_args is not None and (_resized(node, ctx) or _sized_at_run_time(node)):
                target, args, kwargs = _guarded(rule.rewrite_args, node, ctx)
                new_node.target = target
                new_node.args = fx.map_arg(args, lambda n: env[n])
                new_node.kwargs = fx.map_arg(kwargs, lambda n: env[n])
        env[node] = new_node
    pruned = fx.GraphModule(attributes, graph, module.__class__.__name__)
    _copy_modes(pruned, submodules)
    return pruned


def _resized(node: fx.Node, ctx: RewriteContext) -> bool:
    """Whether a tensor the node reads or writes loses positions; literal channel counts
    in its arguments (split sizes, view shapes, ``groups``) can only change then."""
    for value in (node, *node.all_input_nodes):
        layouts = tree_flatten(ctx.layouts.get(value), is_leaf=lambda x: isinstance(x, Layout))[0]
        if any(isinstance(layout, Layout) and expected_shape(layout, ctx.keep) != layout.shape
               for layout in layouts):
            return True
    return False


def _sized_at_run_time(node: fx.Node) -> bool:
    """Whether a call takes an int computed in the graph (``x.view(b, c // h, h)``): it may be
    read from a tensor that the plan resizes although this node's tensors keep their shapes."""
    return any(isinstance(n.meta.get("val"), (int, torch.SymInt)) for n in node.all_input_nodes)


def _guarded(function: Any, node: fx.Node, *args: Any) -> Any:
    """Run a rule's rewrite part; a failure there is fxprune's bug, reported as one."""
    try:
        return function(*args)
    except Exception as error:
        raise RewriteError(f"cannot rewrite node {node.format_node()}: {type(error).__name__}: {error}. This is a "
                           "bug in fxprune's rule for this operator; until it is fixed, pass ignore=[...] for the "
                           "modules feeding it.", node.name) from error


def _changed(module: nn.Module, node: fx.Node, ctx: RewriteContext) -> bool:
    prefix = node.target
    for name, tensor in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]:
        if any(ctx.param_kept(f"{prefix}.{name}", axis) is not None for axis in range(tensor.ndim)):
            return True
    value = node.meta.get("val")
    rank = value.ndim if isinstance(value, torch.Tensor) else 0
    return any(ctx.kept(node, d) is not None for d in range(rank)) or any(
        ctx.kept(arg, d) is not None for arg in node.args if isinstance(arg, fx.Node)
        and isinstance(ctx.layouts.get(arg), Layout) for d in range(len(ctx.layouts[arg].shape)))


def _module_for(module: nn.Module, node: fx.Node, ctx: RewriteContext, memo: dict[int, Any]) -> nn.Module:
    rule = lookup(node, module)
    if rule is not None and rule.resize is not None and _changed(module, node, ctx):
        resize = rule.resize
        return _guarded(lambda m, c: resize_weight_normed(m, lambda plain: resize(plain, c)), node, module, ctx)
    return deepcopy_module(module, memo)


def _attribute_for(module: fx.GraphModule, target: str, ctx: RewriteContext, memo: dict[int, Any]) -> Any:
    owner, _, name = target.rpartition(".")
    value = getattr(module.get_submodule(owner) if owner else module, name)
    if not isinstance(value, torch.Tensor):
        return copy.deepcopy(value, memo)
    sliced = slice_tensor(value, target, ctx)
    return nn.Parameter(sliced, value.requires_grad) if isinstance(value, nn.Parameter) else sliced


def _copy_modes(pruned: fx.GraphModule, original: dict[str, nn.Module]) -> None:
    """Containers created by GraphModule take the train/eval mode of their originals."""
    for name, sub in pruned.named_modules():
        if (name in original and type(sub) is nn.Module) or name == "":
            sub.training = original[name].training


def expected_shape(layout: Layout, keep: np.ndarray) -> tuple[int, ...]:
    """The shape a tensor must have after pruning: kept counts along tracked dims."""
    shape = list(layout.shape)
    for block in layout.blocks:
        for axis, dim in enumerate(block.dims):
            shape[dim] = int(kept_along(block, keep, axis).size)
    return tuple(shape)


def check_shapes(original: fx.GraphModule, pruned: fx.GraphModule, groups: Groups, plan: Plan) -> None:
    """Compare every node's propagated shape in ``pruned`` with what the plan promises.

    Raises:
        RewriteError: naming the first node whose shape differs.
    """
    keep = keep_mask(groups, plan)
    new_nodes = {n.name: n for n in pruned.graph.nodes}
    for node in original.graph.nodes:
        layout = groups.layouts.get(node)
        if not isinstance(layout, Layout) or node.name not in new_nodes:
            continue
        value = new_nodes[node.name].meta.get("val")
        want = expected_shape(layout, keep)
        got = tuple(value.shape) if isinstance(value, torch.Tensor) else None
        if got != want:
            raise RewriteError(f"after pruning, node {new_nodes[node.name].format_node()} has shape {got}, "
                               f"expected {want}. This is a bug in fxprune's rule for this operator; until it "
                               "is fixed, pass ignore=[...] for the modules feeding it.", node.name)
