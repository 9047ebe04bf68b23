"""The bundled examples run end to end (quick modes) and print their tables."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_video_example_quick_runs_end_to_end(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "video_ucf101.py"), "--quick", "--json",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(done.stdout)
    original, pruned = rows
    assert original["model"] == "original" and pruned["model"] == "pruned"
    assert original["params"] / pruned["params"] >= 3.0  # --target-params 0.3 by default
    assert pruned["onnx_mb"] < original["onnx_mb"]
    assert (tmp_path / "sensitivity.csv").exists() and (tmp_path / "sensitivity.png").exists()
    assert 0.0 <= pruned["accuracy"] <= 1.0
