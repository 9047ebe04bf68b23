"""Capturing a model as a torch.fx graph: two front ends, one checked result.

:func:`trace` is symbolic tracing (fast, a module-level graph); the torch.export
front end (:mod:`.capture_export`) captures what tracing cannot follow.
:func:`capture` chooses between them, checks that the graph computes what the
model computes on the example inputs, and propagates shapes on it.
"""

from __future__ import annotations

import time
import types
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import fx, nn
from torch.utils._pytree import tree_flatten

from ..errors import InputError, TraceError
from ..rules import lookup, register_optional_rules
from .capture_export import eval_mode, export_graph, first_line, fresh_inputs
from .capture_fx import check_arguments, normalize_inputs, trace
from .compare import value_difference
from .shapes import propagate_shapes

__all__ = ["Capture", "FRONT_ENDS", "capture", "normalize_inputs", "output_mismatch", "trace", "wrapped_calls"]

FRONT_ENDS = ("auto", "fx", "export")


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
    check_arguments(model, inputs, leaves, concrete_args)
    started = time.perf_counter()
    expected = _eager_outputs(model, inputs) if check else None
    check_seconds = time.perf_counter() - started if check else None
    left: list[str] = []
    shape_error: InputError | None = None
    fallback: Capture | None = None
    for name in ("fx", "export") if front_end == "auto" else (front_end,):
        try:
            if name == "fx":
                module, dynamic, note = trace(model, inputs, leaf_modules=leaves, concrete_args=concrete_args), True, ""
            else:
                exported = export_graph(model, inputs)
                module, dynamic, note = exported.module, exported.dynamic_batch, exported.note
        except Exception as error:  # noqa: BLE001 - each front end's failure is reported beside the other's
            left.append(f"{name}: {_first_line(error)}")
            continue
        if expected is not None:
            started = time.perf_counter()
            mismatch = output_mismatch(module, inputs, expected)
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
        opaque = wrapped_calls(module) if name == "fx" and front_end == "auto" else []
        if opaque:  # torch.export sees the ATen ops inside them; symbolic tracing stays the fallback
            fallback = Capture(module, name, tuple(left), dynamic, note, check_seconds, macs)
            left.append(f"fx: keeps {', '.join(opaque[:3])} whole (wrapped functions without a rule)")
            continue
        return Capture(module, name, tuple(left), dynamic, note, check_seconds, macs)
    if fallback is not None:
        return replace(fallback, left=tuple(left))
    if shape_error is not None and expected is None:
        raise shape_error  # unchecked inputs that no front end's graph accepts: most likely the inputs
    raise TraceError(f"cannot capture {type(model).__name__}:\n  " + "\n  ".join(left) + "\n" + _WAYS_OUT)


_WAYS_OUT = ("Ways out: make the forward's Python control flow depend on shapes rather than values "
             "(torch.export specialises it on the example inputs; .item() or a data-dependent number of "
             "outputs cannot be captured); register a module as a leaf (leaf_modules=[...]) or pass "
             "concrete_args for symbolic tracing; or prune the submodules that capture on their own "
             "(compile(..., submodules=True), CLI --submodules).")


def wrapped_calls(module: fx.GraphModule) -> list[str]:
    """Names of the Python functions a traced graph calls whole (``torch.fx.wrap``) that have no rule.

    Symbolic tracing records such a function as one opaque call (torchvision's
    ``shifted_window_attention``), which freezes every channel it touches; torch.export
    runs it and records the ATen operators inside, which have rules.
    """
    register_optional_rules()
    found = []
    for node in module.graph.nodes:
        if node.op != "call_function" or lookup(node) is not None:
            continue
        owner = getattr(node.target, "__module__", None) or ""
        if isinstance(node.target, types.FunctionType) and owner.split(".")[0] not in ("torch", "operator", "math"):
            found.append(getattr(node.target, "__name__", str(node.target)))
    return list(dict.fromkeys(found))


def _first_line(error: BaseException) -> str:
    """One line for a front end's failure; a TraceError's message names its cause already."""
    return first_line(error) if isinstance(error, TraceError) else f"{type(error).__name__}: {first_line(error)}"


def _eager_outputs(model: nn.Module, inputs: tuple[Any, ...]) -> Any:
    """The model's own outputs on the example inputs (eval mode, real tensors)."""
    try:
        with eval_mode(model), torch.no_grad():
            return model(*fresh_inputs(inputs))
    except Exception as error:
        raise InputError(f"{type(model).__name__} does not run on the example inputs: {_first_line(error)}\n"
                         "Check their number, shapes and dtype against the model's forward.") from error


def output_mismatch(module: fx.GraphModule, inputs: tuple[Any, ...], expected: Any) -> str | None:
    """How the graph's outputs on ``inputs`` differ from ``expected`` (the model's), or None when they agree."""
    try:
        with eval_mode(module), torch.no_grad():
            actual = module(*fresh_inputs(inputs))
    except Exception as error:  # noqa: BLE001 - any failure of the graph is a mismatch, reported
        return f"does not run on inputs the model runs on ({_first_line(error)})"
    want, want_spec = tree_flatten(expected)
    got, got_spec = tree_flatten(actual)
    if want_spec != got_spec:
        return f"returns {got_spec} where the model returns {want_spec}"
    for a, b in zip(want, got, strict=True):
        if isinstance(a, torch.Tensor) != isinstance(b, torch.Tensor):
            return "returns a tensor where the model returns another value"
        if not isinstance(a, torch.Tensor):
            continue
        if a.shape != b.shape or a.dtype != b.dtype:
            return f"returns a {tuple(b.shape)} tensor where the model returns {tuple(a.shape)}"
        if a.is_floating_point():
            difference = value_difference(a, b)
            if difference is not None:
                return f"computes other values than the model (max difference {difference:.3g})"
        elif not torch.equal(a, b):
            return "computes other values than the model"
    return None
