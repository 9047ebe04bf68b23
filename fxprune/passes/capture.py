"""Capturing a model as a torch.fx graph: two front ends, one checked result.

:func:`trace` is symbolic tracing (fast, a module-level graph); the torch.export
front end (:mod:`.capture_export`) captures what tracing cannot follow.
:func:`capture` chooses between them, checks that the graph computes what the
model computes on the example inputs, and propagates shapes on it.
"""

from __future__ import annotations

import inspect
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn
from torch.utils._pytree import TreeSpec, tree_flatten, tree_map

from ..errors import InputError, TraceError
from .capture_export import eval_mode, export_graph, fresh_inputs
from .shapes import propagate_shapes

__all__ = ["Capture", "FRONT_ENDS", "capture", "trace", "normalize_inputs"]

FRONT_ENDS = ("auto", "fx", "export")
_TOLERANCE = 1e-4  # relative to the output's magnitude, as the oracle


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
    _check_arguments(model, example_inputs, leaves, concrete_args)
    tracer = _Tracer(tuple(t for t in leaves if isinstance(t, type)),
                     frozenset(t for t in leaves if isinstance(t, str)))
    args = dict(concrete_args or {})
    if example_inputs is not None:
        args = {**_structured_args(model, normalize_inputs(example_inputs)), **args}
    try:
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


def _check_arguments(model: nn.Module, example_inputs: Any, leaves: list[Any],
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
    for name, value in zip(names, inputs):
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


@dataclass(frozen=True)
class Capture:
    """A captured model with shapes propagated.

    Attributes:
        module: the graph (a GraphModule sharing the model's parameters).
        front_end: ``"fx"`` (symbolic tracing) or ``"export"`` (torch.export).
        left: why the front ends tried before this one were left, one line each.
        dynamic_batch: whether the graph runs at other batch sizes.
        note: why the batch is fixed, when it is.
        check_seconds: the cost of comparing the graph with the model (None: not checked).
        macs: the model's MACs on the example inputs.
    """

    module: fx.GraphModule
    front_end: str
    left: tuple[str, ...]
    dynamic_batch: bool
    note: str
    check_seconds: float | None
    macs: int

    def describe(self) -> str:
        text = "symbolic tracing" if self.front_end == "fx" else "torch.export"
        if not self.dynamic_batch:
            text += f", batch fixed at the example's ({self.note})"
        if self.check_seconds is not None:
            text += f", checked against the model in {self.check_seconds:.2f} s"
        return text + "".join(f"\n    left {line}" for line in self.left)


def capture(model: nn.Module, example_inputs: Any, *, front_end: str = "auto", check: bool = True,
            leaf_modules: Iterable[type | str] = (), concrete_args: dict[str, Any] | None = None) -> Capture:
    """Capture ``model`` as a graph with symbolic tracing or torch.export, checked and shaped.

    Under ``"auto"`` symbolic tracing is tried first; torch.export takes over when tracing
    fails, when the traced graph does not compute the model's outputs on the example inputs
    (``check``: one eager run of each, in eval mode), or when the inputs fit the model but not
    the traced graph. ``leaf_modules`` and ``concrete_args`` steer symbolic tracing only.

    Raises:
        InputError: the model does not run on the example inputs, or the arguments are wrong.
        TraceError: no front end captures the model; the message names each failure.

    Example:
        >>> captured = capture(model, (torch.randn(2, 3, 64, 64),))
        >>> captured.front_end, captured.module.graph
    """
    if front_end not in FRONT_ENDS:
        raise InputError(f"capture must be one of {', '.join(FRONT_ENDS)}, got {front_end!r}")
    if not isinstance(check, bool):
        raise InputError(f"check_capture must be True or False, got {check!r}")
    inputs = normalize_inputs(example_inputs)
    leaves = list(leaf_modules)
    _check_arguments(model, inputs, leaves, concrete_args)
    started = time.perf_counter()
    expected = _eager_outputs(model, inputs) if check else None
    check_seconds = time.perf_counter() - started if check else None
    left: list[str] = []
    shape_error: InputError | None = None
    for name in ("fx", "export") if front_end == "auto" else (front_end,):
        try:
            if name == "fx":
                module, dynamic, note = trace(model, inputs, leaf_modules=leaves, concrete_args=concrete_args), True, ""
            else:
                exported = export_graph(model, inputs)
                module, dynamic, note = exported.module, exported.dynamic_batch, exported.note
        except Exception as error:  # each front end's failure is reported beside the other's
            left.append(f"{name}: {_first_line(error)}")
            continue
        if expected is not None:
            started = time.perf_counter()
            mismatch = _mismatch(module, inputs, expected)
            check_seconds = (check_seconds or 0.0) + time.perf_counter() - started
            if mismatch:
                left.append(f"{name}: the captured graph {mismatch}")
                continue
        try:
            macs = propagate_shapes(module, inputs)
        except InputError as error:  # the model ran on these inputs (or was not run): the capture is at fault
            shape_error = shape_error or error
            left.append(f"{name}: shapes do not propagate: {_first_line(error)}")
            continue
        return Capture(module, name, tuple(left), dynamic, note, check_seconds, macs)
    if shape_error is not None and expected is None:
        raise shape_error  # unchecked inputs that no front end's graph accepts: most likely the inputs
    raise TraceError(f"cannot capture {type(model).__name__}:\n  " + "\n  ".join(left) + "\n" + _WAYS_OUT)


_WAYS_OUT = ("Ways out: make the forward's Python control flow depend on shapes rather than values "
             "(torch.export specialises it on the example inputs; .item() or a data-dependent number of "
             "outputs cannot be captured); register a module as a leaf (leaf_modules=[...]) or pass "
             "concrete_args for symbolic tracing; or prune the submodules that capture on their own.")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    line = text.splitlines()[0] if text else ""
    return line if isinstance(error, TraceError) else f"{type(error).__name__}: {line}"


def _eager_outputs(model: nn.Module, inputs: tuple[Any, ...]) -> Any:
    """The model's own outputs on the example inputs (eval mode, real tensors)."""
    try:
        with eval_mode(model), torch.no_grad():
            return model(*fresh_inputs(inputs))
    except Exception as error:
        raise InputError(f"{type(model).__name__} does not run on the example inputs: {_first_line(error)}\n"
                         "Check their number, shapes and dtype against the model's forward.") from error


def _mismatch(module: fx.GraphModule, inputs: tuple[Any, ...], expected: Any) -> str | None:
    """How the graph's outputs differ from the model's, or None when they agree."""
    try:
        with eval_mode(module), torch.no_grad():
            actual = module(*fresh_inputs(inputs))
    except Exception as error:
        return f"does not run on inputs the model runs on ({_first_line(error)})"
    want, want_spec = tree_flatten(expected)
    got, got_spec = tree_flatten(actual)
    if want_spec != got_spec:
        return f"returns {got_spec} where the model returns {want_spec}"
    for a, b in zip(want, got):
        if isinstance(a, torch.Tensor) != isinstance(b, torch.Tensor):
            return "returns a tensor where the model returns another value"
        if not isinstance(a, torch.Tensor):
            continue
        if a.shape != b.shape or a.dtype != b.dtype:
            return f"returns a {tuple(b.shape)} tensor where the model returns {tuple(a.shape)}"
        if a.is_floating_point() and a.numel():
            error = (a - b).abs().max().item()
            if not error <= _TOLERANCE * max(1.0, a.abs().max().item()):
                return f"computes other values than the model (max difference {error:.3g})"
        elif not torch.equal(a, b):
            return "computes other values than the model"
    return None
