"""What each submodule of a model is called with: forward pre-hooks during one eager run.

A model neither front end captures whole (a detector's data-dependent post-processing)
is pruned submodule by submodule (:mod:`fxprune.drivers.submodules`), each captured on
the arguments it really receives. Those come from one eager run of the whole model on
the example inputs (eval mode, no grad), with a pre-hook on every module asked about;
keyword arguments are bound to their positions, since capture takes positional inputs.
:func:`eager_macs` counts the MACs of such a run, for a model that has no graph.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_map

from .capture_export import eval_mode, fresh_inputs
from .shapes import flop_counter

__all__ = ["ModuleCall", "eager_macs", "record_calls"]


@dataclass(frozen=True)
class ModuleCall:
    """One call of a module: its positional arguments, or why they cannot be given positionally.

    Attributes:
        args: the arguments (tensors cloned, so that later in-place edits do not reach them).
        problem: why the call cannot be replayed from ``args`` alone ("" when it can).
    """

    args: tuple[Any, ...]
    problem: str = ""


def record_calls(model: nn.Module, example_inputs: tuple[Any, ...],
                 names: Iterable[str]) -> dict[str, list[ModuleCall]]:
    """Every call of each named submodule during one eager run of ``model`` (eval mode, no grad).

    ``model`` is run, not modified: the hooks are removed and the modes restored afterwards.

    Example:
        >>> calls = record_calls(detector, ([image],), ["backbone", "rpn.head"])
        >>> calls["backbone"][0].args[0].shape
        torch.Size([1, 3, 320, 320])
    """
    modules = dict(model.named_modules())
    calls: dict[str, list[ModuleCall]] = {name: [] for name in names}
    hooks = [modules[name].register_forward_pre_hook(partial(_record, calls[name]), with_kwargs=True)
             for name in calls]
    try:
        with eval_mode(model), torch.no_grad():
            model(*fresh_inputs(example_inputs))
    finally:
        for hook in hooks:
            hook.remove()
    return calls


def eager_macs(model: nn.Module, example_inputs: tuple[Any, ...]) -> int:
    """MACs of one eager run (eval mode), counted as fxprune counts a graph's: FLOPs / 2."""
    with eval_mode(model), torch.no_grad(), flop_counter() as counter:
        model(*fresh_inputs(example_inputs))
    return counter.get_total_flops() // 2


def _record(store: list[ModuleCall], module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    store.append(_positional(module, _cloned(args), _cloned(kwargs)))


def _cloned(value: Any) -> Any:
    return tree_map(lambda leaf: leaf.clone() if isinstance(leaf, torch.Tensor) else leaf, value)


def _positional(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ModuleCall:
    """The call with its keyword arguments moved to their positions (defaults fill the gaps)."""
    if not kwargs:
        return ModuleCall(args)
    parameters = list(inspect.signature(module.forward).parameters.values())
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    keyword_only = [name for name in kwargs if name not in {p.name for p in positional}]
    if keyword_only:
        return ModuleCall(args, f"called with keyword-only arguments {keyword_only}")
    values = list(args)
    last = max(i for i, p in enumerate(positional) if p.name in kwargs)
    for parameter in positional[len(args):last + 1]:
        if parameter.name not in kwargs and parameter.default is parameter.empty:
            return ModuleCall(args, f"argument '{parameter.name}' is missing from a call")
        values.append(kwargs.get(parameter.name, parameter.default))
    return ModuleCall(tuple(values))
