"""One registry of operator rules, keyed by module type, function, or method name.

A :class:`Rule` has up to three parts, each a small function:

- ``propagate(ctx)``: the layout of the node's output from its inputs' layouts,
  recording unions and freezes on ``ctx`` (analysis);
- ``rewrite_args(ctx)``: new ``(target, args, kwargs)`` for literal channel counts
  in the call (split sizes, view shapes, ``groups``), given what is kept (rewrite);
- ``resize(module, ctx)``: a new, smaller module from a leaf module (rewrite).

Adding an operator means adding one entry. An operator with no entry freezes
every channel it touches, so unknown code never yields a wrong model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from .context import PropagateContext, RewriteContext

__all__ = ["Rule", "register_module", "register_function", "register_method", "lookup", "module_rule", "RULES"]


@dataclass(frozen=True)
class Rule:
    """How one operator moves channels, and how to rewrite it when some are removed."""

    propagate: Callable[[PropagateContext], Any]
    rewrite_args: Callable[[RewriteContext], tuple[Any, tuple, dict]] | None = None
    resize: Callable[[nn.Module, RewriteContext], nn.Module] | None = None


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


def lookup(node: torch.fx.Node, module: nn.Module | None = None) -> Rule | None:
    """The rule for a node, or None when fxprune has no rule for it."""
    if node.op == "call_module" and module is not None:
        return module_rule(module)
    if node.op == "call_function":
        return RULES.functions.get(node.target)
    if node.op == "call_method":
        return RULES.methods.get(str(node.target))
    return None
