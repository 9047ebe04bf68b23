"""The video data package on a real (synthetic, PyAV-encoded) UCF101 folder."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from fxprune.data import (
    UCF101,
    CorruptVideoWarning,
    SlowFastClips,
    VideoDecodeError,
    decode_frames,
    probe_num_frames,
    sample_indices,
    synthetic_class_names,
    write_synthetic_ucf101,
)
from fxprune.errors import FxPruneError, InputError

CLASSES, PER_CLASS, FRAMES, SIZE = 4, 4, 24, 32
RAW = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_ucf101(
        tmp_path_factory.mktemp("ucf") / "UCF", classes=CLASSES, videos_per_class=PER_CLASS, frames=FRAMES, size=SIZE
    )


@pytest.fixture
def scratch(root: Path, tmp_path: Path) -> Path:
    """A private copy of the dataset that a test may damage."""
    return Path(shutil.copytree(root, tmp_path / "UCF"))


def dataset(root: Path, **options: object) -> UCF101:
    settings: dict[str, object] = {"clip_length": 16, "size": SIZE, "progress": False}
    return UCF101(root, **(settings | options))  # type: ignore[arg-type]


def test_synthetic_layout_is_ucf101(root: Path) -> None:
    names = synthetic_class_names(CLASSES)
    assert names == ["MoveRight", "MoveUp", "MoveLeft", "MoveDown"]
    assert (root / "classInd.txt").read_text().splitlines() == [f"{i} {n}" for i, n in enumerate(names, 1)]
    videos = sorted(root.glob("*/*.avi"))
    assert len(videos) == CLASSES * PER_CLASS
    assert videos[0].name.startswith("v_MoveDown_g01_c01")
    assert all(probe_num_frames(video) == FRAMES for video in videos)


def test_clip_shape_dtype_and_labels(root: Path) -> None:
    data = dataset(root)
    assert len(data) == CLASSES * PER_CLASS and data.num_classes == CLASSES
    for index in (0, len(data) - 1):
        clip, label = data[index]
        assert clip.shape == (3, 16, SIZE, SIZE) and clip.dtype == torch.float32
        assert isinstance(label, int) and data.classes[label] == data.samples[index][0].parent.name
    assert sorted(set(data.targets)) == list(range(CLASSES))


def test_split_files_are_honoured(root: Path, scratch: Path, tmp_path: Path) -> None:
    train, test = dataset(root, split="train"), dataset(root, split="test")
    listed = [line.split()[0] for line in (root / "trainlist01.txt").read_text().splitlines()]
    assert [str(path.relative_to(root)) for path, _ in train.samples] == listed
    assert len(train) + len(test) == CLASSES * PER_CLASS
    assert not {p for p, _ in train.samples} & {p for p, _ in test.samples}
    # A group (gNN) never lands in both splits, as in UCF101.
    assert not {p.stem[:-4] for p, _ in train.samples} & {p.stem[:-4] for p, _ in test.samples}
    splits = tmp_path / "lists"
    splits.mkdir()
    for name in ("classInd.txt", "trainlist01.txt", "testlist01.txt"):
        shutil.move(scratch / name, splits / name)
    assert dataset(scratch, split="test", splits_dir=splits).samples[0][0].name == test.samples[0][0].name
    with pytest.raises(InputError, match=r"testlist01\.txt not found"):
        dataset(scratch, split="test")


def test_uniform_sampling_is_deterministic(root: Path) -> None:
    first, second = dataset(root, seed=0), dataset(root, seed=1)
    assert torch.equal(first[3][0], first[3][0])
    assert torch.equal(first[3][0], second[3][0])


def test_random_sampling_follows_the_seed(root: Path) -> None:
    def clips(seed: int) -> list[torch.Tensor]:
        data = dataset(root, sampling="random", short_side=40, seed=seed)
        return [data[i][0] for i in range(4)]

    same, again, other = clips(0), clips(0), clips(1)
    assert all(torch.equal(a, b) for a, b in zip(same, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(same, other, strict=True))


def test_short_videos_are_extended_deterministically(root: Path) -> None:
    assert sample_indices(3, 5, pad="loop") == [0, 1, 2, 0, 1]
    assert sample_indices(3, 5, pad="edge") == [0, 1, 2, 2, 2]
    assert sample_indices(10, 4, 2) == [1, 3, 5, 7]
    data = dataset(root, frame_stride=2)  # span 31 > 24 frames: the clip loops
    clip, _ = data[0]
    assert clip.shape == (3, 16, SIZE, SIZE)
    assert torch.equal(clip[:, 12], clip[:, 0])  # frame 24 wrapped onto frame 0
    assert torch.equal(data[0][0], clip)


def test_slowfast_pathways(root: Path) -> None:
    from fxprune.models import slowfast

    pairs = SlowFastClips(dataset(root), alpha=4)
    (slow, fast), label = pairs[0]
    assert slow.shape == (3, 4, SIZE, SIZE) and fast.shape == (3, 16, SIZE, SIZE)
    assert torch.equal(slow, fast[:, ::4]) and isinstance(label, int)
    batch, labels = next(iter(DataLoader(pairs, batch_size=2)))
    assert [x.shape[:3] for x in batch] == [(2, 3, 4), (2, 3, 16)] and labels.shape == (2,)
    model = slowfast(num_classes=CLASSES, base_width=8, depth=(1, 1)).eval()
    with torch.no_grad():
        assert model(batch).shape == (2, CLASSES)
    with pytest.raises(InputError, match="multiple of alpha"):
        SlowFastClips(dataset(root, clip_length=18), alpha=4)


def test_corrupt_file_raises_naming_it(scratch: Path) -> None:
    broken = scratch / "MoveLeft" / "v_MoveLeft_g02_c01.avi"
    broken.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(VideoDecodeError, match=r"v_MoveLeft_g02_c01\.avi") as caught:
        dataset(scratch)
    assert isinstance(caught.value, FxPruneError) and caught.value.path == broken
    assert "skip_corrupt=True" in str(caught.value)


def test_skip_corrupt_warns_and_drops_the_file(scratch: Path) -> None:
    broken = scratch / "MoveLeft" / "v_MoveLeft_g02_c01.avi"
    broken.write_bytes(b"\x00garbage" * 100)
    with pytest.warns(CorruptVideoWarning, match=r"v_MoveLeft_g02_c01\.avi"):
        data = dataset(scratch, skip_corrupt=True)
    assert len(data) == CLASSES * PER_CLASS - 1 and broken not in [p for p, _ in data.samples]
    clip, label = data[len(data) - 1]
    assert clip.shape == (3, 16, SIZE, SIZE) and torch.isfinite(clip).all() and 0 <= label < CLASSES


def test_file_corrupted_after_indexing_is_replaced_by_the_next(scratch: Path) -> None:
    strict, lenient = dataset(scratch), dataset(scratch, skip_corrupt=True)
    expected_clip, expected_label = strict[6]
    strict.samples[5][0].write_bytes(b"not a video" * 50)
    with pytest.raises(VideoDecodeError, match=strict.samples[5][0].name):
        strict[5]
    with pytest.warns(CorruptVideoWarning, match="next readable sample"):
        clip, label = lenient[5]
    assert torch.equal(clip, expected_clip) and label == expected_label
    assert len(lenient) == CLASSES * PER_CLASS  # the length never changes mid-epoch


def test_decode_error_stays_typed_through_dataloader_workers(scratch: Path) -> None:
    data = dataset(scratch)
    data.samples[2][0].write_bytes(b"truncated" * 40)
    with pytest.raises(VideoDecodeError, match=data.samples[2][0].name):
        list(DataLoader(data, batch_size=2, num_workers=1))


def test_same_seed_gives_identical_frames(tmp_path: Path) -> None:
    def frames(name: str, seed: int, fmt: str) -> np.ndarray:
        out = write_synthetic_ucf101(
            tmp_path / name, classes=2, videos_per_class=2, frames=8, size=32, seed=seed, fmt=fmt
        )
        return decode_frames(next(out.glob(f"MoveLeft/*.{fmt}")), range(8))

    reference = frames("a", 3, "mp4")
    assert reference.shape == (8, 32, 32, 3)
    assert np.array_equal(reference, frames("b", 3, "mp4"))
    assert not np.array_equal(reference, frames("c", 4, "mp4"))


def _dominant_shift(frames: np.ndarray, lag: int = 2, reach: int = 6) -> tuple[int, int]:
    """The (dx, dy) that best maps frame t onto frame t + lag (the shapes wrap around)."""
    frames = frames.astype(np.float32)
    errors = {
        (dx, dy): np.abs(np.roll(frames[:-lag], (dy, dx), axis=(1, 2)) - frames[lag:]).mean()
        for dx in range(-reach, reach + 1)
        for dy in range(-reach, reach + 1)
    }
    return min(errors, key=errors.__getitem__)


def test_each_class_moves_its_own_way(root: Path) -> None:
    for path, label in dataset(root).samples:
        dx, dy = _dominant_shift(decode_frames(path, range(FRAMES)))
        angle = 2 * math.pi * label / CLASSES
        assert (np.sign(dx), np.sign(-dy)) == (round(math.cos(angle)), round(math.sin(angle))), path.name
        assert abs(dx) + abs(dy) >= 2, path.name


def test_index_shows_progress_on_stderr(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dataset(root, progress=True)
    assert "indexing UCF" in capsys.readouterr().err
    dataset(root, progress=False)
    assert capsys.readouterr().err == ""


def test_workers_sample_random_clips(root: Path) -> None:
    loader = DataLoader(dataset(root, sampling="random", short_side=40), batch_size=4, num_workers=2)
    clips, labels = next(iter(loader))
    assert clips.shape == (4, 3, 16, SIZE, SIZE) and labels.dtype == torch.int64


@pytest.mark.parametrize(
    ("options", "message"),
    [({"sampling": "dense"}, "sampling"), ({"split": "val"}, "split"), ({"short_side": 16}, "short_side")],
)
def test_bad_options_raise_input_error(root: Path, options: dict[str, object], message: str) -> None:
    with pytest.raises(InputError, match=message):
        dataset(root, **options)


def test_bad_generator_options_raise_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="encoder"):
        write_synthetic_ucf101(tmp_path, codec="no-such-codec")
    with pytest.raises(InputError, match="even"):
        write_synthetic_ucf101(tmp_path, size=33)
    with pytest.raises(InputError, match="not a directory"):
        UCF101(tmp_path / "missing")
