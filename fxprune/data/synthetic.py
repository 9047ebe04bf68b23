"""A synthetic UCF101: real encoded videos whose class is a direction of motion.

Each video shows one bright shape (disk, square or diamond) of random size
and hue on a flat dark background of random hue, gliding at a random speed in
the direction of its class and wrapping around the frame edges like a torus.
Shape, colour, size and position are drawn from the same distributions for
every class, and with the wrap-around a single frame (at any time) has the
same distribution in every class: only motion tells the classes apart, which
is what a video network, and its pruned version, has to keep doing.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import cast

import av
import numpy as np

from fxprune.errors import InputError

__all__ = ["render_motion_video", "synthetic_class_names", "write_synthetic_ucf101"]

_COMPASS = ("Right", "UpRight", "Up", "UpLeft", "Left", "DownLeft", "Down", "DownRight")
_SHAPES = ("disk", "square", "diamond")
_FPS = 25  # UCF101's frame rate.


def synthetic_class_names(classes: int) -> list[str]:
    """Names of the motion classes: compass names when they fit, else angles.

    Class ``k`` moves at ``360 * k / classes`` degrees (counter-clockwise
    from "right", with "up" towards the top of the frame).

    Example:
        >>> synthetic_class_names(4)
        ['MoveRight', 'MoveUp', 'MoveLeft', 'MoveDown']
    """
    if 8 % classes == 0:
        return [f"Move{_COMPASS[k * 8 // classes]}" for k in range(classes)]
    return [f"Move{round(360 * k / classes):03d}Deg" for k in range(classes)]


def _check_int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InputError(f"{name} must be an int >= {low}, got {value!r}")
    return value


def render_motion_video(rng: np.random.Generator, angle: float, frames: int, size: int) -> np.ndarray:
    """Draws one video as RGB uint8 (frames, size, size, 3); ``angle`` in radians.

    Example:
        >>> render_motion_video(np.random.default_rng(0), 0.0, 16, 32).shape
        (16, 32, 32, 3)
    """
    # A bright shape on a dark ground, hues random: with a fixed contrast polarity
    # a small 3D CNN learns the motion in a few hundred steps (with random
    # polarity it barely beats chance), and lossy coding keeps the edges.
    background = rng.integers(0, 96, 3)
    foreground = rng.integers(160, 256, 3)
    radius = rng.uniform(0.10, 0.16) * size
    speed = rng.uniform(0.04, 0.07) * size  # pixels per frame
    start = rng.uniform(0, size, 2)
    shape = _SHAPES[int(rng.integers(len(_SHAPES)))]
    time = np.arange(frames, dtype=np.float64)
    centre_x = start[0] + speed * math.cos(angle) * time
    centre_y = start[1] - speed * math.sin(angle) * time  # image rows grow downwards
    grid = np.arange(size, dtype=np.float64) + 0.5
    # Signed distance on a torus, so the shape leaves one edge and enters the opposite one.
    dx = (grid[None, None, :] - centre_x[:, None, None] + size / 2) % size - size / 2
    dy = (grid[None, :, None] - centre_y[:, None, None] + size / 2) % size - size / 2
    if shape == "disk":
        mask = dx**2 + dy**2 <= radius**2
    elif shape == "square":
        mask = np.maximum(np.abs(dx), np.abs(dy)) <= radius * 0.9
    else:
        mask = np.abs(dx) + np.abs(dy) <= radius * 1.25
    video = np.where(mask[..., None], foreground, background)
    return video.astype(np.uint8)


def _resolve_codec(codec: str, fmt: str) -> str:
    if fmt not in ("avi", "mp4"):
        raise InputError(f"fmt must be 'avi' or 'mp4', got {fmt!r}")
    try:
        av.codec.Codec(codec, "w")
    except Exception as error:  # PyAV raises several types for unknown codecs
        raise InputError(
            f"PyAV here has no {codec!r} encoder ({error}); use codec='mpeg4' (always built into FFmpeg)"
        ) from error
    return codec


def _encode(path: Path, video: np.ndarray, codec: str) -> None:
    with av.open(str(path), mode="w") as container:
        stream = cast(av.video.stream.VideoStream, container.add_stream(codec, rate=_FPS))
        stream.width, stream.height = video.shape[2], video.shape[1]
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        # One thread: encoders then give the same bytes on every machine and run.
        stream.codec_context.thread_count = 1
        if codec in ("libx264", "h264"):
            stream.options = {"crf": "12", "preset": "veryfast"}
        else:
            stream.bit_rate = 4_000_000
        for frame in video:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))


def _video_path(name: str, video: int, videos_per_class: int, fmt: str) -> tuple[str, int]:
    """The relative path 'Class/v_Class_gGG_cCC.fmt' of a video, and its 0-based group."""
    group, clip = divmod(video, 2 if videos_per_class >= 4 else 1)
    return f"{name}/v_{name}_g{group + 1:02d}_c{clip + 1:02d}.{fmt}", group


def _split_lines(names: list[str], videos_per_class: int, fmt: str,
                 test_videos: int | None = None) -> tuple[list[str], list[str]]:
    """Train and test list lines, split by group like UCF101 (a group never spans both).

    With ``test_videos`` the first ``videos_per_class`` videos of a class are all for
    training and the ``test_videos`` after them, in groups of their own, for testing.
    """
    total = videos_per_class + (test_videos or 0)
    groups = _video_path("", total - 1, total, fmt)[1] + 1
    test_groups = max(1, groups // 4)
    train, test = [], []
    for label, name in enumerate(names, start=1):
        for video in range(total):
            relative, group = _video_path(name, video, total, fmt)
            if (video >= videos_per_class) if test_videos else (group < test_groups):
                test.append(relative)
            else:
                train.append(f"{relative} {label}")
    return train, test


def write_synthetic_ucf101(
    root: str | os.PathLike[str],
    *,
    classes: int = 4,
    videos_per_class: int = 8,
    frames: int = 24,
    size: int = 64,
    seed: int = 0,
    fmt: str = "avi",
    codec: str = "mpeg4",
    test_videos_per_class: int | None = None,
) -> Path:
    """Writes a small UCF101-layout dataset of moving shapes, classed by direction of motion.

    Layout: ``root/MoveRight/v_MoveRight_g01_c01.avi`` ..., plus ``classInd.txt``,
    ``trainlist01.txt`` and ``testlist01.txt`` in ``root`` (a quarter of the
    groups, at least one, are test). The same ``seed`` gives the same decoded
    frames; every video has its own generator seeded by (seed, class, index).

    Args:
        root: Output folder (created; existing files of the same names are replaced).
        classes: Number of motion directions (>= 2), evenly spaced on the circle.
        videos_per_class: Videos per class (>= 2, so both splits get some).
        frames: Frames per video, at 25 fps.
        size: Frame height and width in pixels (even, >= 16).
        seed: Seed of every random draw.
        fmt: Container, ``"avi"`` (as UCF101) or ``"mp4"``.
        codec: FFmpeg encoder; ``"mpeg4"`` (MPEG-4 part 2, UCF101's own codec
            family, built into every FFmpeg) or e.g. ``"libx264"``.
        test_videos_per_class: Videos per class written for the test split only, after the
            ``videos_per_class`` training videos (even counts keep groups whole); ``None``:
            a quarter of the ``videos_per_class`` videos' groups are the test split.

    Returns:
        ``root`` as a :class:`~pathlib.Path`.

    Raises:
        InputError: If an argument is out of range or the codec is not available.

    Example:
        >>> root = write_synthetic_ucf101("/tmp/ucf_tiny", classes=4, videos_per_class=4, size=32)
        >>> sorted(p.name for p in root.iterdir())[:3]
        ['MoveDown', 'MoveLeft', 'MoveRight']
    """
    _check_int("classes", classes, 2)
    _check_int("videos_per_class", videos_per_class, 2)
    _check_int("frames", frames, 2)
    if _check_int("size", size, 16) % 2:
        raise InputError(f"size must be even (4:2:0 video), got {size}")
    codec = _resolve_codec(codec, fmt)
    root = Path(root)
    names = synthetic_class_names(classes)
    if test_videos_per_class is not None:
        _check_int("test_videos_per_class", test_videos_per_class, 1)
    train, test = _split_lines(names, videos_per_class, fmt, test_videos_per_class)
    total = videos_per_class + (test_videos_per_class or 0)
    for label, name in enumerate(names):
        (root / name).mkdir(parents=True, exist_ok=True)
        for video in range(total):
            rng = np.random.default_rng([seed, label, video])
            pixels = render_motion_video(rng, 2 * math.pi * label / classes, frames, size)
            _encode(root / _video_path(name, video, total, fmt)[0], pixels, codec)
    (root / "classInd.txt").write_text("".join(f"{k} {name}\n" for k, name in enumerate(names, start=1)))
    (root / "trainlist01.txt").write_text("".join(line + "\n" for line in train))
    (root / "testlist01.txt").write_text("".join(line + "\n" for line in test))
    return root
