"""One example call per registered spelling of every rule (modules, functions, methods, ATen).

:data:`EXAMPLES` maps each spelling, as the registry keys it (a module type, a function,
``Method(name)``, an ATen overload), to an :class:`Example`: the call's arguments, with
:class:`T` standing for an input tensor of that shape, and what the one-node test of
``tests/test_spellings.py`` checks. Most spellings of one kind share an input, so the
table is built by kind; ``test_every_spelling_has_an_example`` fails when a spelling is
registered without one here.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["EXAMPLES", "Example", "Method", "T"]

aten = torch.ops.aten


@dataclass(frozen=True)
class T:
    """An input tensor of this shape (and dtype) in an example's arguments."""

    shape: tuple[int, ...]
    dtype: torch.dtype = torch.float32


@dataclass(frozen=True)
class Method:
    """A Tensor method spelling, by name (``x.view(...)``)."""

    name: str


@dataclass(frozen=True)
class Example:
    """How to call one spelling, and what its one-node test checks.

    Attributes:
        args: positional arguments, :class:`T` for input tensors (lists of them too).
        kwargs: keyword arguments.
        module: builds the module, for a module spelling (``args`` are its call's).
        tracks: the output carries tracked channels that the rule leaves prunable
            (False for size queries and the like, whose value is not a tensor).
        prune: also prune ``producer -> call -> consumer`` in exact mode and check the
            oracle, for rules that resize a module or rewrite literal channel counts;
            the producer makes ``args[0]``'s dim 1 (-1 with ``last_dim``).
        last_dim: the producer and consumer work on the last dim (a Linear), not dim 1.
        exact: prune in exact mode (checked by the oracle); False prunes in default mode,
            where only the output shapes are checked.
    """

    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    module: Callable[[], nn.Module] | None = None
    tracks: bool = True
    prune: bool = False
    last_dim: bool = False
    exact: bool = True


X = T((2, 4, 5, 5))  # N, C, H, W
X1 = T((2, 4, 6))  # N, C, L
X3 = T((2, 4, 3, 4, 4))  # N, C, D, H, W
V = T((2, 4))  # N, C
MASK = T((2, 4, 5, 5), torch.bool)
BY_RANK = {1: X1, 2: X, 3: X3}

EXAMPLES: dict[Any, Example] = {}


def _each(keys: Any, example: Example) -> None:
    for key in keys:
        EXAMPLES[key] = example


def _modules(example: Callable[[Callable[[], nn.Module], T], Example], *entries: tuple[Any, ...]) -> None:
    """(module type, constructor args, input) entries."""
    for cls, args, x in entries:
        EXAMPLES[cls] = example(lambda cls=cls, args=args: cls(*args), x)


def _plain(build: Callable[[], nn.Module], x: T) -> Example:
    return Example((x,), module=build)


def _resized(build: Callable[[], nn.Module], x: T) -> Example:
    return Example((x,), module=build, prune=True)


# --------------------------------------------------------------------------- modules
_modules(_plain, *[(cls, (), X) for cls in (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Hardswish,
    nn.Hardsigmoid, nn.Hardtanh, nn.Sigmoid, nn.Tanh, nn.Softplus, nn.Softsign, nn.Tanhshrink, nn.LogSigmoid,
    nn.Identity, nn.Dropout, nn.Dropout2d, nn.AlphaDropout, nn.FeatureAlphaDropout, nn.Softmax2d, nn.Flatten)])
_modules(_plain, (nn.Threshold, (0.1, 0.0), X), (nn.Dropout1d, (), X1), (nn.Dropout3d, (), X3),
         (nn.Softmax, (-1,), X), (nn.LogSoftmax, (-1,), X), (nn.Upsample, (None, 2), X),
         (nn.UpsamplingNearest2d, (None, 2), X), (nn.UpsamplingBilinear2d, (None, 2), X))
for _n, _x in BY_RANK.items():
    _modules(_plain, *[(getattr(nn, f"{kind}{_n}d"), (1,), _x) for kind in (
        "ReflectionPad", "ReplicationPad", "ZeroPad", "CircularPad")])
    _modules(_plain, (getattr(nn, f"ConstantPad{_n}d"), (1, 0.5), _x), (getattr(nn, f"LPPool{_n}d"), (2, 2), _x),
             *[(getattr(nn, f"{kind}{_n}d"), (2,), _x) for kind in ("MaxPool", "AvgPool", "AdaptiveAvgPool",
                                                                     "AdaptiveMaxPool")])
    _modules(_resized, (getattr(nn, f"Conv{_n}d"), (4, 6, 3), _x), (getattr(nn, f"ConvTranspose{_n}d"), (4, 6, 3), _x),
             (getattr(nn, f"BatchNorm{_n}d"), (4,), _x), (getattr(nn, f"InstanceNorm{_n}d"), (4, 1e-5, 0.1, True), _x))
_modules(_resized, (nn.Linear, (4, 6), V), (nn.SyncBatchNorm, (4,), X), (nn.GroupNorm, (2, 4), X),
         (nn.PReLU, (4,), X), (nn.Unflatten, (1, (4, 1)), X))
_modules(_plain, (nn.PixelShuffle, (2,), T((2, 8, 3, 3))), (nn.PixelUnshuffle, (2,), T((2, 2, 4, 4))),
         (nn.GLU, (-1,), T((2, 4, 5, 6))))
# Exact mode never prunes the normalised dim (its statistics span it): default mode resizes.
EXAMPLES[nn.LayerNorm] = Example((T((2, 3, 4)),), module=lambda: nn.LayerNorm(4), prune=True, last_dim=True,
                                 exact=False)

# --------------------------------------------------------------------------- functions and methods
_UNARY_FUNCTIONS = (
    F.relu, torch.relu_, F.relu6, F.leaky_relu, F.elu, F.selu, F.celu, F.gelu, F.silu, F.mish, F.hardswish,
    F.hardsigmoid, F.hardtanh, F.sigmoid, F.tanh, F.softplus, F.dropout, F.dropout2d, F.alpha_dropout,
    F.logsigmoid, torch.relu, torch.sigmoid, torch.tanh, torch.exp, torch.log, torch.sqrt, torch.rsqrt, torch.abs,
    torch.neg, torch.erf, torch.clamp, torch.clip, torch.sign, torch.square, torch.reciprocal, torch.nan_to_num,
    operator.neg, operator.pos, torch.zeros_like, torch.ones_like, torch.empty_like, torch.rand_like,
    torch.randn_like, torch.clone, torch.detach)
_each(_UNARY_FUNCTIONS, Example((X,)))
EXAMPLES[torch.clamp] = EXAMPLES[torch.clip] = Example((X, -0.5, 0.5))
EXAMPLES[torch.full_like] = Example((X, 2.0))
EXAMPLES[F.dropout1d] = Example((X1,))
EXAMPLES[F.dropout3d] = Example((X3,))
_UNARY_METHODS = (
    "relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "exp", "log", "sqrt", "rsqrt", "abs", "neg",
    "square", "reciprocal", "sign", "contiguous", "clone", "detach", "float", "double", "half", "bfloat16",
    "requires_grad_", "hardtanh_", "nan_to_num", "erf", "exp_", "zero_", "leaky_relu_")
_each([Method(m) for m in _UNARY_METHODS], Example((X,)))
_each([Method(m) for m in ("clamp", "clamp_", "clip")], Example((X, -0.5, 0.5)))
EXAMPLES[Method("clamp_min")] = EXAMPLES[Method("clamp_max")] = Example((X, 0.5))
EXAMPLES[Method("to")] = Example((X, torch.float64))
EXAMPLES[Method("type")] = Example((X, torch.float64))
EXAMPLES[Method("type_as")] = Example((X, T((1,), torch.float64)))
EXAMPLES[Method("pow_")] = Example((X, 2.0))

_BINARY_FUNCTIONS = (
    operator.add, operator.sub, operator.mul, operator.truediv, operator.floordiv, operator.pow, operator.mod,
    operator.iadd, operator.isub, operator.imul, operator.itruediv, operator.eq, operator.ne, operator.lt,
    operator.le, operator.gt, operator.ge, torch.add, torch.sub, torch.mul, torch.div, torch.true_divide,
    torch.pow, torch.maximum, torch.minimum, torch.fmax, torch.fmin, torch.eq, torch.ne, torch.lt, torch.le,
    torch.gt, torch.ge)
# The second operand broadcasts along the channels (a per-channel scale, as a SE block's).
_each(_BINARY_FUNCTIONS, Example((X, T((1, 4, 1, 1)))))
_BINARY_METHODS = ("add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "pow", "maximum", "minimum",
                   "eq", "ne", "lt", "le", "gt", "ge", "eq_", "ne_", "lt_", "le_", "gt_", "ge_", "expand_as")
_each([Method(m) for m in _BINARY_METHODS], Example((X, T((1, 4, 1, 1)))))
EXAMPLES[Method("expand_as")] = Example((T((1, 4, 1, 1)), X))
EXAMPLES[torch.where] = EXAMPLES[Method("where")] = Example((X, MASK, T((1, 4, 1, 1))))
EXAMPLES[torch.where] = Example((MASK, X, T((1, 4, 1, 1))))
EXAMPLES[torch.lerp] = EXAMPLES[Method("lerp")] = Example((X, T((1, 4, 1, 1)), 0.3))
_each([torch.addcmul, torch.addcdiv, Method("addcmul"), Method("addcdiv")], Example((X, X, T((1, 4, 1, 1)))))
_each([torch.masked_fill, Method("masked_fill"), Method("masked_fill_")], Example((X, MASK, 0.0)))

# Reductions over the spatial dims: the channels pass.
_REDUCTIONS = ("mean", "sum", "amax", "amin", "std", "var", "logsumexp", "nansum", "nanmean")
_each([getattr(torch, r) for r in _REDUCTIONS] + [Method(r) for r in _REDUCTIONS], Example((X, (2, 3))))
_each([torch.max, torch.min, torch.prod, torch.all, torch.any, Method("max"), Method("min"), Method("prod"),
       Method("all"), Method("any")], Example((X, 3)))
_each([F.softmax, F.log_softmax, torch.softmax, torch.log_softmax, Method("softmax"), Method("log_softmax")],
      Example((X, -1)))
EXAMPLES[F.pad] = Example((X, (1, 1, 2, 0)))
for _n, _x in BY_RANK.items():
    for _name in ("max_pool", "avg_pool", "adaptive_avg_pool", "adaptive_max_pool"):
        EXAMPLES[getattr(F, f"{_name}{_n}d")] = Example((_x, 2))
    EXAMPLES[getattr(F, f"lp_pool{_n}d")] = Example((_x, 2, 2))
EXAMPLES[torch.avg_pool1d] = EXAMPLES[F.avg_pool1d]
EXAMPLES[torch.adaptive_avg_pool1d] = EXAMPLES[F.adaptive_avg_pool1d]
_each([F.interpolate, F.upsample, F.upsample_nearest], Example((X,), {"scale_factor": 2}))
EXAMPLES[F.upsample_bilinear] = Example((X,), {"scale_factor": 2})

# Shapes with a literal channel count (4) are rewritten when channels go: pruned too.
EXAMPLES[torch.reshape] = Example((X, (2, 4, 25)), prune=True)
EXAMPLES[Method("reshape")] = EXAMPLES[Method("view")] = Example((X, 2, 4, 25), prune=True)
_each([torch.flatten, Method("flatten")], Example((X, 2)))
_each([torch.squeeze, Method("squeeze")], Example((T((2, 4, 1, 5)), 2)))
_each([torch.unsqueeze, Method("unsqueeze")], Example((X, 2)))
EXAMPLES[Method("view_as")] = Example((X, T((2, 4, 25))))
EXAMPLES[Method("reshape_as")] = Example((X, T((2, 4, 25))))
_each([torch.unflatten, Method("unflatten")], Example((X, 1, (4, 1)), prune=True))
EXAMPLES[Method("expand")] = Example((T((2, 4, 1, 1)), 2, 4, 5, 5), prune=True)
_each([torch.cat, torch.concat, torch.concatenate], Example(([X, X], 1)))
EXAMPLES[torch.stack] = Example(([X, X], 0))
_each([torch.split, Method("split")], Example((X, (2, 2), 1), prune=True))
_each([torch.chunk, Method("chunk"), torch.tensor_split, Method("tensor_split")], Example((X, 2, 1), prune=True))
_each([torch.unbind, Method("unbind")], Example((X, 2), prune=True))
EXAMPLES[operator.getitem] = Example((X, (slice(None), slice(1, 3))), prune=True)
_each([torch.permute, Method("permute")], Example((X, (0, 2, 3, 1))))
_each([torch.transpose, torch.swapaxes, torch.swapdims, Method("transpose"), Method("swapaxes"),
       Method("swapdims")], Example((X, 1, 3)))
_each([torch.movedim, torch.moveaxis, Method("movedim"), Method("moveaxis")], Example((X, 1, 3)))
_each([torch.t, Method("t")], Example((V,)))
EXAMPLES[getattr] = Example((X, "shape"), tracks=False)
EXAMPLES[len] = Example((X,), tracks=False)
_each([torch.numel, Method("numel"), Method("dim"), Method("ndimension"), Method("nelement")],
      Example((X,), tracks=False))
EXAMPLES[Method("size")] = Example((X, 0), tracks=False)

# Layers called as functions: their weights are inputs, producers of the output channels.
for _n, _x in BY_RANK.items():
    EXAMPLES[getattr(torch, f"conv{_n}d")] = Example((_x, T((6, 4) + (3,) * _n), T((6,))), prune=True)
    EXAMPLES[getattr(torch, f"conv_transpose{_n}d")] = Example((_x, T((4, 6) + (3,) * _n), T((6,))), prune=True)
EXAMPLES[F.linear] = Example((V, T((6, 4)), T((6,))))
EXAMPLES[F.batch_norm] = Example((X, T((4,)), T((4,)), T((4,)), T((4,))))
EXAMPLES[F.instance_norm] = Example((X, None, None, T((4,)), T((4,))))
EXAMPLES[F.group_norm] = Example((X, 2, T((4,)), T((4,))), prune=True)
EXAMPLES[F.layer_norm] = Example((T((2, 3, 4)), (4,), T((4,)), T((4,))), prune=True, last_dim=True, exact=False)
EXAMPLES[torch.prelu] = Example((X, T((4,))))
EXAMPLES[torch.pixel_shuffle] = Example((T((2, 8, 3, 3)), 2))
EXAMPLES[torch.pixel_unshuffle] = Example((T((2, 2, 4, 4)), 2))
_each([torch.flip, Method("flip")], Example((X, (2,))))
_each([torch.roll, Method("roll")], Example((X, 1, 2)))
EXAMPLES[F.glu] = Example((T((2, 4, 5, 6)), -1))

# --------------------------------------------------------------------------- ATen overloads
_W = {n: T((6, 4) + (3,) * n) for n in BY_RANK}
_WT = {n: T((4, 6) + (3,) * n) for n in BY_RANK}
for _n, _x in BY_RANK.items():
    for _overload in (getattr(aten, f"conv{_n}d").default, getattr(aten, f"conv{_n}d").padding):
        EXAMPLES[_overload] = Example((_x, _W[_n], T((6,))))
EXAMPLES[aten.conv_transpose1d.default] = Example((X1, _WT[1], T((6,))))
EXAMPLES[aten.conv_transpose2d.input] = Example((X, _WT[2], T((6,))))
EXAMPLES[aten.conv_transpose3d.input] = Example((X3, _WT[3], T((6,))))
EXAMPLES[aten.convolution.default] = Example((X, _W[2], T((6,)), [1, 1], [0, 0], [1, 1], False, [0, 0], 1))
EXAMPLES[aten.linear.default] = Example((V, T((6, 4)), T((6,))))
_VEC = T((4,))
EXAMPLES[aten.batch_norm.default] = Example((X, _VEC, _VEC, _VEC, _VEC, False, 0.1, 1e-5, False))
EXAMPLES[aten._native_batch_norm_legit_no_training.default] = Example((X, _VEC, _VEC, _VEC, _VEC, 0.1, 1e-5))
EXAMPLES[aten.instance_norm.default] = Example((X, _VEC, _VEC, None, None, True, 0.1, 1e-5, False))
EXAMPLES[aten.layer_norm.default] = Example((T((2, 3, 4)), [4], T((4,)), T((4,))))
EXAMPLES[aten.native_layer_norm.default] = Example((T((2, 3, 4)), [4], T((4,)), T((4,)), 1e-5))
EXAMPLES[aten.group_norm.default] = Example((X, 2, _VEC, _VEC))
EXAMPLES[aten.native_group_norm.default] = Example((X, _VEC, _VEC, 2, 4, 25, 2, 1e-5))
EXAMPLES[aten.prelu.default] = Example((X, _VEC))
_ATEN_UNARY = (
    "relu", "relu_", "sigmoid", "tanh", "exp", "log", "sqrt", "rsqrt", "abs", "neg", "erf", "sign", "reciprocal",
    "square", "silu", "mish", "hardswish", "hardsigmoid", "log_sigmoid", "clone", "zeros_like", "ones_like",
    "empty_like", "rand_like", "randn_like", "sigmoid_", "tanh_", "exp_", "hardtanh_", "detach", "silu_",
    "hardswish_", "hardsigmoid_", "mish_", "gelu", "leaky_relu", "leaky_relu_", "hardtanh", "softplus", "elu",
    "nan_to_num", "contiguous", "alias", "lift_fresh_copy")
_each([getattr(aten, name).default for name in _ATEN_UNARY], Example((X,)))
_each([aten.clamp.default, aten.clamp_.default], Example((X, -0.5, 0.5)))
EXAMPLES[aten.clamp.Tensor] = Example((X, T((1, 4, 1, 1)), T((1, 4, 1, 1))))
_each([aten.clamp_min.default, aten.clamp_max.default, aten.pow.Tensor_Scalar], Example((X, 0.5)))
EXAMPLES[aten.pow.Tensor_Tensor] = Example((X, T((1, 4, 1, 1))))
EXAMPLES[aten.pow.Scalar] = Example((2.0, X))
_each([aten.dropout.default, aten.alpha_dropout.default, aten.feature_dropout.default,
       aten.feature_dropout_.default], Example((X, 0.5, False)))
EXAMPLES[aten.type_as.default] = Example((X, T((1,), torch.float64)))
EXAMPLES[aten.reshape_as.default] = Example((X, T((2, 4, 25))))
EXAMPLES[aten.to.device] = Example((X, torch.device("cpu"), torch.float64))
EXAMPLES[aten.to.dtype_layout] = Example((X,), {"dtype": torch.float64})
EXAMPLES[aten.to.dtype] = Example((X, torch.float64))
EXAMPLES[aten._to_copy.default] = Example((X,), {"dtype": torch.float64})
_SCALE = T((1, 4, 1, 1))
for _name in ("add", "sub", "mul", "div", "eq", "ne", "lt", "le", "gt", "ge"):
    _packet, _inplace = getattr(aten, _name), getattr(aten, f"{_name}_")
    _each([_packet.Tensor, _inplace.Tensor], Example((X, _SCALE)))
    _each([_packet.Scalar, _inplace.Scalar], Example((X, 2.0)))
    if "default" in _packet.overloads():  # numbers, not tensors: sizes computed in the graph
        EXAMPLES[_packet.default] = Example((2, 3), tracks=False)
EXAMPLES[aten.div.Tensor_mode] = Example((X, _SCALE), {"rounding_mode": "floor"})
EXAMPLES[aten.div.Scalar_mode] = Example((X, 2.0), {"rounding_mode": "floor"})
for _name in ("maximum", "minimum", "fmax", "fmin"):
    EXAMPLES[getattr(aten, _name).default] = Example((X, _SCALE))
_each([aten.masked_fill.Scalar, aten.masked_fill_.Scalar], Example((X, MASK, 0.0)))
_each([aten.masked_fill.Tensor, aten.masked_fill_.Tensor], Example((X, MASK, T(()))))
EXAMPLES[aten.where.self] = Example((MASK, X, _SCALE))
EXAMPLES[aten.lerp.Scalar] = Example((X, _SCALE, 0.3))
EXAMPLES[aten.lerp.Tensor] = Example((X, _SCALE, _SCALE))
_each([aten.addcmul.default, aten.addcdiv.default], Example((X, X, _SCALE)))
EXAMPLES[aten.rsub.Scalar] = Example((X, 1.0))
EXAMPLES[aten.rsub.Tensor] = Example((X, _SCALE))
_each([aten.mean.default, aten.sum.default, aten.prod.default, aten.nansum.default, aten.max.default,
       aten.min.default], Example((X,), tracks=False))
_each([aten.mean.dim, aten.sum.dim_IntList, aten.amax.default, aten.amin.default, aten.logsumexp.default],
      Example((X, [2, 3])))
_each([aten.prod.dim_int, aten.max.dim, aten.min.dim], Example((X, 3)))
_each([aten.var.correction, aten.std.correction], Example((X, [2, 3])))
_each([aten.softmax.int, aten.log_softmax.int], Example((X, -1)))
_each([aten._softmax.default, aten._log_softmax.default], Example((X, -1, False)))
for _n, _x in BY_RANK.items():
    for _name in ("max_pool", "avg_pool", "adaptive_avg_pool", "adaptive_max_pool"):
        EXAMPLES[getattr(aten, f"{_name}{_n}d").default] = Example((_x, [2] * _n))
    EXAMPLES[getattr(aten, f"max_pool{_n}d_with_indices").default] = Example((_x, [2] * _n))
    for _kind in ("reflection", "replication"):
        EXAMPLES[getattr(aten, f"{_kind}_pad{_n}d").default] = Example((_x, [1] * (2 * _n)))
for _name, _x in (("upsample_nearest1d", X1), ("upsample_nearest2d", X), ("upsample_nearest3d", X3),
                  ("_upsample_nearest_exact2d", X)):
    EXAMPLES[getattr(aten, _name).vec] = Example((_x, None, [2.0] * (_x.shape.__len__() - 2)))
for _name, _x in (("upsample_linear1d", X1), ("upsample_bilinear2d", X), ("upsample_trilinear3d", X3),
                  ("upsample_bicubic2d", X)):
    EXAMPLES[getattr(aten, _name).vec] = Example((_x, None, False, [2.0] * (len(_x.shape) - 2)))
EXAMPLES[aten.pad.default] = Example((X, [1, 1, 2, 0]))
EXAMPLES[aten.constant_pad_nd.default] = Example((X, [1, 1, 2, 0], 0.5))
EXAMPLES[aten.cat.default] = Example(([X, X], 1))
EXAMPLES[aten.stack.default] = Example(([X, X], 0))
EXAMPLES[aten.split.Tensor] = Example((X, 2, 1))
EXAMPLES[aten.split_with_sizes.default] = Example((X, [1, 3], 1))
EXAMPLES[aten.chunk.default] = Example((X, 2, 1))
EXAMPLES[aten.unbind.int] = Example((X, 2))
EXAMPLES[aten.tensor_split.sections] = Example((X, 2, 1))
EXAMPLES[aten.tensor_split.indices] = Example((X, [1], 1))
_each([aten.view.default, aten._unsafe_view.default, aten.reshape.default], Example((X, [2, 4, 25])))
EXAMPLES[aten.flatten.using_ints] = Example((X, 2))
EXAMPLES[aten.unflatten.int] = Example((T((2, 4, 10)), 2, [2, 5]))
EXAMPLES[aten.squeeze.dim] = Example((T((2, 4, 1, 5)), 2))
EXAMPLES[aten.squeeze.dims] = Example((T((2, 4, 1, 5)), [2]))
EXAMPLES[aten.squeeze.default] = Example((T((2, 4, 1, 5)),))
EXAMPLES[aten.unsqueeze.default] = Example((X, 2))
EXAMPLES[aten.expand.default] = Example((T((2, 4, 1, 1)), [2, 4, 5, 5]))
EXAMPLES[aten.expand_as.default] = Example((T((1, 4, 1, 1)), X))
EXAMPLES[aten.permute.default] = Example((X, [0, 2, 3, 1]))
EXAMPLES[aten.transpose.int] = Example((X, 1, 3))
EXAMPLES[aten.t.default] = Example((V,))
EXAMPLES[aten.movedim.int] = Example((X, 1, 3))
EXAMPLES[aten.movedim.intlist] = Example((X, [1], [3]))
EXAMPLES[aten.sym_size.int] = Example((X, 1), tracks=False)
EXAMPLES[aten.sym_numel.default] = Example((X,), tracks=False)
EXAMPLES[aten.slice.Tensor] = Example((X, 1, 1, 3))
EXAMPLES[aten.select.int] = Example((X, 2, 0))
EXAMPLES[aten.pixel_shuffle.default] = Example((T((2, 8, 3, 3)), 2))
EXAMPLES[aten.pixel_unshuffle.default] = Example((T((2, 2, 4, 4)), 2))
EXAMPLES[aten.flip.default] = Example((X, [2]))
EXAMPLES[aten.roll.default] = Example((X, [1], [2]))
EXAMPLES[aten.glu.default] = Example((T((2, 4, 5, 6)), -1))

# --------------------------------------------------------------------------- optional libraries
from torchvision.ops.stochastic_depth import stochastic_depth  # noqa: E402  (registered once imported)

EXAMPLES[stochastic_depth] = Example((X, 0.2, "row", False))

# Contractions and attention: the free rows of the first operand stay tracked.
_A, _B = T((2, 4, 5)), T((2, 5, 3))
_each([torch.matmul, operator.matmul, torch.bmm, Method("matmul"), Method("bmm"), Method("__matmul__"),
       aten.matmul.default, aten.bmm.default], Example((_A, _B)))
EXAMPLES[torch.einsum] = Example(("bij,bjk->bik", _A, _B))
EXAMPLES[aten.einsum.default] = Example(("bij,bjk->bik", [_A, _B]))
_QKV = T((2, 2, 4, 8))  # batch, heads, tokens, head width
_each([F.scaled_dot_product_attention, aten.scaled_dot_product_attention.default], Example((_QKV, _QKV, _QKV)))
EXAMPLES[nn.MultiheadAttention] = Example((T((2, 3, 4)),) * 3,
                                          module=lambda: nn.MultiheadAttention(4, 2, batch_first=True))
EXAMPLES[aten.index.Tensor] = Example((T((6, 4)), [T((3,), torch.int64)]))  # a per-head table gathered by rows
# Norms over the spatial dims and creation from a tensor: the channels pass, or are not read.
EXAMPLES[F.normalize] = Example((X,), {"dim": -1})
_each([torch.norm, Method("norm")], Example((X,), {"dim": -1, "keepdim": True}))
EXAMPLES[torch.linalg.vector_norm] = Example((X,), {"dim": -1, "keepdim": True})
EXAMPLES[aten.linalg_vector_norm.default] = Example((X, 2, [-1], True))
EXAMPLES[aten.norm.ScalarOpt_dim] = Example((X, 2, [-1], True))
_each([Method(m) for m in ("new_zeros", "new_ones", "new_empty")], Example((X, (2, 3)), tracks=False))
EXAMPLES[Method("new_full")] = Example((X, (2, 3), 1.0), tracks=False)
EXAMPLES[Method("new_tensor")] = Example((X, [1.0, 2.0]), tracks=False)
_each([aten.new_zeros.default, aten.new_ones.default, aten.new_empty.default], Example((X, [2, 3]), tracks=False))
EXAMPLES[aten.new_full.default] = Example((X, [2, 3], 1.0), tracks=False)
EXAMPLES[aten.zero_.default] = Example((X,))
