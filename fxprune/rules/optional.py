"""Rules for operators of optional libraries, registered once those libraries are loaded.

A model built with torchvision has imported it before fxprune sees the model, so
checking ``sys.modules`` at analysis time costs nothing and never imports a library
that the user does not use.
"""

from __future__ import annotations

import sys

from .elementwise import PASSTHROUGH
from .registry import register_function

__all__ = ["register_optional_rules"]

_DONE: set[str] = set()


def register_optional_rules() -> None:
    """Register the rules of every optional library already imported."""
    if "torchvision" in sys.modules and "torchvision" not in _DONE:
        from torchvision.ops.stochastic_depth import stochastic_depth

        # Scales whole samples (or the whole batch) by 0 or 1/(1-p): channels pass through.
        register_function(stochastic_depth, rule=PASSTHROUGH)
        _DONE.add("torchvision")
