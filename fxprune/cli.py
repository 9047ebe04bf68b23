"""The ``fxprune`` command: prune, inspect, export and benchmark models from a shell or a build.

MODEL is a torchvision model name (``resnet18``, ``r2plus1d_18``), a ``package.module:factory``
spec (called without arguments), or a ``.pt2`` archive written by :func:`fxprune.serialize.save`.
Inputs are random tensors of the ``--input-shape`` shapes: one positional argument per shape,
or all of them as one list argument with ``--input-list`` (SlowFast's ``forward([slow, fast])``).

Exit codes: 0 success; 1 unexpected internal error (re-run with ``--debug``); 2 usage or user
error (unknown model, malformed shape or ratio, missing weights, any ``FxPruneError``); 3 a
benchmark budget was missed. ``--json`` prints one JSON document on stdout and nothing else;
progress and warnings go to stderr (``--quiet`` silences them).

Example:
    $ fxprune prune resnet18 --ratio 0.5 --input-shape 1,3,224,224 -o pruned.pt2 --onnx pruned.onnx
    $ fxprune bench resnet18 pruned.pt2 --input-shape 1,3,224,224 --max-latency-ms 10 --min-speedup 1.5
"""

from __future__ import annotations

import argparse
import dataclasses
import contextlib
import json
import logging
import sys
import time
import traceback
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from . import serialize
from .api import compile as compile_model
from .cli_sensitivity import EPILOG as _SENSITIVITY_EPILOG, add_sensitivity_arguments, run_sensitivity
from .cli_inputs import (
    example_inputs,
    load_model,
    load_plan,
    nonnegative_int,
    parse_ratios,
    parse_shape,
    positive_float,
    positive_int,
)
from .errors import FxPruneError, InputError, RewriteError
from .passes.groups import Groups, find_groups
from .passes.importance import IMPORTANCE
from .passes.shapes import propagate_shapes
from .report import count_params
from .tracing import trace

__all__ = ["EXIT_BUDGET", "EXIT_INTERNAL", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_BUDGET = 0, 1, 2, 3

_INPUTS_HELP = """inputs:
  --input-shape gives one random float tensor per positional argument of forward; repeat it
  for several arguments. With --input-list the tensors form ONE list argument instead, e.g.
  SlowFast's forward([slow, fast]): --input-shape 1,3,4,64,64 --input-shape 1,3,16,64,64 --input-list.
  A .pt2 written by fxprune remembers its input shapes, so --input-shape may be left out."""

_EPILOGS = {
    "sensitivity": _SENSITIVITY_EPILOG,
    "prune": """examples:
  fxprune prune resnet18 --ratio 0.5 --input-shape 1,3,224,224 -o resnet18_pruned.pt2
  fxprune prune r2plus1d_18 --ratio 0.3 --ratio 'layer4.*=0.6' --input-shape 1,3,16,112,112 \\
      --weights ucf101.pth -o r2p1d.pt2 --onnx r2p1d.onnx --plan-out plan.json
  fxprune prune mypkg.nets:build --plan plan.json --input-shape 1,3,64,64 --json -o out.pt2

ratios:
  --ratio RATIO removes that fraction of every prunable channel group; --ratio PATTERN=RATIO
  (repeatable, first match wins) applies to groups produced by modules matching the glob
  PATTERN, with a plain --ratio as the default for the rest. --plan applies a saved plan
  (plan.json, or a .pt2 written by fxprune) instead. Leave out -o for a dry run.

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

The file is checked with onnx.checker and ONNX Runtime's output is compared with PyTorch's;
a difference above tolerance fails with exit status 2.

""" + _INPUTS_HELP,
    "bench": """examples:
  fxprune bench resnet18 pruned.pt2 --input-shape 1,3,224,224 --runs 50
  fxprune bench resnet18 pruned.pt2 --max-latency-ms 10 --min-speedup 1.5 --max-params 5000000 \\
      --json --markdown bench.md   # exit status 3 when a budget is missed

Both models are exported to ONNX and timed in ONNX Runtime (CPU) and in eager PyTorch.
Budgets apply to the PRUNED model: latency is its ONNX Runtime median, speed-up is the
ORIGINAL's median over its median. Every budget is checked and every miss reported.

""" + _INPUTS_HELP,
}


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"fxprune: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``fxprune`` argument parser with its four subcommands."""
    from . import __version__

    parser = _Parser(prog="fxprune", description="Structured pruning for PyTorch CNNs (2D and 3D): prune, "
                     "inspect, export to ONNX, benchmark.", epilog="Run 'fxprune COMMAND --help' for examples.")
    parser.add_argument("--version", action="version", version=f"fxprune {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = _Parser(add_help=False)
    common.add_argument("--json", action="store_true", help="print one JSON document on stdout, nothing else")
    common.add_argument("-q", "--quiet", action="store_true", help="no progress or warnings on stderr")
    common.add_argument("--debug", action="store_true", help="show tracebacks and library warnings")
    inputs = _Parser(add_help=False)
    inputs.add_argument("--input-shape", action="append", type=parse_shape, metavar="N,C,...",
                        help="shape of one random input tensor (repeatable)")
    inputs.add_argument("--input-list", action="store_true", help="pass the tensors as one list argument")

    def command(name: str, help_text: str, handler: Any) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text, parents=[inputs, common],
                                  epilog=_EPILOGS[name], formatter_class=argparse.RawDescriptionHelpFormatter)
        sub.set_defaults(handler=handler)
        return sub

    _prune_arguments(command("prune", "Prune a model and save it as .pt2 (and ONNX).", _prune))
    _inspect_arguments(command("inspect", "List the channel groups of a model.", _inspect))
    _export_arguments(command("export", "Export a model or a .pt2 to ONNX, checked in ONNX Runtime.", _export))
    _bench_arguments(command("bench", "Benchmark an original and a pruned model; check budgets.", _bench))
    add_sensitivity_arguments(command("sensitivity", "Prune each channel group alone and measure a metric.",
                                      _sensitivity))
    return parser


def _prune_arguments(sub: argparse.ArgumentParser) -> None:
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


def _inspect_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("model", metavar="MODEL", help="torchvision name or package.module:factory")
    sub.add_argument("--exact", action="store_true", help="freeze groups whose removal changes kept values")
    sub.add_argument("--weights", metavar="FILE", help="state dict to load into MODEL first (weights_only)")


def _export_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("model", metavar="MODEL_OR_PT2", help="torchvision name, package.module:factory, or .pt2")
    sub.add_argument("-o", "--output", required=True, metavar="OUT.onnx", help="the ONNX file to write")
    sub.add_argument("--opset", type=positive_int, metavar="N", help="ONNX opset (default: the exporter's)")
    sub.add_argument("--no-dynamic-batch", action="store_true", help="fix the batch axis to the input's")
    sub.add_argument("--weights", metavar="FILE", help="state dict to load into MODEL first (weights_only)")


def _bench_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("original", metavar="ORIGINAL", help="the baseline model (name, factory or .pt2)")
    sub.add_argument("pruned", metavar="PRUNED", help="the pruned model, usually a .pt2")
    sub.add_argument("--weights", metavar="FILE", help="state dict for ORIGINAL (weights_only)")
    sub.add_argument("--runs", type=positive_int, default=50, metavar="N", help="timed runs (default 50)")
    sub.add_argument("--warmup", type=nonnegative_int, default=10, metavar="N", help="untimed runs (default 10)")
    sub.add_argument("--threads", type=positive_int, metavar="N", help="CPU threads (default: all cores)")
    sub.add_argument("--no-eager", action="store_true", help="time ONNX Runtime only, not eager PyTorch")
    sub.add_argument("--markdown", metavar="FILE", help="also write the table as Markdown")
    sub.add_argument("--max-latency-ms", type=positive_float, metavar="MS", help="budget: pruned ORT median")
    sub.add_argument("--min-speedup", type=positive_float, metavar="X", help="budget: original / pruned median")
    sub.add_argument("--max-params", type=positive_int, metavar="N", help="budget: pruned parameter count")


@dataclass
class _Outcome:
    """What a command produced: text for humans, data for --json, problems for stderr, exit status."""

    text: str
    data: dict[str, Any]
    problems: list[str] = field(default_factory=list)
    code: int = EXIT_OK


class _Progress:
    """Status lines on stderr: ``fxprune: pruning resnet18 ... 2.1 s``."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    @contextlib.contextmanager
    def step(self, what: str) -> Iterator[None]:
        if not self.quiet:
            print(f"fxprune: {what} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        yield
        if not self.quiet:
            print(f"fxprune:   done in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)


def _model(spec: str, progress: _Progress, weights: str | None = None) -> Any:
    with progress.step(f"loading {spec}"):
        return load_model(spec, weights)


def _inputs(args: argparse.Namespace, *specs: str) -> tuple[Any, ...]:
    return example_inputs(args.input_shape, args.input_list, specs)


def _refuse_pt2(spec: str, command: str) -> None:
    if spec.endswith(".pt2"):
        raise InputError(f"cannot {command} '{spec}': a .pt2 holds an ATen graph without the layers fxprune "
                         f"prunes; give the original MODEL (the plan stored in it applies with --plan {spec})")


def _prune(args: argparse.Namespace, progress: _Progress) -> _Outcome:
    _refuse_pt2(args.model, "prune")
    if sum(bool(v) for v in (args.plan, args.ratio, args.config)) > 1:
        raise InputError("give one of --ratio, --plan or --config")
    inputs = _inputs(args)
    model = _model(args.model, progress, args.weights)
    with progress.step(f"pruning {args.model} (trace, groups, plan, rewrite)"):
        if args.config:
            result = _from_config(args.config, model, inputs, args.quiet)
        else:
            ratios = load_plan(args.plan) if args.plan else parse_ratios(args.ratio)
            result = compile_model(model, ratios, example_inputs=inputs, exact=args.exact, ignore=args.ignore,
                                   round_to=args.round_to, importance=args.importance)
    outputs: dict[str, Any] = {}
    if args.plan_out:
        Path(args.plan_out).parent.mkdir(parents=True, exist_ok=True)
        result.plan.save(args.plan_out)
        outputs["plan"] = args.plan_out
    if args.output:
        with progress.step(f"saving {args.output}"):
            serialize.save(result, args.output, inputs, metadata={"source": args.model, "weights": args.weights})
        outputs["pt2"] = args.output
    onnx = None
    if args.onnx:
        onnx = _to_onnx(result.module, inputs, args.onnx, args.opset, True, progress)
        outputs["onnx"] = args.onnx
    groups, plan = result.groups, result.plan
    data = {"model": args.model, "inputs": _shapes(inputs),
            "before": asdict(result.before), "after": asdict(result.after),
            "params_ratio": _ratio(result.after.params, result.before.params),
            "macs_ratio": _ratio(result.after.macs, result.before.macs),
            "groups": _group_counts(groups, len(plan.entries)), "seconds": round(result.seconds, 3),
            "outputs": outputs, "onnx": _onnx_data(onnx) or None}
    text = "\n".join([result.summary()] + [f"  wrote {kind:<4} {path}" for kind, path in outputs.items()]
                     + ([f"  ONNX max |onnxruntime - torch| = {onnx.max_abs_error:.3g}"] if onnx else []))
    return _Outcome(text, data)


def _from_config(path: str, model: Any, inputs: tuple[Any, ...], quiet: bool) -> Any:
    """Run a YAML schedule; a multi-step schedule reports its last step against the original."""
    from .config import load_config

    outcome = load_config(path).run(model, inputs, progress=not quiet)
    if hasattr(outcome, "history"):
        if not quiet:
            print(outcome.summary(), file=sys.stderr)
        return dataclasses.replace(outcome.steps[-1], before=outcome.before)
    return outcome


def _sensitivity(args: argparse.Namespace, progress: _Progress) -> _Outcome:
    text, data = run_sensitivity(args, progress)
    return _Outcome(text, data)


def _inspect(args: argparse.Namespace, progress: _Progress) -> _Outcome:
    _refuse_pt2(args.model, "inspect")
    inputs = _inputs(args)
    model = _model(args.model, progress, args.weights)
    with progress.step(f"tracing {args.model} and finding channel groups"):
        traced = trace(model, inputs)
        macs = propagate_shapes(traced, inputs)
        groups = find_groups(traced, args.exact)
    counts = _group_counts(groups, None)
    header = (f"{type(model).__name__}: {count_params(model):,} params, {macs:,} MACs; {counts['found']} channel "
              f"groups, {counts['prunable']} prunable, {counts['frozen']} frozen ({'exact' if args.exact else 'default'}"
              " mode)\n#idx    size  producers  [status]")
    data = {"model": args.model, "inputs": _shapes(inputs), "params": count_params(model), "macs": macs,
            "exact": args.exact, "counts": counts, "groups": [
                {"index": g.index, "size": g.size, "prunable": g.prunable, "reason": g.reason,
                 "producers": list(g.producers), "modules": list(g.modules), "caveats": list(g.caveats),
                 "members": [{"tensor": m.tensor, "axis": m.axis} for m in g.members]} for g in groups]}
    return _Outcome(f"{header}\n{groups.table()}", data)


def _export(args: argparse.Namespace, progress: _Progress) -> _Outcome:
    inputs = _inputs(args, args.model)
    module = _model(args.model, progress, args.weights)
    info = _to_onnx(module, inputs, args.output, args.opset, not args.no_dynamic_batch, progress)
    text = (f"wrote {info.path} ({info.file_bytes / 1e6:.2f} MB, opset {info.opset}, {info.exporter} exporter, "
            f"{'dynamic' if not args.no_dynamic_batch else 'fixed'} batch); max |onnxruntime - torch| = "
            f"{info.max_abs_error:.3g}")
    return _Outcome(text, {"model": args.model, "inputs": _shapes(inputs), **_onnx_data(info),
                           "dynamic_batch": not args.no_dynamic_batch})


def _bench(args: argparse.Namespace, progress: _Progress) -> _Outcome:
    from .export import benchmark

    inputs = _inputs(args, args.pruned, args.original)
    original = _model(args.original, progress, args.weights)
    pruned = _model(args.pruned, progress)
    with progress.step(f"benchmarking ({args.runs} runs, {args.warmup} warm-up)"):
        report = benchmark({"original": original, "pruned": pruned}, inputs, runs=args.runs, warmup=args.warmup,
                           threads=args.threads, eager=not args.no_eager, progress=not args.quiet)
    markdown = report.to_markdown()
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(markdown + "\n")
    budgets = _budgets(report, args)
    misses = [f"budget missed: {b['message']}" for b in budgets if not b["ok"]]
    lines = [f"budget ok: {b['message']}" for b in budgets if b["ok"]]
    data = {**json.loads(report.to_json()), "budgets": budgets, "passed": not misses}
    return _Outcome("\n".join([markdown] + lines), data, misses, EXIT_BUDGET if misses else EXIT_OK)


def _budgets(report: Any, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every budget given, checked against every row of the pruned model."""
    checks = []
    for row in (r for r in report.rows if r.name == "pruned"):
        for name, actual, limit, unit, higher_is_better in (
                ("latency", row.ort_median_ms, args.max_latency_ms, " ms", False),
                ("speed-up", row.speedup, args.min_speedup, "x", True),
                ("params", row.params, args.max_params, "", False)):
            if limit is None:
                continue
            ok = actual >= limit if higher_is_better else actual <= limit
            sign = (">=" if ok else "<") if higher_is_better else ("<=" if ok else ">")
            change = f" ({(actual / limit - 1) * 100:+,.0f}%)" if not ok else ""
            message = f"{name} {_number(actual)}{unit} {sign} {_number(limit)}{unit}{change}"
            if len({r.batch_size for r in report.rows}) > 1:
                message += f" at batch {row.batch_size}"
            checks.append({"name": name, "actual": actual, "limit": limit, "ok": ok, "message": message})
    return checks


def _number(value: float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:.3g}"


def _to_onnx(module: Any, inputs: tuple[Any, ...], path: str, opset: int | None, dynamic: bool,
             progress: _Progress) -> Any:
    from .export import to_onnx

    with progress.step(f"exporting {path} and checking it in ONNX Runtime"):
        return to_onnx(module, inputs, path, dynamic_batch=dynamic, opset=opset)


def _onnx_data(info: Any) -> dict[str, Any]:
    if info is None:
        return {}
    return {"path": str(info.path), "opset": info.opset, "exporter": info.exporter,
            "max_abs_error": info.max_abs_error, "file_bytes": info.file_bytes}


def _group_counts(groups: Groups, pruned: int | None) -> dict[str, int]:
    counts = {"found": len(groups), "prunable": len(groups.prunable), "frozen": len(groups) - len(groups.prunable)}
    return counts if pruned is None else {**counts, "pruned": pruned}


def _shapes(inputs: tuple[Any, ...]) -> list[Any]:
    return [[list(t.shape) for t in arg] if isinstance(arg, list) else list(arg.shape) for arg in inputs]


def _ratio(after: int, before: int) -> float | None:
    return round(after / before, 4) if before else None


def _one_line(error: BaseException | str) -> str:
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    return text or type(error).__name__


@contextlib.contextmanager
def _quiet_libraries(args: argparse.Namespace) -> Iterator[list[warnings.WarningMessage]]:
    """Keep library warnings and logs off the terminal unless --debug; collect fxprune's own warnings."""
    if args.debug:
        yield []
        return
    torch_logger = logging.getLogger("torch")
    level = torch_logger.level
    torch_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield caught
    finally:
        torch_logger.setLevel(level)


def _run(args: argparse.Namespace) -> int:
    stdout, progress = sys.stdout, _Progress(args.quiet)
    try:
        with _quiet_libraries(args) as caught, contextlib.redirect_stdout(sys.stderr):
            try:
                outcome = args.handler(args, progress)
            finally:
                own = [w for w in caught if str(w.message).startswith("fxprune")]
                for warning in own if not args.quiet else ():
                    print(f"warning: {_one_line(str(warning.message))}", file=sys.stderr)
    except (FxPruneError, OSError) as error:  # OSError: a path that cannot be read or written
        if args.debug:
            traceback.print_exc()
        internal = isinstance(error, RewriteError)
        hint = " (an internal error: please report it with --debug output)" if internal else ""
        print(f"fxprune: error: {_one_line(error)}{hint}", file=sys.stderr)
        return EXIT_INTERNAL if internal else EXIT_USAGE
    except KeyboardInterrupt:
        print("fxprune: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # a bug, or a library failure nobody anticipated: short message, --debug for more
        if args.debug:
            traceback.print_exc()
        print(f"fxprune: internal error: {type(error).__name__}: {_one_line(error)[:300]} "
              "(re-run with --debug for the traceback)", file=sys.stderr)
        return EXIT_INTERNAL
    print(json.dumps(outcome.data, indent=2, default=str) if args.json else outcome.text, file=stdout, flush=True)
    for problem in outcome.problems:
        print(f"fxprune: {problem}", file=sys.stderr)
    return outcome.code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``fxprune`` command with ``argv`` (default ``sys.argv[1:]``) and return its exit status.

    Example:
        >>> main(["inspect", "resnet18", "--input-shape", "1,3,64,64", "--quiet"])
        0
    """
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # --help, --version, or a usage error already printed
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    return _run(args)
