"""The UCF101 folder layout and its official split files.

``root/ClassName/v_ClassName_gGG_cCC.avi``, with optional ``classInd.txt``
("1 ApplyEyeMakeup"), ``trainlist0N.txt`` ("ApplyEyeMakeup/v_..._c01.avi 1")
and ``testlist0N.txt`` (paths only), found in a splits folder or in root.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fxprune.errors import InputError

__all__ = ["SPLITS", "VIDEO_EXTENSIONS", "VideoIndex", "index_videos", "read_class_index"]

VIDEO_EXTENSIONS: frozenset[str] = frozenset({".avi", ".mp4", ".mkv", ".mov", ".webm"})
SPLITS: tuple[str, ...] = ("train", "test")
_SPLIT_FILE = {"train": "trainlist{fold:02d}.txt", "test": "testlist{fold:02d}.txt"}


@dataclass(frozen=True)
class VideoIndex:
    """The classes and the (relative path, label) of every video of a split."""

    classes: tuple[str, ...]
    samples: tuple[tuple[str, int], ...]


def _find(name: str, folders: list[Path]) -> Path | None:
    return next((folder / name for folder in folders if (folder / name).is_file()), None)


def read_class_index(path: Path) -> tuple[str, ...]:
    """Reads ``classInd.txt`` ("1 ApplyEyeMakeup" per line) into names ordered by index.

    Example:
        >>> read_class_index(Path("UCF101/splits/classInd.txt"))[:2]
        ('ApplyEyeMakeup', 'ApplyLipstick')
    """
    entries: dict[int, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or not fields[0].isdigit():
            raise InputError(f"{path}:{number}: expected '<index> <ClassName>', got {line!r}")
        entries[int(fields[0])] = fields[1]
    if sorted(entries) != list(range(1, len(entries) + 1)):
        raise InputError(f"{path}: class indices must run 1..{len(entries)} without gaps")
    return tuple(entries[i] for i in range(1, len(entries) + 1))


def _scan(root: Path) -> list[str]:
    """Relative paths 'Class/file.ext' of every video one folder below root, sorted."""
    return sorted(
        f"{folder.name}/{file.name}"
        for folder in root.iterdir()
        if folder.is_dir()
        for file in folder.iterdir()
        if file.suffix.lower() in VIDEO_EXTENSIONS and file.is_file()
    )


def _classes(root: Path, folders: list[Path], videos: list[str]) -> tuple[str, ...]:
    class_file = _find("classInd.txt", folders)
    if class_file is not None:
        return read_class_index(class_file)
    return tuple(sorted({video.split("/", 1)[0] for video in videos}))


def _read_split(
    split_file: Path, classes: tuple[str, ...], videos: list[str], missing: list[str]
) -> list[tuple[str, int]]:
    label_of = {name: label for label, name in enumerate(classes)}
    # The official lists differ in case from some file names (HandStandPushups).
    by_lower = {video.lower(): video for video in videos}
    samples = []
    for number, line in enumerate(split_file.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        wanted = fields[0].replace("\\", "/")
        class_name = wanted.split("/", 1)[0]
        if class_name not in label_of:
            raise InputError(f"{split_file}:{number}: class {class_name!r} is not in the class list {classes[:5]}...")
        label = label_of[class_name]
        if len(fields) > 1 and fields[1].isdigit() and int(fields[1]) - 1 != label:
            raise InputError(f"{split_file}:{number}: label {fields[1]} disagrees with classInd.txt ({label + 1})")
        found = by_lower.get(wanted.lower())
        if found is None:
            missing.append(wanted)
        else:
            samples.append((found, label))
    return samples


def index_videos(
    root: Path, *, split: str | None = None, fold: int = 1, splits_dir: Path | None = None
) -> tuple[VideoIndex, list[str]]:
    """Lists the videos of a UCF101-style folder, optionally restricted to an official split.

    Args:
        root: Folder holding one subfolder of videos per class.
        split: ``None`` for every video, or ``"train"`` / ``"test"`` to read
            ``trainlist0N.txt`` / ``testlist0N.txt``.
        fold: The split number N (UCF101 has 1, 2 and 3).
        splits_dir: Where the split files are; ``root`` and ``root/splits``
            (and ``root/ucfTrainTestlist``) are searched too.

    Returns:
        The index, and the split entries whose file does not exist.

    Raises:
        InputError: If root or a split file is missing or malformed.

    Example:
        >>> index, missing = index_videos(Path("UCF101"), split="train", fold=1)
        >>> len(index.classes)
        101
    """
    if not root.is_dir():
        raise InputError(f"dataset root {str(root)!r} is not a directory; pass the folder holding the class folders")
    folders = [f for f in (splits_dir, root, root / "splits", root / "ucfTrainTestlist") if f is not None]
    videos = _scan(root)
    classes = _classes(root, folders, videos)
    missing: list[str] = []
    if split is None:
        label_of = {name: label for label, name in enumerate(classes)}
        samples = [(v, label_of[v.split("/", 1)[0]]) for v in videos if v.split("/", 1)[0] in label_of]
    elif split in SPLITS:
        name = _SPLIT_FILE[split].format(fold=fold)
        split_file = _find(name, folders)
        if split_file is None:
            searched = ", ".join(str(f) for f in folders)
            raise InputError(f"split file {name} not found in {searched}; pass splits_dir= or split=None")
        samples = _read_split(split_file, classes, videos, missing)
    else:
        raise InputError(f"split must be None, 'train' or 'test', got {split!r}")
    if not samples:
        raise InputError(f"no videos found under {str(root)!r} (split={split!r}); expected root/ClassName/*.avi|*.mp4")
    return VideoIndex(classes=classes, samples=tuple(samples)), missing
