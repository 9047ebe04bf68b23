"""The layers whose runtime a latency model prices, and their widths under a choice of kept channels.

A latency budget is planned against a model of each convolution's and linear's run
time as a function of its input and output channel counts. This pass finds those
layers in a traced module (``call_module`` nodes of ``nn.Conv1d/2d/3d`` and
``nn.Linear``), describes each by a :class:`Layer` (the operator, its fixed
attributes, the input shape apart from channels: what a runtime's kernel choice
depends on) and records which group channels each of its two channel axes carries,
so that a planner can count a layer's widths for any kept channels without a rewrite.

Everything else (norms, activations, adds, pooling) is left to the caller: ONNX
Runtime fuses norms and activations into the convolutions, and what remains is
memory-bound work that shrinks with the activations.

Example:
    >>> layers = find_layers(analysis.traced, analysis.groups)
    >>> layers[0].signature, layers[0].in_channels, layers[0].out_channels
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import cast

import numpy as np
import torch
from torch import fx, nn

from .groups import Groups

__all__ = ["Layer", "AxisChannels", "find_layers", "layer_widths"]


@dataclass(frozen=True, eq=False)
class AxisChannels:
    """One channel axis of a layer: positions no prunable group owns, and each group's channels there."""

    fixed: int
    channels: Mapping[int, np.ndarray] = field(default_factory=dict)

    def count(self, kept: Mapping[int, np.ndarray]) -> int:
        """Positions kept when ``kept[g]`` is the boolean keep mask of group ``g`` (full when absent)."""
        total = self.fixed
        for group, channels in self.channels.items():
            mask = kept.get(group)
            total += channels.size if mask is None else int(mask[channels].sum())
        return total


@dataclass(frozen=True, eq=False)
class Layer:
    """A convolution or linear node and what its run time depends on.

    Attributes:
        node: the node's name in the traced graph.
        module: the module's qualified name.
        kind: ``"conv"`` (1d, 2d or 3d: the weight's rank says which), ``"depthwise"``
            (groups == input channels: its widths move together) or ``"linear"``.
        signature: the fixed attributes (input shape with the channel dim left out, kernel,
            stride, padding, dilation, groups, bias) as a string: equal layers share measurements.
        attributes: the same as values, to build the layer again elsewhere.
        in_channels, out_channels: the widths before pruning.
        inputs, outputs: the group channels carried by the input and output channel axes.
        activation: elements of the output per channel (what memory-bound work scales with).
    """

    node: str
    module: str
    kind: str
    signature: str
    attributes: Mapping[str, object]
    in_channels: int
    out_channels: int
    inputs: AxisChannels
    outputs: AxisChannels
    activation: int

    @property
    def groups(self) -> tuple[int, ...]:
        """The prunable groups whose channels this layer's widths depend on."""
        return tuple(sorted(set(self.inputs.channels) | set(self.outputs.channels)))


def find_layers(traced: fx.GraphModule, groups: Groups) -> tuple[Layer, ...]:
    """Every conv and linear of ``traced`` (shapes propagated) with the group channels of its axes.

    Transposed convolutions and grouped convolutions that are not depthwise are described
    too (kind ``"conv"``), with the groups attribute in the signature; a latency model
    decides how to price them.
    """
    owner = _channel_owners(groups)
    modules = dict(traced.named_modules())
    layers = []
    for node in traced.graph.nodes:
        module = modules.get(node.target) if node.op == "call_module" else None
        source = node.args[0] if node.args else None
        value = source.meta.get("val") if isinstance(source, fx.Node) else None
        output = node.meta.get("val")
        if not isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)) or not isinstance(value, torch.Tensor) \
                or not isinstance(output, torch.Tensor):
            continue
        layers.append(_describe(node, module, tuple(value.shape), tuple(output.shape), groups, owner))
    return tuple(layers)


def layer_widths(layer: Layer, kept: Mapping[int, np.ndarray]) -> tuple[int, int]:
    """(input, output) channels of ``layer`` when group ``g`` keeps the channels ``kept[g]`` marks."""
    out = layer.outputs.count(kept)
    if layer.kind == "depthwise":
        return out * layer.in_channels // layer.out_channels, out
    return layer.inputs.count(kept), out


def _channel_owners(groups: Groups) -> tuple[np.ndarray, np.ndarray]:
    """For every root id: the prunable group owning it (-1: none) and its channel index there."""
    size = groups.record.size
    group_of, channel_of = np.full(size, -1, dtype=np.int64), np.zeros(size, dtype=np.int64)
    for group in groups.prunable:
        group_of[group.roots] = group.index
        channel_of[group.roots] = np.arange(group.size)
    return group_of, channel_of


def _axis(groups: Groups, owner: tuple[np.ndarray, np.ndarray], tensor: str, axis: int, size: int) -> AxisChannels:
    ids = groups.record.params.get((tensor, axis))
    if ids is None or ids.size != size:
        return AxisChannels(size)
    ids = ids[ids >= 0]
    roots = groups.roots[ids]
    group_of, channel_of = owner[0][roots], owner[1][roots]
    channels = {int(g): channel_of[group_of == g] for g in np.unique(group_of) if g >= 0}
    return AxisChannels(size - sum(c.size for c in channels.values()), channels)


def _describe(node: fx.Node, module: nn.Module, shape: tuple[int, ...], out_shape: tuple[int, ...], groups: Groups,
              owner: tuple[np.ndarray, np.ndarray]) -> Layer:
    weight = f"{node.target}.weight"
    if isinstance(module, nn.Linear):
        rows = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
        attributes: dict[str, object] = {"op": "linear", "rows": rows, "batch": shape[0] if len(shape) > 1 else 1,
                                         "bias": module.bias is not None}
        cin, cout, kind, activation = module.in_features, module.out_features, "linear", rows
        inputs = _axis(groups, owner, weight, 1, cin)
    else:
        module = cast(nn.modules.conv._ConvNd, module)  # the caller lists only linears and convs
        transposed = isinstance(module, nn.modules.conv._ConvTransposeNd)
        cin, cout = module.in_channels, module.out_channels
        attributes = {"op": "conv_transpose" if transposed else "conv", "input": [shape[0], *shape[2:]],
                      "kernel": list(module.kernel_size), "stride": list(module.stride),
                      "padding": _padding(module), "dilation": list(module.dilation), "groups": module.groups,
                      "bias": module.bias is not None}
        if transposed:
            attributes["output_padding"] = list(module.output_padding)
        depthwise = module.groups > 1 and module.groups == cin and not transposed
        kind = "depthwise" if depthwise else "conv"
        # A transposed conv's weight is (in, out / groups, ...): its input channels are axis 0.
        inputs = AxisChannels(cin) if module.groups > 1 else _axis(groups, owner, weight, int(not transposed), cin)
        activation = int(np.prod(out_shape[2:])) * out_shape[0] if len(out_shape) > 2 else out_shape[0]
    outputs = _axis(groups, owner, weight, 1 if attributes["op"] == "conv_transpose" else 0, cout)
    signature = ";".join(f"{key}={value}" for key, value in sorted(attributes.items()))
    return Layer(node.name, str(node.target), kind, signature, attributes, cin, cout, inputs, outputs, activation)


def _padding(module: nn.modules.conv._ConvNd) -> list[int]:
    """Explicit padding per spatial dim ('same' resolved, 'valid' is zero)."""
    if module.padding == "valid":
        return [0] * len(module.kernel_size)
    if module.padding == "same":
        return [d * (k - 1) // 2 for d, k in zip(module.dilation, module.kernel_size, strict=True)]
    return list(cast(tuple[int, ...], module.padding))
