"""Output shapes that rules state, so that shape propagation need not run the call.

Each function here is a :data:`~fxprune.rules.registry.ShapeFunction`: from the
call's fake inputs it returns ``(output, flops)``, or None for a form it does not
cover (the node then runs on fake tensors, which is always right). Running a
BatchNorm on fake tensors dispatches a dozen ops, and converting a conv's real
weight into a fake one costs more than the conv's whole shape formula, so stating
the output of the common operators is most of the speed of shape propagation.

Every function answers only where its output is certain in shape, dtype *and*
strides (a later ``.view`` depends on strides): ``tests/test_rule_shapes.py``
compares each stated output with fake-tensor propagation over the operator suite.

Example:
    >>> register_function(torch.tanh, rule=Rule(passthrough, shape=valuewise))
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import conv_flop_count

__all__ = ["valuewise", "normalising", "broadcast_binary", "concatenated", "conv_output", "linear_output"]

#: Keywords that change what a value-wise call returns (its dtype, strides or destination).
_FORM_KEYWORDS = frozenset({"dtype", "memory_format", "out", "device", "layout"})


def _dense(x: torch.Tensor) -> bool:
    """Laid out densely in a standard memory format: value-wise ops keep such strides."""
    if x.is_contiguous():
        return True
    formats = {4: torch.channels_last, 5: torch.channels_last_3d}
    return x.dim() in formats and x.is_contiguous(memory_format=formats[x.dim()])


def _single_input(args: tuple, kwargs: dict) -> torch.Tensor | None:
    """The call's one tensor, its first argument, when it is floating point and nothing recasts it."""
    x = args[0] if args else None
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or _FORM_KEYWORDS & kwargs.keys():
        return None
    if any(isinstance(v, torch.Tensor) for v in (*args[1:], *kwargs.values())):
        return None
    return x


def valuewise(module: nn.Module | None, args: tuple, kwargs: dict) -> tuple[Any, int] | None:
    """Activations, dropout, copies of one floating tensor: the output is like the input.

    TensorIterator keeps the input's strides for a dense input, so the input's own fake
    value stands for the output; the FLOP counter counts nothing for these ops.
    """
    x = _single_input(args, kwargs)
    return (x, 0) if x is not None and _dense(x) else None


def normalising(module: nn.Module | None, args: tuple, kwargs: dict) -> tuple[Any, int] | None:
    """Norm layers (module or function): the output has the input's shape and dtype.

    Only a contiguous input is answered: LayerNorm and GroupNorm write a contiguous
    output from a channels-last input. The other tensor arguments of the functional
    forms are per-channel vectors (running statistics, weight, bias).
    """
    x = args[0] if args else None
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or not x.is_contiguous() \
            or _FORM_KEYWORDS & kwargs.keys():
        return None
    return x, 0


def broadcast_binary(module: nn.Module | None, args: tuple, kwargs: dict) -> tuple[Any, int] | None:
    """``a + b`` and friends on two floating tensors of one shape, dtype and layout: like ``a``."""
    if len(args) != 2 or kwargs:
        return None
    a, b = args
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor) or not a.is_floating_point():
        return None
    if a.shape != b.shape or a.dtype != b.dtype or a.stride() != b.stride() or not _dense(a):
        return None
    return a, 0


def concatenated(module: nn.Module | None, args: tuple, kwargs: dict) -> tuple[Any, int] | None:
    """``torch.cat`` of contiguous tensors of one dtype and rank: a contiguous tensor, the sizes summed."""
    if not args or len(args) > 2 or set(kwargs) - {"dim"}:
        return None
    tensors, dim = args[0], args[1] if len(args) > 1 else kwargs.get("dim", 0)
    if not isinstance(tensors, (list, tuple)) or not tensors or not isinstance(dim, int):
        return None
    first = tensors[0]
    if not all(isinstance(t, torch.Tensor) and t.is_contiguous() for t in tensors) or first.dim() == 0:
        return None
    dim %= first.dim()
    for t in tensors[1:]:
        if t.dtype != first.dtype or t.device != first.device or t.dim() != first.dim() \
                or any(t.shape[d] != first.shape[d] for d in range(first.dim()) if d != dim):
            return None
    shape = list(first.shape)
    shape[dim] = sum(int(t.shape[dim]) for t in tensors)
    return first.new_empty(shape), 0


def _layer_input(module: nn.Module, args: tuple, kwargs: dict) -> torch.Tensor | None:
    """The one input of a conv or linear layer when the formula holds: contiguous, of the weight's dtype."""
    if kwargs or len(args) != 1 or not isinstance(args[0], torch.Tensor):
        return None
    x, weight = args[0], getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor) or x.dtype != weight.dtype or not x.is_contiguous():
        return None
    return x


def linear_output(module: nn.Module | None, args: tuple, kwargs: dict) -> tuple[Any, int] | None:
    """An ``nn.Linear`` call by formula: the FLOP counter's count is 2 * rows * in * out."""
    if not isinstance(module, nn.Linear) or type(module) is not nn.Linear:  # a subclass may compute otherwise
        return None
    x = _layer_input(module, args, kwargs)
    if x is None or x.dim() < 1 or x.shape[-1] != module.in_features:
        return None
    rows = x.numel() // module.in_features
    return x.new_empty((*x.shape[:-1], module.out_features)), 2 * rows * module.in_features * module.out_features


def conv_output(module: nn.Module | None, args: tuple, kwargs: dict) -> tuple[Any, int] | None:
    """An ``nn.Conv1d/2d/3d`` call by formula: most of its fake run converts the weight to a fake.

    The FLOP count is ``conv_flop_count``'s, which needs the weight's shape only.
    Transposed convs and subclasses run on fake tensors.
    """
    if not isinstance(module, nn.modules.conv._ConvNd) or type(module) not in (nn.Conv1d, nn.Conv2d, nn.Conv3d):
        return None
    x = _layer_input(module, args, kwargs)
    if x is None:
        return None
    spatial = x.dim() - 2
    if spatial != len(module.kernel_size) or x.shape[1] != module.in_channels:
        return None
    sizes = [_conv_size(x.shape[2 + d], module, d) for d in range(spatial)]
    if min(sizes) < 1:
        return None  # let the real op raise its own error
    out = x.new_empty((x.shape[0], module.out_channels, *sizes))
    return out, conv_flop_count(list(x.shape), list(module.weight.shape), list(out.shape))


def _conv_size(size: int, conv: nn.modules.conv._ConvNd, dim: int) -> int:
    padding = conv.padding
    if padding == "same":
        return size
    pad = 0 if isinstance(padding, str) else padding[dim]  # "valid"
    span = conv.dilation[dim] * (conv.kernel_size[dim] - 1) + 1
    return (size + 2 * pad - span) // conv.stride[dim] + 1
