"""Compile-time benchmark: fxprune vs Torch-Pruning at the same ratio.

For each model, times

* ``fxprune.compile(model, ratio, example_inputs=...)`` through symbolic tracing (median of
  ``--repeat`` runs after one warm-up), with the capture check (one eager run of the model and
  of its graph) reported on its own and the speed-up computed without it;
* the same compile through the torch.export front end (``capture="export"``), next to
  ``torch.export.export`` alone on the same model (the floor that front end cannot beat); and
* Torch-Pruning (when importable): building its ``DependencyGraph`` through
  ``tp.pruner.BasePruner`` (``MagnitudePruner`` in older releases) with
  ``tp.importance.MagnitudeImportance(p=1)`` and ``pruner.step()`` on a fresh
  deep copy, with the final classifier layer ignored (same median scheme).

Example::

    python3 benchmarks/compile_time.py
    python3 benchmarks/compile_time.py --only torch-pruning --models resnet50

The default set is the one issue 10 measures (resnet50, densenet121, efficientnet_b0 at
224x224, r2plus1d_18 at 16x112x112); the table ends with the geometric mean of the speed-ups.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

IMAGE_SHAPE: tuple[int, ...] = (1, 3, 224, 224)
CLIP_SHAPE: tuple[int, ...] = (1, 3, 16, 112, 112)

#: Benchmark models: name -> example input shape.
MODELS: dict[str, tuple[int, ...]] = {
    "resnet50": IMAGE_SHAPE,
    "densenet121": IMAGE_SHAPE,
    "efficientnet_b0": IMAGE_SHAPE,
    "r2plus1d_18": CLIP_SHAPE,
    "densenet201": IMAGE_SHAPE,
    "efficientnet_v2_l": IMAGE_SHAPE,
    "regnet_y_128gf": IMAGE_SHAPE,
    "c3d": CLIP_SHAPE,
}
DEFAULT_MODELS = ("resnet50", "densenet121", "efficientnet_b0", "r2plus1d_18")


class Unavailable(Exception):
    """Raised when a benchmark model or tool cannot be loaded."""


@dataclass
class Row:
    """One line of the result table."""

    model: str
    shape: list[int]
    nodes: int | None = None
    params: int | None = None
    fxprune_s: float | None = None
    check_s: float | None = None
    fxprune_params_ratio: float | None = None
    export_s: float | None = None
    export_check_s: float | None = None
    torch_export_s: float | None = None
    tp_s: float | None = None
    tp_params_ratio: float | None = None
    note: str = ""

    @property
    def speedup(self) -> float | None:
        """Torch-Pruning seconds divided by fxprune's seconds without the capture check."""
        if self.tp_s is None or not self.fxprune_s:
            return None
        return self.tp_s / (self.fxprune_s - (self.check_s or 0.0))

    @property
    def export_overhead(self) -> float | None:
        """fxprune's export-path seconds without the capture check, divided by torch.export's own."""
        if self.export_s is None or not self.torch_export_s:
            return None
        return (self.export_s - (self.export_check_s or 0.0)) / self.torch_export_s


def build_model(name: str) -> nn.Module:
    """Build a benchmark model with random weights in eval mode.

    Args:
        name: A torchvision model name, or ``"c3d"`` for ``fxprune.models.c3d()``.

    Returns:
        The eval-mode model.

    Raises:
        Unavailable: If ``c3d`` is requested but ``fxprune.models.c3d`` is missing.
    """
    torch.manual_seed(0)
    if name == "c3d":
        try:
            from fxprune.models import c3d
        except (ImportError, AttributeError) as exc:
            raise Unavailable(f"fxprune.models.c3d is not available ({exc})") from exc
        return c3d().eval()
    import torchvision

    return torchvision.models.get_model(name, weights=None).eval()


def example_inputs(shape: tuple[int, ...]) -> tuple[torch.Tensor, ...]:
    """Return the seeded example inputs for a shape."""
    return (torch.randn(shape, generator=torch.Generator().manual_seed(0)),)


def count_params(model: nn.Module) -> int:
    """Return the number of parameters of ``model``."""
    return sum(p.numel() for p in model.parameters())


def count_nodes(model: nn.Module) -> int | None:
    """Return the number of FX nodes of ``symbolic_trace(model)``, or None."""
    try:
        return len(torch.fx.symbolic_trace(model).graph.nodes)
    except Exception:  # noqa: BLE001 - informational only
        return None


def median_seconds(fn: Callable[[], Any], repeat: int, warmup: bool = True) -> tuple[float, Any]:
    """Time ``fn`` ``repeat`` times (after an optional warm-up run).

    Args:
        fn: Zero-argument callable. Setup that must not be timed belongs outside.
        repeat: Number of timed runs.
        warmup: Run once untimed first.

    Returns:
        ``(median seconds, result of the last run)``.
    """
    result = fn() if warmup else None
    times = []
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def final_classifier(model: nn.Module) -> nn.Module | None:
    """Return the last Linear (or, failing that, Conv) module of ``model``."""
    last_linear = last_conv = None
    for module in model.modules():
        if isinstance(module, nn.Linear):
            last_linear = module
        elif isinstance(module, nn.modules.conv._ConvNd):
            last_conv = module
    return last_linear if last_linear is not None else last_conv


def time_fxprune(model: nn.Module, inputs: tuple[torch.Tensor, ...], ratio: float,
                 repeat: int, capture: str = "fx") -> tuple[float, float, float]:
    """Time ``fxprune.compile`` on ``model`` through one capture front end.

    Args:
        model: The eval-mode model (not modified).
        inputs: Example inputs.
        ratio: Pruning ratio.
        repeat: Timed runs after one warm-up.
        capture: ``"fx"`` or ``"export"``.

    Returns:
        ``(median seconds, capture-check seconds of the last run, params after / params before)``.
    """
    import fxprune

    seconds, result = median_seconds(
        lambda: fxprune.compile(model, ratio, example_inputs=inputs, capture=capture), repeat)
    return seconds, result.capture.check_seconds or 0.0, result.after.params / result.before.params


def time_torch_export(model: nn.Module, inputs: tuple[torch.Tensor, ...], repeat: int) -> float:
    """Time ``torch.export.export(model, inputs, strict=False)`` alone (median seconds)."""
    seconds, _ = median_seconds(lambda: torch.export.export(model, inputs, strict=False), repeat)
    return seconds


def _tp_pruner_class(tp: Any) -> type:
    """Return Torch-Pruning's magnitude pruner class for the installed version."""
    pruner_cls = getattr(tp.pruner, "BasePruner", None) or tp.pruner.MagnitudePruner
    return pruner_cls


def _tp_prune(model: nn.Module, inputs: tuple[torch.Tensor, ...], ratio: float) -> nn.Module:
    """Build Torch-Pruning's DependencyGraph/pruner on ``model`` and prune it in place."""
    import torch_pruning as tp

    classifier = final_classifier(model)
    pruner = _tp_pruner_class(tp)(
        model,
        inputs[0] if len(inputs) == 1 else inputs,
        importance=tp.importance.MagnitudeImportance(p=1),
        pruning_ratio=ratio,
        ignored_layers=[classifier] if classifier is not None else [],
    )
    pruner.step()
    return model


def time_torch_pruning(model: nn.Module, inputs: tuple[torch.Tensor, ...], ratio: float,
                       repeat: int) -> tuple[float, float]:
    """Time Torch-Pruning's pruner construction + ``step()`` on fresh deep copies.

    The deep copy is made outside the timed region.

    Args:
        model: The eval-mode model (not modified).
        inputs: Example inputs.
        ratio: Channel pruning ratio.
        repeat: Timed runs after one warm-up.

    Returns:
        ``(median seconds, params after / params before)``.
    """
    times = []
    pruned: nn.Module | None = None
    for i in range(max(1, repeat) + 1):
        fresh = copy.deepcopy(model)
        t0 = time.perf_counter()
        pruned = _tp_prune(fresh, inputs, ratio)  # needs autograd: no torch.no_grad()
        elapsed = time.perf_counter() - t0
        if i > 0:  # first run is the warm-up
            times.append(elapsed)
        del fresh
    assert pruned is not None
    with torch.no_grad():
        pruned(*inputs)  # sanity: the pruned model still runs
    return statistics.median(times), count_params(pruned) / count_params(model)


def have_torch_pruning() -> bool:
    """Return whether ``torch_pruning`` is importable."""
    try:
        import torch_pruning  # noqa: F401
    except ImportError:
        return False
    return True


def bench_model(name: str, shape: tuple[int, ...], args: argparse.Namespace) -> Row:
    """Run the requested timings for one model.

    Args:
        name: Model name.
        shape: Example input shape.
        args: Parsed command-line options.

    Returns:
        The filled-in :class:`Row` (with a note on anything skipped or failed).
    """
    row = Row(model=name, shape=list(shape))
    try:
        model = build_model(name)
    except Unavailable as exc:
        row.note = f"skipped: {exc}"
        return row
    inputs = example_inputs(shape)
    row.nodes, row.params = count_nodes(model), count_params(model)
    notes = []
    if args.only in ("both", "fxprune"):
        try:
            row.fxprune_s, row.check_s, row.fxprune_params_ratio = time_fxprune(
                model, inputs, args.ratio, args.repeat)
        except Exception as exc:  # noqa: BLE001 - one failure must not stop the run
            notes.append(f"fxprune failed: {type(exc).__name__}: {str(exc)[:120]}")
        if args.export:
            try:
                row.export_s, row.export_check_s, _ = time_fxprune(
                    model, inputs, args.ratio, args.repeat, capture="export")
                row.torch_export_s = time_torch_export(model, inputs, args.repeat)
            except Exception as exc:  # noqa: BLE001
                notes.append(f"export path failed: {type(exc).__name__}: {str(exc)[:120]}")
    if args.only in ("both", "torch-pruning"):
        if not have_torch_pruning():
            notes.append("torch_pruning not installed")
        else:
            try:
                row.tp_s, row.tp_params_ratio = time_torch_pruning(
                    model, inputs, args.ratio, args.repeat)
            except Exception as exc:  # noqa: BLE001
                notes.append(f"torch-pruning failed: {type(exc).__name__}: {str(exc)[:120]}")
    row.note = "; ".join(notes)
    return row


def _fmt(value: float | int | None, spec: str) -> str:
    """Format an optional number, ``-`` when missing."""
    return "-" if value is None else format(value, spec)


def geomean(values: list[float | None]) -> float | None:
    """The geometric mean of the values present, or None when there are none."""
    present = [v for v in values if v]
    return statistics.geometric_mean(present) if present else None


def format_table(rows: list[Row]) -> str:
    """Render the result rows as a fixed-width text table, with the geomean speed-up last."""
    header = (f"{'model':16s} {'nodes':>5s} {'params':>11s} {'fx s':>7s} {'check s':>7s} "
              f"{'export s':>8s} {'check s':>7s} {'t.export s':>10s} {'exp/t.exp':>9s} {'fx p.ratio':>10s} "
              f"{'tp s':>7s} {'tp p.ratio':>10s} {'tp/fx':>6s}  note")
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r.model:16s} {_fmt(r.nodes, 'd'):>5s} {_fmt(r.params, ',d'):>11s} "
            f"{_fmt(r.fxprune_s, '.3f'):>7s} {_fmt(r.check_s, '.3f'):>7s} "
            f"{_fmt(r.export_s, '.3f'):>8s} {_fmt(r.export_check_s, '.3f'):>7s} "
            f"{_fmt(r.torch_export_s, '.3f'):>10s} {_fmt(r.export_overhead, '.2f'):>9s} "
            f"{_fmt(r.fxprune_params_ratio, '.3f'):>10s} {_fmt(r.tp_s, '.3f'):>7s} "
            f"{_fmt(r.tp_params_ratio, '.3f'):>10s} {_fmt(r.speedup, '.2f'):>6s}  {r.note}")
    speedups = geomean([r.speedup for r in rows])
    overheads = geomean([r.export_overhead for r in rows])
    if len(rows) > 1 and speedups is not None:
        lines.append(f"geomean tp/fx (fxprune without the capture check): {speedups:.2f}x; "
                     f"geomean export path (without its check) / torch.export: {_fmt(overheads, '.2f')}x")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse command-line options."""
    parser = argparse.ArgumentParser(
        description="Time fxprune.compile against Torch-Pruning (DependencyGraph + "
                    "MagnitudePruner step) at the same pruning ratio.")
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=list(DEFAULT_MODELS),
                        metavar="NAME",
                        help=f"models to benchmark, of {', '.join(MODELS)} (default: {' '.join(DEFAULT_MODELS)})")
    parser.add_argument("--no-export", dest="export", action="store_false",
                        help="skip the torch.export front end and torch.export's own time")
    parser.add_argument("--ratio", type=float, default=0.5,
                        help="pruning ratio passed to both tools (default 0.5)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="timed runs per tool and model, after one untimed warm-up; "
                             "the median is reported (default 3)")
    parser.add_argument("--only", choices=("both", "fxprune", "torch-pruning"), default="both",
                        help="time only one of the tools (default: both)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads value (default: torch's default)")
    parser.add_argument("--json", default=None, metavar="PATH",
                        help="also write the rows as JSON to PATH")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table.

    Returns:
        Process exit status (0).
    """
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"cpus {os.cpu_count()}, ratio {args.ratio}, repeat {args.repeat}, only {args.only}")
    if args.only != "fxprune" and not have_torch_pruning():
        print("torch_pruning is not importable: Torch-Pruning columns will be empty")
    rows = []
    for name in args.models:
        print(f"... {name} {list(MODELS[name])}", flush=True)
        rows.append(bench_model(name, MODELS[name], args))
        print("    " + format_table(rows[-1:]).splitlines()[-1], flush=True)
    print(format_table(rows))
    if args.json:
        payload = {"torch": torch.__version__, "threads": torch.get_num_threads(),
                   "ratio": args.ratio, "repeat": args.repeat,
                   "rows": [asdict(r) | {"tp_over_fxprune": r.speedup, "export_over_torch_export": r.export_overhead}
                            for r in rows]}
        Path(args.json).write_text(json.dumps(payload, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
