"""A compact SlowFast network (Feichtenhofer et al., ICCV 2019).

Reference: C. Feichtenhofer, H. Fan, J. Malik, K. He, "SlowFast Networks for
Video Recognition", 2019.

Two pathways see the same clip: the slow one at T frames with many channels,
the fast one at ``alpha * T`` frames with ``1 / beta_inv`` of the channels.
Time-strided lateral convolutions carry fast features into the slow pathway,
where they are concatenated on the channel axis. For a pruning compiler this
is the interesting part: slow-pathway channels downstream of each fusion come
from two producers, and the model takes a *list* of tensors as input.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fxprune.errors import InputError

__all__ = ["SlowFast", "slowfast", "slowfast_inputs"]

_EXPANSION = 4  # bottleneck output = 4 x inner width, as in ResNet-50.


def _require_positive_int(name: str, value: object) -> int:
    # bool is an int subclass; SlowFast(alpha=True) is always a mistake.
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{name} must be a positive int, got {value!r}")
    return value


def _conv_bn(
    in_ch: int, out_ch: int, kernel: tuple[int, int, int], stride: tuple[int, int, int]
) -> nn.Sequential:
    """Conv3d ("same" padding, no bias since BN follows) + BatchNorm3d."""
    padding = (kernel[0] // 2, kernel[1] // 2, kernel[2] // 2)
    conv = nn.Conv3d(in_ch, out_ch, kernel, stride=stride, padding=padding, bias=False)
    return nn.Sequential(conv, nn.BatchNorm3d(out_ch))


class _Stem(nn.Module):
    """Conv (kt x 7 x 7, spatial stride 2) + BN + ReLU + spatial max-pool."""

    def __init__(self, in_ch: int, out_ch: int, temporal_kernel: int) -> None:
        super().__init__()
        self.conv = _conv_bn(in_ch, out_ch, (temporal_kernel, 7, 7), (1, 2, 2))
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.relu(self.conv(x)))


class _Bottleneck(nn.Module):
    """Residual bottleneck: (kt x 1 x 1) -> (1 x 3 x 3) -> (1 x 1 x 1).

    The temporal kernel sits on the first conv only, as in the paper; the
    shortcut is a 1x1x1 Conv3d + BN whenever channels or stride change.
    """

    def __init__(
        self, in_ch: int, inner: int, out_ch: int, temporal_kernel: int, stride: int
    ) -> None:
        super().__init__()
        self.conv_a = _conv_bn(in_ch, inner, (temporal_kernel, 1, 1), (1, 1, 1))
        self.conv_b = _conv_bn(inner, inner, (1, 3, 3), (1, stride, stride))
        self.conv_c = _conv_bn(inner, out_ch, (1, 1, 1), (1, 1, 1))
        self.relu = nn.ReLU()
        self.shortcut: nn.Module | None = None
        if in_ch != out_ch or stride != 1:
            self.shortcut = _conv_bn(in_ch, out_ch, (1, 1, 1), (1, stride, stride))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        out = self.relu(self.conv_a(x))
        out = self.relu(self.conv_b(out))
        return self.relu(self.conv_c(out) + identity)


class _Lateral(nn.Module):
    """Time-strided conv that maps fast features onto the slow frame rate.

    Kernel (5, 1, 1), stride (alpha, 1, 1), padding (2, 0, 0): alpha * T
    frames in, T frames out, with 2x the fast channels (the paper's best
    variant), followed by BN + ReLU as in PySlowFast.
    """

    def __init__(self, fast_ch: int, alpha: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(
            fast_ch,
            2 * fast_ch,
            (5, 1, 1),
            stride=(alpha, 1, 1),
            padding=(2, 0, 0),
            bias=False,
        )
        self.bn = nn.BatchNorm3d(2 * fast_ch)
        self.relu = nn.ReLU()

    def forward(self, fast: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(fast)))


def _stage(
    in_ch: int, inner: int, blocks: int, temporal_kernel: int, stride: int
) -> nn.Sequential:
    out_ch = inner * _EXPANSION
    layers = [_Bottleneck(in_ch, inner, out_ch, temporal_kernel, stride)]
    layers += [
        _Bottleneck(out_ch, inner, out_ch, temporal_kernel, 1)
        for _ in range(blocks - 1)
    ]
    return nn.Sequential(*layers)


class SlowFast(nn.Module):
    """Two-pathway video classifier with time-strided lateral fusion.

    ``forward`` takes ``[slow, fast]`` with slow of shape (N, C, T, H, W) and
    fast of shape (N, C, alpha * T, H, W). Lateral connections run after the
    stem and after every stage but the last, and are fused into the slow
    pathway with ``torch.cat(dim=1)``. Stage ``i`` has inner width
    ``base_width * 2**i`` on the slow pathway (``// beta_inv``, at least 1, on
    the fast one), spatial stride 2 from the second stage on, and the slow
    pathway uses temporal kernels only in its later half of stages.

    Args:
        num_classes: Number of output logits.
        in_channels: Channels of each input clip.
        alpha: Frame-rate ratio between the fast and slow pathways.
        beta_inv: Channel ratio between the slow and fast pathways.
        base_width: Stem width of the slow pathway.
        depth: Bottleneck blocks per stage (typically 2 or 3 stages).
        dropout: Dropout probability before the classifier, in [0, 1).

    Raises:
        InputError: (a ``ValueError``) if an argument is out of range.

    Example:
        >>> model = SlowFast(num_classes=10, base_width=16, depth=(1, 1))
        >>> model(slowfast_inputs(2, clip_length=4, size=32, alpha=4)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        num_classes: int = 101,
        in_channels: int = 3,
        alpha: int = 4,
        beta_inv: int = 8,
        base_width: int = 64,
        depth: Sequence[int] = (2, 2, 2),
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        for name, value in (
            ("num_classes", num_classes),
            ("in_channels", in_channels),
            ("alpha", alpha),
            ("beta_inv", beta_inv),
            ("base_width", base_width),
        ):
            _require_positive_int(name, value)
        depth = self._check_depth(depth)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)):
            raise InputError(f"dropout must be a number, got {dropout!r}")
        if not 0.0 <= dropout < 1.0:
            raise InputError(f"dropout must be in [0, 1), got {dropout!r}")
        self.alpha = alpha

        def fast_width(slow_width: int) -> int:
            return max(1, slow_width // beta_inv)

        slow_ch, fast_ch = base_width, fast_width(base_width)
        self.slow_stem = _Stem(in_channels, slow_ch, temporal_kernel=1)
        self.fast_stem = _Stem(in_channels, fast_ch, temporal_kernel=5)
        laterals = [_Lateral(fast_ch, alpha)]
        slow_stages, fast_stages = [], []
        for i, blocks in enumerate(depth):
            slow_in = slow_ch + 2 * fast_ch  # every stage follows a fusion
            inner = base_width * 2**i
            stride = 1 if i == 0 else 2
            # The paper keeps the slow pathway temporally 1x1 in early stages:
            # at a low frame rate, early temporal kernels mostly hurt.
            slow_kt = 3 if i >= len(depth) // 2 else 1
            slow_stages.append(_stage(slow_in, inner, blocks, slow_kt, stride))
            fast_stages.append(_stage(fast_ch, fast_width(inner), blocks, 3, stride))
            slow_ch, fast_ch = inner * _EXPANSION, fast_width(inner) * _EXPANSION
            if i + 1 < len(depth):
                laterals.append(_Lateral(fast_ch, alpha))
        self.slow_stages = nn.ModuleList(slow_stages)
        self.fast_stages = nn.ModuleList(fast_stages)
        self.laterals = nn.ModuleList(laterals)
        self.slow_pool = nn.AdaptiveAvgPool3d(1)
        self.fast_pool = nn.AdaptiveAvgPool3d(1)
        self.dropout = nn.Dropout(p=float(dropout))
        self.fc = nn.Linear(slow_ch + fast_ch, num_classes)

    @staticmethod
    def _check_depth(depth: Sequence[int]) -> tuple[int, ...]:
        if (
            isinstance(depth, (str, bytes))
            or not isinstance(depth, Sequence)
            or not depth
        ):
            raise InputError(
                f"depth must be a non-empty sequence of ints, got {depth!r}"
            )
        for blocks in depth:
            _require_positive_int("each depth entry", blocks)
        return tuple(depth)

    def forward(self, x: list[torch.Tensor]) -> torch.Tensor:
        """Maps ``[slow, fast]`` clips to logits (N, num_classes)."""
        if isinstance(x, torch.Tensor):
            # Unpacking a batch-2 tensor would "work" and silently misbehave.
            raise InputError(
                "SlowFast expects a list [slow, fast], got a single Tensor"
            )
        slow, fast = x
        slow, fast = self.slow_stem(slow), self.fast_stem(fast)
        slow = torch.cat([slow, self.laterals[0](fast)], dim=1)
        for i, (slow_stage, fast_stage) in enumerate(
            zip(self.slow_stages, self.fast_stages, strict=True)
        ):
            slow, fast = slow_stage(slow), fast_stage(fast)
            if i + 1 < len(self.laterals):
                slow = torch.cat([slow, self.laterals[i + 1](fast)], dim=1)
        slow = torch.flatten(self.slow_pool(slow), 1)
        fast = torch.flatten(self.fast_pool(fast), 1)
        return self.fc(self.dropout(torch.cat([slow, fast], dim=1)))


def slowfast(**kwargs: object) -> SlowFast:
    """Builds a :class:`SlowFast`; keyword arguments go to its constructor.

    Example:
        >>> model = slowfast(num_classes=5, base_width=16, depth=(1, 1))
        >>> model.alpha
        4
    """
    return SlowFast(**kwargs)  # type: ignore[arg-type]


def slowfast_inputs(
    batch: int, clip_length: int, size: int, alpha: int, *, in_channels: int = 3
) -> list[torch.Tensor]:
    """Returns a random example input ``[slow, fast]`` for :class:`SlowFast`.

    The fast clip has ``alpha * clip_length`` frames and the slow clip is
    every ``alpha``-th frame of it (``clip_length`` frames), the way real
    SlowFast data loaders pack one video into two pathways.

    Args:
        batch: Batch size N.
        clip_length: Frames T of the slow pathway.
        size: Height and width of the frames.
        alpha: Frame-rate ratio; must match the model's ``alpha``.
        in_channels: Channels of each clip.

    Example:
        >>> slow, fast = slowfast_inputs(2, clip_length=4, size=32, alpha=4)
        >>> slow.shape, fast.shape
        (torch.Size([2, 3, 4, 32, 32]), torch.Size([2, 3, 16, 32, 32]))
    """
    for name, value in (
        ("batch", batch),
        ("clip_length", clip_length),
        ("size", size),
        ("alpha", alpha),
        ("in_channels", in_channels),
    ):
        _require_positive_int(name, value)
    fast = torch.randn(batch, in_channels, alpha * clip_length, size, size)
    slow = fast[:, :, ::alpha].contiguous()
    return [slow, fast]
