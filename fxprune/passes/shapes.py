"""Shape propagation on fake tensors, counting FLOPs on the way.

Fake tensors carry shapes and dtypes but no data, so the cost does not grow with
input resolution or batch. ``torch.utils.flop_counter`` sees the same dispatch,
so one pass gives every node's ``meta['val']`` and the model's MACs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import fx, nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.fx.passes.fake_tensor_prop import FakeTensorProp
from torch.utils._pytree import tree_map
from torch.utils.flop_counter import FlopCounterMode

from ..errors import InputError

__all__ = ["propagate_shapes"]

# Layers whose output has the input's shape and dtype and whose cost the FLOP counter
# ignores: their fake execution (BatchNorm decomposes into a dozen ops) is skipped.
SHAPE_PRESERVING = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.InstanceNorm1d, nn.InstanceNorm2d,
    nn.InstanceNorm3d, nn.GroupNorm, nn.LayerNorm, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.GELU,
    nn.SiLU, nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Sigmoid, nn.Tanh, nn.Softplus,
    nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.PReLU,
)


class _ShapeProp(FakeTensorProp):
    """Fake propagation that also records each node's FLOPs in ``meta['flops']``."""

    counter: FlopCounterMode | None = None

    def run_node(self, n: fx.Node) -> Any:
        before = self.counter.get_total_flops() if self.counter is not None else 0
        result = super().run_node(n)
        if self.counter is not None:
            n.meta["flops"] = self.counter.get_total_flops() - before
        return result

    def call_module(self, target: Any, args: tuple, kwargs: dict) -> Any:
        module = self.fetch_attr(target)
        if type(module) in SHAPE_PRESERVING and len(args) == 1 and not kwargs \
                and isinstance(args[0], torch.Tensor) and args[0].is_floating_point():
            return args[0]
        return super().call_module(target, args, kwargs)


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
    try:
        for m in training:
            m.training = False
        with FlopCounterMode(display=False) as counter:
            prop.counter = counter
            prop.propagate_dont_convert_inputs(*fake)
    except Exception as error:
        node = _failing_node(module, prop)
        raise InputError(f"the example inputs do not fit the model at {node}: {type(error).__name__}: "
                         f"{str(error).splitlines()[0] if str(error) else ''}\n"
                         "Check their number, shapes and dtype against the model's forward.") from error
    finally:
        for m in training:
            m.training = True
    return counter.get_total_flops() // 2


def _failing_node(module: fx.GraphModule, prop: FakeTensorProp) -> str:
    env = getattr(prop, "env", {})
    for node in module.graph.nodes:
        if node not in env:
            return node.format_node()
    return "the model output"
