"""Shape propagation on fake tensors, counting FLOPs on the way.

Fake tensors carry shapes and dtypes but no data, so the cost does not grow with
input resolution or batch. ``torch.utils.flop_counter`` sees the same dispatch,
so one pass gives every node's ``meta['val']`` and the model's MACs.

A node whose rule states its output (``Rule.shape``: activations, norms, same-shape
arithmetic, cat, conv and linear layers by formula) is not run at all: its rule
gives the fake output and the FLOPs the counter would have counted.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import fx, nn
from torch._subclasses.fake_tensor import (
    DataDependentOutputException,
    DynamicOutputShapeException,
    FakeTensorMode,
    unset_fake_temporarily,
)
from torch.fx.passes.fake_tensor_prop import FakeTensorProp
from torch.utils._pytree import tree_map
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from ..errors import InputError
from ..rules import lookup

__all__ = ["propagate_shapes", "flop_counter"]

class _ShapeProp(FakeTensorProp):
    """Fake propagation that also records each node's FLOPs in ``meta['flops']``."""

    counter: FlopCounterMode | None = None
    current: fx.Node | None = None
    stated_flops = 0  # FLOPs of the nodes whose rule stated their output, beside the counter's
    rule_shapes = True

    def total_flops(self) -> int:
        return (self.counter.get_total_flops() if self.counter is not None else 0) + self.stated_flops

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

    def _stated(self, module: nn.Module | None, args: tuple, kwargs: dict) -> Any:
        """The output the node's rule states (its FLOPs counted), or None to run the node."""
        rule = lookup(self.current, module) if self.rule_shapes and self.current is not None else None
        stated = rule.shape(module, args, kwargs) if rule is not None and rule.shape is not None else None
        if stated is None:
            return None
        self.stated_flops += stated[1]
        return stated[0]

    def call_function(self, target: Any, args: tuple, kwargs: dict) -> Any:
        stated = self._stated(None, args, kwargs)
        return stated if stated is not None else super().call_function(target, args, kwargs)

    def call_method(self, target: Any, args: tuple, kwargs: dict) -> Any:
        stated = self._stated(None, args, kwargs)
        return stated if stated is not None else super().call_method(target, args, kwargs)

    def call_module(self, target: Any, args: tuple, kwargs: dict) -> Any:
        module = self.fetch_attr(target)
        stated = self._stated(module, args, kwargs)
        if stated is not None:
            return stated
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


def propagate_shapes(module: fx.GraphModule, example_inputs: tuple[Any, ...], *, rule_shapes: bool = True) -> int:
    """Store a fake ``meta['val']`` (and ``meta['flops']``) on every node of ``module``; return its MACs.

    Args:
        module: the captured graph.
        example_inputs: its forward's arguments.
        rule_shapes: take the output that a node's rule states (``Rule.shape``) instead of
            running the node on fake tensors; False runs every node, the reference that
            the stated outputs are tested against.

    Raises:
        InputError: the example inputs do not fit the model (wrong shape, dtype or count).
    """
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    fake = tree_map(lambda v: mode.from_tensor(v) if isinstance(v, torch.Tensor) else v, example_inputs)
    prop = _ShapeProp(module, mode)
    prop.rule_shapes = rule_shapes
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
    return (prop.current.format_node() if prop.current is not None else None) or "the model's inputs"
