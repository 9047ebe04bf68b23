"""Typed errors: every failure fxprune reports is an ``FxPruneError``."""

from __future__ import annotations

__all__ = ["FxPruneError", "TraceError", "InputError", "PlanError", "RewriteError", "ExportError", "ConfigError"]


class FxPruneError(Exception):
    """Base class of every error fxprune raises on purpose."""


class TraceError(FxPruneError):
    """The model could not be traced into a torch.fx graph."""


class InputError(FxPruneError, ValueError):
    """An argument given to fxprune is malformed (ratios, inputs, options).

    ``node`` names the graph node at which the example inputs stopped fitting, when known.
    """

    node: str | None = None


class PlanError(InputError):
    """A ratio specification cannot be turned into a plan."""


class RewriteError(FxPruneError):
    """Internal error: the emitted module does not have the shapes the plan promised.

    ``node`` names the graph node at fault when known; :func:`fxprune.compile` then
    freezes the channel groups around it and plans again.
    """

    def __init__(self, message: str, node: str | None = None) -> None:
        super().__init__(message)
        self.node = node


class ExportError(FxPruneError):
    """Exporting failed (ONNX, or torch.export when saving), or ONNX Runtime does not reproduce PyTorch."""


class ConfigError(FxPruneError, ValueError):
    """A pruning configuration file is malformed; the message names the file, line and key."""
