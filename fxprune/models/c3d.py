"""C3D, the plain 3D-convolution video network of Tran et al. (ICCV 2015).

Reference: D. Tran, L. Bourdev, R. Fergus, L. Torresani, M. Paluri,
"Learning Spatiotemporal Features with 3D Convolutional Networks", 2015.

The layer names (``conv1`` ... ``conv5b``, ``pool1`` ... ``pool5``,
``fc6`` ... ``fc8``) and the head's ``x.view(-1, 8192)`` follow the classic
PyTorch port, so that the pruning compiler is tested against the idiom real
checkpoints use: a 5-D feature map flattened by a literal integer.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from fxprune.errors import InputError

__all__ = ["C3D", "c3d"]

# (kernel, stride, padding) of pool1..pool5, each as (T, H, W).
_POOLS: tuple[tuple[tuple[int, int, int], ...], ...] = (
    ((1, 2, 2), (1, 2, 2), (0, 0, 0)),
    ((2, 2, 2), (2, 2, 2), (0, 0, 0)),
    ((2, 2, 2), (2, 2, 2), (0, 0, 0)),
    ((2, 2, 2), (2, 2, 2), (0, 0, 0)),
    # The reference implementation pads pool5 spatially so that 7x7 -> 4x4.
    ((2, 2, 2), (2, 2, 2), (0, 1, 1)),
)
_CONV_WIDTHS: tuple[int, ...] = (64, 128, 256, 256, 512, 512, 512, 512)
_FC_WIDTH = 4096


def _require_positive_int(name: str, value: object) -> int:
    # bool is an int subclass; C3D(num_classes=True) is always a mistake.
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{name} must be a positive int, got {value!r}")
    return value


def _scaled(channels: int, width: float) -> int:
    return max(1, round(channels * width))


def _pooled_shape(clip_length: int, input_size: int) -> tuple[int, int, int]:
    """Returns the (T, H, W) after pool5, or raises if a pool would underflow."""
    shape = [clip_length, input_size, input_size]
    for index, (kernel, stride, padding) in enumerate(_POOLS, start=1):
        for dim in range(3):
            span = shape[dim] + 2 * padding[dim] - kernel[dim]
            if span < 0:
                raise InputError(
                    f"C3D input (clip_length={clip_length}, input_size={input_size}) "
                    f"is too small: pool{index} would get a {tuple(shape)} (T, H, W) map; "
                    "clip_length must be >= 16 and input_size >= 16"
                )
            shape[dim] = span // stride[dim] + 1
    return shape[0], shape[1], shape[2]


class C3D(nn.Module):
    """C3D video classifier: 8 Conv3d, 5 MaxPool3d and 3 Linear layers.

    ``width`` scales every conv and fc layer (rounded, at least one channel),
    so tests can build tiny networks with the exact topology of the original.
    The flatten size is computed once here and stored in ``flat_features``;
    the default configuration gives the classic 8192 (512 x 1 x 4 x 4).

    Args:
        num_classes: Number of output logits.
        in_channels: Channels of the input clip.
        clip_length: Frames per clip (T); must be at least 16.
        input_size: Height and width of the frames; must be at least 16.
        width: Multiplier on all conv and fc widths (> 0).
        dropout: Dropout probability after fc6 and fc7, in [0, 1).

    Raises:
        InputError: (a ``ValueError``) if an argument is out of range.

    Example:
        >>> model = C3D(num_classes=10, width=0.125, input_size=32)
        >>> model(torch.randn(2, 3, 16, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        num_classes: int = 101,
        in_channels: int = 3,
        clip_length: int = 16,
        input_size: int = 112,
        width: float = 1.0,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        _require_positive_int("num_classes", num_classes)
        _require_positive_int("in_channels", in_channels)
        _require_positive_int("clip_length", clip_length)
        _require_positive_int("input_size", input_size)
        if isinstance(width, bool) or not isinstance(width, (int, float)):
            raise InputError(f"width must be a number, got {width!r}")
        if not (math.isfinite(width) and width > 0):
            raise InputError(f"width must be finite and > 0, got {width!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)):
            raise InputError(f"dropout must be a number, got {dropout!r}")
        if not 0.0 <= dropout < 1.0:
            raise InputError(f"dropout must be in [0, 1), got {dropout!r}")

        c1, c2, c3a, c3b, c4a, c4b, c5a, c5b = (_scaled(c, width) for c in _CONV_WIDTHS)
        fc = _scaled(_FC_WIDTH, width)
        t, h, w = _pooled_shape(clip_length, input_size)
        # A plain int (not a buffer) so tracing bakes it into the graph as the
        # literal the classic code wrote: x.view(-1, 8192).
        self.flat_features: int = c5b * t * h * w

        self.conv1 = nn.Conv3d(in_channels, c1, kernel_size=3, padding=1)
        self.pool1 = self._pool(0)
        self.conv2 = nn.Conv3d(c1, c2, kernel_size=3, padding=1)
        self.pool2 = self._pool(1)
        self.conv3a = nn.Conv3d(c2, c3a, kernel_size=3, padding=1)
        self.conv3b = nn.Conv3d(c3a, c3b, kernel_size=3, padding=1)
        self.pool3 = self._pool(2)
        self.conv4a = nn.Conv3d(c3b, c4a, kernel_size=3, padding=1)
        self.conv4b = nn.Conv3d(c4a, c4b, kernel_size=3, padding=1)
        self.pool4 = self._pool(3)
        self.conv5a = nn.Conv3d(c4b, c5a, kernel_size=3, padding=1)
        self.conv5b = nn.Conv3d(c5a, c5b, kernel_size=3, padding=1)
        self.pool5 = self._pool(4)
        self.fc6 = nn.Linear(self.flat_features, fc)
        self.fc7 = nn.Linear(fc, fc)
        self.fc8 = nn.Linear(fc, num_classes)
        # One shared ReLU and Dropout, as in the classic port: pruning must
        # cope with a stateless module called at several places.
        self.dropout = nn.Dropout(p=float(dropout))
        self.relu = nn.ReLU()
        self._initialise()

    def _initialise(self) -> None:
        # He initialisation, as torchvision does for VGG: with PyTorch's default
        # (uniform, gain 1/sqrt(3)) the signal of this BatchNorm-free stack of
        # eight convs shrinks ~3x per layer and training stalls at chance.
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.01)
                nn.init.zeros_(module.bias)

    @staticmethod
    def _pool(index: int) -> nn.MaxPool3d:
        kernel, stride, padding = _POOLS[index]
        return nn.MaxPool3d(kernel_size=kernel, stride=stride, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Maps a clip batch (N, C, T, H, W) to logits (N, num_classes)."""
        x = self.pool1(self.relu(self.conv1(x)))
        x = self.pool2(self.relu(self.conv2(x)))
        x = self.relu(self.conv3a(x))
        x = self.pool3(self.relu(self.conv3b(x)))
        x = self.relu(self.conv4a(x))
        x = self.pool4(self.relu(self.conv4b(x)))
        x = self.relu(self.conv5a(x))
        x = self.pool5(self.relu(self.conv5b(x)))
        x = x.view(-1, self.flat_features)
        x = self.dropout(self.relu(self.fc6(x)))
        x = self.dropout(self.relu(self.fc7(x)))
        return self.fc8(x)


def c3d(**kwargs: object) -> C3D:
    """Builds a :class:`C3D`; keyword arguments go to its constructor.

    Example:
        >>> model = c3d(num_classes=5, width=0.125, input_size=32)
        >>> model.flat_features
        256
    """
    return C3D(**kwargs)  # type: ignore[arg-type]
