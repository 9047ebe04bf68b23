"""The operator rule registry; importing this package registers every built-in rule."""

from . import elementwise, functional, layers, structural  # noqa: F401  (registration side effects)
from .registry import RULES, Rule, lookup, register_function, register_method, register_module

__all__ = ["RULES", "Rule", "lookup", "register_function", "register_method", "register_module"]
