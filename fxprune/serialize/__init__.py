"""Saving pruned modules as ``.pt2`` archives that load without the model's class.

Example:
    >>> fxprune.save(result, "pruned.pt2")
    >>> module = fxprune.load("pruned.pt2")
"""

from .pt2 import METADATA_FILE, load, read_example_inputs, read_metadata, read_plan, save

__all__ = ["METADATA_FILE", "load", "read_example_inputs", "read_metadata", "read_plan", "save"]
