"""Prune a video network for deployment, end to end, on a UCF101-layout dataset.

train (or load) -> sensitivity -> prune (Taylor or L1) -> fine-tune -> export ONNX -> benchmark,
ending with a before/after table: ONNX size, ONNX Runtime latency at batch 1 and 8,
parameters, MACs and accuracy.

Without ``--data`` it writes a synthetic dataset of encoded videos (moving shapes whose
class is the direction of motion) and trains on it, so it runs anywhere in minutes:

    python examples/video_ucf101.py --quick                # CI-sized, about a minute
    python examples/video_ucf101.py --model slowfast       # the two-pathway network
    python examples/video_ucf101.py --data /data/UCF101 --split-dir /data/ucfTrainTestlist
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import fxprune
from fxprune.data import UCF101, SlowFastClips, write_synthetic_ucf101
from fxprune.drivers.sensitivity import sensitivity
from fxprune.export import benchmark
from fxprune.export.session import flat_tensors, make_session, run_session
from fxprune.models import c3d, slowfast
from fxprune.train import evaluate, fine_tune, make_loader


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="UCF101 root (one folder per class); synthetic when omitted")
    parser.add_argument("--split-dir", type=Path, help="folder with trainlist01.txt/testlist01.txt (default: --data)")
    parser.add_argument("--model", choices=("c3d", "slowfast"), default="c3d")
    parser.add_argument("--weights", type=Path, help="state dict to start from instead of training a baseline")
    parser.add_argument("--importance", choices=("taylor", "l1"), default="taylor")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--target-macs", type=float, default=0.2,
                        help="keep this fraction of the MACs (default 0.2 = 5x fewer)")
    budget.add_argument("--target-params", type=float, help="keep this fraction of the parameters instead")
    parser.add_argument("--round-to", type=int,
                        help="keep channel counts multiples of this (vector-friendly widths; 1 = off); "
                             "default 8, or 1 with --quick whose layers are only a few channels wide")
    parser.add_argument("--videos-per-class", type=int, default=32, help="synthetic training videos per class")
    parser.add_argument("--test-videos-per-class", type=int, default=50,
                        help="synthetic test videos per class (50: 200 test clips over the 4 classes)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the network's initialisation and training")
    parser.add_argument("--distill", type=float, default=0.0,
                        help="fine-tune the pruned network on the original's logits too, with this weight (KD)")
    parser.add_argument("--int8", action="store_true",
                        help="add a row for the pruned model quantized to static INT8 (ONNX Runtime, QDQ), "
                             "calibrated on 4 training batches, with its accuracy")
    parser.add_argument("--epochs", type=int, default=30, help="baseline training epochs")
    parser.add_argument("--finetune-epochs", type=int, default=10)
    parser.add_argument("--size", type=int, default=64, help="frame size fed to the network")
    parser.add_argument("--runs", type=int, default=20, help="timed ONNX Runtime runs per model")
    parser.add_argument("--threads", type=int, help="ONNX Runtime threads (default: all cores)")
    parser.add_argument("--ort-spinning", action="store_true",
                        help="let ONNX Runtime's idle threads spin (its default; off here because spinning "
                             "threads fight the caller on small or shared machines)")
    parser.add_argument("--workers", type=int, default=0,
                        help="DataLoader processes decoding video (use several on a real UCF101)")
    parser.add_argument("--quick", action="store_true", help="tiny data, network and epochs (for CI)")
    parser.add_argument("--out", type=Path, help="where to write the dataset, weights, plots and ONNX files")
    parser.add_argument("--json", action="store_true", help="print the final table as JSON")
    args = parser.parse_args(argv)
    if args.round_to is None:
        args.round_to = 1 if args.quick else 8
    if args.quick:
        args.epochs, args.finetune_epochs, args.size, args.runs, args.videos_per_class = 3, 1, 32, 3, 6
        args.test_videos_per_class = 2
    return args


def build_model(args: argparse.Namespace, classes: int) -> nn.Module:
    if args.model == "c3d":
        return c3d(num_classes=classes, clip_length=16, input_size=args.size, width=0.125 if args.quick else 0.25)
    return slowfast(num_classes=classes, alpha=4, base_width=8 if args.quick else 64, depth=(1, 1) if args.quick
                    else (1, 1, 1))


def datasets(args: argparse.Namespace, root: Path) -> tuple[Any, Any]:
    if args.data is None:
        write_synthetic_ucf101(root, classes=4, videos_per_class=args.videos_per_class, frames=24,
                               size=max(48, args.size), seed=0, test_videos_per_class=args.test_videos_per_class)
    data_root = root if args.data is None else args.data
    common = {"clip_length": 16, "size": args.size, "splits_dir": args.split_dir, "progress": not args.quick}
    train = UCF101(data_root, split="train", sampling="random", **common)
    test = UCF101(data_root, split="test", sampling="uniform", **common)
    if args.model == "slowfast":
        train, test = SlowFastClips(train, alpha=4), SlowFastClips(test, alpha=4)
    return train, test


def calibration(loader: Any, batches: int) -> list[tuple[Any, torch.Tensor]]:
    taken = []
    for clips, labels in loader:
        taken.append(((clips,), labels))
        if len(taken) == batches:
            break
    return taken


def train(model: nn.Module, loader: Any, epochs: int, lr: float, quick: bool, teacher: nn.Module | None = None,
          distill: float = 0.5) -> None:
    """AdamW with one epoch of warm-up and cosine decay: C3D has no BatchNorm, and with
    plain SGD at a constant rate it sits at chance on this small dataset. The baseline's
    rate is 3e-4: at 1e-3 some seeds (seed 0 of the 32-per-class training split among
    them) never leave chance."""
    fine_tune(model, loader, epochs=epochs, lr=lr, optimizer="adamw", weight_decay=0.01, schedule="cosine",
              warmup=len(loader), progress=not quick, teacher=teacher, distill=distill)
    model.eval()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    out = args.out or Path(tempfile.mkdtemp(prefix="fxprune-video-"))
    out.mkdir(parents=True, exist_ok=True)
    train_set, test_set = datasets(args, out / "data")
    classes = len(train_set.classes) if hasattr(train_set, "classes") else train_set.dataset.num_classes
    train_loader = make_loader(train_set, batch_size=8, shuffle=True, num_workers=args.workers)
    test_loader = make_loader(test_set, batch_size=8, num_workers=args.workers)
    model = build_model(args, classes)
    if args.weights:
        model.load_state_dict(torch.load(args.weights, weights_only=True, map_location="cpu"))
    else:
        print(f"training the baseline {args.model} for {args.epochs} epochs", file=sys.stderr)
        train(model, train_loader, args.epochs, lr=3e-4, quick=args.quick)
        torch.save(model.state_dict(), out / f"{args.model}_baseline.pt")
    model.eval()
    example = next(iter(test_loader))[0]
    example = ([t[:1] for t in example],) if isinstance(example, list) else (example[:1],)
    accuracy = evaluate(model, test_loader)

    report = sensitivity(model, example, lambda m: evaluate(m, test_loader), ratios=(0.25, 0.5, 0.75),
                         progress=not args.quick)
    report.to_csv(out / "sensitivity.csv")
    report.plot(out / "sensitivity.png")

    importance = (fxprune.Taylor(calibration(train_loader, 4), F.cross_entropy)
                  if args.importance == "taylor" else "l1")
    budget = {"target_params": args.target_params} if args.target_params else {"target_macs": args.target_macs}
    result = fxprune.compile(model, example_inputs=example, importance=importance, round_to=args.round_to, **budget)
    print(result.summary(), file=sys.stderr)
    pruned = result.module
    pruned_before_tuning = evaluate(pruned, test_loader)
    print(f"fine-tuning the pruned {args.model} for {args.finetune_epochs} epochs"
          + (f", distilling from the original (weight {args.distill})" if args.distill else ""), file=sys.stderr)
    train(pruned, train_loader, args.finetune_epochs, lr=3e-4, quick=args.quick,
          teacher=model if args.distill else None, distill=args.distill or 0.5)
    pruned_accuracy = evaluate(pruned, test_loader)
    fxprune.save(result, out / f"{args.model}_pruned.pt2", example_inputs=example)

    spinning = {} if args.ort_spinning else {"session.intra_op.allow_spinning": "0"}
    calibration_batches = [inputs for inputs, _ in calibration(train_loader, 4)] if args.int8 else None
    table = benchmark({"original": model, "pruned": pruned}, example, runs=args.runs, warmup=3,
                      batch_sizes=(1, 8), workdir=out, eager=False, progress=not args.quick,
                      threads=args.threads, session_config=spinning, int8=calibration_batches)
    accuracies = {"original": accuracy, "pruned": pruned_accuracy}
    if args.int8:
        accuracies["pruned int8"] = int8_accuracy(out / "1_pruned.int8.onnx", test_loader)
    rows = summary_rows(table, accuracies, result)
    settings = (f"ONNX Runtime CPU, {args.threads or os.cpu_count()} threads, spinning "
                f"{'on' if args.ort_spinning else 'off'}, median of {args.runs} runs")
    print(json.dumps(rows, indent=2) if args.json else render(rows, pruned_before_tuning, settings, out))
    return 0


def int8_accuracy(path: Path, loader: Any) -> float:
    """Top-1 accuracy of an ONNX file (the INT8 model the benchmark wrote) in ONNX Runtime."""
    session = make_session(path, threads=None)
    right = total = 0
    for clips, labels in loader:
        logits = run_session(session, flat_tensors((clips,)))[0]
        right += int((torch.from_numpy(logits).argmax(1) == labels).sum())
        total += labels.numel()
    return right / total


def summary_rows(table: Any, accuracy: dict[str, float], result: fxprune.CompileResult) -> list[dict[str, Any]]:
    rows = []
    for name in accuracy:
        mine = {r.batch_size: r for r in table.rows if r.name == name}
        figures = result.before if name == "original" else result.after
        rows.append({"model": name, "onnx_mb": mine[1].onnx_bytes / 2**20, "ort_ms_b1": mine[1].ort_median_ms,
                     "ort_ms_b8": mine[8].ort_median_ms, "params": figures.params, "macs": figures.macs,
                     "accuracy": accuracy[name]})
    return rows


def render(rows: list[dict[str, Any]], before_tuning: float, settings: str, out: Path) -> str:
    lines = ["| model | ONNX MB | ORT ms (b1) | ORT ms (b8) | params | GMACs | accuracy |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['onnx_mb']:.2f} | {r['ort_ms_b1']:.2f} | {r['ort_ms_b8']:.2f} | "
                     f"{r['params'] / 1e6:.2f}M | {r['macs'] / 1e9:.3f} | {100 * r['accuracy']:.1f}% |")
    first, second = rows[:2]
    speedup_b1, speedup_b8 = first["ort_ms_b1"] / second["ort_ms_b1"], first["ort_ms_b8"] / second["ort_ms_b8"]
    lines.append(f"\nparams {first['params'] / second['params']:.2f}x fewer, ORT speed-up {speedup_b1:.2f}x (b1) "
                 f"{speedup_b8:.2f}x (b8); accuracy {100 * before_tuning:.1f}% right after pruning\n"
                 f"{settings}; files in {out}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
