"""Latency budgets measured in ONNX Runtime: fxprune's latency plans next to MACs plans and Torch-Pruning.

For each model and each budget (a fraction of the original's measured ORT median):

- **latency plan**: ``fxprune.compile(target_latency=f)``: planned against the measured
  layer latency model, corrected by measuring whole pruned models;
- **MACs plan**: ``fxprune.compile(target_macs=m)`` with ``m`` bisected (measuring each
  candidate) to the largest MACs whose measured latency is within the latency plan's
  measured latency: the same speed, so the importance kept compares the two planners;
- **Torch-Pruning** (when ``torch_pruning`` is importable): ``MetaPruner`` with L1
  ``MagnitudeImportance`` at the ratio whose MACs (counted by fxprune) meet the latency
  plan's MACs, measured in ORT in the same run.

Each planner measures as it plans (its own figures are in the "planner" column); then
the original and every plan are timed again in one interleaved ``fxprune.export.benchmark``
run (run 1 of each, run 2 of each, ...), so that a busy machine's load hits all of them
alike, and the table's ORT medians, budgets (fraction x the original's median in that run),
speed-ups and ``efficiency = speed-up / MACs reduction`` come from it. Batch 1,
``--threads`` threads, spinning off.
``importance kept`` is the L1 importance (each channel's score over its group's mean)
of the kept channels, over all prunable groups.

Run (Torch-Pruning lives in the clients venv)::

    PYTHONPATH=. /work/venv-clients/bin/python benchmarks/latency.py
    PYTHONPATH=. python benchmarks/latency.py --models resnet50 --budgets 0.5 --size 160
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision
from torch import nn

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import fxprune  # noqa: E402
from fxprune.export import LatencySettings, OrtLatency, benchmark  # noqa: E402
from fxprune.models import c3d  # noqa: E402
from fxprune.passes.importance import score_groups  # noqa: E402


def build(name: str, args: argparse.Namespace) -> tuple[nn.Module, tuple[torch.Tensor]]:
    """The model (random weights, eval mode) and one input at the benchmark's size."""
    torch.manual_seed(0)
    if name == "c3d":
        model = c3d(num_classes=101, clip_length=args.c3d_frames, input_size=args.video_size, width=args.c3d_width)
        shape = (1, 3, args.c3d_frames, args.video_size, args.video_size)
    elif name == "r2plus1d_18":
        model = torchvision.models.video.r2plus1d_18()
        shape = (1, 3, args.frames, args.video_size, args.video_size)
    else:
        model = getattr(torchvision.models, name)()
        shape = (1, 3, args.size, args.size)
    return model.eval(), (torch.randn(*shape),)


def kept_importance(analysis: fxprune.Analysis, scores: dict[int, np.ndarray], plan: fxprune.Plan) -> float:
    """Normalised L1 importance of the kept channels over that of all prunable channels."""
    entries = {e.group: e for e in plan.entries}
    total = kept = 0.0
    for group in analysis.groups.prunable:
        normalised = scores[group.index] / (np.abs(scores[group.index]).mean() + 1e-12)
        total += float(normalised.sum())
        entry = entries.get(group.index)
        kept += float(normalised[list(entry.keep)].sum()) if entry else float(normalised.sum())
    return kept / total


def macs_plan_at(model: nn.Module, x: tuple, limit_ms: float, latency: OrtLatency, floor: float,
                 steps: int) -> tuple[fxprune.CompileResult, float, float]:
    """The largest target_macs whose measured latency is within ``limit_ms`` (bisection on [floor, 1))."""
    low, high, best = floor, 0.999, None
    for _ in range(steps):
        middle = (low + high) / 2
        result = fxprune.compile(model, example_inputs=x, target_macs=middle)
        ms = latency.model_ms(result.module, x)
        if ms <= limit_ms:
            low, best = middle, (result, ms, middle)
        else:
            high = middle
    if best is None:
        result = fxprune.compile(model, example_inputs=x, target_macs=floor)
        best = (result, latency.model_ms(result.module, x), floor)
    return best


def torch_pruning_at(model: nn.Module, x: tuple, macs: int, steps: int = 6) -> nn.Module | None:
    """Torch-Pruning's L1 MetaPruner at the ratio whose MACs (fxprune's count) meet ``macs``."""
    try:
        import torch_pruning as tp
    except ImportError:
        return None
    head = [m for m in model.modules() if isinstance(m, nn.Linear)][-1:]

    def pruned(ratio: float) -> nn.Module:
        candidate = copy.deepcopy(model)
        tp.pruner.MetaPruner(candidate, x[0], importance=tp.importance.MagnitudeImportance(p=1),
                             pruning_ratio=ratio, ignored_layers=head).step()
        return candidate

    low, high, best = 0.0, 0.95, None
    for _ in range(steps):
        middle = (low + high) / 2
        candidate = pruned(middle)
        if fxprune.analyze(candidate, x).before.macs <= macs:
            high, best = middle, candidate
        else:
            low = middle
    return best


def bench(name: str, args: argparse.Namespace, settings: LatencySettings) -> list[dict[str, Any]]:
    model, x = build(name, args)
    latency = OrtLatency(settings)
    analysis = fxprune.analyze(model, x)
    scores = score_groups(analysis.groups, analysis.traced)
    rows = []
    for fraction in args.budgets:
        started = time.perf_counter()
        result = fxprune.compile(model, example_inputs=x, target_latency=fraction, latency=latency)
        out = result.latency
        plans = {"latency plan": (result.module, {
            "own_ms": out.measured_ms, "own_budget_ms": out.budget_ms, "predicted_ms": out.predicted_ms,
            "importance": kept_importance(analysis, scores, result.plan), "measured models": out.measurements,
            "seconds": time.perf_counter() - started})}
        started = time.perf_counter()
        macs_result, ms, target = macs_plan_at(model, x, out.measured_ms, latency, args.macs_floor, args.macs_steps)
        plans[f"MACs plan ({target:.3f}x)"] = (macs_result.module, {
            "own_ms": ms, "importance": kept_importance(analysis, scores, macs_result.plan),
            "measured models": args.macs_steps, "seconds": time.perf_counter() - started})
        if args.torch_pruning:
            started = time.perf_counter()
            try:
                tp_model = torch_pruning_at(model, x, fxprune.analyze(result.module, x).before.macs)
            except Exception as error:  # noqa: BLE001 - a third-party pruner failing on a model is a result to report
                print(f"  Torch-Pruning failed on {name}: {type(error).__name__}: {error}", file=sys.stderr)
                tp_model = None
            if tp_model is not None:
                plans["Torch-Pruning L1 (same MACs)"] = (tp_model, {"seconds": time.perf_counter() - started})
        rows += side_by_side(name, fraction, model, x, plans, args)
        for r in rows[-len(plans):]:
            print(f"  {name} {fraction}x {r['plan']}: {r['ms']:.2f} ms side by side (budget {r['budget_ms']:.2f}), "
                  f"efficiency {r['efficiency']:.2f}", file=sys.stderr, flush=True)
    print(f"  {name}: layer measurements {latency.layers_measured}, whole models {latency.models_measured}",
          file=sys.stderr)
    return rows


def side_by_side(name: str, fraction: float, model: nn.Module, x: tuple, plans: dict[str, tuple[nn.Module, dict]],
                 args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every plan and the original timed in one interleaved ORT benchmark: a busy machine's load hits all alike."""
    report = benchmark({"original": model, **{label: module for label, (module, _) in plans.items()}}, x,
                       runs=args.runs * 2, warmup=3, threads=args.threads, eager=False, progress=False,
                       session_config={"session.intra_op.allow_spinning": "0"})
    original = report.rows[0]
    budget = fraction * original.ort_median_ms
    return [{"model": name, "budget": fraction, "budget_ms": budget, "plan": r.name, "ms": r.ort_median_ms,
             "within": r.ort_median_ms <= budget, "over %": 100 * (r.ort_median_ms / budget - 1), "macs": r.macs,
             "speedup": r.speedup, "macs_reduction": r.macs_reduction, "efficiency": r.efficiency,
             **plans[r.name][1]} for r in report.rows[1:]]


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| model | budget | plan | ORT ms | budget ms | within | speed-up | MACs reduction | efficiency | "
             "importance kept | planner: predicted / measured / budget ms | models measured | s |",
             "|" + "---|" * 13]
    for r in rows:
        importance = f"{r['importance']:.3f}" if "importance" in r else "n/a"
        own = (f"{r['predicted_ms']:.2f} / {r['own_ms']:.2f} / {r['own_budget_ms']:.2f}" if "predicted_ms" in r
               else f"- / {r['own_ms']:.2f} / -" if "own_ms" in r else "-")
        within = "yes" if r["within"] else f"no ({r['over %']:+.1f}%)"
        lines.append(f"| {r['model']} | {r['budget']}x | {r['plan']} | {r['ms']:.2f} | {r['budget_ms']:.2f} | "
                     f"{within} | {r['speedup']:.2f}x | {r['macs_reduction']:.2f}x | {r['efficiency']:.2f} | "
                     f"{importance} | {own} | {r.get('measured models', '-')} | {r['seconds']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["resnet50", "mobilenet_v3_large", "r2plus1d_18", "c3d"])
    parser.add_argument("--budgets", nargs="+", type=float, default=[0.5, 0.3])
    parser.add_argument("--size", type=int, default=224, help="image side for the 2D models")
    parser.add_argument("--video-size", type=int, default=112, help="frame side for the video models")
    parser.add_argument("--frames", type=int, default=16, help="clip length for the video models")
    parser.add_argument("--c3d-frames", type=int, default=16, help="C3D clip length (16: its pooling needs it)")
    parser.add_argument("--c3d-width", type=float, default=1.0, help="C3D width multiplier")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=20, help="timed runs per whole-model measurement")
    parser.add_argument("--macs-steps", type=int, default=5, help="measured bisection steps of the MACs plan")
    parser.add_argument("--macs-floor", type=float, default=0.05)
    parser.add_argument("--no-torch-pruning", dest="torch_pruning", action="store_false")
    parser.add_argument("--cache", type=Path, help="latency cache folder (default: fxprune's)")
    args = parser.parse_args(argv)
    settings = LatencySettings(threads=args.threads, batch=1, runs=args.runs, warmup=3, cache_dir=args.cache,
                               session_config={"session.intra_op.allow_spinning": "0"})
    started = time.perf_counter()
    rows = []
    for name in args.models:
        print(f"== {name}", file=sys.stderr, flush=True)
        rows += bench(name, args, settings)
        print(table(rows), file=sys.stderr, flush=True)  # so far: a long sweep that stops keeps what it measured
    print(table(rows))
    print(f"\n{settings.describe()}; images {args.size}px, clips {args.frames}x{args.video_size}px; torch "
          f"{torch.__version__}; {time.perf_counter() - started:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
