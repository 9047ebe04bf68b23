"""Compile-time scaling: is fxprune's cost linear in the size of the graph?

Builds residual nets of N blocks (conv-bn-relu-conv-bn plus the identity, then relu;
8 channels, 8x8 input, so compute is negligible and the compiler's own cost shows),
compiles each at ratio 0.5 and prints graph nodes, compile seconds, nodes per second
and the seconds-per-node ratio to the previous size. Linear cost means nodes/s stays
roughly constant and the ratio stays near 1.

Example::

    python3 benchmarks/scaling.py                          # 100, 300, 1000, 3000 blocks
    python3 benchmarks/scaling.py --blocks 100 1000 --profile 1000
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

import torch
from torch import nn

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import fxprune  # noqa: E402  (the repository root is on sys.path above)

WIDTH = 8


class Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(y)) + x)


class ResidualNet(nn.Module):
    def __init__(self, blocks: int, width: int = WIDTH) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.blocks = nn.Sequential(*(Block(width) for _ in range(blocks)))
        self.head = nn.Conv2d(width, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


def measure(blocks: int, profile: bool = False) -> tuple[int, float, str]:
    """(graph nodes, compile seconds, profile text) for a net of ``blocks`` blocks."""
    torch.manual_seed(0)
    model = ResidualNet(blocks).eval()
    inputs = (torch.randn(1, 3, 8, 8),)
    profiler = cProfile.Profile() if profile else None
    start = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    result = fxprune.compile(model, 0.5, example_inputs=inputs)
    if profiler is not None:
        profiler.disable()
    seconds = time.perf_counter() - start
    text = ""
    if profiler is not None:
        stream = io.StringIO()
        pstats.Stats(profiler, stream=stream).sort_stats("cumulative").print_stats(30)
        stream.write("\n--- by own time ---\n")
        pstats.Stats(profiler, stream=stream).sort_stats("tottime").print_stats(20)
        text = stream.getvalue()
    return len(result.traced.graph.nodes), seconds, text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, nargs="+", default=[100, 300, 1000, 3000])
    parser.add_argument("--profile", type=int, default=None, help="cProfile the compile of this many blocks")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: the compiler's cost, not BLAS)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    measure(10)  # warm-up: imports, first fake-tensor dispatches
    print(f"{'blocks':>7} {'nodes':>7} {'seconds':>9} {'nodes/s':>9} {'s/node vs previous':>19}")
    previous: float | None = None
    for blocks in args.blocks:
        nodes, seconds, _ = measure(blocks)
        per_node = seconds / nodes
        ratio = f"{per_node / previous:.2f}x" if previous else "-"
        print(f"{blocks:>7} {nodes:>7} {seconds:>9.2f} {nodes / seconds:>9.0f} {ratio:>19}", flush=True)
        previous = per_node
    if args.profile:
        print(measure(args.profile, profile=True)[2])
    return 0


if __name__ == "__main__":
    sys.exit(main())
