"""The operator rule registry; importing this package registers every built-in rule."""

from . import (  # noqa: F401  (registration side effects)
    aten,
    attention,
    contraction,
    creation,
    elementwise,
    functional,
    indexing,
    layers,
    rearrange,
    reshape,
    size_query,
    structural,
    vector_norm,
)
from .optional import register_optional_rules
from .registry import (
    RULES,
    Rule,
    ShapeFunction,
    declared_rule,
    lookup,
    module_rule,
    register_function,
    register_method,
    register_module,
)

__all__ = ["register_optional_rules", "RULES", "Rule", "ShapeFunction", "declared_rule", "lookup", "module_rule",
           "register_function", "register_method", "register_module"]
