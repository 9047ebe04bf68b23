"""Capturing a module for :func:`fxprune.serialize.save`: torch.export with a dynamic batch, then a check.

The module is exported in eval mode with dim 0 of every input marked as one shared batch
dim (falling back to the example's batch when the model fixes it), and the captured
program must reproduce the module's output before anything is written.

Example:
    >>> with eval_mode(module):
    ...     program, dynamic = export_program(module, (torch.randn(1, 3, 64, 64),), dynamic_batch=True)
    ...     check_program(module, program, (torch.randn(1, 3, 64, 64),))
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import fx, nn
from torch.utils._pytree import tree_unflatten

from ..errors import ExportError, InputError
from ..passes.capture_export import batch_shapes, doubled_batch, eval_mode, first_line
from ..passes.compare import tensor_leaves, value_difference

__all__ = ["check_program", "eval_mode", "export_program", "recorded_inputs"]


def export_program(module: nn.Module, inputs: tuple[Any, ...], dynamic_batch: bool) -> tuple[Any, bool]:
    """The exported program and whether its batch axis is dynamic (a warning when it cannot be)."""
    if dynamic_batch:
        shapes = batch_shapes(inputs)
        if shapes is not None:
            try:
                return torch.export.export(module, doubled_batch(inputs), dynamic_shapes=shapes), True
            except Exception as error:  # noqa: BLE001 - the model fixes its batch size: keep the example's
                warnings.warn(f"fxprune.save: the batch axis cannot be dynamic ({first_line(error)}); "
                              "the archive accepts the example's batch size only", stacklevel=3)
    try:
        return torch.export.export(module, inputs), False
    except Exception as error:
        raise ExportError(f"torch.export cannot capture {type(module).__name__}: {type(error).__name__}: "
                          f"{error}\nMake the forward free of data-dependent Python control flow, or save "
                          "the result's plan (result.plan.save) and re-apply it to the original model.") from error


def check_program(module: nn.Module, program: Any, inputs: tuple[Any, ...]) -> None:
    """Raise ExportError unless the program's outputs match the module's in structure and value."""
    with torch.no_grad():
        expected = tensor_leaves(module(*inputs))
        actual = tensor_leaves(program.module()(*inputs))
    if len(expected) != len(actual) or any(e.shape != a.shape for e, a in zip(expected, actual, strict=True)):
        raise ExportError("the exported program's outputs differ in structure or shape from the module's")
    for e, a in zip(expected, actual, strict=True):
        difference = value_difference(e, a) if e.is_floating_point() else None
        if difference is not None:
            raise ExportError(f"the exported program differs from the module by {difference:.3g} (max abs)")


def recorded_inputs(module: nn.Module) -> tuple[Any, ...]:
    """Inputs shaped like the ones fxprune.compile propagated through the module."""
    message = "save needs example_inputs for this module: pass example_inputs=(torch.randn(1, 3, 224, 224),)"
    if not isinstance(module, fx.GraphModule):
        raise InputError(message)
    values = [n.meta.get("val") for n in module.graph.nodes if n.op == "placeholder"]
    if not values or not all(isinstance(v, torch.Tensor) for v in values):
        raise InputError(message)
    tensors = [torch.randn(tuple(v.shape), dtype=v.dtype) if v.dtype.is_floating_point
               else torch.zeros(tuple(v.shape), dtype=v.dtype) for v in values]
    tree = getattr(module.graph._codegen, "pytree_info", None)
    if tree is None:
        return tuple(tensors)
    # fxprune.trace flattens list arguments; its in_spec starts with ``self``
    with_self = bool(tree.orig_args) and tree.orig_args[0] == "self"
    unflattened = tree_unflatten([None] * with_self + tensors, tree.in_spec)
    return tuple(unflattened[with_self:])
