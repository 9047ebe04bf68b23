"""What a benchmark case is, and the building blocks the catalog modules share."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

import fxprune

__all__ = ["CLIP", "IMAGE", "LARGE_IMAGE", "SMALL_IMAGE", "Case", "Inputs", "Shape", "case", "conv_bn"]

Shape = tuple[int, ...]
Inputs = tuple[Any, ...]

#: The input sizes most cases use: small, so that the whole catalog runs in a minute or two.
SMALL_IMAGE: Shape = (1, 3, 16, 16)
IMAGE: Shape = (1, 3, 32, 32)
LARGE_IMAGE: Shape = (1, 3, 64, 64)
CLIP: Shape = (1, 3, 8, 32, 32)


@dataclass(frozen=True)
class Case:
    """One model of the benchmark and how to check it.

    Attributes:
        name: what the case exercises, unique in the catalog; ``--only`` matches it.
        build: returns a fresh model; the harness seeds the generator and randomises
            the norm layers, so weights are random and nothing is downloaded.
        inputs: returns the positional arguments of ``forward`` (the harness seeds it).
        family: the catalog module that defines the case, filled in when the catalog is collected.
        compile_options: extra keyword arguments of every ``fxprune.compile`` call.
        sweep: whether to run the ratio sweep; off for the largest torchvision models,
            whose sweep would double the run time and cover nothing new.
        train_mode: check the model in train mode, where pruning must not move BN statistics.
        raises: the typed error an untraceable case must raise, or None for a case that prunes.
    """

    name: str
    build: Callable[[], nn.Module]
    inputs: Callable[[], Inputs]
    family: str = ""
    compile_options: Mapping[str, Any] = field(default_factory=dict)
    sweep: bool = True
    train_mode: bool = False
    raises: type[fxprune.FxPruneError] | None = None


def case(name: str, build: Callable[[], nn.Module], *shapes: Shape, inputs: Callable[[], Inputs] | None = None,
         **options: Any) -> Case:
    """A case whose inputs are standard-normal tensors of ``shapes``, one per argument, unless ``inputs`` is given.

    Example:
        >>> case("two inputs fused by add", RGBD, (1, 3, 32, 32), (1, 1, 32, 32))
    """
    if inputs is None:
        def inputs() -> Inputs:
            """Standard-normal tensors from the generator the harness seeded."""
            return tuple(torch.randn(shape) for shape in shapes)
    return Case(name, build, inputs, **options)


def conv_bn(in_channels: int, out_channels: int, kernel: int | Shape = 3, stride: int | Shape = 1, *, dims: int = 2,
            groups: int = 1, act: type[nn.Module] | None = nn.ReLU, padding: int | Shape | None = None
            ) -> nn.Sequential:
    """Conv (no bias), BatchNorm and an activation, 'same' padding for odd kernels: the block of most CNNs."""
    conv, norm = (nn.Conv2d, nn.BatchNorm2d) if dims == 2 else (nn.Conv3d, nn.BatchNorm3d)
    if padding is None:
        padding = kernel // 2 if isinstance(kernel, int) else tuple(k // 2 for k in kernel)
    layers = [conv(in_channels, out_channels, kernel, stride, padding, groups=groups, bias=False),
              norm(out_channels)]
    return nn.Sequential(*layers, *([act()] if act is not None else []))
