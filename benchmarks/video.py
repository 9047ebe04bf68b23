"""Video deployment benchmark: the seed's before/after table for C3D and SlowFast.

Runs ``examples/video_ucf101.py`` once per model on the synthetic UCF101-layout dataset
(train the baseline -> sensitivity -> Taylor pruning to a MACs budget -> fine-tune ->
ONNX export -> ONNX Runtime latency at batch 1 and 8), collects the JSON tables and
prints them together, with the issue's C3D targets checked against the measured figures:
at least 3x fewer parameters, accuracy within 1 point of the unpruned model after
fine-tuning, and at least 3x lower ONNX Runtime CPU latency.

The synthetic test split has 200 clips (50 per class, ``--test-videos-per-class`` of the
example), so one clip is half a point. ``--seeds 0 1 2`` repeats every run with other
initialisation and training seeds, and ``--distill 0.5`` runs every seed a second time
fine-tuning with the unpruned model as teacher; the accuracy drop is then reported per
run and as mean and spread, and the C3D targets are checked on the mean.

About three minutes per model and run on two idle CPU cores. Extra arguments go to every
example run.

Example::

    python3 benchmarks/video.py                       # C3D and SlowFast
    python3 benchmarks/video.py --models c3d -- --threads 1 --runs 50
    python3 benchmarks/video.py --models c3d --seeds 0 1 2 --distill 0.5
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "video_ucf101.py"


def run_example(model: str, extra: list[str], out: Path | None) -> tuple[list[dict[str, Any]], float]:
    command = [sys.executable, str(EXAMPLE), "--model", model.split()[0], "--json", *extra]
    if out is not None:
        command += ["--out", str(out / model.replace(" ", "_"))]
    started = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)  # stderr: progress, live
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed with exit status {done.returncode}")
    return json.loads(done.stdout), time.perf_counter() - started


def table(results: dict[str, list[dict[str, Any]]]) -> str:
    lines = ["| model | variant | ONNX MB | ORT ms (b1) | ORT ms (b8) | params | GMACs | accuracy |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for model, rows in results.items():
        for r in rows:
            lines.append(f"| {model} | {r['model']} | {r['onnx_mb']:.2f} | {r['ort_ms_b1']:.2f} | "
                         f"{r['ort_ms_b8']:.2f} | {r['params'] / 1e6:.3f}M | {r['macs'] / 1e9:.3f} | "
                         f"{100 * r['accuracy']:.1f}% |")
    return "\n".join(lines)


def ratios(rows: list[dict[str, Any]]) -> dict[str, float]:
    original, pruned = rows[:2]
    return {
        "params_reduction": original["params"] / pruned["params"],
        "speedup_b1": original["ort_ms_b1"] / pruned["ort_ms_b1"],
        "speedup_b8": original["ort_ms_b8"] / pruned["ort_ms_b8"],
        "accuracy_drop_points": 100 * (original["accuracy"] - pruned["accuracy"]),
    }


def c3d_targets(figures: dict[str, float]) -> list[str]:
    checks = [
        ("parameters >= 3x fewer", figures["params_reduction"] >= 3.0, f"{figures['params_reduction']:.2f}x"),
        ("accuracy within 1 point", figures["accuracy_drop_points"] <= 1.0,
         f"{figures['accuracy_drop_points']:+.1f} points"),
        ("ORT latency >= 3x lower at batch 1", figures["speedup_b1"] >= 3.0, f"{figures['speedup_b1']:.2f}x"),
        ("ORT latency >= 3x lower at batch 8", figures["speedup_b8"] >= 3.0, f"{figures['speedup_b8']:.2f}x"),
    ]
    return [f"- C3D {name}: {value} ({'met' if ok else 'NOT met'})" for name, ok, value in checks]


def variants(results: dict[str, Any]) -> dict[str, list[str]]:
    """Runs grouped by model and distillation, over seeds: 'c3d' -> ['c3d seed 0', 'c3d seed 1', ...]."""
    grouped: dict[str, list[str]] = {}
    for run in results:
        model, _, rest = run.partition(" seed ")
        distill = rest.partition(" ")[2]
        grouped.setdefault(f"{model} {distill}".strip(), []).append(run)
    return grouped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", choices=("c3d", "slowfast"), default=["c3d", "slowfast"])
    parser.add_argument("--out", type=Path, help="keep each run's data, weights and ONNX files under OUT/MODEL")
    parser.add_argument("--json", type=Path, help="also write the tables and ratios here")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="training seeds, one run each")
    parser.add_argument("--distill", type=float, default=0.0,
                        help="also run every seed with distillation from the unpruned model at this weight")
    parser.add_argument("extra", nargs="*", help="arguments for examples/video_ucf101.py (after --)")
    args = parser.parse_args(argv)

    results, seconds = {}, {}
    for model in args.models:
        for seed in args.seeds:
            for distill in [0.0] + ([args.distill] if args.distill else []):
                run = f"{model} seed {seed}" + (f" distill {distill}" if distill else "")
                print(f"== {run}", file=sys.stderr)
                extra = [*args.extra, "--seed", str(seed)] + (["--distill", str(distill)] if distill else [])
                results[run], seconds[run] = run_example(run, extra, args.out)
    print(table(results))
    print()
    for run, rows in results.items():
        figures = ratios(rows)
        print(f"- {run}: {figures['params_reduction']:.2f}x fewer parameters, ORT {figures['speedup_b1']:.2f}x "
              f"(b1) / {figures['speedup_b8']:.2f}x (b8) faster, accuracy {figures['accuracy_drop_points']:+.1f} "
              f"points lower; run took {seconds[run]:.0f} s")
    for variant, runs in variants(results).items():
        drops = [ratios(results[run])["accuracy_drop_points"] for run in runs]
        spread = f" ± {statistics.stdev(drops):.1f}" if len(drops) > 1 else ""
        print(f"\n{variant}: accuracy drop {statistics.mean(drops):+.1f}{spread} points over {len(drops)} seeds")
        if variant.startswith("c3d"):
            mean = {key: statistics.mean(ratios(results[run])[key] for run in runs) for key in ratios(results[runs[0]])}
            print("\n".join(c3d_targets(mean)))
    if args.json:
        args.json.write_text(json.dumps({m: {"rows": r, "ratios": ratios(r), "seconds": seconds[m]}
                                         for m, r in results.items()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
