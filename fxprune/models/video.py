"""Randomly initialised torchvision 3D ResNets (R3D, MC3, R(2+1)D), 18 layers.

torchvision is an optional dependency of fxprune, so it is imported lazily
and only when one of these helpers is called. Weights are never downloaded:
every model is built with ``weights=None``.
"""

from __future__ import annotations

from types import ModuleType

from torch import nn

from fxprune.errors import InputError

__all__ = ["mc3_18", "r2plus1d_18", "r3d_18"]


def _video_models() -> ModuleType:
    try:
        from torchvision.models import video
    except ImportError as exc:
        raise ImportError(
            "fxprune.models.video needs torchvision, which is not installed; "
            "run `pip install torchvision` (or `pip install fxprune[test]`)"
        ) from exc
    return video


def _build(name: str, num_classes: int) -> nn.Module:
    if (
        isinstance(num_classes, bool)
        or not isinstance(num_classes, int)
        or num_classes < 1
    ):
        raise InputError(f"num_classes must be a positive int, got {num_classes!r}")
    builder = getattr(_video_models(), name)
    return builder(weights=None, num_classes=num_classes)


def r3d_18(num_classes: int = 101) -> nn.Module:
    """Builds torchvision's R3D-18 (full 3x3x3 convolutions), untrained.

    Args:
        num_classes: Number of output logits.

    Raises:
        ImportError: If torchvision is not installed.

    Example:
        >>> import torch
        >>> model = r3d_18(num_classes=10)
        >>> model(torch.randn(1, 3, 8, 64, 64)).shape
        torch.Size([1, 10])
    """
    return _build("r3d_18", num_classes)


def mc3_18(num_classes: int = 101) -> nn.Module:
    """Builds torchvision's MC3-18 (3D convs early, 2D convs later), untrained.

    Args:
        num_classes: Number of output logits.

    Raises:
        ImportError: If torchvision is not installed.

    Example:
        >>> import torch
        >>> model = mc3_18(num_classes=10)
        >>> model(torch.randn(1, 3, 8, 64, 64)).shape
        torch.Size([1, 10])
    """
    return _build("mc3_18", num_classes)


def r2plus1d_18(num_classes: int = 101) -> nn.Module:
    """Builds torchvision's R(2+1)D-18 (spatial then temporal convs), untrained.

    Args:
        num_classes: Number of output logits.

    Raises:
        ImportError: If torchvision is not installed.

    Example:
        >>> import torch
        >>> model = r2plus1d_18(num_classes=10)
        >>> model(torch.randn(1, 3, 8, 64, 64)).shape
        torch.Size([1, 10])
    """
    return _build("r2plus1d_18", num_classes)
