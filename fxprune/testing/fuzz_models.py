"""Random CNNs for fuzzing fxprune: a small DSL of layer specs run by one traceable module.

A :class:`NetSpec` is plain data: the model's dimensionality (1D, 2D, 3D), its
input form (one tensor, two tensors, a tensor and a list of tensors), a list of
:class:`Op` and the indices of the values it returns. :class:`FuzzNet` interprets
it: it keeps a list of values (the inputs first), every op reads values by index
and appends its results, and the forward returns the chosen values. The loop over
ops is plain Python over static data, so ``torch.fx`` unrolls it.

``spec.code()`` is a runnable reproducer. Random specs come from
:mod:`fxprune.testing.fuzz_generate`, and :mod:`fxprune.testing.fuzz_check` checks
fxprune's promise on one of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ACT_FUNCTIONS", "ACT_MODULES", "MAX_CHANNELS", "MAX_OPS", "FuzzNet", "NetSpec", "Op"]

MAX_CHANNELS = 8
MAX_OPS = 10


# --------------------------------------------------------------------------- the DSL


@dataclass(frozen=True)
class Op:
    """One layer: its kind, the indices of the values it reads, and its literal parameters."""

    kind: str
    src: tuple[int, ...]
    params: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"Op({self.kind!r}, {self.src!r}, {self.params!r})"


@dataclass(frozen=True)
class NetSpec:
    """A whole random model: build it with :meth:`build`, feed it :meth:`inputs`."""

    dim: int
    batch: int
    inputs_shapes: tuple[tuple[int, ...], ...]  # (C, *spatial) per input tensor
    form: str  # "single" | "pair" | "list"
    ops: tuple[Op, ...]
    outputs: tuple[int, ...]
    train: bool = False
    seed: int = 0

    def build(self) -> FuzzNet:
        torch.manual_seed(self.seed)
        net = FuzzNet(self)
        _randomize_stats(net)
        return net.train(self.train)

    def inputs(self) -> tuple[Any, ...]:
        generator = torch.Generator().manual_seed(self.seed + 1)
        tensors = [torch.randn((self.batch, *shape), generator=generator) for shape in self.inputs_shapes]
        if self.form == "single":
            return (tensors[0],)
        if self.form == "pair":
            return (tensors[0], tensors[1])
        return (tensors[0], tensors[1:])

    def code(self) -> str:
        """Python that rebuilds this spec (``from fxprune.testing.fuzz_models import NetSpec, Op``)."""
        ops = "".join(f"\n        {op!r}," for op in self.ops)
        return (f"NetSpec(dim={self.dim}, batch={self.batch}, inputs_shapes={self.inputs_shapes!r}, "
                f"form={self.form!r},\n    ops=({ops}\n    ),\n    outputs={self.outputs!r}, "
                f"train={self.train!r}, seed={self.seed!r})")


def _randomize_stats(net: nn.Module) -> None:
    """Norm layers with non-trivial running statistics, so they are not the identity."""
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.modules.batchnorm._NormBase) and module.running_mean is not None:
                module.running_mean.uniform_(-0.5, 0.5)
                if module.running_var is not None:
                    module.running_var.uniform_(0.5, 1.5)
            if getattr(module, "weight", None) is not None and isinstance(
                    module, (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)


# --------------------------------------------------------------------------- the interpreter


class FunctionalConv(nn.Module):
    """A conv written as ``F.convNd(x, self.weight, self.bias, ...)`` (traced into, not a leaf)."""

    def __init__(self, dim: int, cin: int, cout: int, k: int, stride: int, groups: int, bias: bool) -> None:
        super().__init__()
        self.dim, self.stride, self.padding, self.groups = dim, stride, k // 2, groups
        self.weight = nn.Parameter(torch.randn(cout, cin // groups, *[k] * dim) / math.sqrt(cin // groups * k ** dim))
        self.bias = nn.Parameter(torch.randn(cout) * 0.1) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        conv = (F.conv1d, F.conv2d, F.conv3d)[self.dim - 1]
        return conv(x, self.weight, self.bias, self.stride, self.padding, 1, self.groups)


class SqueezeExcite(nn.Module):
    """x * sigmoid(fc(relu(fc(mean(x))))), with 1x1 convs or linears and several reshape forms."""

    def __init__(self, dim: int, channels: int, hidden: int, form: str) -> None:
        super().__init__()
        self.dim, self.channels, self.form = dim, channels, form
        self.reduce: nn.Module
        self.expand: nn.Module
        if form == "conv":
            conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[dim - 1]
            self.reduce, self.expand = conv(channels, hidden, 1), conv(hidden, channels, 1)
        else:
            self.reduce, self.expand = nn.Linear(channels, hidden), nn.Linear(hidden, channels)

    def forward(self, x: Tensor) -> Tensor:
        spatial = tuple(range(2, 2 + self.dim))
        if self.form == "conv":
            s = self.expand(F.relu(self.reduce(x.mean(spatial, keepdim=True))))
            return x * torch.sigmoid(s)
        s = torch.sigmoid(self.expand(F.relu(self.reduce(x.mean(spatial)))))
        if self.form == "view_literal":
            s = s.view(x.shape[0], self.channels, *[1] * self.dim)
        elif self.form == "view_minus_one":
            s = s.view(s.shape[0], -1, *[1] * self.dim)
        else:  # indexing with None
            s = s[(slice(None), slice(None)) + (None,) * self.dim]
        return x * s


class FuzzNet(nn.Module):
    """Interprets a :class:`NetSpec`; ``layers[i]`` holds the parameters of ``spec.ops[i]``."""

    def __init__(self, spec: NetSpec) -> None:
        super().__init__()
        self.spec = spec
        self.layers = nn.ModuleList(_BUILD.get(op.kind, _no_layer)(spec.dim, op) for op in spec.ops)

    def forward(self, x: Tensor, extra: Any = None) -> Any:
        values = [x]
        if self.spec.form == "pair":
            values.append(extra)
        elif self.spec.form == "list":
            values.extend(extra[i] for i in range(len(self.spec.inputs_shapes) - 1))
        for op, layer in zip(self.spec.ops, self.layers, strict=True):
            values.extend(_APPLY[op.kind](self.spec, op, layer, [values[i] for i in op.src]))
        outputs = tuple(values[i] for i in self.spec.outputs)
        return outputs[0] if len(outputs) == 1 else outputs


def _no_layer(dim: int, op: Op) -> nn.Module:
    return nn.Identity()


def _cls(name: str, dim: int) -> type:
    return getattr(nn, f"{name}{dim}d")


def _build_conv(dim: int, op: Op) -> nn.Module:
    p = op.params
    if p.get("functional"):
        return FunctionalConv(dim, p["cin"], p["cout"], p["k"], p["stride"], p["groups"], p["bias"])
    return _cls("Conv", dim)(p["cin"], p["cout"], p["k"], p["stride"], p["k"] // 2, groups=p["groups"],
                             bias=p["bias"])


def _build_convt(dim: int, op: Op) -> nn.Module:
    p = op.params
    return _cls("ConvTranspose", dim)(p["cin"], p["cout"], p["k"], p["stride"], p["padding"], groups=p["groups"],
                                      bias=p["bias"])


def _build_norm(dim: int, op: Op) -> nn.Module:
    p = op.params
    if p["norm"] == "bn":
        return _cls("BatchNorm", dim)(p["c"])
    if p["norm"] == "gn":
        return nn.GroupNorm(p["groups"], p["c"], affine=p["affine"])
    return _cls("InstanceNorm", dim)(p["c"], affine=p["affine"], track_running_stats=p["stats"])


ACT_MODULES: dict[str, Callable[[int], nn.Module]] = {
    "ReLU": lambda c: nn.ReLU(), "ReLU6": lambda c: nn.ReLU6(), "SiLU": lambda c: nn.SiLU(),
    "GELU": lambda c: nn.GELU(), "Hardswish": lambda c: nn.Hardswish(), "LeakyReLU": lambda c: nn.LeakyReLU(0.1),
    "Tanh": lambda c: nn.Tanh(), "PReLU": lambda c: nn.PReLU(c, 0.2), "PReLU1": lambda c: nn.PReLU(1, 0.2),
    "Dropout": lambda c: nn.Dropout(0.0),
}
ACT_FUNCTIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": F.relu, "sigmoid": torch.sigmoid, "gelu": F.gelu, "silu": F.silu, "tanh": torch.tanh,
    "swish": lambda x: x * torch.sigmoid(x), "relu_method": lambda x: x.relu(), "clamp": lambda x: x.clamp(-1, 1),
    "neg_add": lambda x: -x + 1.0,
}


def _build_act(dim: int, op: Op) -> nn.Module:
    fn = op.params["fn"]
    return ACT_MODULES[fn](op.params["c"]) if fn in ACT_MODULES else nn.Identity()


def _build_add(dim: int, op: Op) -> nn.Module:
    p = op.params
    if p["proj"]:
        return _cls("Conv", dim)(p["cin"], p["cout"], 1, bias=False)
    return nn.Identity()


def _build_permute(dim: int, op: Op) -> nn.Module:
    p = op.params
    if p["inner"] == "linear":
        return nn.Linear(p["c"], p["cout"])
    if p["inner"] == "layernorm":
        return nn.LayerNorm(p["c"])
    return nn.Identity()


_BUILD: dict[str, Callable[[int, Op], nn.Module]] = {
    "conv": _build_conv, "convt": _build_convt, "norm": _build_norm, "act": _build_act, "add": _build_add,
    "se": lambda dim, op: SqueezeExcite(dim, op.params["c"], op.params["hidden"], op.params["form"]),
    "permute": _build_permute, "head": lambda dim, op: nn.Linear(op.params["fin"], op.params["out"]),
}


def _apply_layer(spec: NetSpec, op: Op, layer: nn.Module, xs: list[Tensor]) -> list[Tensor]:
    return [layer(xs[0])]


def _apply_act(spec: NetSpec, op: Op, layer: nn.Module, xs: list[Tensor]) -> list[Tensor]:
    fn = op.params["fn"]
    return [layer(xs[0]) if fn in ACT_MODULES else ACT_FUNCTIONS[fn](xs[0])]


def _apply_pool(spec: NetSpec, op: Op, layer: nn.Module, xs: list[Tensor]) -> list[Tensor]:
    p, x, dim = op.params, xs[0], spec.dim
    fn = p["fn"]
    if fn == "max":
        return [(F.max_pool1d, F.max_pool2d, F.max_pool3d)[dim - 1](x, 2)]
    if fn == "avg":
        return [(F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[dim - 1](x, 2)]
    if fn == "adaptive_avg":
        return [(F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d)[dim - 1](x, p["size"])]
    if fn == "adaptive_max":
        return [(F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d)[dim - 1](x, p["size"])]
    if fn == "interp_scale":
        return [F.interpolate(x, scale_factor=2.0, mode="nearest")]
    return [F.interpolate(x, size=tuple(p["size"]), mode="nearest")]


def _apply_add(spec: NetSpec, op: Op, layer: nn.Module, xs: list[Tensor]) -> list[Tensor]:
    a, b = xs[0], layer(xs[1])
    how = op.params["how"]
    if how == "add":
        return [a + b]
    if how == "sub":
        return [torch.sub(a, b)]
    if how == "mul":
        return [a * b]
    return [b.add(a)]


def _apply_cat(spec: NetSpec, op: Op, layer: nn.Module, xs: list[Tensor]) -> list[Tensor]:
    dim = 1 if op.params["positive_dim"] else -(spec.dim + 1)
    if op.params["nested"]:
        return [torch.cat([xs[0], torch.cat(list(xs[1:]), dim)], dim)]
    return [torch.cat(list(xs), dim)]


def _apply_split(spec: NetSpec, op: Op, layer: nn.Module, xs: list[Tensor]) -> list[Tensor]:
    p, x = op.params, xs[0]
    how = p["how"]
    if how == "slice":
        return [x[:, a:b] for a, b in p["bounds"]]
    if how == "chunk":
        parts = torch.chunk(x, p["chunks"], 1)
    elif how == "split_int":
        parts = x.split(p["size"], 1)
    else:
        parts = torch.split(x, list(p["sizes"]), dim=1)
    return [parts[i] for i in range(p["count"])]


def _apply_shuffle(spec: NetSpec, op: Op, layer: nn.Module, xs: list[Tensor]) -> list[Tensor]:
    p, x = op.params, xs[0]
    g, c, sizes = p["groups"], p["c"], list(p["spatial"])
    if p["form"] == "view":
        y = x.contiguous().view(spec.batch, g, c // g, *sizes).transpose(1, 2).contiguous()
        return [y.view(spec.batch, c, *sizes)]
    if p["form"] == "dynamic":  # as torchvision's channel_shuffle, sizes read from the tensor
        batch, channels = x.shape[0], x.size(1)
        sizes = [x.size(i) for i in range(2, spec.dim + 2)]
        y = x.contiguous().view(batch, g, channels // g, *sizes).transpose(1, 2).contiguous()
        return [y.view(batch, -1, *sizes)]
    return [x.unflatten(1, (g, c // g)).transpose(1, 2).flatten(1, 2)]


def _apply_permute(spec: NetSpec, op: Op, layer: nn.Module, xs: list[Tensor]) -> list[Tensor]:
    d = spec.dim
    if op.params["movedim"]:
        y = layer(xs[0].movedim(1, -1))
        return [y.movedim(-1, 1)]
    y = layer(xs[0].permute(0, *range(2, d + 2), 1))
    return [y.permute(0, d + 1, *range(1, d + 1))]


def _apply_head(spec: NetSpec, op: Op, layer: nn.Module, xs: list[Tensor]) -> list[Tensor]:
    p, x = op.params, xs[0]
    form = p["form"]
    if form == "pool":
        x = x.mean(tuple(range(2, spec.dim + 2)))
    elif form == "flatten":
        x = torch.flatten(x, 1)
    elif form == "view_literal":
        x = x.contiguous().view(spec.batch, p["fin"])
    else:
        x = x.reshape(x.size(0), -1)
    return [layer(x)]


def _apply_misc(spec: NetSpec, op: Op, layer: nn.Module, xs: list[Tensor]) -> list[Tensor]:
    x, fn = xs[0], op.params["fn"]
    if fn == "pad":
        return [F.pad(x, (1, 2))]
    if fn == "channel_softmax":
        return [torch.softmax(x, dim=1)]
    if fn == "channel_mean_gate":
        return [x * x.mean(1, keepdim=True)]
    if fn == "channel_stride":
        return [x[:, ::2]]
    if fn == "spatial_stride":
        return [x[..., ::2]]
    if fn == "channel_count":  # the channel count used as a value
        return [x * x.size(1) + x.shape[1]]
    if fn in _REARRANGE:
        return [_REARRANGE[fn](x)]
    return [F.layer_norm(x, x.shape[-1:])]


_REARRANGE: dict[str, Callable[[Tensor], Tensor]] = {
    "flip_channels": lambda x: x.flip(1),
    "flip_spatial": lambda x: torch.flip(x, (-1,)),
    "roll_spatial": lambda x: torch.roll(x, 1, -1),
    "roll_channels": lambda x: x.roll(1, 1),
    "glu": lambda x: F.glu(x, 1),
    "maxout": lambda x: x.unflatten(1, (-1, 2)).amax(2),
    "channel_max_gate": lambda x: x * torch.max(x, 1, keepdim=True)[0],
    "pixel_shuffle": lambda x: F.pixel_shuffle(x, 2),
    "pixel_unshuffle": lambda x: F.pixel_unshuffle(x, 2),
}


_APPLY: dict[str, Callable[[NetSpec, Op, nn.Module, list[Tensor]], list[Tensor]]] = {
    "conv": _apply_layer, "convt": _apply_layer, "norm": _apply_layer, "se": _apply_layer, "act": _apply_act,
    "pool": _apply_pool, "add": _apply_add, "cat": _apply_cat, "split": _apply_split, "shuffle": _apply_shuffle,
    "permute": _apply_permute, "head": _apply_head, "misc": _apply_misc,
}
