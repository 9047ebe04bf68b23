"""Random CNNs for fuzzing fxprune: a small DSL of layer specs run by one traceable module.

A :class:`NetSpec` is plain data: the model's dimensionality (1D, 2D, 3D), its
input form (one tensor, two tensors, a tensor and a list of tensors), a list of
:class:`Op` and the indices of the values it returns. :class:`FuzzNet` interprets
it: it keeps a list of values (the inputs first), every op reads values by index
and appends its results, and the forward returns the chosen values. The loop over
ops is plain Python over static data, so ``torch.fx`` unrolls it.

:func:`generate` draws a spec through a :class:`Draw`, so the same generator is
driven by hypothesis (``HypothesisDraw``, with shrinking) in ``tests/test_fuzz.py``
and by ``random.Random`` (``RandomDraw``, fast) in ``benchmarks/fuzz.py``.
``spec.code()`` is a runnable reproducer.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "TOLERANCE",
    "Draw",
    "FuzzFailure",
    "FuzzNet",
    "HypothesisDraw",
    "NetSpec",
    "Op",
    "RandomDraw",
    "check_example",
    "generate",
    "strategy",
]

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
        """Python that rebuilds this spec (``from fuzz_models import NetSpec, Op``)."""
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


_ACT_MODULES: dict[str, Callable[[int], nn.Module]] = {
    "ReLU": lambda c: nn.ReLU(), "ReLU6": lambda c: nn.ReLU6(), "SiLU": lambda c: nn.SiLU(),
    "GELU": lambda c: nn.GELU(), "Hardswish": lambda c: nn.Hardswish(), "LeakyReLU": lambda c: nn.LeakyReLU(0.1),
    "Tanh": lambda c: nn.Tanh(), "PReLU": lambda c: nn.PReLU(c, 0.2), "PReLU1": lambda c: nn.PReLU(1, 0.2),
    "Dropout": lambda c: nn.Dropout(0.0),
}
_ACT_FUNCTIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": F.relu, "sigmoid": torch.sigmoid, "gelu": F.gelu, "silu": F.silu, "tanh": torch.tanh,
    "swish": lambda x: x * torch.sigmoid(x), "relu_method": lambda x: x.relu(), "clamp": lambda x: x.clamp(-1, 1),
    "neg_add": lambda x: -x + 1.0,
}


def _build_act(dim: int, op: Op) -> nn.Module:
    fn = op.params["fn"]
    return _ACT_MODULES[fn](op.params["c"]) if fn in _ACT_MODULES else nn.Identity()


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
    return [layer(xs[0]) if fn in _ACT_MODULES else _ACT_FUNCTIONS[fn](xs[0])]


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


# --------------------------------------------------------------------------- drawing


class Draw:
    """Where random choices come from."""

    def int(self, low: int, high: int) -> int:
        raise NotImplementedError

    def choice(self, options: Sequence[Any]) -> Any:
        return options[self.int(0, len(options) - 1)]

    def bool(self) -> bool:
        return self.int(0, 1) == 1

    def float(self, low: float, high: float) -> float:
        return low + (high - low) * self.int(0, 1000) / 1000


class RandomDraw(Draw):
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def int(self, low: int, high: int) -> int:
        return self.rng.randint(low, high)


class HypothesisDraw(Draw):
    def __init__(self, draw: Callable[[Any], Any]) -> None:
        self.draw = draw

    def int(self, low: int, high: int) -> int:
        from hypothesis import strategies as st
        return self.draw(st.integers(low, high))


# --------------------------------------------------------------------------- the generator


@dataclass
class _Value:
    channels: int
    spatial: tuple[int, ...] | None  # None: a (batch, features) head output

    @property
    def grid(self) -> tuple[int, ...]:
        """The spatial sizes of a feature map (what every op but a head's output has)."""
        if self.spatial is None:
            raise ValueError("a head output has no spatial dims")
        return self.spatial


class _Builder:
    def __init__(self, draw: Draw, dim: int, batch: int) -> None:
        self.draw, self.dim, self.batch = draw, dim, batch
        self.values: list[_Value] = []
        self.ops: list[Op] = []

    def spatial_values(self) -> list[int]:
        return [i for i, v in enumerate(self.values) if v.spatial is not None]

    def pick(self) -> int:
        """Mostly the latest tensor (a chain), sometimes an earlier one (a branch)."""
        candidates = self.spatial_values()
        return candidates[-1] if self.draw.int(0, 3) else self.draw.choice(candidates)

    def same_spatial(self, index: int) -> list[int]:
        return [i for i in self.spatial_values() if self.values[i].spatial == self.values[index].spatial]

    def emit(self, kind: str, src: Sequence[int], params: dict[str, Any], results: list[_Value]) -> None:
        self.ops.append(Op(kind, tuple(src), params))
        self.values.extend(results)


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _conv(b: _Builder, src: int, style: str | None = None) -> None:
    d, v = b.draw, b.values[src]
    cin = v.channels
    style = style or d.choice(["plain", "plain", "depthwise", "grouped"])
    k = d.choice([1, 3])
    stride = 2 if d.int(0, 4) == 0 and min(v.grid) >= 2 else 1
    if style == "depthwise":
        groups, cout = cin, cin * d.choice([1, 1, 2, 3])
    elif style == "grouped" and len(_divisors(cin)) > 2:
        groups = d.choice(_divisors(cin)[1:-1])
        cout = groups * d.int(1, max(1, MAX_CHANNELS // groups))
    else:
        groups, cout = 1, d.int(1, MAX_CHANNELS)
    spatial = tuple((s + 2 * (k // 2) - k) // stride + 1 for s in v.grid)
    params = {"cin": cin, "cout": cout, "k": k, "stride": stride, "groups": groups, "bias": d.bool(),
              "functional": d.int(0, 4) == 0}
    b.emit("conv", [src], params, [_Value(cout, spatial)])


def _convt(b: _Builder, src: int) -> None:
    d, v = b.draw, b.values[src]
    cin = v.channels
    groups = d.choice(_divisors(cin)) if d.int(0, 2) == 0 else 1
    cout = groups * d.int(1, max(1, MAX_CHANNELS // groups))
    if max(v.grid) <= 4 and d.bool():
        k, stride, padding = 2, 2, 0
    else:
        k, stride, padding = 3, 1, 1
    spatial = tuple((s - 1) * stride - 2 * padding + k for s in v.grid)
    params = {"cin": cin, "cout": cout, "k": k, "stride": stride, "padding": padding, "groups": groups,
              "bias": d.bool()}
    b.emit("convt", [src], params, [_Value(cout, spatial)])


def _norm(b: _Builder, src: int) -> None:
    d, v = b.draw, b.values[src]
    # InstanceNorm needs more than one spatial element.
    norm = d.choice(["bn", "bn", "gn", "in"] if math.prod(v.grid) > 1 else ["bn", "gn"])
    params: dict[str, Any] = {"norm": norm, "c": v.channels}
    # GroupNorm needs more than one value per group and sample.
    gn_groups = [g for g in _divisors(v.channels) if v.channels // g * math.prod(v.grid) > 1]
    if norm == "gn" and not gn_groups:
        norm = params["norm"] = "bn"
    if norm == "gn":
        params.update(groups=d.choice(gn_groups), affine=d.bool())
    elif norm == "in":
        params.update(affine=d.bool(), stats=d.bool())
    b.emit("norm", [src], params, [_Value(v.channels, v.spatial)])


def _act(b: _Builder, src: int) -> None:
    v = b.values[src]
    fn = b.draw.choice(sorted(_ACT_MODULES) + sorted(_ACT_FUNCTIONS))
    b.emit("act", [src], {"fn": fn, "c": v.channels}, [_Value(v.channels, v.spatial)])


def _pool(b: _Builder, src: int) -> None:
    d, v = b.draw, b.values[src]
    options = ["adaptive_avg", "adaptive_max", "interp_size"]
    if min(v.grid) >= 2:
        options += ["max", "avg"]
    if max(v.grid) <= 4:
        options.append("interp_scale")
    fn = d.choice(options)
    params: dict[str, Any] = {"fn": fn}
    if fn in ("max", "avg"):
        spatial = tuple(s // 2 for s in v.grid)
    elif fn == "interp_scale":
        spatial = tuple(2 * s for s in v.grid)
    else:
        size = d.int(1, 3)
        spatial = (size,) * b.dim
        params["size"] = size if fn != "interp_size" else spatial
    b.emit("pool", [src], params, [_Value(v.channels, spatial)])


def _add(b: _Builder, src: int) -> None:
    d = b.draw
    other = d.choice(b.same_spatial(src))
    ca, cb = b.values[src].channels, b.values[other].channels
    proj = ca != cb or d.int(0, 3) == 0
    params = {"how": d.choice(["add", "add", "sub", "mul", "method"]), "proj": proj, "cin": cb, "cout": ca}
    b.emit("add", [src, other], params, [_Value(ca, b.values[src].spatial)])


def _cat(b: _Builder, src: int) -> None:
    d = b.draw
    pool = b.same_spatial(src)
    others = [d.choice(pool) for _ in range(d.int(1, 2))]
    srcs = [src, *others]
    nested = len(srcs) == 3 and d.bool()
    channels = sum(b.values[i].channels for i in srcs)
    b.emit("cat", srcs, {"nested": nested, "positive_dim": d.bool()}, [_Value(channels, b.values[src].spatial)])


def _split(b: _Builder, src: int) -> None:
    d, v = b.draw, b.values[src]
    c = v.channels
    if c < 2:
        return _conv(b, src)
    how = d.choice(["split", "chunk", "slice", "split_int"])
    if how == "split":
        cut = sorted({d.int(1, c - 1) for _ in range(d.int(1, 2))})
        sizes = [hi - lo for lo, hi in zip([0, *cut], [*cut, c], strict=True)]
        params: dict[str, Any] = {"how": how, "sizes": sizes, "count": len(sizes)}
    elif how == "chunk":
        chunks = d.int(2, min(c, 4))
        params = {"how": how, "chunks": chunks, "count": len(torch.empty(c).chunk(chunks))}
        sizes = [t.numel() for t in torch.empty(c).chunk(chunks)]
    elif how == "split_int":
        size = d.int(1, c - 1)
        sizes = [t.numel() for t in torch.empty(c).split(size)]
        params = {"how": how, "size": size, "count": len(sizes)}
    else:
        bounds = []
        for _ in range(d.int(1, 2)):
            lo = d.int(0, c - 1)
            bounds.append((lo, d.int(lo + 1, c)))
        sizes = [hi - lo for lo, hi in bounds]
        params = {"how": how, "bounds": bounds}
    b.emit("split", [src], params, [_Value(s, v.spatial) for s in sizes])


def _se(b: _Builder, src: int) -> None:
    d, v = b.draw, b.values[src]
    params = {"c": v.channels, "hidden": d.int(1, 4),
              "form": d.choice(["conv", "view_literal", "view_minus_one", "index"])}
    b.emit("se", [src], params, [_Value(v.channels, v.spatial)])


def _shuffle(b: _Builder, src: int) -> None:
    d, v = b.draw, b.values[src]
    groups = [g for g in _divisors(v.channels) if 1 < g < v.channels]
    if not groups:
        return _act(b, src)
    params = {"groups": d.choice(groups), "c": v.channels, "spatial": v.spatial,
              "form": d.choice(["view", "unflatten", "dynamic"])}
    b.emit("shuffle", [src], params, [_Value(v.channels, v.spatial)])


def _permute(b: _Builder, src: int) -> None:
    d, v = b.draw, b.values[src]
    inner = d.choice(["none", "linear", "linear", "layernorm"])
    cout = d.int(1, MAX_CHANNELS) if inner == "linear" else v.channels
    params = {"inner": inner, "c": v.channels, "cout": cout, "movedim": d.bool()}
    b.emit("permute", [src], params, [_Value(cout, v.spatial)])


def _head(b: _Builder, src: int) -> None:
    d, v = b.draw, b.values[src]
    form = d.choice(["pool", "flatten", "view_literal", "reshape"])
    fin = v.channels if form == "pool" else v.channels * math.prod(v.grid)
    out = d.int(1, 6)
    b.emit("head", [src], {"form": form, "fin": fin, "out": out}, [_Value(out, None)])


def _misc(b: _Builder, src: int) -> None:
    """Operators whose rules freeze (in exact mode) or pass through in less common ways."""
    d, v = b.draw, b.values[src]
    options = ["pad", "channel_softmax", "channel_mean_gate", "channel_stride", "layer_norm", "channel_count",
               "flip_channels", "flip_spatial", "roll_spatial", "roll_channels", "channel_max_gate"]
    if min(v.grid) >= 2:
        options.append("spatial_stride")
    if v.channels % 2 == 0:
        options += ["glu", "maxout"]
    if len(v.grid) == 2 and v.channels % 4 == 0:
        options.append("pixel_shuffle")
    if len(v.grid) == 2 and all(s % 2 == 0 for s in v.grid):
        options.append("pixel_unshuffle")
    fn = d.choice(options)
    spatial, channels = v.spatial, v.channels
    if fn == "pad":
        spatial = (*v.grid[:-1], v.grid[-1] + 3)
    elif fn == "spatial_stride":
        spatial = (*v.grid[:-1], (v.grid[-1] + 1) // 2)
    elif fn == "channel_stride":
        channels = (v.channels + 1) // 2
    elif fn in ("glu", "maxout"):
        channels = v.channels // 2
    elif fn == "pixel_shuffle":
        channels, spatial = v.channels // 4, tuple(s * 2 for s in v.grid)
    elif fn == "pixel_unshuffle":
        channels, spatial = v.channels * 4, tuple(s // 2 for s in v.grid)
    b.emit("misc", [src], {"fn": fn, "c": v.channels}, [_Value(channels, spatial)])


_OPS: list[tuple[Callable[[_Builder, int], None], int]] = [
    (_conv, 6), (_convt, 1), (_norm, 3), (_act, 3), (_pool, 2), (_add, 3), (_cat, 3), (_split, 2), (_se, 1),
    (_shuffle, 1), (_permute, 1), (_head, 1), (_misc, 2),
]
_WEIGHTED = [fn for fn, weight in _OPS for _ in range(weight)]


def generate(draw: Draw, seed: int | None = None) -> NetSpec:
    """Draw one random :class:`NetSpec`."""
    dim = draw.int(1, 3)
    batch = draw.int(1, 2)
    spatial_range = {1: (3, 8), 2: (2, 6), 3: (2, 4)}[dim]
    spatial = tuple(draw.int(*spatial_range) for _ in range(dim))
    form = draw.choice(["single", "single", "single", "pair", "list"])
    count = {"single": 1, "pair": 2, "list": draw.int(2, 3)}[form]
    shapes = tuple((draw.int(1, 4), *spatial) for _ in range(count))
    b = _Builder(draw, dim, batch)
    b.values = [_Value(s[0], spatial) for s in shapes]
    # The first op is a conv (mostly dense: an input's channels are never pruned, so a
    # grouped conv on it is frozen), so that something is prunable in most models.
    _conv(b, 0, None if draw.int(0, 3) == 0 else "plain")
    for _ in range(draw.int(1, MAX_OPS - 1)):
        draw.choice(_WEIGHTED)(b, b.pick())
    # Model outputs are frozen: mostly end in a fresh conv or head so the body stays prunable.
    ending = draw.int(0, 3)
    if ending == 1:
        _conv(b, b.pick(), "plain")
    elif ending == 2:
        _head(b, b.pick())
    first_op_value = len(shapes)
    last = len(b.values) - 1
    extra = [draw.int(first_op_value, last) for _ in range(draw.choice([0, 0, 1, 2]))]
    outputs = tuple(dict.fromkeys([last, *extra]))
    return NetSpec(dim, batch, shapes, form, tuple(b.ops), outputs, train=draw.int(0, 5) == 0,
                   seed=draw.int(0, 2**16) if seed is None else seed)


def strategy() -> Any:
    """A hypothesis strategy of :class:`NetSpec`."""
    from hypothesis import strategies as st

    @st.composite
    def specs(draw: Callable[[Any], Any]) -> NetSpec:
        return generate(HypothesisDraw(draw))

    return specs()


# --------------------------------------------------------------------------- the property


TOLERANCE = 1e-4


class FuzzFailure(AssertionError):
    """The property failed: a wrong model, a changed output shape, or an untyped exception."""


def _output_tensors(value: Any) -> list[Tensor]:
    from torch.utils._pytree import tree_flatten
    return [leaf for leaf in tree_flatten(value)[0] if isinstance(leaf, Tensor)]


@torch.no_grad()
def _outputs(module: nn.Module, inputs: tuple[Any, ...]) -> list[Tensor]:
    import copy
    return _output_tensors(copy.deepcopy(module).eval()(*inputs))


def check_example(spec: NetSpec, ratio: float, round_to: int | None) -> str:
    """Compile ``spec``'s model in exact and default mode and check the promise.

    Returns ``"passed"`` (``"passed, nothing pruned"`` when the exact plan is empty) or
    ``"typed: <message>"`` for a typed ``FxPruneError``;
    raises :class:`FuzzFailure` (with the cause chained) when the promise is broken.
    """
    import fxprune

    model, inputs = spec.build(), spec.inputs()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    reference = _outputs(model, inputs)
    shapes = [tuple(t.shape) for t in reference]
    tolerance = TOLERANCE * max([1.0] + [float(t.abs().max()) for t in reference if t.numel()])
    outcome = "passed"
    for exact in (True, False):
        try:
            result = fxprune.compile(model, ratio, example_inputs=inputs, exact=exact, round_to=round_to)
        except fxprune.FxPruneError as error:
            outcome = f"typed: {type(error).__name__}: {str(error).splitlines()[0]}"
            continue
        except Exception as error:
            raise FuzzFailure(f"exact={exact}: untyped {type(error).__name__}: {error}") from error
        finally:
            changed = [k for k, v in model.state_dict().items() if not torch.equal(v, state[k])]
            if changed or model.training != spec.train:
                raise FuzzFailure(f"exact={exact}: compile modified the model: {changed or 'its mode'}")
        try:
            got = [tuple(t.shape) for t in _outputs(result.module, inputs)]
            err = fxprune.verify(model, result, inputs) if exact else 0.0
        except Exception as error:
            raise FuzzFailure(f"exact={exact}: the pruned module fails: {type(error).__name__}: {error}") from error
        if got != shapes:
            raise FuzzFailure(f"exact={exact}: output shapes {got} != {shapes}")
        if not err <= tolerance:
            raise FuzzFailure(f"exact={exact}: oracle error {err} > {tolerance}")
        if exact and not result.plan.entries:
            outcome = "passed, nothing pruned"
    return outcome
