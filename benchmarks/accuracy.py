"""Accuracy benchmark: pruning criteria at half the MACs, with and without a short fine-tune.

Task: scikit-learn's bundled *digits* data set (1797 greyscale 8x8 digits, no download),
used at 8x8 (``--size 16`` upsamples), split 1297 train / 500 test with a fixed seed. Model: a small
residual CNN (conv-bn-relu x3 with a residual block, global pooling, linear head)
trained from a fixed seed on CPU in well under a minute.

Each criterion prunes the trained baseline to ``--target`` of its MACs
(``fxprune.compile(target_macs=...)``) and reports test accuracy right after pruning,
after bias compensation (``compensate_bias``, no training), and after ``--finetune``
epochs of SGD (mean over ``--finetune-seeds`` data orders). Random pruning is averaged
over ``--random-seeds`` seeds. Distillation: L1 pruning at the same budget fine-tuned by
``fxprune.train.fine_tune`` with and without the unpruned model as teacher (``--distill``,
``--temperature``), same batches and seeds, over ``--distill-seeds`` seeds (mean, spread). When
``torch_pruning`` is importable, its ``MagnitudeImportance`` pruned to the same MACs
(bisection on its ``pruning_ratio``, MACs counted by fxprune for both) is reported too.

Run (needs ``pip install scikit-learn``, the ``benchmark`` extra)::

    python3 benchmarks/accuracy.py
    python3 benchmarks/accuracy.py --target 0.25 --finetune 3
    python3 benchmarks/accuracy.py --target 0.25 --only-distill --distill-seeds 5
"""

from __future__ import annotations

import argparse
import copy
import functools
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import fxprune  # noqa: E402
from fxprune.drivers.compensate import compensate_bias  # noqa: E402
from fxprune.passes.importance import random_scores  # noqa: E402
from fxprune.progress import progress  # noqa: E402
from fxprune.train import fine_tune  # noqa: E402

Data = tuple[torch.Tensor, torch.Tensor]


class DigitsNet(nn.Module):
    """conv-bn-relu stem, a residual block of two conv-bn, a strided conv-bn-relu, a linear head."""

    def __init__(self, width: int = 32, classes: int = 10) -> None:
        super().__init__()
        self.stem, self.bn0 = nn.Conv2d(1, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)
        self.conv1, self.bn1 = nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)
        self.down, self.bn3 = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(2 * width)
        self.fc = nn.Linear(2 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn0(self.stem(x)))
        x = F.relu(x + self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))
        x = F.relu(self.bn3(self.down(x)))
        return self.fc(x.mean((2, 3)))


def load_digits(seed: int, size: int) -> tuple[Data, Data]:
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError:
        sys.exit("this benchmark needs scikit-learn: pip install 'fxprune[benchmark]' (or scikit-learn)")
    digits = sklearn_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    if size != 8:
        images = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
    images = (images - images.mean()) / images.std()
    labels = torch.tensor(digits.target, dtype=torch.long)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    test, train = order[:500], order[500:]
    return (images[train], labels[train]), (images[test], labels[test])


def batches(data: Data, size: int, seed: int | None) -> list[Data]:
    x, y = data
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed)) if seed is not None \
        else torch.arange(len(y))
    return [(x[order[i:i + size]], y[order[i:i + size]]) for i in range(0, len(y), size)]


def train(model: nn.Module, data: Data, epochs: int, lr: float, seed: int) -> nn.Module:
    """SGD with momentum and a cosine schedule, in place; a fresh optimizer every call."""
    torch.manual_seed(seed)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    total = epochs * len(batches(data, 64, None))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, total)
    for epoch in range(epochs):
        for x, y in batches(data, 64, seed * 1000 + epoch):
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
            scheduler.step()
    return model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, data: Data) -> float:
    model.eval()
    x, y = data
    return float((model(x).argmax(1) == y).float().mean())


def evaluate_pruned(module: nn.Module, result: fxprune.CompileResult | None, train_data: Data, test_data: Data,
                    args: argparse.Namespace) -> dict[str, float]:
    row = {"pruned": accuracy(module, test_data)}
    if result is not None:
        row["compensated"] = accuracy(compensate_bias(result, calibration=batches(train_data, 256, 0)), test_data)
    row["fine-tuned"] = statistics.mean(
        accuracy(train(copy.deepcopy(module), train_data, args.finetune, args.finetune_lr, seed), test_data)
        for seed in range(1, args.finetune_seeds + 1))
    return row


def fxprune_rows(model: nn.Module, train_data: Data, test_data: Data, args: argparse.Namespace,
                 bar: Any) -> dict[str, dict[str, float]]:
    example = (train_data[0][:1],)
    calibration = batches(train_data, 64, 7)[:args.taylor_batches]
    criteria: dict[str, list[Callable | str | fxprune.Taylor]] = {
        "random": [functools.partial(random_scores, seed=s) for s in range(args.random_seeds)],
        "l1": ["l1"], "l2": ["l2"], "bn_scale": ["bn_scale"],
        "taylor": [fxprune.Taylor(calibration, F.cross_entropy)],
    }
    rows = {}
    for name, importances in criteria.items():
        runs = []
        for importance in importances:
            result = fxprune.compile(model, example_inputs=example, importance=importance, target_macs=args.target)
            runs.append({**evaluate_pruned(result.module, result, train_data, test_data, args),
                         "MACs": result.after.macs / result.before.macs})
            bar.update()
        rows[name] = {key: statistics.mean(run[key] for run in runs) for key in runs[0]}
        if len(runs) > 1:
            rows[name]["pruned sd"] = statistics.stdev(run["pruned"] for run in runs)
            rows[name]["fine-tuned sd"] = statistics.stdev(run["fine-tuned"] for run in runs)
    return rows


def torch_pruning_row(model: nn.Module, example: torch.Tensor, target: float, p: int) -> tuple[nn.Module, float]:
    """Torch-Pruning's MagnitudePruner at the ratio whose MACs (counted by fxprune) meet ``target``."""
    import torch_pruning as tp

    def pruned(ratio: float) -> nn.Module:
        copy_ = copy.deepcopy(model)
        tp.pruner.MetaPruner(copy_, example, importance=tp.importance.MagnitudeImportance(p=p),
                             pruning_ratio=ratio, ignored_layers=[copy_.fc]).step()
        return copy_

    base = fxprune.analyze(model, (example,)).before.macs
    low, high, best = 0.0, 0.95, pruned(0.95)
    for _ in range(12):
        middle = (low + high) / 2
        candidate = pruned(middle)
        if fxprune.analyze(candidate, (example,)).before.macs <= target * base:
            high, best = middle, candidate
        else:
            low = middle
    return best, fxprune.analyze(best, (example,)).before.macs / base


def distillation_rows(model: nn.Module, train_data: Data, test_data: Data,
                      args: argparse.Namespace) -> dict[str, list[float]]:
    """L1 pruning to the target MACs, fine-tuned with ``fxprune.train.fine_tune`` with and without the
    unpruned model as teacher: the same epochs, batches, schedule and seeds for both arms."""
    result = fxprune.compile(model, example_inputs=(train_data[0][:1],), importance="l1", target_macs=args.target)
    arms: dict[str, list[float]] = {"cross-entropy only": [], f"distill {args.distill} (T={args.temperature})": []}
    for seed in range(1, args.distill_seeds + 1):
        epochs = [batch for epoch in range(args.finetune) for batch in batches(train_data, 64, seed * 1000 + epoch)]
        for name, weight in zip(arms, (0.0, args.distill), strict=True):
            student = copy.deepcopy(result.module)
            torch.manual_seed(seed)
            fine_tune(student, epochs, lr=args.finetune_lr, momentum=0.9, weight_decay=5e-4, schedule="cosine",
                      progress=False, teacher=model if weight else None, distill=weight or 0.5,
                      temperature=args.temperature)
            arms[name].append(accuracy(student, test_data))
    return arms


def distillation_table(arms: dict[str, list[float]], args: argparse.Namespace) -> str:
    lines = [f"\ndistillation: L1 pruning to {args.target}x MACs, {args.finetune} fine-tune epochs "
             f"(fxprune.train.fine_tune, SGD lr {args.finetune_lr}, cosine), {args.distill_seeds} seeds",
             "", "| fine-tune | mean | sd | min | max | per seed |", "|---|---|---|---|---|---|"]
    for name, values in arms.items():
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        lines.append(f"| {name} | {statistics.mean(values):.4f} | {spread:.4f} | {min(values):.4f} | "
                     f"{max(values):.4f} | {', '.join(f'{v:.4f}' for v in values)} |")
    return "\n".join(lines)


def table(baseline: float, rows: dict[str, dict[str, float]], args: argparse.Namespace) -> str:
    lines = [f"baseline test accuracy {baseline:.4f} (500 test digits); target MACs {args.target}x; "
             f"fine-tune {args.finetune} epochs at lr {args.finetune_lr} (mean of {args.finetune_seeds} runs)",
             f"images {args.size}x{args.size}, baseline {args.epochs} epochs, seed {args.seed}",
             "",
             "| criterion | MACs | pruned | + bias compensation | fine-tuned |",
             "|---|---|---|---|---|"]
    for name, row in rows.items():
        spread = (f" ± {row['pruned sd']:.4f}", f" ± {row['fine-tuned sd']:.4f}") if "pruned sd" in row else ("", "")
        compensated = f"{row['compensated']:.4f}" if "compensated" in row else "n/a"
        lines.append(f"| {name} | {row['MACs']:.3f}x | {row['pruned']:.4f}{spread[0]} | {compensated} | "
                     f"{row['fine-tuned']:.4f}{spread[1]} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", type=float, default=0.5, help="MACs to keep, as a fraction of the baseline")
    parser.add_argument("--epochs", type=int, default=15, help="baseline training epochs")
    parser.add_argument("--finetune", type=int, default=2, help="fine-tune epochs after pruning")
    parser.add_argument("--finetune-lr", type=float, default=0.01)
    parser.add_argument("--finetune-seeds", type=int, default=3, help="fine-tunes averaged per pruned model")
    parser.add_argument("--random-seeds", type=int, default=5)
    parser.add_argument("--size", type=int, default=8, help="image side (8: native digits)")
    parser.add_argument("--taylor-batches", type=int, default=8, help="64-image batches for Taylor scores")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--distill", type=float, default=0.5, help="distillation weight of the teacher arm")
    parser.add_argument("--temperature", type=float, default=4.0, help="distillation temperature")
    parser.add_argument("--distill-seeds", type=int, default=5, help="seeds of the distillation comparison (0: skip)")
    parser.add_argument("--only-distill", action="store_true", help="skip the criteria table")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (1 is faster on a loaded machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    started = time.perf_counter()
    train_data, test_data = load_digits(args.seed, args.size)
    torch.manual_seed(args.seed)
    model = train(DigitsNet(), train_data, args.epochs, 0.05, args.seed)
    baseline = accuracy(model, test_data)
    print(f"baseline trained in {time.perf_counter() - started:.1f} s: test accuracy {baseline:.4f}", flush=True)

    if args.distill_seeds:
        print(distillation_table(distillation_rows(model, train_data, test_data, args), args), flush=True)
    if args.only_distill:
        return
    try:
        import torch_pruning  # noqa: F401
        has_tp = True
    except ImportError:
        has_tp = False
    with progress(total=args.random_seeds + 4 + 2 * has_tp, desc="criteria", unit="run") as bar:
        rows = fxprune_rows(model, train_data, test_data, args, bar)
        for p in (1, 2) if has_tp else ():
            module, macs = torch_pruning_row(model, train_data[0][:1], args.target, p)
            rows[f"torch_pruning Magnitude(p={p})"] = {
                **evaluate_pruned(module, None, train_data, test_data, args), "MACs": macs}
            bar.update()
    print(table(baseline, rows, args))
    print(f"total {time.perf_counter() - started:.1f} s, torch {torch.__version__}, {args.threads} threads")


if __name__ == "__main__":
    main()
