"""ATen spellings: how an ATen overload is written in the dialect the rules read.

The torch.export front end records ATen overloads (``aten.conv2d.default``,
``aten.slice.Tensor``); the rules are written against torch functions, Tensor
methods and modules. A :class:`Spelling` says, for one overload, which function or
method computes the same thing and which of the overload's schema arguments
(by name) become its arguments. The capture pass rewrites each ATen node into its
spelling once, so every rule is written once and serves both front ends; an
overload without a spelling stays as it is and freezes what it touches.

Example:
    >>> register_aten(aten.batch_norm.default, spelling=Spelling(
    ...     F.batch_norm, ("input", "running_mean", "running_var", "weight", "bias", "training",
    ...                    "momentum", "eps")))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from torch import fx

__all__ = ["Call", "Spelling", "aten_arguments", "register_aten", "spelling_of", "ATEN_SPELLINGS"]

#: What a spelling turns a node into: (op, target, args, kwargs), op being
#: ``call_function`` or ``call_method``; or None to leave the node as it is.
Call = tuple[str, Any, tuple, dict]


@dataclass(frozen=True)
class Spelling:
    """One ATen overload written as a torch function (or, with a str target, a Tensor method).

    Attributes:
        target: the function, or the method name.
        args: schema argument names passed positionally, in order; None passes every
            positional argument of the schema in its own order (the common case: the
            torch function has the overload's signature).
        kwargs: keyword of the spelling -> schema argument name.
        only_if: schema argument -> the value it must have for this spelling to hold
            (``elu`` is ``F.elu`` only when ``scale == 1``).
        first_output: the overload returns a tuple whose first element is the spelling's
            result (``native_layer_norm`` returns (out, mean, rstd)).
        adapt: a function of the bound schema arguments returning the call itself, for
            spellings that are not a renaming (a slice becomes an index tuple).
    """

    target: Any = None
    args: tuple[str, ...] | None = None
    kwargs: Mapping[str, str] = field(default_factory=dict)
    only_if: Mapping[str, Any] = field(default_factory=dict)
    first_output: bool = False
    adapt: Callable[[dict[str, Any], fx.Node], Call | None] | None = None

    def call(self, node: fx.Node) -> Call | None:
        """The spelled call for ``node``, or None when this node's arguments do not fit."""
        bound = aten_arguments(node)
        if bound is None or any(bound.get(k) != v for k, v in self.only_if.items()):
            return None
        if self.adapt is not None:
            return self.adapt(bound, node)
        names = self.args if self.args is not None else _positional(node.target)
        kwargs = {key: bound[name] for key, name in self.kwargs.items()}
        op = "call_method" if isinstance(self.target, str) else "call_function"
        return op, self.target, tuple(bound[name] for name in names), kwargs


ATEN_SPELLINGS: dict[Any, Spelling] = {}


def register_aten(*overloads: Any, spelling: Spelling) -> None:
    """Spell these ATen overloads as ``spelling`` (so the rule of its target applies)."""
    for overload in overloads:
        ATEN_SPELLINGS[overload] = spelling


def spelling_of(node: fx.Node) -> Spelling | None:
    if node.op != "call_function" or not isinstance(node.target, torch._ops.OpOverload):
        return None
    return ATEN_SPELLINGS.get(node.target)


def _positional(overload: Any) -> tuple[str, ...]:
    return tuple(a.name for a in overload._schema.arguments if not a.kwarg_only)


def aten_arguments(node: fx.Node) -> dict[str, Any] | None:
    """The node's arguments by schema name, defaults filled in (None if they do not bind)."""
    schema = cast(torch._ops.OpOverload, node.target)._schema
    bound: dict[str, Any] = {}
    positional = [a for a in schema.arguments if not a.kwarg_only]
    if len(node.args) > len(positional):
        return None
    for argument, value in zip(positional, node.args, strict=False):
        bound[argument.name] = value
    for argument in schema.arguments:
        if argument.name in node.kwargs:
            bound[argument.name] = node.kwargs[argument.name]
        elif argument.name not in bound:
            if not argument.has_default_value():
                return None
            bound[argument.name] = argument.default_value
    return bound
