"""The bundled examples run end to end (quick modes) and print their tables."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import fxprune

ROOT = Path(__file__).resolve().parents[1]


def run_video_example(*args: str) -> list[dict[str, Any]]:
    # This checkout's fxprune, not whichever one is installed (the example may use what only it has).
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "video_ucf101.py"), "--quick", "--json", *args],
                          check=False, capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


@pytest.mark.parametrize("model", ["c3d", "slowfast"])
def test_video_example_quick_runs_end_to_end(tmp_path: Path, model: str) -> None:
    original, pruned = run_video_example("--model", model, "--out", str(tmp_path))
    assert original["model"] == "original" and pruned["model"] == "pruned"
    # --target-macs 0.2 by default; the --quick SlowFast's one-channel fast pathway cannot shrink
    assert pruned["macs"] < 0.6 * original["macs"] and pruned["params"] <= 0.5 * original["params"]
    assert pruned["onnx_mb"] < original["onnx_mb"]
    assert (tmp_path / "sensitivity.csv").exists() and (tmp_path / "sensitivity.png").exists()
    assert 0.0 <= pruned["accuracy"] <= 1.0
    assert fxprune.read_metadata(tmp_path / f"{model}_pruned.pt2")["plan"] is not None
    assert (tmp_path / f"{model}_baseline.pt").exists()


def test_video_example_starts_from_saved_weights(tmp_path: Path) -> None:
    first, _ = run_video_example("--out", str(tmp_path / "first"))
    again, _ = run_video_example("--out", str(tmp_path / "again"), "--weights",
                                 str(tmp_path / "first" / "c3d_baseline.pt"))
    assert again["accuracy"] == first["accuracy"] and again["params"] == first["params"]
    assert not (tmp_path / "again" / "c3d_baseline.pt").exists()  # nothing was trained
