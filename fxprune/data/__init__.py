"""Video data for fine-tuning pruned networks: UCF101-layout datasets and a synthetic UCF101.

Example:
    >>> from fxprune.data import UCF101, write_synthetic_ucf101
    >>> root = write_synthetic_ucf101("/tmp/ucf_tiny", classes=4, videos_per_class=4, size=32)
    >>> train = UCF101(root, split="train", clip_length=16, size=32, sampling="random")
    >>> clip, label = train[0]
    >>> clip.shape, train.num_classes
    (torch.Size([3, 16, 32, 32]), 4)
"""

from __future__ import annotations

from fxprune.data.clips import KINETICS_MEAN, KINETICS_STD, frames_to_clip, sample_indices
from fxprune.data.layout import VIDEO_EXTENSIONS, index_videos, read_class_index
from fxprune.data.synthetic import render_motion_video, synthetic_class_names, write_synthetic_ucf101
from fxprune.data.ucf101 import UCF101, CorruptVideoWarning, SlowFastClips
from fxprune.data.video import VideoDecodeError, clear_probe_cache, decode_frames, probe_num_frames

__all__ = [
    "KINETICS_MEAN",
    "KINETICS_STD",
    "UCF101",
    "VIDEO_EXTENSIONS",
    "CorruptVideoWarning",
    "SlowFastClips",
    "VideoDecodeError",
    "clear_probe_cache",
    "decode_frames",
    "frames_to_clip",
    "index_videos",
    "probe_num_frames",
    "read_class_index",
    "render_motion_video",
    "sample_indices",
    "synthetic_class_names",
    "write_synthetic_ucf101",
]
