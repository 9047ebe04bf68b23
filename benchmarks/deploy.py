"""Deployment benchmark: ONNX Runtime CPU latency of original vs pruned models.

For each model and each (ratio, round_to) it prunes with ``fxprune.compile``, exports
every variant with ``fxprune.export.to_onnx`` (checked against PyTorch) and times them
side by side with ``fxprune.export.benchmark`` (timed runs interleaved across variants,
so machine-load drift hits all alike). It prints, per model, ORT median/p90 latency, the
speed-up over the original, the MACs reduction and the efficiency (speed-up / MACs
reduction; 1.0 means the runtime delivers all the speed-up the MACs promise).

Inputs: 1x3x224x224 for 2D models, 1x3x16x112x112 for video models (``--image-size``,
``--clip`` to shrink them on a busy machine).

``--int8`` adds an INT8 row for every variant: its ONNX file quantized with ONNX Runtime's
static QDQ quantizer (per-channel weights, :func:`fxprune.export.quantize`), calibrated on
``--calibration-batches`` random batches of the input shape (random weights have no data to
calibrate on; a trained model should be calibrated on real batches), with its size, latency
and largest output difference from the float file ("INT8 max err").

On a machine shared with other jobs, ORT's spinning worker threads inflate latency and
skew the ratios: measure with ``--threads 1`` or
``--session-config session.intra_op.allow_spinning=0`` there (see fxprune.export.bench).

Example::

    python3 benchmarks/deploy.py --models resnet50 r2plus1d_18 --ratios 0.5
    python3 benchmarks/deploy.py --ratios 0.3 0.5 --round-to 1 8 16 --threads 4 --json deploy.json
    python3 benchmarks/deploy.py --models resnet50 --profile /tmp/ort-profiles   # per-op-type times
    python3 benchmarks/deploy.py --models resnet50 r2plus1d_18 c3d --ratios 0.5 --int8
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import fxprune  # noqa: E402
from fxprune.export import benchmark, to_onnx  # noqa: E402
from fxprune.export.session import flat_tensors, make_session, run_session  # noqa: E402
from fxprune.models import c3d  # noqa: E402

IMAGE_SHAPE = (1, 3, 224, 224)
CLIP_SHAPE = (1, 3, 16, 112, 112)


def _torchvision(name: str, video: bool = False) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import torchvision

        return getattr(torchvision.models.video if video else torchvision.models, name)(weights=None)

    return build


#: name -> (builder, example input shape)
MODELS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "resnet50": (_torchvision("resnet50"), IMAGE_SHAPE),
    "mobilenet_v2": (_torchvision("mobilenet_v2"), IMAGE_SHAPE),
    "r3d_18": (_torchvision("r3d_18", video=True), CLIP_SHAPE),
    "r2plus1d_18": (_torchvision("r2plus1d_18", video=True), CLIP_SHAPE),
    "c3d": (c3d, CLIP_SHAPE),
}


def variant_name(ratio: float, round_to: int | None) -> str:
    return f"pruned {ratio:g}" + (f" /{round_to}" if round_to and round_to > 1 else "")


def build_variants(name: str, args: argparse.Namespace) -> tuple[dict[str, nn.Module], tuple[torch.Tensor, ...]]:
    """The original model and one pruned variant per (ratio, round_to), with the example input."""
    build, shape = MODELS[name]
    shape = _shape(shape, args)
    torch.manual_seed(0)
    # C3D's classifier is sized for its clip: build it for the shape asked for.
    model = (c3d(clip_length=shape[2], input_size=shape[3]) if build is c3d else build()).eval()
    inputs = (torch.randn(*shape),)
    variants: dict[str, nn.Module] = {"original": model}
    for ratio in args.ratios:
        for round_to in args.round_to:
            result = fxprune.compile(model, ratio, example_inputs=inputs, round_to=round_to if round_to > 1 else None)
            variants[variant_name(ratio, round_to)] = result.module
    return variants, inputs


def _shape(shape: tuple[int, ...], args: argparse.Namespace) -> tuple[int, ...]:
    if len(shape) == 4:
        return (*shape[:2], args.image_size, args.image_size)
    frames, size = args.clip
    return (*shape[:2], frames, size, size)


def calibration(shape: tuple[int, ...], batches: int) -> list[tuple[torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    return [(torch.randn(*shape, generator=generator),) for _ in range(batches)]


def profile_ops(name: str, variants: dict[str, nn.Module], inputs: tuple[torch.Tensor, ...], folder: Path,
                threads: int | None, config: dict[str, str]) -> None:
    """Print the time ORT spends per operator type (its profiler, 25 runs) for each variant."""
    folder.mkdir(parents=True, exist_ok=True)
    totals: dict[str, dict[str, float]] = {}
    for label, module in variants.items():
        stem = f"{name}_{label.replace(' ', '_').replace('/', 'r')}"
        exported = to_onnx(module, inputs, folder / f"{stem}.onnx")
        session = make_session(exported.path, threads=threads, profile_prefix=str(folder / stem), config=config)
        flat = flat_tensors(inputs)
        for _ in range(25):
            run_session(session, flat)
        events = json.loads(Path(session.end_profiling()).read_text())
        per_op: dict[str, float] = defaultdict(float)
        for event in events:
            if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
                per_op[event["args"]["op_name"]] += event["dur"] / 1e3 / 25  # ms per run (incl. warm-up)
        totals[label] = per_op
    ops = sorted({op for per_op in totals.values() for op in per_op}, key=lambda op: -totals["original"].get(op, 0))
    print(f"\nORT per-op-type time, ms per run ({name}, 25 profiled runs, the first included):")
    print("| op | " + " | ".join(totals) + " | " + " | ".join(f"speed-up {label}" for label in list(totals)[1:]) + " |")
    print("|---|" + "---|" * (2 * len(totals) - 1))
    for op in ops:
        base = totals["original"].get(op, 0.0)
        times = [totals[label].get(op, 0.0) for label in totals]
        ratios = [f"{base / t:.2f}x" if t else "-" for t in times[1:]]
        print(f"| {op} | " + " | ".join(f"{t:.2f}" for t in times) + " | " + " | ".join(ratios) + " |")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=list(MODELS))
    parser.add_argument("--ratios", nargs="+", type=float, default=[0.3, 0.5], help="fractions of channels removed")
    parser.add_argument("--round-to", nargs="+", type=int, default=[1],
                        help="keep channel counts at multiples of these (1: no rounding), e.g. --round-to 1 8 16")
    parser.add_argument("--runs", type=int, default=50, help="timed runs per variant")
    parser.add_argument("--warmup", type=int, default=10, help="untimed runs per variant")
    parser.add_argument("--threads", type=int, default=None, help="ORT intra-op threads (default: os.cpu_count())")
    parser.add_argument("--eager", action="store_true", help="also time eager PyTorch")
    parser.add_argument("--session-config", nargs="*", default=[], metavar="KEY=VALUE",
                        help="extra ORT session entries, e.g. session.intra_op.allow_spinning=0")
    parser.add_argument("--int8", action="store_true", help="add a static INT8 (QDQ) row for every variant")
    parser.add_argument("--calibration-batches", type=int, default=8, help="random calibration batches for --int8")
    parser.add_argument("--image-size", type=int, default=224, help="side of the 2D models' input")
    parser.add_argument("--clip", nargs=2, type=int, default=[16, 112], metavar=("FRAMES", "SIZE"),
                        help="video models' clip length and frame side")
    parser.add_argument("--profile", default=None, metavar="DIR", help="also print ORT per-op-type times")
    parser.add_argument("--json", default=None, metavar="OUT", help="write all reports as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(f"torch {torch.__version__}, {args.threads or os.cpu_count()} threads, runs={args.runs}", flush=True)
    reports = {}
    config = dict(entry.split("=", 1) for entry in args.session_config)
    for name in args.models:
        variants, inputs = build_variants(name, args)
        int8 = calibration(tuple(inputs[0].shape), args.calibration_batches) if args.int8 else None
        reports[name] = benchmark(variants, inputs, runs=args.runs, warmup=args.warmup, threads=args.threads,
                                  eager=args.eager, session_config=config, int8=int8)
        print(f"\n## {name} {tuple(inputs[0].shape)}\n\n{reports[name].to_markdown()}", flush=True)
        if args.profile:
            profile_ops(name, variants, inputs, Path(args.profile), args.threads, config)
        if args.json:  # rewritten after every model, so a long sweep that stops keeps what it measured
            payload = {done: json.loads(report.to_json()) for done, report in reports.items()}
            Path(args.json).write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
