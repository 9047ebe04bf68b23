"""Comparing outputs: do a captured graph or an exported program compute what the model computes?

One tolerance and one value comparison serve the two checks that run a graph beside its
model on the example inputs: capture's (:func:`fxprune.capture` falls back to the other
front end on a mismatch) and save's (:func:`fxprune.save` refuses a program that does not
reproduce the module). Each check decides which parts of the output it compares; the
values of two floating tensors are compared here, relative to the expected magnitude, as
the oracle's tolerance is.

Example:
    >>> value_difference(torch.ones(3), torch.ones(3) + 1e-6) is None
    True
    >>> value_difference(torch.ones(3), torch.zeros(3))
    1.0
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils._pytree import tree_flatten

__all__ = ["TOLERANCE", "tensor_leaves", "value_difference"]

#: Largest max-abs difference accepted, relative to max(1, the expected tensor's largest magnitude).
TOLERANCE = 1e-4


def tensor_leaves(outputs: Any) -> list[torch.Tensor]:
    """The tensors of a (nested) output, in pytree order."""
    return [leaf for leaf in tree_flatten(outputs)[0] if isinstance(leaf, torch.Tensor)]


def value_difference(expected: torch.Tensor, actual: torch.Tensor) -> float | None:
    """The max abs difference of two floating tensors of one shape when it exceeds the tolerance, else None.

    Empty tensors agree; a NaN difference never does.
    """
    if not expected.numel():
        return None
    difference = (expected - actual).abs().max().item()
    return None if difference <= TOLERANCE * max(1.0, expected.abs().max().item()) else difference
