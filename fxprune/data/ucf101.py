"""UCF101-style video classification datasets decoded with PyAV.

Example:
    >>> from fxprune.data import UCF101, SlowFastClips
    >>> train = UCF101("UCF101", split="train", clip_length=16, size=112, short_side=128, sampling="random")
    >>> clip, label = train[0]
    >>> clip.shape  # (C, T, H, W)
    torch.Size([3, 16, 112, 112])
    >>> (slow, fast), label = SlowFastClips(train, alpha=4)[0]
    >>> slow.shape, fast.shape
    (torch.Size([3, 4, 112, 112]), torch.Size([3, 16, 112, 112]))
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from fxprune.data.clips import KINETICS_MEAN, KINETICS_STD, check_sampling, frames_to_clip, sample_indices
from fxprune.data.layout import index_videos
from fxprune.data.video import VideoDecodeError, decode_frames, probe_num_frames
from fxprune.errors import InputError
from fxprune.progress import progress as progress_of

__all__ = ["UCF101", "CorruptVideoWarning", "SlowFastClips", "VideoDecodeError"]


class CorruptVideoWarning(UserWarning):
    """Emitted (with ``skip_corrupt=True``) for each unreadable video that is skipped."""


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{name} must be a positive int, got {value!r}")
    return value


class UCF101(Dataset):
    """Clips of the videos in a UCF101-layout folder, as ``(clip, label)`` pairs.

    ``clip`` is float32 (C, T, H, W), normalised with ``mean`` / ``std``;
    ``label`` is the 0-based class index (``classInd.txt`` order if present,
    else sorted folder names). Frame counts are probed once at construction
    (with a progress bar) and cached per file.

    Unreadable videos: found at construction they raise
    :class:`VideoDecodeError` naming the file, or with ``skip_corrupt=True``
    are dropped with a :class:`CorruptVideoWarning`. Found later, while a clip
    is decoded, they raise too, or with ``skip_corrupt=True`` are warned about
    once per process and *replaced by the next readable sample in index order*
    (wrapping around), returned with that sample's own label. The length
    never changes, so samplers and distributed ranks stay in step.

    Args:
        root: Folder with one subfolder of videos (.avi, .mp4, ...) per class.
        split: ``None`` (every video), ``"train"`` or ``"test"`` (official list files).
        fold: Split number N of ``trainlist0N.txt`` / ``testlist0N.txt``.
        splits_dir: Folder holding the split files and ``classInd.txt``;
            ``root``, ``root/splits`` and ``root/ucfTrainTestlist`` are searched too.
        clip_length: Frames per clip (T).
        frame_stride: Step between sampled frames.
        sampling: ``"uniform"`` (centred, deterministic) or ``"random"`` (random
            start from a generator seeded by ``seed`` and the DataLoader worker).
        size: Height and width of the square output crop.
        short_side: The shorter frame side is resized to this before cropping
            (default ``size``; 128 for the classic 112 C3D crop).
        crop: ``"center"`` or ``"random"``; defaults to match ``sampling``.
        mean: Per-channel mean subtracted after scaling to [0, 1].
        std: Per-channel std divided by.
        pad: How videos shorter than a clip are extended: ``"loop"`` or ``"edge"``.
        skip_corrupt: Skip unreadable videos with a warning instead of raising.
        seed: Seed of the random clip and crop positions.
        progress: Show a progress bar (stderr) while probing frame counts.

    Raises:
        InputError: For bad arguments, a missing root or a malformed split file.
        VideoDecodeError: For an unreadable video when ``skip_corrupt`` is False.

    Example:
        >>> test = UCF101("UCF101", split="test", fold=1, size=112, short_side=128)
        >>> clip, label = test[0]
        >>> clip.shape, test.classes[label]
        (torch.Size([3, 16, 112, 112]), 'ApplyEyeMakeup')
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        split: str | None = None,
        fold: int = 1,
        splits_dir: str | os.PathLike[str] | None = None,
        clip_length: int = 16,
        frame_stride: int = 1,
        sampling: str = "uniform",
        size: int = 112,
        short_side: int | None = None,
        crop: str | None = None,
        mean: Sequence[float] = KINETICS_MEAN,
        std: Sequence[float] = KINETICS_STD,
        pad: str = "loop",
        skip_corrupt: bool = False,
        seed: int = 0,
        progress: bool = True,
    ) -> None:
        self.clip_length = _positive_int("clip_length", clip_length)
        self.frame_stride = _positive_int("frame_stride", frame_stride)
        self.size = _positive_int("size", size)
        self.short_side = size if short_side is None else _positive_int("short_side", short_side)
        if self.short_side < self.size:
            raise InputError(f"short_side ({short_side}) must be >= size ({size})")
        check_sampling(sampling, pad)
        crop = "random" if crop is None and sampling == "random" else crop or "center"
        if crop not in ("center", "random"):
            raise InputError(f"crop must be 'center' or 'random', got {crop!r}")
        if len(mean) != 3 or len(std) != 3 or any(s <= 0 for s in std):
            raise InputError(f"mean and std need 3 values each, std > 0; got mean={mean!r}, std={std!r}")
        self.sampling, self.crop, self.pad = sampling, crop, pad
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self.skip_corrupt, self.seed = bool(skip_corrupt), int(seed)
        self.root = Path(root)
        index, missing = index_videos(
            self.root, split=split, fold=fold, splits_dir=None if splits_dir is None else Path(splits_dir)
        )
        self.classes: tuple[str, ...] = index.classes
        for name in missing:
            self._unreadable(VideoDecodeError(self.root / name, f"listed in the {split} split but not found"))
        self.samples: list[tuple[Path, int]] = []
        self.frame_counts: list[int] = []
        self._probe(index.samples, progress)
        if not self.samples:
            raise InputError(f"every video under {str(self.root)!r} is unreadable; nothing to load")
        self._failed: set[int] = set()
        self._rng: np.random.Generator | None = None
        self._rng_key: int | None = None

    def _unreadable(self, error: VideoDecodeError, instead: str = "") -> None:
        if not self.skip_corrupt:
            raise error
        message = f"skipping unreadable video {str(error.path)!r}: {error.reason}{instead}"
        warnings.warn(message, CorruptVideoWarning, stacklevel=3)

    def _probe(self, samples: Sequence[tuple[str, int]], progress: bool) -> None:
        bar = progress_of(samples, f"indexing {self.root.name}", unit="video", enabled=progress)
        for relative, label in bar:
            path = self.root / relative
            try:
                count = probe_num_frames(path)
            except VideoDecodeError as error:
                self._unreadable(error)
                continue
            self.samples.append((path, label))
            self.frame_counts.append(count)

    @property
    def num_classes(self) -> int:
        """Number of classes (the model's output width)."""
        return len(self.classes)

    @property
    def targets(self) -> list[int]:
        """The label of every sample, in index order."""
        return [label for _, label in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"sample {index} is out of range for a dataset of {len(self)} videos")
        index %= len(self)
        for offset in range(len(self)):
            candidate = (index + offset) % len(self)
            if candidate in self._failed:
                continue
            try:
                return self._load(candidate)
            except VideoDecodeError as error:
                self._failed.add(candidate)
                self._unreadable(error, "; returning the next readable sample in index order instead")
        raise VideoDecodeError(self.root, "no video of the dataset could be decoded")

    def _generator(self) -> np.random.Generator:
        # Each DataLoader worker (and torchrun rank) gets its own stream; worker
        # seeds change every epoch (and follow torch.manual_seed), so crops differ
        # across epochs.
        worker = get_worker_info()
        key = None if worker is None else worker.seed
        if self._rng is None or key != self._rng_key:
            entropy = [self.seed, int(os.environ.get("RANK", "0"))] + ([] if worker is None else [worker.seed])
            self._rng, self._rng_key = np.random.default_rng(entropy), key
        return self._rng

    def _load(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        rng = self._generator() if "random" in (self.sampling, self.crop) else None
        frames = sample_indices(
            self.frame_counts[index],
            self.clip_length,
            self.frame_stride,
            sampling=self.sampling,
            generator=rng,
            pad=self.pad,
        )
        clip = frames_to_clip(
            decode_frames(path, frames),
            size=self.size,
            short_side=self.short_side,
            random_crop=self.crop == "random",
            generator=rng,
            mean=self.mean,
            std=self.std,
        )
        return clip, label

    def __repr__(self) -> str:
        return (
            f"UCF101(root={str(self.root)!r}, videos={len(self)}, classes={self.num_classes}, "
            f"clip_length={self.clip_length}, frame_stride={self.frame_stride}, sampling={self.sampling!r}, "
            f"size={self.size})"
        )


class SlowFastClips(Dataset):
    """Two-pathway view of a clip dataset: ``([slow, fast], label)`` with ``slow = fast[:, ::alpha]``.

    The wrapped dataset's clips are the fast pathway, so its ``clip_length``
    must be a multiple of ``alpha``; the default collate then batches the
    pair into the ``[slow, fast]`` list :func:`fxprune.models.slowfast` takes.

    Args:
        dataset: A dataset of ``(clip (C, T, H, W), label)`` pairs, e.g. :class:`UCF101`.
        alpha: Frame-rate ratio between the fast and the slow pathway.

    Raises:
        InputError: If ``alpha`` is not a positive int or does not divide the clip length.

    Example:
        >>> pairs = SlowFastClips(UCF101("UCF101", clip_length=32), alpha=4)
        >>> [x.shape[1] for x in pairs[0][0]]
        [8, 32]
    """

    def __init__(self, dataset: Dataset, alpha: int = 4) -> None:
        self.alpha = _positive_int("alpha", alpha)
        clip_length = getattr(dataset, "clip_length", None)
        if isinstance(clip_length, int) and clip_length % alpha:
            raise InputError(f"clip_length {clip_length} must be a multiple of alpha={alpha} for [slow, fast] clips")
        self.dataset = dataset
        self.classes = getattr(dataset, "classes", ())

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[list[torch.Tensor], int]:
        fast, label = self.dataset[index]
        if fast.shape[1] % self.alpha:
            raise InputError(f"a clip of {fast.shape[1]} frames cannot be split with alpha={self.alpha}")
        return [fast[:, :: self.alpha].contiguous(), fast], label
