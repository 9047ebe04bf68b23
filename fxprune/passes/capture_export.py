"""The torch.export front end: capture with ``torch.export`` and lower into the rules' dialect.

Symbolic tracing cannot follow Python control flow on shapes, ``len()`` of a list
input or iteration over a tensor; ``torch.export.export(..., strict=False)`` runs
the real forward on fake tensors and specialises such control flow on the example
inputs, keeping the batch dimension dynamic. Its graph is written in ATen
overloads, with parameters as ``get_attr`` nodes of their original names. Two
rewrites make it read like a symbolically traced graph, so that every later pass
and rule serves both front ends unchanged:

- **modules back**: a leaf module with a rule whose whole forward became one ATen
  call (a conv, a BatchNorm, a dropout) is called as that module again. Its
  train/eval behaviour is the module's own, as in the original model, and its
  parameters keep their qualified names.
- **spellings**: every other ATen call with a registered spelling
  (:mod:`fxprune.rules.spelling`) is written as that torch function or method;
  guards and assertions on the captured shapes are dropped (the pruned shapes are
  checked by fxprune itself). An overload without a spelling stays, and freezes.
"""

from __future__ import annotations

import contextlib
import inspect
import operator
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn
from torch.export import Dim
from torch.utils._pytree import tree_flatten, tree_map

from ..rules import module_rule
from ..rules.spelling import spelling_of

__all__ = ["Exported", "attributes_kept", "batch_shapes", "doubled_batch", "eval_mode", "export_graph", "first_line",
           "fresh_inputs"]

#: ATen calls that only check the captured shapes or values: the pruned module has other shapes.
_CHECKS = {"_assert_tensor_metadata", "_assert_scalar", "_assert_async", "sym_constrain_range",
           "sym_constrain_range_for_size", "_functional_sym_constrain_range",
           "_functional_sym_constrain_range_for_size"}


@dataclass(frozen=True)
class Exported:
    """A model captured by torch.export and lowered: the graph, and what to tell the user."""

    module: fx.GraphModule
    dynamic_batch: bool
    note: str = ""  # why the batch is fixed, when it is


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """Eval mode for the duration, then every submodule's own mode back."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for submodule, training in modes:
            submodule.training = training


@contextlib.contextmanager
def attributes_kept(module: nn.Module) -> Iterator[None]:
    """Every submodule's attributes as they were, after a capture that ran its forward.

    A forward may store what it computes on the module: torchvision's ``AnchorGenerator``
    sets ``self.cell_anchors`` from the features' dtype, which under symbolic tracing is a
    Proxy (and under torch.export a fake tensor), so the model would no longer run. The
    attributes (and the parameter, buffer and child tables) are put back as they were.
    """
    saved = [(sub, dict(sub.__dict__), {key: dict(sub.__dict__[key]) for key in _TABLES if key in sub.__dict__})
             for sub in module.modules()]
    try:
        yield
    finally:
        for sub, attributes, tables in saved:
            for key in [key for key in sub.__dict__ if key not in attributes]:
                del sub.__dict__[key]
            for key, value in attributes.items():
                if sub.__dict__.get(key) is not value:
                    sub.__dict__[key] = value
            for key, table in tables.items():
                now = sub.__dict__[key]
                if now.keys() != table.keys() or any(now[name] is not value for name, value in table.items()):
                    sub.__dict__[key].clear()
                    sub.__dict__[key].update(table)


_TABLES = ("_parameters", "_buffers", "_modules")


def batch_shapes(inputs: tuple[Any, ...]) -> Any:
    """``dynamic_shapes`` marking dim 0 of every tensor as one shared batch dim (None if they differ)."""
    tensors = [leaf for leaf in tree_flatten(inputs)[0] if isinstance(leaf, torch.Tensor)]
    if not tensors or any(t.dim() == 0 for t in tensors) or len({t.shape[0] for t in tensors}) != 1:
        return None
    batch = Dim("batch", min=1)
    return tuple(tree_map(lambda leaf: {0: batch} if isinstance(leaf, torch.Tensor) else None, arg)
                 for arg in inputs)


def doubled_batch(inputs: tuple[Any, ...]) -> tuple[Any, ...]:
    """A batch of 2: torch.export specialises dims of size 1, so a batch of 1 cannot become dynamic."""
    def grow(leaf: Any) -> Any:
        return torch.cat([leaf, leaf]) if isinstance(leaf, torch.Tensor) and leaf.shape[0] == 1 else leaf

    return tree_map(grow, inputs)


def export_graph(model: nn.Module, inputs: tuple[Any, ...]) -> Exported:
    """Capture ``model`` with torch.export (eval mode, dynamic batch where the model allows it).

    Raises:
        Exception: torch.export's own error when the model cannot be captured at all
            (the caller reports it beside symbolic tracing's).
    """
    with attributes_kept(model):
        program, dynamic, note = _export(model, inputs)
    return Exported(lower(model, program.module()), dynamic, note)


def _export(model: nn.Module, inputs: tuple[Any, ...]) -> tuple[Any, bool, str]:
    shapes = batch_shapes(inputs)
    note = "the inputs do not share a batch dim"
    with eval_mode(model):
        if shapes is not None:
            try:
                return torch.export.export(model, fresh_inputs(doubled_batch(inputs)), strict=False,
                                           dynamic_shapes=shapes), True, ""
            except Exception as error:  # noqa: BLE001 - the model fixes its batch size: keep the example's
                note = f"the model fixes its batch size ({first_line(error)})"
        return torch.export.export(model, fresh_inputs(inputs), strict=False), False, note


def fresh_inputs(inputs: tuple[Any, ...]) -> tuple[Any, ...]:
    """New containers around the same tensors: some forwards edit their list input in place."""
    return tree_map(lambda leaf: leaf, inputs)


def first_line(error: BaseException) -> str:
    """The first line of an error's message (its type's name when it has none)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def lower(model: nn.Module, exported: fx.GraphModule) -> fx.GraphModule:
    """The exported graph with leaf modules called again and ATen calls spelled for the rules."""
    raised, parts = _raisable(model, exported.graph)
    graph = fx.Graph()
    graph._codegen = exported.graph._codegen
    env: dict[fx.Node, fx.Node] = {}
    taken: dict[fx.Node, fx.Node] = {}  # getitem(x, 0) of a first-output spelling -> its node
    for node in exported.graph.nodes:
        if node in taken:
            env[node] = taken[node]
        elif _is_check(node) or node in parts:
            continue
        elif node in raised:
            path, activation = raised[node]
            new = graph.call_module(path, (env[activation],))
            new.meta = dict(node.meta)
            env[node] = new
        else:
            env[node] = _spelled(graph, node, env, taken)
    for node in [n for n in graph.nodes if n.op == "get_attr" and not n.users]:
        graph.erase_node(node)  # the raised modules' parameter reads, and unused buffers
    root: dict[str, Any] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            root[node.target] = model.get_submodule(node.target)
        elif node.op == "get_attr":
            root[node.target] = _attribute(exported, node.target)
    lowered = fx.GraphModule(root, graph, type(model).__name__)
    for path, sub in lowered.named_modules():  # containers made by GraphModule take the model's modes
        original = _submodule(model, path)
        if original is not None and type(sub) is nn.Module:
            sub.training = original.training
    lowered.training = model.training
    return lowered


def _is_check(node: fx.Node) -> bool:
    if node.op == "call_module" and node.target == "_guards_fn":
        return True
    name = getattr(node.target, "__name__", "").split(".")[0]
    return node.op == "call_function" and name in _CHECKS and not node.users


def _spelled(graph: fx.Graph, node: fx.Node, env: dict[fx.Node, fx.Node], taken: dict[fx.Node, fx.Node]) -> fx.Node:
    spelling = spelling_of(node)
    call = spelling.call(node) if spelling is not None else None
    if spelling is not None and call is not None and spelling.first_output:
        firsts = [u for u in node.users if u.target is operator.getitem and u.args[1] == 0]
        if len(firsts) != len(node.users):  # mean or rstd are read too: keep the ATen call
            call = None
    if call is None:
        return graph.node_copy(node, lambda n: env[n])
    op, target, args, kwargs = call
    if op == "identity":
        return env[args[0]]
    new = graph.create_node(op, target, fx.map_arg(args, lambda n: env[n]), fx.map_arg(kwargs, lambda n: env[n]),
                            name=node.name)
    new.meta = dict(node.meta)
    if spelling is not None and spelling.first_output:
        taken.update((user, new) for user in node.users)
    return new


def _raisable(model: nn.Module, graph: fx.Graph) -> tuple[dict[fx.Node, tuple[str, fx.Node]], set[fx.Node]]:
    """Module calls to raise: their result -> (module path, activation), and the nodes they replace.

    A module call is the set of nodes recorded under one entry of ``nn_module_stack``
    (the weight computation of a weight-normalised conv included). It is raised when it
    reads one activation and otherwise only its own parameters, and one node of it is
    used outside it. Outer calls are taken first, so a module's own parts are never raised.
    """
    calls: dict[str, list[fx.Node]] = {}
    paths: dict[str, str] = {}
    for node in graph.nodes:
        if node.op == "call_function":
            for key, (path, _) in (node.meta.get("nn_module_stack") or {}).items():
                calls.setdefault(key, []).append(node)
                paths[key] = path
    # A module reached by several paths (ultralytics' Conv shares one SiLU) is called by its
    # first name, as symbolic tracing does: the one named_modules() and its parameters keep.
    first_names = {id(module): name for name, module in model.named_modules()}
    raised: dict[fx.Node, tuple[str, fx.Node]] = {}
    claimed: set[fx.Node] = set()
    for key, nodes in calls.items():  # dicts keep the stack order: outer calls first
        module = _submodule(model, paths[key])
        if not paths[key] or module is None or module_rule(module) is None or claimed & set(nodes) \
                or _required_inputs(module) > 1:  # raised with one activation (MHA's query, key, value)
            continue
        path = first_names.get(id(module), paths[key])
        found = _whole_forward(nodes, path)
        if found is not None:
            raised[found[0]] = (path, found[1])
            claimed.update(nodes)
    return raised, claimed - set(raised)


def _required_inputs(module: nn.Module) -> int:
    """How many arguments without a default the module's forward takes."""
    try:
        parameters = list(inspect.signature(module.forward).parameters.values())
    except (TypeError, ValueError):
        return 1
    return sum(1 for p in parameters if p.default is inspect.Parameter.empty
               and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))


def _whole_forward(nodes: list[fx.Node], path: str) -> tuple[fx.Node, fx.Node] | None:
    """(the one node whose value leaves the call, the activation it reads), if it reads one
    activation and otherwise only the module's own parameters."""
    inside = set(nodes)
    leaving = [n for n in nodes if any(user not in inside for user in n.users)]
    outside = {i for n in nodes for i in n.all_input_nodes if i not in inside}
    activations = [i for i in outside if i.op != "get_attr"]
    own = all(str(i.target).startswith(f"{path}.") for i in outside if i.op == "get_attr")
    if len(leaving) != 1 or len(activations) != 1 or not own:
        return None
    result = leaving[0]
    return (result, activations[0]) if isinstance(result.meta.get("val"), torch.Tensor) else None


def _submodule(model: nn.Module, path: str) -> nn.Module | None:
    try:
        return model.get_submodule(path) if path else model
    except AttributeError:
        return None


def _attribute(module: nn.Module, target: str) -> Any:
    owner, _, name = target.rpartition(".")
    return getattr(module.get_submodule(owner) if owner else module, name)
