"""Random :class:`~fxprune.testing.fuzz_models.NetSpec` for fuzzing: every choice comes from a :class:`Draw`.

:func:`generate` draws a spec through a :class:`Draw`, so the same generator is driven by
hypothesis (``HypothesisDraw``, with shrinking; :func:`strategy`) in ``tests/test_fuzz.py``
and by ``random.Random`` (``RandomDraw``, fast) in ``benchmarks/fuzz.py``. The builder
tracks each value's channels and spatial sizes so every drawn op is valid where it lands.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .fuzz_models import ACT_FUNCTIONS, ACT_MODULES, MAX_CHANNELS, MAX_OPS, NetSpec, Op

__all__ = ["Draw", "HypothesisDraw", "RandomDraw", "generate", "strategy"]


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
    fn = b.draw.choice(sorted(ACT_MODULES) + sorted(ACT_FUNCTIONS))
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
