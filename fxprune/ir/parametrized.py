"""Layers whose weight is computed from other parameters: weight normalisation.

``torch.nn.utils.parametrizations.weight_norm`` (and the older hook-based
``torch.nn.utils.weight_norm``) store ``g`` and ``v`` and compute ``weight = g * v / ||v||``
at every call. Channels are tracked on that computed weight; to resize such a layer,
the weight is baked into a plain parameter, sliced like any other, and weight
normalisation is applied again, which rebuilds ``g = ||w'||`` and ``v = w'`` so the
sliced layer computes exactly the kept slices and still trains in the ``g``/``v`` form.
Other parametrisations (spectral norm, orthogonal, ...) have no such rebuild: analysis
freezes what such a layer touches (see :func:`resizable`).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm
from torch.nn.utils.weight_norm import WeightNorm

__all__ = ["bake_parametrizations", "deepcopy_module", "find_tensor", "plain_copy", "resizable", "resize_weight_normed"]

_M = TypeVar("_M", bound=nn.Module)


def find_tensor(root: nn.Module, qualified: str, *, buffers: bool = True) -> torch.Tensor | None:
    """A parameter, a buffer (unless ``buffers=False``), or a computed tensor attribute (a
    weight-normalised ``weight``); None when ``qualified`` names none of these."""
    owner_name, _, attribute = qualified.rpartition(".")
    try:
        owner = root.get_submodule(owner_name)
    except AttributeError:
        return None
    if not buffers and attribute in owner._buffers:
        return None
    for hook in _legacy_hooks(owner):
        if hook.name == attribute:  # the attribute holds the value of the last forward
            return hook.compute_weight(owner)
    value = getattr(owner, attribute, None)
    return value if isinstance(value, torch.Tensor) else None


def deepcopy_module(module: _M, memo: dict[int, Any] | None = None) -> _M:
    """``copy.deepcopy`` that also copies modules holding computed (non-leaf) tensors.

    The hook form of weight normalisation caches ``weight`` as a tensor computed from
    ``weight_g`` and ``weight_v``, which ``copy.deepcopy`` refuses to copy after a forward
    with autograd on. The copy gets a detached clone instead; its hook recomputes it.
    """
    memo = {} if memo is None else memo
    for sub in module.modules():
        for value in sub.__dict__.values():
            if isinstance(value, torch.Tensor) and not value.is_leaf and id(value) not in memo:
                memo[id(value)] = value.detach().clone()
    return copy.deepcopy(module, memo)


def _legacy_hooks(module: nn.Module) -> list[WeightNorm]:
    return [hook for hook in module._forward_pre_hooks.values() if isinstance(hook, WeightNorm)]


def plain_copy(module: nn.Module) -> nn.Module:
    """A shallow copy of ``module`` whose computed weights are plain parameters of the same value.

    ``torch.nn.utils.parametrize.remove_parametrizations`` is not used: it deletes the
    weight property from the parametrized class, which a deep copy shares with the
    original, and would break the user's model.
    """
    legacy = {hook.name for hook in _legacy_hooks(module)}
    parametrized = list(_chains(module)) if parametrize.is_parametrized(module) else []
    if not legacy and not parametrized:
        return module
    base = cast(type[nn.Module], type(module).__bases__[0]) if parametrized else type(module)
    plain = base.__new__(base)
    plain.__dict__.update(module.__dict__)
    plain._parameters = dict(module._parameters)
    plain._modules = {k: v for k, v in module._modules.items() if k != "parametrizations"}
    plain._forward_pre_hooks = type(module._forward_pre_hooks)(
        (k, h) for k, h in module._forward_pre_hooks.items() if not isinstance(h, WeightNorm))
    for name in parametrized:
        chain: Any = _chains(module)[name]  # holds original, or original0, original1, ...
        original = chain.original if hasattr(chain, "original") else chain.original0  # one or several tensors
        plain._parameters[name] = nn.Parameter(getattr(module, name).detach().clone(), original.requires_grad)
    for name in legacy:
        g = cast(nn.Parameter, plain._parameters.pop(f"{name}_g"))
        del plain._parameters[f"{name}_v"]
        del plain.__dict__[name]  # the hook's cached value; a parameter takes its place
        computed = cast(torch.Tensor, find_tensor(module, name))  # the hook's weight, present until deleted
        plain._parameters[name] = nn.Parameter(computed.detach().clone(), g.requires_grad)
    return plain


def bake_parametrizations(model: nn.Module) -> nn.Module:
    """``model`` (changed in place) with every weight-normalised submodule replaced by its plain copy."""
    for name, sub in list(model.named_modules()):
        plain = plain_copy(sub)
        if plain is not sub:
            if not name:
                return plain
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, plain)
    return model


def _chains(module: nn.Module) -> Mapping[str, parametrize.ParametrizationList]:
    """The ``ParametrizationList`` per tensor name that ``torch.nn.utils.parametrize`` adds."""
    return cast(Mapping[str, parametrize.ParametrizationList], module.parametrizations)


def _weight_norm_dims(module: nn.Module) -> dict[str, tuple[str, int]] | None:
    """{tensor name: (form, dim)} of a weight-normalised layer, {} for a plain one, None for
    any other parametrisation (which cannot be rebuilt after slicing)."""
    found: dict[str, tuple[str, int]] = {}
    if parametrize.is_parametrized(module):
        for name, chain in _chains(module).items():
            if len(chain) != 1 or type(chain[0]).__name__ != "_WeightNorm":
                return None
            found[name] = ("parametrization", int(cast(Any, chain[0]).dim))  # _WeightNorm.dim, a plain int
    for hook in _legacy_hooks(module):
        found[hook.name] = ("hook", int(hook.dim))
    return found


def resizable(module: nn.Module) -> bool:
    """False for a layer with a parametrisation fxprune cannot rebuild after slicing."""
    return _weight_norm_dims(module) is not None


def resize_weight_normed(module: nn.Module, resize: Callable[[nn.Module], nn.Module]) -> nn.Module:
    """``resize(module)``, baking weight normalisation first and applying it again after."""
    norms = _weight_norm_dims(module)
    if norms is None:
        raise NotImplementedError(f"cannot resize a {type(module).__name__} with a parametrisation other than "
                                  "weight_norm")
    if not norms:
        return resize(module)
    new = resize(plain_copy(module))
    for name, (form, dim) in norms.items():
        if form == "parametrization":
            weight_norm(new, name, dim)
        else:
            # The deprecated form, kept as the user had it. Under no_grad its cached weight
            # is a leaf, so the module can still be deep-copied (the hook recomputes it).
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore", FutureWarning)
                torch.nn.utils.weight_norm(new, name, dim)
    return new
