"""Reading video files with PyAV: cheap length probing and selective frame decoding.

Everything that touches a container lives here, so that a decoding failure is
turned into one typed error, :class:`VideoDecodeError`, naming the file.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from fxprune.errors import FxPruneError

__all__ = ["VideoDecodeError", "clear_probe_cache", "decode_frames", "probe_num_frames"]

# Errors PyAV raises for corrupt, truncated or non-video files. FFmpegError
# covers every libav* failure; OSError a file that vanished or is unreadable.
_DECODE_ERRORS: tuple[type[BaseException], ...] = (av.error.FFmpegError, OSError, ValueError, EOFError)

# (path, size, mtime_ns) -> frame count; keyed by stat so an edited file is re-probed.
_PROBE_CACHE: dict[tuple[str, int, int], int] = {}
_PROBE_LOCK = threading.Lock()


class VideoDecodeError(FxPruneError):
    """A video file could not be opened or decoded; the message names the file.

    Example:
        >>> try:
        ...     probe_num_frames("broken.avi")
        ... except VideoDecodeError as error:
        ...     print(error.path)
        broken.avi
    """

    def __init__(self, path: str | os.PathLike[str], reason: str | None = None) -> None:
        if reason is None:
            # DataLoader workers re-raise as `type(error)(formatted_message)`;
            # accepting that keeps the error typed across the process boundary.
            self.path: Path | None = None
            self.reason = str(path)
            super().__init__(str(path))
            return
        self.path = Path(path)
        self.reason = reason
        super().__init__(
            f"cannot decode video {str(path)!r}: {reason}. The file may be corrupt, truncated "
            "or not a video; re-download or delete it, or pass skip_corrupt=True to the dataset "
            "to skip unreadable videos with a warning."
        )

    def __reduce__(self) -> tuple[type[VideoDecodeError], tuple[object, ...]]:
        if self.path is None:
            return type(self), (self.reason,)
        return type(self), (self.path, self.reason)


def _open(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path), mode="r")
    except _DECODE_ERRORS as error:
        raise VideoDecodeError(path, f"{type(error).__name__}: {error}") from error


def _video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    if not container.streams.video:
        raise VideoDecodeError(path, "the container has no video stream")
    return container.streams.video[0]


def _frames_from_metadata(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> int:
    """Frame count from headers only: 0 when the container does not say."""
    if stream.frames and stream.frames > 0:
        return int(stream.frames)
    rate = stream.average_rate or stream.guessed_rate
    if not rate:
        return 0
    if stream.duration and stream.time_base:
        seconds = stream.duration * Fraction(stream.time_base)
    elif container.duration:
        seconds = Fraction(container.duration, av.time_base)
    else:
        return 0
    return round(seconds * Fraction(rate))


def _count_by_decoding(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> int:
    return sum(1 for _ in container.decode(stream))


def probe_num_frames(path: str | os.PathLike[str]) -> int:
    """Returns the number of frames of a video, reading headers when they say.

    Containers such as AVI and MP4 store the frame count or the duration, so
    probing costs one ``av.open``; only when neither is present is the stream
    decoded and counted. Results are cached per file (path, size, mtime).

    Args:
        path: A video file readable by FFmpeg.

    Returns:
        The frame count, at least 1.

    Raises:
        VideoDecodeError: If the file cannot be opened, has no video stream or
            no frames.

    Example:
        >>> probe_num_frames("UCF101/ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi")
        121
    """
    path = Path(path)
    try:
        stat = path.stat()
    except OSError as error:
        raise VideoDecodeError(path, f"{type(error).__name__}: {error}") from error
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _PROBE_LOCK:
        if key in _PROBE_CACHE:
            return _PROBE_CACHE[key]
    with _open(path) as container:
        stream = _video_stream(container, path)
        try:
            count = _frames_from_metadata(container, stream) or _count_by_decoding(container, stream)
        except _DECODE_ERRORS as error:
            raise VideoDecodeError(path, f"{type(error).__name__}: {error}") from error
    if count < 1:
        raise VideoDecodeError(path, "the video stream has no frames")
    with _PROBE_LOCK:
        _PROBE_CACHE[key] = count
    return count


def clear_probe_cache() -> None:
    """Forgets every cached frame count (e.g. after files were rewritten in place).

    Example:
        >>> clear_probe_cache()
    """
    with _PROBE_LOCK:
        _PROBE_CACHE.clear()


def decode_frames(path: str | os.PathLike[str], indices: Sequence[int]) -> np.ndarray:
    """Decodes the frames at ``indices`` (decode order) as RGB uint8 (T, H, W, 3).

    Frames are decoded sequentially up to the largest index and stopped there:
    UCF101 clips are a few seconds long, and sequential decoding is exact where
    keyframe seeking in AVI/MPEG-4 part 2 files is not. Indices may repeat
    (looped short videos). An index past the real end of the stream (headers
    can overstate the length by a frame or two) wraps onto the decoded frames.

    Args:
        path: A video file readable by FFmpeg.
        indices: Non-negative frame indices, in any order.

    Returns:
        An array of shape (len(indices), H, W, 3).

    Raises:
        VideoDecodeError: If the file cannot be decoded or yields no frames.

    Example:
        >>> decode_frames("clip.avi", [0, 2, 4]).shape
        (3, 64, 64, 3)
    """
    path = Path(path)
    wanted = {int(i) for i in indices}
    last = max(wanted, default=-1)
    decoded: dict[int, np.ndarray] = {}
    count = 0
    with _open(path) as container:
        stream = _video_stream(container, path)
        try:
            for count, frame in enumerate(container.decode(stream), start=1):
                if count - 1 in wanted:
                    decoded[count - 1] = frame.to_ndarray(format="rgb24")
                if count > last:
                    break
        except _DECODE_ERRORS as error:
            raise VideoDecodeError(path, f"{type(error).__name__}: {error}") from error
    if count == 0:
        raise VideoDecodeError(path, "no frame could be decoded")
    return np.stack([_frame_or_wrap(decoded, path, int(i), count) for i in indices])


def _frame_or_wrap(decoded: dict[int, np.ndarray], path: Path, index: int, count: int) -> np.ndarray:
    if index in decoded:
        return decoded[index]
    # The stream ended before `index`: wrap, then decode that frame again.
    wrapped = index % count
    if wrapped not in decoded:
        decoded[wrapped] = decode_frames(path, [wrapped])[0]
    return decoded[wrapped]
