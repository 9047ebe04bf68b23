"""The ATen spelling of every operator that has a rule (see :mod:`.spelling`).

Grouped as the rule files are: layers, value-wise operators, structural operators,
rearrangements. Most overloads have the signature of a torch function and need only
its name; the others bind their schema arguments by name, or build the call.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import fx

from .spelling import Call, Spelling, register_aten

__all__: list[str] = []

aten = torch.ops.aten
_INT_MAX = 2**62  # ATen writes an open slice end as INT64_MAX


def _same(target: Any, *overloads: Any, **options: Any) -> None:
    """Overloads whose schema is the signature of ``target``."""
    register_aten(*overloads, spelling=Spelling(target, **options))


def _identity(bound: dict[str, Any], node: fx.Node) -> Call:
    """An alias of its input: written as that input (see passes.capture)."""
    return "identity", None, (bound["self"],), {}


# ---- layers -----------------------------------------------------------------------------------
_same(F.conv1d, aten.conv1d.default, aten.conv1d.padding)
_same(F.conv2d, aten.conv2d.default, aten.conv2d.padding)
_same(F.conv3d, aten.conv3d.default, aten.conv3d.padding)
_same(F.conv_transpose1d, aten.conv_transpose1d.default)
_same(F.conv_transpose2d, aten.conv_transpose2d.input)
_same(F.conv_transpose3d, aten.conv_transpose3d.input)


def _convolution(bound: dict[str, Any], node: fx.Node) -> Call | None:
    spatial = len(bound["stride"])
    if spatial not in (1, 2, 3):
        return None
    names: tuple[str, ...] = ("input", "weight", "bias", "stride", "padding")
    target: Callable[..., Any]
    if bound["transposed"]:
        target = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[spatial - 1]
        names += ("output_padding", "groups", "dilation")
    else:
        target = (F.conv1d, F.conv2d, F.conv3d)[spatial - 1]
        names += ("dilation", "groups")
    return "call_function", target, tuple(bound[n] for n in names), {}


register_aten(aten.convolution.default, spelling=Spelling(adapt=_convolution))
_same(F.linear, aten.linear.default)
_NORM = ("input", "running_mean", "running_var", "weight", "bias")
register_aten(aten.batch_norm.default, spelling=Spelling(F.batch_norm, (*_NORM, "training", "momentum", "eps")))
register_aten(aten._native_batch_norm_legit_no_training.default, spelling=Spelling(
    F.batch_norm, _NORM, {"momentum": "momentum", "eps": "eps"}, first_output=True))
register_aten(aten.instance_norm.default, spelling=Spelling(
    F.instance_norm, (*_NORM, "use_input_stats", "momentum", "eps")))
register_aten(aten.layer_norm.default, spelling=Spelling(
    F.layer_norm, ("input", "normalized_shape", "weight", "bias", "eps")))
register_aten(aten.native_layer_norm.default, spelling=Spelling(
    F.layer_norm, ("input", "normalized_shape", "weight", "bias", "eps"), first_output=True))
register_aten(aten.group_norm.default, spelling=Spelling(
    F.group_norm, ("input", "num_groups", "weight", "bias", "eps")))
register_aten(aten.native_group_norm.default, spelling=Spelling(
    F.group_norm, ("input", "group", "weight", "bias", "eps"), first_output=True))
_same(F.prelu, aten.prelu.default)

# ---- value-wise -------------------------------------------------------------------------------
def _inplace(function: Callable[..., Any]) -> Spelling:
    """An activation's in-place ATen form: the functional call with ``inplace=True``."""
    return Spelling(adapt=lambda bound, node: ("call_function", function, (bound["self"],), {"inplace": True}))


def _pad(mode: str) -> Spelling:
    """A ``reflection_pad*d`` / ``replication_pad*d`` overload: ``F.pad`` in that mode."""
    return Spelling(adapt=lambda bound, node: ("call_function", F.pad, (bound["self"], bound["padding"], mode), {}))


_function: Callable[..., Any]  # the loops below bind torch functions of different signatures
for _function, _names in (
        (torch.relu, ("relu",)), (torch.relu_, ("relu_",)), (torch.sigmoid, ("sigmoid",)),
        (torch.tanh, ("tanh",)), (torch.exp, ("exp",)), (torch.log, ("log",)), (torch.sqrt, ("sqrt",)),
        (torch.rsqrt, ("rsqrt",)), (torch.abs, ("abs",)), (torch.neg, ("neg",)), (torch.erf, ("erf",)),
        (torch.sign, ("sign",)), (torch.reciprocal, ("reciprocal",)), (torch.square, ("square",)),
        (F.silu, ("silu",)), (F.mish, ("mish",)), (F.hardswish, ("hardswish",)),
        (F.hardsigmoid, ("hardsigmoid",)), (F.logsigmoid, ("log_sigmoid",)), (torch.clone, ("clone",)),
        (torch.zeros_like, ("zeros_like",)), (torch.ones_like, ("ones_like",)),
        (torch.empty_like, ("empty_like",)), (torch.rand_like, ("rand_like",)),
        (torch.randn_like, ("randn_like",))):
    _same(_function, *(getattr(aten, n).default for n in _names))
for _method in ("sigmoid_", "tanh_", "exp_", "clamp_", "hardtanh_", "detach"):
    _same(_method, getattr(aten, _method).default)
for _name, _function in (("silu_", F.silu), ("hardswish_", F.hardswish), ("hardsigmoid_", F.hardsigmoid),
                         ("mish_", F.mish)):
    register_aten(getattr(aten, _name).default, spelling=_inplace(_function))
_same(F.gelu, aten.gelu.default, kwargs={"approximate": "approximate"}, args=("self",))
_same(F.leaky_relu, aten.leaky_relu.default)
_same("leaky_relu_", aten.leaky_relu_.default)
_same(F.hardtanh, aten.hardtanh.default)
_same(F.softplus, aten.softplus.default)
_same(F.elu, aten.elu.default, args=("self", "alpha"), only_if={"scale": 1, "input_scale": 1})
_same(torch.clamp, aten.clamp.default, aten.clamp.Tensor)
_same("clamp_min", aten.clamp_min.default)
_same("clamp_max", aten.clamp_max.default)
_same(torch.pow, aten.pow.Tensor_Scalar, aten.pow.Tensor_Tensor, aten.pow.Scalar)
_same(F.dropout, aten.dropout.default)
_same(F.alpha_dropout, aten.alpha_dropout.default)
_same(torch.nan_to_num, aten.nan_to_num.default)
_same("contiguous", aten.contiguous.default, args=("self",))
_same("type_as", aten.type_as.default)
_same("reshape_as", aten.reshape_as.default)
register_aten(aten.to.device, spelling=Spelling("to", ("self", "device", "dtype")))
register_aten(aten.to.dtype_layout, spelling=Spelling("to", ("self",), {"dtype": "dtype"},
                                                      only_if={"device": None, "layout": None}))


def _input_rank(node: fx.Node) -> int:
    """Rank of the tensor in a call's first argument (``self`` or ``input``)."""
    return cast(fx.Node, node.args[0]).meta["val"].dim()


def _feature_dropout(bound: dict[str, Any], node: fx.Node) -> Call | None:
    rank = _input_rank(node)
    target = {3: F.dropout1d, 4: F.dropout2d, 5: F.dropout3d}.get(rank)
    source = bound["input"] if "input" in bound else bound["self"]  # the in-place overload names it self
    return None if target is None else ("call_function", target, (source, bound["p"], bound["train"]), {})


register_aten(aten.feature_dropout.default, aten.feature_dropout_.default, spelling=Spelling(adapt=_feature_dropout))
register_aten(aten.to.dtype, spelling=Spelling("to", ("self", "dtype")))
register_aten(aten._to_copy.default, spelling=Spelling("to", ("self",), {"dtype": "dtype"},
                                                       only_if={"device": None, "layout": None}))
register_aten(aten.alias.default, aten.lift_fresh_copy.default, spelling=Spelling(adapt=_identity))

_BINARY: dict[str, Callable[..., Any]]
_BINARY = {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div, "maximum": torch.maximum,
           "minimum": torch.minimum, "eq": torch.eq, "ne": torch.ne, "lt": torch.lt, "le": torch.le,
           "gt": torch.gt, "ge": torch.ge, "masked_fill": torch.masked_fill, "fmax": torch.fmax,
           "fmin": torch.fmin}
for _name, _function in _BINARY.items():
    packet = getattr(aten, _name)
    _same(_function, *(getattr(packet, o) for o in ("Tensor", "Scalar", "default", "Tensor_mode", "Scalar_mode")
                      if o in packet.overloads()))
    if hasattr(aten, f"{_name}_"):  # in place: the method of the same name
        inplace = getattr(aten, f"{_name}_")
        _same(f"{_name}_", *(getattr(inplace, o) for o in ("Tensor", "Scalar") if o in inplace.overloads()))
for _name in ("eq", "ne", "lt", "le", "gt", "ge"):  # .default compares two numbers: torch.eq takes no numbers
    _same(getattr(operator, _name), getattr(aten, _name).default)
_same(torch.where, aten.where.self)
_same(torch.lerp, aten.lerp.Scalar, aten.lerp.Tensor)
_same(torch.addcmul, aten.addcmul.default)
_same(torch.addcdiv, aten.addcdiv.default)


def _rsub(bound: dict[str, Any], node: fx.Node) -> Call | None:
    return ("call_function", operator.sub, (bound["other"], bound["self"]), {}) if bound["alpha"] == 1 else None


register_aten(aten.rsub.Scalar, aten.rsub.Tensor, spelling=Spelling(adapt=_rsub))


def _reduction(function: Any) -> Spelling:
    def adapt(bound: dict[str, Any], node: fx.Node) -> Call:
        dim = bound.get("dim")
        kwargs = {"dtype": bound["dtype"]} if bound.get("dtype") is not None else {}
        if dim is None:
            return "call_function", function, (bound["self"],), kwargs
        return "call_function", function, (bound["self"], dim, bound.get("keepdim", False)), kwargs

    return Spelling(adapt=adapt)


for _name, _function in (("mean", torch.mean), ("sum", torch.sum), ("amax", torch.amax), ("amin", torch.amin),
                         ("prod", torch.prod), ("logsumexp", torch.logsumexp), ("nansum", torch.nansum)):
    packet = getattr(aten, _name)
    register_aten(*(getattr(packet, o) for o in packet.overloads() if o in ("default", "dim", "dim_IntList",
                                                                             "dim_int")),
                  spelling=_reduction(_function))
_same(torch.max, aten.max.dim)
_same(torch.min, aten.min.dim)
_same(torch.max, aten.max.default)
_same(torch.min, aten.min.default)
for _name, _function in (("var", torch.var), ("std", torch.std)):
    register_aten(getattr(aten, _name).correction, spelling=Spelling(
        _function, ("self", "dim"), {"correction": "correction", "keepdim": "keepdim"}))
register_aten(aten.softmax.int, aten._softmax.default, spelling=Spelling(torch.softmax, ("self", "dim")))
register_aten(aten.log_softmax.int, aten._log_softmax.default, spelling=Spelling(torch.log_softmax, ("self", "dim")))

for _n in (1, 2, 3):
    _same(getattr(F, f"max_pool{_n}d"), getattr(aten, f"max_pool{_n}d").default)
    _same(getattr(F, f"avg_pool{_n}d"), getattr(aten, f"avg_pool{_n}d").default)
    _same(getattr(F, f"adaptive_avg_pool{_n}d"), getattr(aten, f"adaptive_avg_pool{_n}d").default)
    # (values, indices) in ATen; the values alone are the function's result
    register_aten(getattr(aten, f"adaptive_max_pool{_n}d").default, spelling=Spelling(
        getattr(F, f"adaptive_max_pool{_n}d"), ("self", "output_size"), first_output=True))
    register_aten(getattr(aten, f"max_pool{_n}d_with_indices").default, spelling=Spelling(
        getattr(F, f"max_pool{_n}d"), ("self", "kernel_size", "stride", "padding", "dilation", "ceil_mode"),
        first_output=True))


def _upsample(mode: str, align: bool) -> Spelling:
    def adapt(bound: dict[str, Any], node: fx.Node) -> Call:
        kwargs: dict[str, Any] = {"size": bound["output_size"], "scale_factor": bound["scale_factors"], "mode": mode}
        if align:
            kwargs["align_corners"] = bound["align_corners"]
        return "call_function", F.interpolate, (bound["input"],), kwargs

    return Spelling(adapt=adapt)


for _name, _mode, _align in (("upsample_nearest1d", "nearest", False), ("upsample_nearest2d", "nearest", False),
                             ("upsample_nearest3d", "nearest", False), ("upsample_linear1d", "linear", True),
                             ("upsample_bilinear2d", "bilinear", True), ("upsample_trilinear3d", "trilinear", True),
                             ("upsample_bicubic2d", "bicubic", True),
                             ("_upsample_nearest_exact2d", "nearest-exact", False)):
    register_aten(getattr(aten, _name).vec, spelling=_upsample(_mode, _align))

register_aten(aten.pad.default, spelling=Spelling(F.pad, ("self", "pad", "mode", "value")))
register_aten(aten.constant_pad_nd.default, spelling=Spelling(
    adapt=lambda bound, node: ("call_function", F.pad, (bound["self"], bound["pad"], "constant", bound["value"]), {})))
for _kind, _mode in (("reflection", "reflect"), ("replication", "replicate")):
    for _n in (1, 2, 3):
        register_aten(getattr(aten, f"{_kind}_pad{_n}d").default, spelling=_pad(_mode))

# ---- structural -------------------------------------------------------------------------------
_same(torch.cat, aten.cat.default)
_same(torch.stack, aten.stack.default)
_same(torch.split, aten.split.Tensor, aten.split_with_sizes.default)
_same(torch.chunk, aten.chunk.default)
_same(torch.unbind, aten.unbind.int)
_same(torch.tensor_split, aten.tensor_split.sections, aten.tensor_split.indices)
_same("view", aten.view.default, aten._unsafe_view.default)
_same(torch.reshape, aten.reshape.default)
_same(torch.flatten, aten.flatten.using_ints)
_same(torch.unflatten, aten.unflatten.int)
_same(torch.squeeze, aten.squeeze.dim, aten.squeeze.dims, aten.squeeze.default)
_same(torch.unsqueeze, aten.unsqueeze.default)
_same("expand", aten.expand.default, args=("self", "size"))
_same("expand_as", aten.expand_as.default)
_same(torch.permute, aten.permute.default)
_same(torch.transpose, aten.transpose.int)
_same(torch.t, aten.t.default)
_same(torch.movedim, aten.movedim.int, aten.movedim.intlist)
_same("size", aten.sym_size.int)
_same("numel", aten.sym_numel.default)


def _index_tuple(node: fx.Node, dim: int, item: Any) -> tuple:
    rank = _input_rank(node)
    return (slice(None),) * (dim % rank) + (item,)


def _slice(bound: dict[str, Any], node: fx.Node) -> Call:
    end = bound["end"]
    cut = slice(bound["start"] or None, None if isinstance(end, int) and end >= _INT_MAX else end,
                None if bound["step"] == 1 else bound["step"])
    return "call_function", operator.getitem, (bound["self"], _index_tuple(node, bound["dim"], cut)), {}


def _select(bound: dict[str, Any], node: fx.Node) -> Call:
    return "call_function", operator.getitem, (bound["self"], _index_tuple(node, bound["dim"], bound["index"])), {}


register_aten(aten.slice.Tensor, spelling=Spelling(adapt=_slice))
register_aten(aten.select.int, spelling=Spelling(adapt=_select))

# ---- rearrangements ---------------------------------------------------------------------------
_same(torch.pixel_shuffle, aten.pixel_shuffle.default)
_same(torch.pixel_unshuffle, aten.pixel_unshuffle.default)
_same(torch.flip, aten.flip.default)
_same(torch.roll, aten.roll.default)
_same(F.glu, aten.glu.default)

# ---- contractions and attention ---------------------------------------------------------------
_same(torch.matmul, aten.matmul.default)
_same(torch.bmm, aten.bmm.default)
register_aten(aten.einsum.default, spelling=Spelling(torch.einsum, ("equation", "tensors")))
register_aten(aten.scaled_dot_product_attention.default, spelling=Spelling(
    F.scaled_dot_product_attention, ("query", "key", "value", "attn_mask", "dropout_p", "is_causal"),
    {"scale": "scale"}, only_if={"enable_gqa": False}))


def _index(bound: dict[str, Any], node: fx.Node) -> Call:
    """``x[index]`` with tensor indices: None in the list leaves a dim whole."""
    items = tuple(slice(None) if item is None else item for item in bound["indices"])
    return "call_function", operator.getitem, (bound["self"], items), {}


register_aten(aten.index.Tensor, spelling=Spelling(adapt=_index))
for _name in ("new_zeros", "new_ones", "new_empty"):
    _same(_name, getattr(aten, _name).default, args=("self", "size"))
_same("new_full", aten.new_full.default, args=("self", "size", "fill_value"))
_same("zero_", aten.zero_.default)
register_aten(aten.linalg_vector_norm.default, spelling=Spelling(torch.linalg.vector_norm,
                                                                 ("self", "ord", "dim", "keepdim")))
_same(torch.norm, aten.norm.ScalarOpt_dim)
