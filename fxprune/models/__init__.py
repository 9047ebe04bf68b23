"""Reference 3D video models used by fxprune's tests and examples.

Example:
    >>> from fxprune.models import C3D, SlowFast, slowfast_inputs
    >>> model = SlowFast(num_classes=10, base_width=16, depth=(1, 1))
    >>> model(slowfast_inputs(1, clip_length=4, size=32, alpha=4)).shape
    torch.Size([1, 10])
"""

from __future__ import annotations

from fxprune.models.c3d import C3D, c3d
from fxprune.models.slowfast import SlowFast, slowfast, slowfast_inputs
from fxprune.models.video import mc3_18, r2plus1d_18, r3d_18

__all__ = [
    "C3D",
    "SlowFast",
    "c3d",
    "mc3_18",
    "r2plus1d_18",
    "r3d_18",
    "slowfast",
    "slowfast_inputs",
]
