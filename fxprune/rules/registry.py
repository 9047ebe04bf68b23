"""One registry of operator rules, keyed by module type, function, or method name.

A :class:`Rule` has up to three parts, each a small function:

- ``propagate(ctx)``: the layout of the node's output from its inputs' layouts,
  recording unions and freezes on ``ctx`` (analysis);
- ``rewrite_args(ctx)``: new ``(target, args, kwargs)`` for literal channel counts
  in the call (split sizes, view shapes, ``groups``), given what is kept (rewrite);
- ``resize(module, ctx)``: a new, smaller module from a leaf module (rewrite);

and the facts about the operator that other passes ask for, all optional:
``shape`` (its output from its inputs' fake values, so shape propagation need not
run it), ``contracts`` (the input dim it sums over, for MAC estimates),
``mixes_channels`` (bias compensation can fold removed inputs through it),
``producer`` (its output is a channel space its weights make, for Taylor
importance) and ``norm`` (its weight is a per-channel scale, for ``bn_scale``).

Adding an operator means adding one entry. An operator with no entry freezes
every channel it touches, so unknown code never yields a wrong model. Every
spelling of an operator (module, function, method, ATen overload through
:mod:`.spelling`) reaches the same rule, so a fact stated once holds for all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from .context import PropagateContext, RewriteContext

__all__ = ["Rule", "ShapeFunction", "register_module", "register_function", "register_method", "lookup",
           "module_rule", "declared_rule", "RULES"]

#: ``shape(module, args, kwargs) -> (value, flops) | None``: the call's output built from its
#: inputs' fake values (``x.new_empty(...)``, or an input itself) and the FLOPs that
#: ``torch.utils.flop_counter`` would count for it; None where the call's form is not one
#: the function covers, and the node then runs on fake tensors. ``module`` is the leaf
#: module of a ``call_module`` node, else None.
ShapeFunction = Callable[[nn.Module | None, tuple, dict], tuple[Any, int] | None]


@dataclass(frozen=True)
class Rule:
    """How one operator moves channels, how to rewrite it when some are removed, and what it is.

    Attributes:
        propagate: the output layout from the inputs' layouts (analysis).
        rewrite_args: new ``(target, args, kwargs)`` for literal channel counts (rewrite).
        resize: a new, smaller leaf module (rewrite).
        shape: a :data:`ShapeFunction` stating the output without running the call
            (``rules/output_shapes.py``); None runs every call on fake tensors.
        contracts: ``contracts(node, module) -> dim | None``, the input dim the call sums
            over as a whole (a conv with ``groups == 1``, a linear), so that its MACs scale
            with the kept fraction of that dim; the node's first input carries ``meta['val']``.
        mixes_channels: ``mixes_channels(module) -> bool`` for a leaf module whose output
            sums ``weight[:, c]`` applied to input channel ``c`` over every ``c`` (weight laid
            out ``(out, in, *kernel)``) plus a bias: what bias compensation folds removed
            inputs' means through.
        producer: the output is a channel space made by the call's weights (conv, linear):
            where Taylor importance takes activation x gradient.
        norm: a normalisation layer whose ``weight`` is one scale per channel (gamma): what
            ``bn_scale`` ranks by.
    """

    propagate: Callable[[PropagateContext], Any]
    rewrite_args: Callable[[RewriteContext], tuple[Any, tuple, dict]] | None = None
    resize: Callable[[nn.Module, RewriteContext], nn.Module] | None = None
    shape: ShapeFunction | None = None
    contracts: Callable[[torch.fx.Node, nn.Module | None], int | None] | None = None
    mixes_channels: Callable[[nn.Module], bool] | None = None
    producer: bool = False
    norm: bool = False


@dataclass
class _Registry:
    modules: dict[type, Rule]
    functions: dict[Any, Rule]
    methods: dict[str, Rule]


RULES = _Registry({}, {}, {})


def register_module(*types: type, rule: Rule) -> None:
    """Register ``rule`` for leaf modules of these types (subclasses included)."""
    for t in types:
        RULES.modules[t] = rule


def register_function(*functions: Any, rule: Rule) -> None:
    """Register ``rule`` for ``call_function`` nodes whose target is one of ``functions``."""
    for f in functions:
        RULES.functions[f] = rule


def register_method(*names: str, rule: Rule) -> None:
    """Register ``rule`` for ``call_method`` nodes (``x.view(...)``) of these names."""
    for name in names:
        RULES.methods[name] = rule


def module_rule(module: nn.Module) -> Rule | None:
    """The rule for calls of a leaf module, or None."""
    for t in type(module).__mro__:
        # A subclass that overrides forward may compute anything: no rule.
        if t in RULES.modules and getattr(t, "forward", None) is type(module).forward:
            return RULES.modules[t]
    return None


def declared_rule(module: nn.Module) -> Rule | None:
    """The rule registered for the module's class or its nearest registered base, even where
    the class overrides ``forward``.

    For facts about a module's parameters rather than its computation: a BatchNorm
    subclass with its own forward (timm's ``BatchNormAct2d``) still holds a per-channel
    gamma in ``weight``.
    """
    for t in type(module).__mro__:
        if t in RULES.modules:
            return RULES.modules[t]
    return None


def lookup(node: torch.fx.Node, module: nn.Module | None = None) -> Rule | None:
    """The rule for a node, or None when fxprune has no rule for it."""
    if node.op == "call_module" and module is not None:
        return module_rule(module)
    if node.op == "call_function":
        return RULES.functions.get(node.target)
    if node.op == "call_method":
        return RULES.methods.get(str(node.target))
    return None
