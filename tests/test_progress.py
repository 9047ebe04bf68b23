"""Progress off a terminal: a few plain lines on stderr, never tqdm's carriage returns; nothing when disabled."""

from __future__ import annotations

import pytest

from fxprune.progress import LineProgress, progress


def _lines(capsys: pytest.CaptureFixture) -> list[str]:
    err = capsys.readouterr().err
    assert "\r" not in err
    return err.strip().splitlines()


def test_a_driven_bar_prints_a_line_per_tenth(capsys: pytest.CaptureFixture) -> None:
    with progress(total=20, desc="measuring", unit="layer", min_interval=0) as bar:
        assert isinstance(bar, LineProgress)  # pytest's captured stderr is not a terminal
        for _ in range(20):
            bar.update()
    lines = _lines(capsys)
    assert len(lines) == 10 and lines[0] == "fxprune: measuring: 2/20 layer"
    assert lines[-1] == "fxprune: measuring: 20/20 layer"


def test_an_iterated_bar_counts_items_and_shows_the_latest_detail(capsys: pytest.CaptureFixture) -> None:
    bar = progress(range(3), "evaluate", unit="batch", min_interval=0)
    seen = []
    for item in bar:
        seen.append(item)
        bar.set_postfix(loss="0.5")
    assert seen == [0, 1, 2]
    assert _lines(capsys) == ["fxprune: evaluate: 1/3 batch [loss=0.5]", "fxprune: evaluate: 2/3 batch [loss=0.5]",
                              "fxprune: evaluate: 3/3 batch [loss=0.5]"]


def test_without_a_total_lines_thin_out_by_powers_of_ten(capsys: pytest.CaptureFixture) -> None:
    for _ in progress(iter(range(250)), "indexing", unit="video", min_interval=0):
        pass
    counts = [int(line.split(": ")[2].split()[0]) for line in _lines(capsys)]
    assert counts == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 200, 250]


def test_close_prints_the_last_count_once(capsys: pytest.CaptureFixture) -> None:
    with progress(total=100, desc="steps", min_interval=0) as bar:
        bar.update(5)
    with progress(total=4, desc="done") as bar:
        bar.update(4)
        bar.close()
    assert _lines(capsys) == ["fxprune: steps: 5/100 it", "fxprune: done: 4/4 it"]


def test_disabled_progress_prints_nothing(capsys: pytest.CaptureFixture) -> None:
    with progress(total=5, desc="quiet", enabled=False) as bar:
        bar.update(5)
    assert list(progress([1, 2], "quiet", enabled=False)) == [1, 2]
    assert capsys.readouterr().err == ""


def test_quick_work_prints_only_its_final_count(capsys: pytest.CaptureFixture) -> None:
    for _ in progress(range(128), "indexing", unit="video"):  # well within the default second
        pass
    assert _lines(capsys) == ["fxprune: indexing: 128/128 video"]


def test_lines_are_spaced_by_the_minimum_interval(capsys: pytest.CaptureFixture,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter(float(t) for t in range(1000))
    monkeypatch.setattr("fxprune.progress.time.monotonic", lambda: next(clock))
    with progress(total=100, desc="steps", min_interval=3) as bar:  # one clock tick per call
        for _ in range(100):
            bar.update()
    counts = [int(line.split(": ")[2].split("/")[0]) for line in _lines(capsys)]
    assert counts == [30, 60, 90, 100]
