"""Shape propagation on fake tensors, counting FLOPs on the way.

Fake tensors carry shapes and dtypes but no data, so the cost does not grow with
input resolution or batch. ``torch.utils.flop_counter`` sees the same dispatch,
so one pass gives every node's ``meta['val']`` and the model's MACs.
"""

from __future__ import annotations

import logging
import operator
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch._subclasses.fake_tensor import (DataDependentOutputException, DynamicOutputShapeException, FakeTensorMode,
                                           unset_fake_temporarily)
from torch.fx.passes.fake_tensor_prop import FakeTensorProp
from torch.utils._pytree import tree_map
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count, sdpa_flop_count

from ..errors import InputError

__all__ = ["propagate_shapes", "flop_counter"]

# Layers whose output has the input's shape and dtype and whose cost the FLOP counter
# ignores: their fake execution (BatchNorm decomposes into a dozen ops) is skipped.
SHAPE_PRESERVING = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.InstanceNorm1d, nn.InstanceNorm2d,
    nn.InstanceNorm3d, nn.GroupNorm, nn.LayerNorm, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.GELU,
    nn.SiLU, nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Sigmoid, nn.Tanh, nn.Softplus,
    nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.PReLU,
)


# Functions and methods likewise: unary value-wise ops, and binary ones whose two
# tensor operands already agree in shape and dtype.
UNARY = {F.relu, F.relu6, F.gelu, F.silu, F.hardswish, F.hardsigmoid, F.sigmoid, F.tanh, F.leaky_relu, F.elu,
         F.mish, F.dropout, F.dropout2d, F.dropout3d, torch.relu, torch.sigmoid, torch.tanh,
         "relu", "relu_", "sigmoid", "tanh", "clone", "detach"}  # not contiguous: it changes strides
BINARY = {operator.add, operator.sub, operator.mul, operator.truediv, operator.iadd, operator.imul, torch.add,
          torch.sub, torch.mul, torch.div, "add", "add_", "mul", "mul_", "sub", "div"}


_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _layer_shortcut(module: nn.Module, args: tuple, kwargs: dict) -> tuple[Any, int] | None:
    """(fake output, FLOPs) of a conv or linear layer, by formula, or None to run it on fakes.

    Most of the fake-execution time goes to converting each real weight into a fake one;
    the output shape and the FLOP counter's own count (``conv_flop_count``, 2*M*N*K for a
    linear) need only the weight's shape. Taken only for contiguous batched input of the
    weight's dtype, where the output is contiguous too.
    """
    if kwargs or len(args) != 1 or not isinstance(args[0], torch.Tensor):
        return None
    x, weight = args[0], getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor) or x.dtype != weight.dtype or not x.is_contiguous():
        return None
    if type(module) is nn.Linear:
        if x.dim() < 1 or x.shape[-1] != module.in_features:
            return None
        rows = x.numel() // module.in_features
        return x.new_empty((*x.shape[:-1], module.out_features)), 2 * rows * module.in_features * module.out_features
    if type(module) in _CONVS:
        spatial = x.dim() - 2
        if spatial != len(module.kernel_size) or x.shape[1] != module.in_channels:
            return None
        sizes = [_conv_size(x.shape[2 + d], module, d) for d in range(spatial)]
        if min(sizes) < 1:
            return None  # let the real op raise its own error
        out = x.new_empty((x.shape[0], module.out_channels, *sizes))
        return out, conv_flop_count(list(x.shape), list(weight.shape), list(out.shape))
    return None


def _conv_size(size: int, conv: nn.Module, dim: int) -> int:
    padding = conv.padding
    if padding == "same":
        return size
    pad = 0 if padding == "valid" else padding[dim]
    span = conv.dilation[dim] * (conv.kernel_size[dim] - 1) + 1
    return (size + 2 * pad - span) // conv.stride[dim] + 1


def _shortcut(target: Any, args: tuple, kwargs: dict) -> Any:
    """The result's fake value when the op cannot change shape or dtype, else None."""
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    if not tensors or not tensors[0].is_floating_point():
        return None
    if target in UNARY and len(tensors) == 1 and not any(isinstance(v, torch.Tensor) for v in kwargs.values()):
        return tensors[0]
    if target in BINARY and len(args) == 2 and len(tensors) == 2 and not kwargs \
            and tensors[0].shape == tensors[1].shape and tensors[0].dtype == tensors[1].dtype:
        return tensors[0]
    return None


class _ShapeProp(FakeTensorProp):
    """Fake propagation that also records each node's FLOPs in ``meta['flops']``."""

    counter: FlopCounterMode | None = None
    current: fx.Node | None = None
    formula_flops = 0  # FLOPs of the layers shape-computed by formula, beside the counter's

    def total_flops(self) -> int:
        return (self.counter.get_total_flops() if self.counter is not None else 0) + self.formula_flops

    def run_node(self, n: fx.Node) -> Any:
        self.current = n
        before = self.total_flops()
        result = super().run_node(n)
        n.meta["flops"] = self.total_flops() - before
        return result

    def fetch_args_kwargs_from_env(self, n: fx.Node) -> tuple[tuple, dict]:
        # The generated forward passes plain lists; some layers mutate them in place.
        args, kwargs = super().fetch_args_kwargs_from_env(n)
        return _mutable(args), _mutable(kwargs)

    def call_function(self, target: Any, args: tuple, kwargs: dict) -> Any:
        shortcut = _shortcut(target, args, kwargs)
        return shortcut if shortcut is not None else super().call_function(target, args, kwargs)

    def call_method(self, target: Any, args: tuple, kwargs: dict) -> Any:
        shortcut = _shortcut(target, args, kwargs)
        return shortcut if shortcut is not None else super().call_method(target, args, kwargs)

    def call_module(self, target: Any, args: tuple, kwargs: dict) -> Any:
        module = self.fetch_attr(target)
        if type(module) in SHAPE_PRESERVING and len(args) == 1 and not kwargs \
                and isinstance(args[0], torch.Tensor) and args[0].is_floating_point():
            return args[0]
        by_formula = _layer_shortcut(module, args, kwargs)
        if by_formula is not None:
            self.formula_flops += by_formula[1]
            return by_formula[0]
        try:
            return super().call_module(target, args, kwargs)
        except (DataDependentOutputException, DynamicOutputShapeException):
            return self._run_for_real(module, args, kwargs)

    def _run_for_real(self, module: nn.Module, args: tuple, kwargs: dict) -> Any:
        """A leaf module whose forward branches on data (why it was made a leaf) cannot run
        on fake tensors: run it once on zeros of the same shapes, assuming that its output
        shapes do not depend on the values."""
        with unset_fake_temporarily():
            real = tree_map(lambda v: torch.zeros(v.shape, dtype=v.dtype) if isinstance(v, torch.Tensor) else v,
                            (args, kwargs))
            with torch.no_grad():
                out = module(*real[0], **real[1])
        return tree_map(lambda v: self._mode.from_tensor(v) if isinstance(v, torch.Tensor) else v, out)


def _cpu_attention_flops(query: Any, key: Any, value: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    return sdpa_flop_count(query, key, value)


# Attention kernels the FLOP counter has no formula for (it counts the CUDA ones): on CPU,
# scaled_dot_product_attention (and nn.MultiheadAttention through it) would count 0.
_MISSING_FORMULAS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flops}


def flop_counter() -> FlopCounterMode:
    """``torch.utils.flop_counter.FlopCounterMode`` that also counts CPU attention kernels.

    Example:
        >>> with flop_counter() as counter:
        ...     model(x)
        >>> macs = counter.get_total_flops() // 2
    """
    return FlopCounterMode(display=False, custom_mapping=_MISSING_FORMULAS)


def propagate_shapes(module: fx.GraphModule, example_inputs: tuple[Any, ...]) -> int:
    """Store a fake ``meta['val']`` (and ``meta['flops']``) on every node of ``module``; return its MACs.

    Raises:
        InputError: the example inputs do not fit the model (wrong shape, dtype or count).
    """
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    fake = tree_map(lambda v: mode.from_tensor(v) if isinstance(v, torch.Tensor) else v, example_inputs)
    prop = _ShapeProp(module, mode)
    # Training-mode layers update real buffers in Python (BatchNorm's
    # num_batches_tracked): run in eval mode, which has the same shapes.
    training = [m for m in module.modules() if m.training]
    # A shape error is reported below as one InputError; keep torch's fake-tensor logger
    # from printing its own traceback first.
    fake_logger = logging.getLogger("torch._subclasses.fake_tensor")
    level = fake_logger.level
    fake_logger.setLevel(logging.CRITICAL)
    try:
        for m in training:
            m.training = False
        with flop_counter() as counter:
            prop.counter = counter
            prop.propagate_dont_convert_inputs(*fake)
    except Exception as error:
        node = _failing_node(module, prop)
        failure = InputError(f"the example inputs do not fit the model at {node}: {type(error).__name__}: "
                             f"{str(error).splitlines()[0] if str(error) else ''}\n"
                             "Check their number, shapes and dtype against the model's forward.")
        failure.node = prop.current.name if prop.current is not None else None
        raise failure from error
    finally:
        fake_logger.setLevel(level)
        for m in training:
            m.training = True
    return prop.total_flops() // 2


def _mutable(value: Any) -> Any:
    if isinstance(value, fx.immutable_collections.immutable_list):
        return [_mutable(v) for v in value]
    if isinstance(value, fx.immutable_collections.immutable_dict):
        return {k: _mutable(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_mutable(v) for v in value)
    return value


def _failing_node(module: fx.GraphModule, prop: _ShapeProp) -> str:
    return prop.current.format_node() if prop.current is not None else "the model's inputs"
