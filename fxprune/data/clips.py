"""Clip sampling and the spatial transform: which frames, which crop, which scale.

Pure functions over integers and tensors, so they are tested without video
files and shared by every dataset in :mod:`fxprune.data`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from fxprune.errors import InputError

__all__ = [
    "KINETICS_MEAN",
    "KINETICS_STD",
    "PAD_MODES",
    "SAMPLINGS",
    "check_sampling",
    "crop_box",
    "frames_to_clip",
    "sample_indices",
]

# The statistics torchvision's Kinetics-400 video models were trained with.
KINETICS_MEAN: tuple[float, float, float] = (0.43216, 0.394666, 0.37645)
KINETICS_STD: tuple[float, float, float] = (0.22803, 0.22145, 0.216989)
SAMPLINGS: tuple[str, ...] = ("uniform", "random")
PAD_MODES: tuple[str, ...] = ("loop", "edge")


def check_sampling(sampling: str, pad: str) -> None:
    """Raise InputError unless ``sampling`` is one of SAMPLINGS and ``pad`` one of PAD_MODES."""
    if sampling not in SAMPLINGS:
        raise InputError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
    if pad not in PAD_MODES:
        raise InputError(f"pad must be one of {PAD_MODES}, got {pad!r}")


def sample_indices(
    num_frames: int,
    clip_length: int,
    frame_stride: int = 1,
    *,
    sampling: str = "uniform",
    generator: np.random.Generator | None = None,
    pad: str = "loop",
) -> list[int]:
    """Chooses the frame indices of one clip.

    ``uniform`` centres the clip in the video (deterministic, for evaluation);
    ``random`` draws the start uniformly from every position where the clip
    fits (for training). A video shorter than the clip span is extended
    deterministically: ``pad="loop"`` plays it again from frame 0,
    ``pad="edge"`` repeats the last frame.

    Args:
        num_frames: Frames in the video (>= 1).
        clip_length: Frames in the clip (T).
        frame_stride: Step between sampled frames.
        sampling: ``"uniform"`` or ``"random"``.
        generator: Source of randomness for ``"random"``; required then.
        pad: ``"loop"`` or ``"edge"``.

    Returns:
        ``clip_length`` indices in ``[0, num_frames)``.

    Raises:
        InputError: If an argument is out of range.

    Example:
        >>> sample_indices(10, 4, 2)
        [1, 3, 5, 7]
        >>> sample_indices(3, 5, pad="loop")
        [0, 1, 2, 0, 1]
    """
    check_sampling(sampling, pad)
    if num_frames < 1:
        raise InputError(f"num_frames must be >= 1, got {num_frames}")
    span = (clip_length - 1) * frame_stride + 1
    slack = max(0, num_frames - span)
    if sampling == "uniform":
        start = slack // 2
    elif generator is None:
        raise InputError("sampling='random' needs a numpy Generator; pass generator=np.random.default_rng(seed)")
    else:
        start = int(generator.integers(0, slack + 1))
    raw = [start + step * frame_stride for step in range(clip_length)]
    if pad == "loop":
        return [index % num_frames for index in raw]
    return [min(index, num_frames - 1) for index in raw]


def crop_box(
    height: int, width: int, size: int, *, random: bool = False, generator: np.random.Generator | None = None
) -> tuple[int, int]:
    """Returns the (top, left) corner of a ``size`` x ``size`` crop.

    Example:
        >>> crop_box(128, 171, 112)
        (8, 29)
    """
    if height < size or width < size:
        raise InputError(f"cannot crop {size}x{size} from a {height}x{width} frame; lower size or raise short_side")
    if not random:
        return (height - size) // 2, (width - size) // 2
    if generator is None:
        raise InputError("a random crop needs a numpy Generator; pass generator=np.random.default_rng(seed)")
    return int(generator.integers(0, height - size + 1)), int(generator.integers(0, width - size + 1))


def _resize_short_side(clip: torch.Tensor, short_side: int) -> torch.Tensor:
    """Resizes (T, C, H, W) so that min(H, W) == short_side, keeping the aspect ratio."""
    height, width = clip.shape[-2:]
    if min(height, width) == short_side:
        return clip
    scale = short_side / min(height, width)
    target = (max(short_side, round(height * scale)), max(short_side, round(width * scale)))
    # antialias avoids aliasing when 320x240 UCF101 frames are shrunk to 128.
    return F.interpolate(clip, size=target, mode="bilinear", align_corners=False, antialias=True)


def frames_to_clip(
    frames: np.ndarray,
    *,
    size: int,
    short_side: int | None = None,
    random_crop: bool = False,
    generator: np.random.Generator | None = None,
    mean: Sequence[float] = KINETICS_MEAN,
    std: Sequence[float] = KINETICS_STD,
) -> torch.Tensor:
    """Turns decoded RGB uint8 frames (T, H, W, 3) into a normalised clip (3, T, size, size).

    The shorter side is resized to ``short_side`` (default ``size``), then a
    centre (or random) square crop of ``size`` is taken, and each channel is
    scaled to [0, 1] and normalised with ``mean`` and ``std``.

    Example:
        >>> frames_to_clip(np.zeros((16, 240, 320, 3), np.uint8), size=112, short_side=128).shape
        torch.Size([3, 16, 112, 112])
    """
    short_side = size if short_side is None else short_side
    if short_side < size:
        raise InputError(f"short_side ({short_side}) must be >= size ({size})")
    clip = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255.0)
    clip = _resize_short_side(clip, short_side)
    top, left = crop_box(clip.shape[-2], clip.shape[-1], size, random=random_crop, generator=generator)
    clip = clip[..., top : top + size, left : left + size]
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return ((clip - mean_t) / std_t).permute(1, 0, 2, 3).contiguous()
