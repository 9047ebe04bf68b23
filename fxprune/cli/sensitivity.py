"""``fxprune sensitivity``: prune every channel group alone and measure a metric."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..drivers.sensitivity import sensitivity
from ..errors import InputError
from .inputs import add_capture_arguments, example_inputs, load_model

__all__ = ["add_sensitivity_arguments", "load_evaluate", "run_sensitivity"]

EPILOG = """examples:
  fxprune sensitivity tests.cli_factory:tiny3d --input-shape 1,3,8,16,16 \\
      --eval mypkg.metrics:accuracy --out sens/ --tolerance 0.01

EVAL is a package.module:function taking the pruned module and returning a number,
higher is better (accuracy, or minus a loss). The report is written to OUT as
sensitivity.csv, sensitivity.json and sensitivity.png; with --tolerance the per-group
ratios that keep the metric within the tolerance are printed and written to
ratios.yaml, ready for 'fxprune prune --config'. --capture and --no-check-capture choose
the capture front end as for 'fxprune prune'.
"""


def add_sensitivity_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("model", metavar="MODEL", help="torchvision name or package.module:factory")
    sub.add_argument("--eval", required=True, metavar="PKG.MODULE:FUNCTION", help="evaluate(module) -> float")
    sub.add_argument("--ratios", default="0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9", metavar="R,R,...",
                     help="ratios to measure per group (default 0.1 .. 0.9)")
    sub.add_argument("--groups", metavar="I,I,...", help="group indices to measure (default: all prunable)")
    sub.add_argument("--importance", default="l1", help="channel ranking (default l1)")
    sub.add_argument("--exact", action="store_true", help="freeze groups whose removal changes kept values")
    sub.add_argument("--weights", metavar="FILE", help="state dict to load into MODEL first (weights_only)")
    sub.add_argument("--tolerance", type=float, metavar="X", help="derive per-group ratios within X of baseline")
    sub.add_argument("--out", default="sensitivity", metavar="DIR", help="where to write the report")
    add_capture_arguments(sub)


def load_evaluate(spec: str) -> Callable[[Any], float]:
    """Import ``package.module:function``; InputError naming what is missing."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise InputError(f"--eval must look like package.module:function, got '{spec}'")
    try:
        function = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise InputError(f"cannot import --eval {spec}: {error}") from error
    if not callable(function):
        raise InputError(f"--eval {spec} is not callable")
    return function


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError as error:
        raise InputError(f"--ratios must be comma-separated numbers, got '{text}'") from error


def run_sensitivity(args: argparse.Namespace, progress: Any) -> tuple[str, dict[str, Any]]:
    evaluate = load_evaluate(args.eval)
    inputs = example_inputs(args.input_shape, args.input_list, (args.model,))
    groups = [int(g) for g in args.groups.split(",")] if args.groups else None
    model = load_model(args.model, args.weights)
    with progress.step(f"sensitivity of {args.model}"):
        report = sensitivity(model, inputs, evaluate, ratios=_floats(args.ratios), groups=groups,
                             importance=args.importance, exact=args.exact, progress=not args.quiet,
                             capture=args.capture, check_capture=args.check_capture)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report.to_csv(out / "sensitivity.csv")
    report.to_json(out / "sensitivity.json")
    report.plot(out / "sensitivity.png")
    lines = [f"baseline metric {report.baseline:.4g}; {len(report.groups)} groups x {len(_floats(args.ratios))} "
             f"ratios; wrote {out}/sensitivity.csv, .json, .png"]
    data: dict[str, Any] = {"baseline": report.baseline, "out": str(out), "rows": len(report.rows)}
    if args.tolerance is not None:
        ratios = report.derive_ratios(tolerance=args.tolerance)
        (out / "ratios.yaml").write_text("version: 1\nratios:\n" + "".join(
            f"  {index}: {ratio}\n" for index, ratio in sorted(ratios.items())))
        lines.append(f"ratios within {args.tolerance} of baseline (wrote {out}/ratios.yaml): {ratios}")
        data["ratios"] = ratios
    return "\n".join(lines), data
