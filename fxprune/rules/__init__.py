"""The operator rule registry; importing this package registers every built-in rule."""

from . import aten, attention, contraction, creation, elementwise, functional, layers, rearrange, structural, vector_norm  # noqa: F401  (registration side effects)
from .optional import register_optional_rules
from .registry import RULES, Rule, lookup, module_rule, register_function, register_method, register_module

__all__ = ["register_optional_rules", "RULES", "Rule", "lookup", "module_rule", "register_function", "register_method", "register_module"]
