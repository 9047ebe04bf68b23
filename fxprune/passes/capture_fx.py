"""Symbolic tracing: the torch.fx front end, with errors that say how to get past it."""

from __future__ import annotations

import inspect
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import torch
from torch import fx, nn
from torch.utils._pytree import TreeSpec, tree_flatten, tree_map

from ..errors import InputError, TraceError
from .capture_export import attributes_kept

__all__ = ["check_arguments", "normalize_inputs", "trace"]


def normalize_inputs(example_inputs: Any) -> tuple[Any, ...]:
    """Example inputs as a tuple of positional arguments (a lone tensor becomes a 1-tuple)."""
    if example_inputs is None:
        raise InputError("example_inputs is required: pass e.g. example_inputs=(torch.randn(1, 3, 224, 224),)")
    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,)
    if isinstance(example_inputs, list):
        return (example_inputs,) if any(isinstance(x, torch.Tensor) for x in example_inputs) else tuple(example_inputs)
    if isinstance(example_inputs, tuple):
        return example_inputs
    raise InputError(f"example_inputs must be a tensor or a tuple of arguments, got {type(example_inputs).__name__}")


class _Tracer(fx.Tracer):
    """A tracer that keeps user-chosen leaf modules and remembers where it is."""

    def __init__(self, leaf_types: tuple[type, ...], leaf_names: frozenset[str]) -> None:
        super().__init__()
        self.leaf_types, self.leaf_names = leaf_types, leaf_names
        self.path: list[str] = []
        self.failed_path: list[str] | None = None  # where tracing raised, kept past the unwinding
        self.output_spec: TreeSpec | None = None

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if isinstance(m, self.leaf_types) or module_qualified_name in self.leaf_names:
            return True
        return super().is_leaf_module(m, module_qualified_name)

    def create_args_for_root(self, root_fn: Any, is_module: bool, concrete_args: Any = None) -> tuple[Any, Any]:
        fn, args = super().create_args_for_root(root_fn, is_module, concrete_args)
        if isinstance(self.graph._codegen, fx.graph._PyTreeCodeGen):
            return fn, args  # flattened inputs: torch.fx keeps the output's structure already

        def recording(*inputs: Any) -> Any:
            out = fn(*inputs)
            self.output_spec = tree_flatten(out)[1]
            return out

        return recording, args

    def call_module(self, m: nn.Module, forward: Any, args: tuple, kwargs: dict) -> Any:
        self.path.append(self.path_of_module(m))
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            if self.failed_path is None:  # the innermost module, before the stack unwinds
                self.failed_path = list(self.path)
            raise
        finally:
            self.path.pop()


def trace(model: nn.Module, example_inputs: Any = None, *,
          leaf_modules: Iterable[type | str] = (), concrete_args: dict[str, Any] | None = None) -> fx.GraphModule:
    """Symbolically trace ``model`` into a GraphModule that shares its parameters.

    Arguments given as lists, tuples or dicts of tensors (a SlowFast model taking
    ``[slow, fast]``) are flattened into one placeholder per tensor; the returned
    module still takes them in their original structure.

    Args:
        model: the module to trace; it is not modified.
        example_inputs: positional arguments of ``model.forward`` (used for their structure).
        leaf_modules: module types or qualified names to keep as opaque calls.
        concrete_args: values to specialise on, as in ``torch.fx.symbolic_trace``.

    Raises:
        TraceError: naming the module and operation that could not be traced.

    Example:
        >>> gm = trace(torchvision.models.resnet18(), (torch.randn(1, 3, 64, 64),))
    """
    leaves = list(leaf_modules)
    check_arguments(model, example_inputs, leaves, concrete_args)
    tracer = _Tracer(tuple(t for t in leaves if isinstance(t, type)),
                     frozenset(t for t in leaves if isinstance(t, str)))
    args = dict(concrete_args or {})
    if example_inputs is not None:
        args = {**_structured_args(model, normalize_inputs(example_inputs)), **args}
    try:
        with attributes_kept(model):  # a forward storing a Proxy on the model would break it
            graph = tracer.trace(model, concrete_args=args or None)
    except Exception as error:  # every tracing failure becomes one actionable message
        raise TraceError(_explain(error, tracer.failed_path or tracer.path)) from error
    _keep_output_containers(graph, tracer.output_spec)
    _drop_flattened_defaults(graph)
    name = model.__class__.__name__
    try:
        traced = fx.GraphModule(tracer.root, graph, name)
    except Exception as error:
        raise TraceError(f"cannot build a GraphModule from the traced graph: {type(error).__name__}: {error}\n"
                         "Pass the arguments as plain tensors, or specialise them with concrete_args.") from error
    # GraphModule re-creates container modules (a Sequential holding leaves) in training mode.
    originals = dict(model.named_modules())
    for path, sub in traced.named_modules():
        if path in originals and type(sub) is nn.Module:
            sub.training = originals[path].training
    return traced


def check_arguments(model: nn.Module, example_inputs: Any, leaves: list[Any],
                     concrete_args: dict[str, Any] | None) -> None:
    """Reject what tracing would silently ignore: extra inputs, unknown names, odd leaves."""
    if not isinstance(model, nn.Module):
        raise InputError(f"fxprune needs an nn.Module, got {type(model).__name__}")
    bad_leaves = [leaf for leaf in leaves if not isinstance(leaf, (type, str))]
    if bad_leaves:
        raise InputError(f"leaf_modules must hold module types or qualified names, got {bad_leaves!r}")
    signature = inspect.signature(model.forward)
    names = list(signature.parameters)
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())
    unknown = [key for key in (concrete_args or {}) if key not in names]
    if unknown and not takes_any:
        raise InputError(f"concrete_args names {unknown} are not arguments of {type(model).__name__}.forward; "
                         f"its arguments are {names}")
    if example_inputs is not None:
        inputs = normalize_inputs(example_inputs)
        try:
            signature.bind_partial(*inputs)
        except TypeError as error:
            raise InputError(f"{len(inputs)} example inputs do not fit {type(model).__name__}.forward"
                             f"({', '.join(names)}): "
                             f"{error}. Pass one value per positional argument, as a tuple.") from error


def _keep_output_containers(graph: fx.Graph, spec: TreeSpec | None) -> None:
    """torch.fx rebuilds every dict it returns as a plain ``dict``: a segmentation model's
    ``OrderedDict(out=..., aux=...)`` would come back changed. Returning the flat outputs
    through the traced tree spec (as fx does for flattened inputs) keeps the container."""
    if spec is None or not _holds(spec, OrderedDict):
        return
    output = next(iter(graph.find_nodes(op="output")))
    leaves, _ = tree_flatten(output.args[0])
    output.args = (leaves,)
    placeholders = [node.target for node in graph.find_nodes(op="placeholder")]
    graph._codegen = fx.graph._PyTreeCodeGen(fx.graph._PyTreeInfo(
        ["self", *placeholders], tree_flatten(("self", *placeholders))[1], spec))


def _holds(spec: TreeSpec, container: type) -> bool:
    return spec.type is container or any(_holds(child, container) for child in spec.children())


def _drop_flattened_defaults(graph: fx.Graph) -> None:
    """Arguments flattened from containers are unpacked in one statement, which cannot hold
    defaults (torch.fx emits ``x_1 = None, = tree_flatten_spec(...)``, a syntax error)."""
    if isinstance(graph._codegen, fx.graph._PyTreeCodeGen):
        for node in graph.find_nodes(op="placeholder"):
            node.args = ()


def _structured_args(model: nn.Module, inputs: tuple[Any, ...]) -> dict[str, Any]:
    """Placeholders for arguments that are containers of tensors."""
    names = list(inspect.signature(model.forward).parameters)
    structured = {}
    for name, value in zip(names, inputs, strict=False):
        leaves, _ = tree_flatten(value)
        if not isinstance(value, torch.Tensor) and any(isinstance(v, torch.Tensor) for v in leaves):
            structured[name] = tree_map(lambda v: fx.PH if isinstance(v, torch.Tensor) else v, value)
    return structured


def _explain(error: Exception, path: list[str]) -> str:
    where = f"in module '{path[-1]}' ({'/'.join(path)})" if path and path[-1] else "in the model's forward"
    return (f"cannot trace {where}: {type(error).__name__}: {error}\n"
            "Ways out: register that module as a leaf (leaf_modules=[MyBlock] or ['its.name']) so it is "
            "kept whole and its channels frozen; pass concrete_args={'flag': value} to specialise "
            "Python control flow on an argument; or make the forward free of data-dependent branches.")
