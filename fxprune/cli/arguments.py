"""The options of each ``fxprune`` subcommand and the examples shown by ``fxprune COMMAND --help``.

``fxprune.cli.build_parser`` adds these to the subparsers it creates; the ``sensitivity``
options live with their command in :mod:`fxprune.cli.sensitivity`.

Example:
    >>> sub = argparse.ArgumentParser(prog="fxprune prune", epilog=EPILOGS["prune"])
    >>> add_prune_arguments(sub)
    >>> sub.parse_args(["resnet18", "--ratio", "0.5"]).ratio
    ['0.5']
"""

from __future__ import annotations

import argparse

from ..passes.importance import IMPORTANCE
from .inputs import add_capture_arguments, nonnegative_int, parse_session_entry, positive_float, positive_int
from .sensitivity import EPILOG as _SENSITIVITY_EPILOG

__all__ = ["EPILOGS", "add_bench_arguments", "add_int8_arguments", "add_runtime_arguments", "add_export_arguments",
           "add_inspect_arguments", "add_prune_arguments"]

_INPUTS_HELP = """inputs:
  --input-shape gives one random float tensor per positional argument of forward; repeat it
  for several arguments. With --input-list the tensors form ONE list argument instead, e.g.
  SlowFast's forward([slow, fast]): --input-shape 1,3,4,64,64 --input-shape 1,3,16,64,64 --input-list.
  A .pt2 written by fxprune remembers its input shapes, so --input-shape may be left out."""

EPILOGS = {
    "sensitivity": _SENSITIVITY_EPILOG,
    "prune": """examples:
  fxprune prune resnet18 --ratio 0.5 --input-shape 1,3,224,224 -o resnet18_pruned.pt2
  fxprune prune r2plus1d_18 --ratio 0.3 --ratio 'layer4.*=0.6' --input-shape 1,3,16,112,112 \\
      --weights ucf101.pth -o r2p1d.pt2 --onnx r2p1d.onnx --plan-out plan.json
  fxprune prune mypkg.nets:build --plan plan.json --input-shape 1,3,64,64 --json -o out.pt2
  fxprune prune fasterrcnn_mobilenet_v3_large_fpn --ratio 0.5 --input-shape 1,3,320,320 --submodules
  fxprune prune resnet50 --target-latency 0.5 --threads 2 --batch 1 \
      --session-config session.intra_op.allow_spinning=0 --input-shape 1,3,224,224 -o fast.pt2

ratios:
  --ratio RATIO removes that fraction of every prunable channel group; --ratio PATTERN=RATIO
  (repeatable, first match wins) applies to groups produced by modules matching the glob
  PATTERN, with a plain --ratio as the default for the rest. --plan applies a saved plan
  (plan.json, or a .pt2 written by fxprune) instead. Leave out -o for a dry run.

latency budgets:
  --target-latency-ms MS or --target-latency FRACTION (of the original's measured median)
  prunes to a latency measured in ONNX Runtime on this machine with --threads, --batch and
  --session-config: each conv and linear is timed at a few widths (cached under
  $FXPRUNE_CACHE_DIR or ~/.cache/fxprune, so a second run is fast), the plan is made against
  that model and corrected by measuring the pruned model until its median meets the budget.

""" + _INPUTS_HELP,
    "inspect": """examples:
  fxprune inspect resnet18 --input-shape 1,3,224,224
  fxprune inspect fxprune.models:slowfast --input-shape 1,3,4,64,64 --input-shape 1,3,16,64,64 \\
      --input-list --exact --json

Each channel group is listed with its index, channel count, producing modules and whether it
is prunable or frozen (and why). --json adds the member tensors and axes.

""" + _INPUTS_HELP,
    "export": """examples:
  fxprune export pruned.pt2 -o pruned.onnx
  fxprune export resnet18 --input-shape 1,3,224,224 -o resnet18.onnx --opset 17
  fxprune export pruned.pt2 -o pruned.onnx --int8 --calibration mydata:calibration_batches

The file is checked with onnx.checker and ONNX Runtime's output is compared with PyTorch's;
a difference above tolerance fails with exit status 2. --int8 also writes a static INT8
(QDQ, per-channel) model with ONNX Runtime's quantizer and reports its max error vs float.

""" + _INPUTS_HELP,
    "bench": """examples:
  fxprune bench resnet18 pruned.pt2 --input-shape 1,3,224,224 --runs 50
  fxprune bench resnet18 pruned.pt2 --max-latency-ms 10 --min-speedup 1.5 --max-params 5000000 \\
      --json --markdown bench.md   # exit status 3 when a budget is missed

  fxprune bench resnet18 pruned.pt2 --int8 --calibration mydata:calibration_batches \
      --max-latency-ms 5 --max-size-mb 4 --max-int8-error 0.05   # budgets on the INT8 model

Both models are exported to ONNX and timed in ONNX Runtime (CPU) and in eager PyTorch.
Budgets apply to the PRUNED model: latency is its ONNX Runtime median, speed-up is the
ORIGINAL's (float) median over its median, size is its ONNX file. With --int8 they apply
to the pruned INT8 model, the one a quantized build deploys (--budget-on pruned checks
the float one instead). Every budget is checked and every miss reported.

""" + _INPUTS_HELP,
}


def add_prune_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("model", metavar="MODEL", help="torchvision name or package.module:factory")
    sub.add_argument("--ratio", action="append", default=[], metavar="[PATTERN=]RATIO",
                     help="fraction of channels to remove, in [0, 1) (repeatable with patterns)")
    sub.add_argument("--plan", metavar="FILE", help="apply a saved plan (plan.json or a .pt2) instead of ratios")
    sub.add_argument("--config", metavar="FILE.yaml", help="a YAML pruning schedule (importance, ratios, steps)")
    sub.add_argument("--exact", action="store_true", help="freeze groups whose removal changes kept values")
    sub.add_argument("--ignore", action="append", default=[], metavar="PATTERN",
                     help="glob of modules whose output channels are kept (repeatable)")
    sub.add_argument("--round-to", type=positive_int, metavar="N", help="keep channel counts at multiples of N")
    sub.add_argument("--importance", choices=sorted(IMPORTANCE), default="l1", help="channel ranking (default l1)")
    sub.add_argument("--weights", metavar="FILE", help="state dict to load into MODEL first (weights_only)")
    sub.add_argument("-o", "--output", metavar="OUT.pt2", help="write the pruned model here")
    sub.add_argument("--onnx", metavar="OUT.onnx", help="also export the pruned model to ONNX")
    sub.add_argument("--opset", type=positive_int, metavar="N", help="ONNX opset (default: the exporter's)")
    sub.add_argument("--plan-out", metavar="PLAN.json", help="write the plan as JSON")
    sub.add_argument("--target-latency-ms", type=positive_float, metavar="MS",
                     help="prune to this ONNX Runtime median latency, measured on this machine")
    sub.add_argument("--target-latency", type=positive_float, metavar="FRACTION",
                     help="prune to this fraction of the original's measured latency, e.g. 0.5")
    sub.add_argument("--latency-runs", type=positive_int, default=30, metavar="N",
                     help="timed runs per whole-model measurement (default 30)")
    sub.add_argument("--latency-cache", metavar="DIR", help="folder of the layer latency cache")
    sub.add_argument("--int8", action="store_true",
                     help="a latency target applies to the INT8 model (static QDQ, calibrated on the inputs)")
    add_runtime_arguments(sub)
    add_capture_arguments(sub)
    sub.add_argument("--submodules", nargs="?", const=True, default=False, type=_names, metavar="NAME,...",
                     help="when the whole model does not capture (a detector's NMS), prune its largest submodules "
                          "that do, boundaries kept; or the named ones, comma-separated (a dry run: the result "
                          "runs the model's own post-processing, which .pt2 and ONNX cannot hold)")


def _names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected submodule names separated by commas, got '{text}'")
    return names


def add_runtime_arguments(sub: argparse.ArgumentParser) -> None:
    """The ONNX Runtime session options ``bench`` and ``prune`` share: threads, batch, session entries."""
    sub.add_argument("--threads", type=positive_int, metavar="N", help="CPU threads (default: all cores)")
    sub.add_argument("--batch", type=positive_int, metavar="N", help="batch size to measure at (default: the input's)")
    sub.add_argument("--session-config", action="append", default=[], type=parse_session_entry, metavar="KEY=VALUE",
                     help="ONNX Runtime session entry, e.g. session.intra_op.allow_spinning=0 (repeatable)")


def add_inspect_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("model", metavar="MODEL", help="torchvision name or package.module:factory")
    sub.add_argument("--exact", action="store_true", help="freeze groups whose removal changes kept values")
    sub.add_argument("--weights", metavar="FILE", help="state dict to load into MODEL first (weights_only)")
    add_capture_arguments(sub)


def add_export_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("model", metavar="MODEL_OR_PT2", help="torchvision name, package.module:factory, or .pt2")
    sub.add_argument("-o", "--output", required=True, metavar="OUT.onnx", help="the ONNX file to write")
    sub.add_argument("--opset", type=positive_int, metavar="N", help="ONNX opset (default: the exporter's)")
    sub.add_argument("--no-dynamic-batch", action="store_true", help="fix the batch axis to the input's")
    sub.add_argument("--weights", metavar="FILE", help="state dict to load into MODEL first (weights_only)")
    add_int8_arguments(sub)
    sub.add_argument("--int8-output", metavar="OUT.onnx", help="where the INT8 model goes (default OUT.int8.onnx)")


def add_int8_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--int8", action="store_true", help="also quantize to static INT8 (ONNX Runtime, QDQ)")
    sub.add_argument("--calibration", metavar="MODULE:FUNCTION",
                     help="calibration batches for --int8: FUNCTION() returns input batches or a DataLoader "
                          "(default: the random --input-shape inputs, which calibrate poorly)")


def add_bench_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("original", metavar="ORIGINAL", help="the baseline model (name, factory or .pt2)")
    sub.add_argument("pruned", metavar="PRUNED", help="the pruned model, usually a .pt2")
    sub.add_argument("--weights", metavar="FILE", help="state dict for ORIGINAL (weights_only)")
    sub.add_argument("--runs", type=positive_int, default=50, metavar="N", help="timed runs (default 50)")
    sub.add_argument("--warmup", type=nonnegative_int, default=10, metavar="N", help="untimed runs (default 10)")
    add_runtime_arguments(sub)
    add_int8_arguments(sub)
    sub.add_argument("--no-eager", action="store_true", help="time ONNX Runtime only, not eager PyTorch")
    sub.add_argument("--markdown", metavar="FILE", help="also write the table as Markdown")
    sub.add_argument("--max-latency-ms", type=positive_float, metavar="MS", help="budget: pruned ORT median")
    sub.add_argument("--min-speedup", type=positive_float, metavar="X", help="budget: original / pruned median")
    sub.add_argument("--max-params", type=positive_int, metavar="N", help="budget: pruned parameter count")
    sub.add_argument("--max-size-mb", type=positive_float, metavar="MB", help="budget: pruned ONNX file size")
    sub.add_argument("--max-int8-error", type=positive_float, metavar="E",
                     help="budget (with --int8): largest |INT8 - float| output of the pruned model")
    sub.add_argument("--budget-on", choices=("pruned", "int8"),
                     help="which pruned model the budgets check: the float ONNX model, or its INT8 model "
                          "(default: int8 with --int8, else pruned)")
