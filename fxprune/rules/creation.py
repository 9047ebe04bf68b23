"""Rules for tensors made from another's dtype and device: ``x.new_zeros(size)`` and friends.

The new tensor holds no channel of ``x`` (Swin builds its shifted-window mask this way), so
its output is untracked and ``x`` is left as it is, rather than frozen as an unknown reader.
"""

from __future__ import annotations

from typing import Any

from .context import PropagateContext
from .registry import Rule, register_method

__all__ = ["fresh_tensor"]


def fresh_tensor(ctx: PropagateContext) -> Any:
    """Nothing tracked: the values do not come from the source tensor."""
    return ctx.opaque_output()


register_method("new_zeros", "new_ones", "new_empty", "new_full", "new_tensor", rule=Rule(fresh_tensor))
