"""The ``fxprune`` subcommands: each turns parsed arguments into an :class:`~fxprune.cli.output.Outcome`.

A handler raises :class:`~fxprune.errors.FxPruneError` for anything the user can fix; the
caller (:func:`fxprune.cli.main`) turns that into a one-line message and exit status 2.

Example:
    >>> args = fxprune.cli.build_parser().parse_args(["inspect", "resnet18", "--input-shape", "1,3,64,64"])
    >>> print(inspect_command(args, Progress(quiet=True)).text)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .. import serialize
from ..config import load_config
from ..drivers.compile import compile as compile_model
from ..drivers.submodules import SubmoduleResult
from ..errors import InputError
from ..passes.capture import capture
from ..passes.figures import count_params
from ..passes.groups import find_groups
from .inputs import example_inputs, load_model, load_plan, parse_ratios
from .output import (
    EXIT_BUDGET,
    EXIT_OK,
    Outcome,
    Progress,
    capture_data,
    format_number,
    group_counts,
    input_shapes,
    onnx_data,
    rounded_ratio,
)
from .sensitivity import run_sensitivity

__all__ = ["bench_command", "export_command", "inspect_command", "prune_command", "sensitivity_command"]


def _model(spec: str, progress: Progress, weights: str | None = None) -> Any:
    with progress.step(f"loading {spec}"):
        return load_model(spec, weights)


def _inputs(args: argparse.Namespace, *specs: str) -> tuple[Any, ...]:
    return example_inputs(args.input_shape, args.input_list, specs)


def _refuse_pt2(spec: str, command: str) -> None:
    if spec.endswith(".pt2"):
        raise InputError(f"cannot {command} '{spec}': a .pt2 holds an ATen graph without the layers fxprune "
                         f"prunes; give the original MODEL (the plan stored in it applies with --plan {spec})")


def prune_command(args: argparse.Namespace, progress: Progress) -> Outcome:
    _refuse_pt2(args.model, "prune")
    if sum(bool(v) for v in (args.plan, args.ratio, args.config)) > 1:
        raise InputError("give one of --ratio, --plan or --config")
    if args.submodules is not False and (args.config or args.plan):
        raise InputError("--submodules takes --ratio: a config or a saved plan applies to one captured model")
    inputs = _inputs(args)
    model = _model(args.model, progress, args.weights)
    with progress.step(f"pruning {args.model} (trace, groups, plan, rewrite)"):
        if args.config:
            result = _from_config(args.config, model, inputs, args.quiet)
        else:
            ratios = load_plan(args.plan) if args.plan else parse_ratios(args.ratio)
            result = compile_model(model, ratios, example_inputs=inputs, exact=args.exact, ignore=args.ignore,
                                   round_to=args.round_to, importance=args.importance, capture=args.capture,
                                   check_capture=args.check_capture, submodules=args.submodules)
    if isinstance(result, SubmoduleResult):
        return _submodule_outcome(args, inputs, result)
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
    data = {"model": args.model, "inputs": input_shapes(inputs),
            "before": asdict(result.before), "after": asdict(result.after),
            "params_ratio": rounded_ratio(result.after.params, result.before.params),
            "macs_ratio": rounded_ratio(result.after.macs, result.before.macs),
            "groups": group_counts(groups, len(plan.entries)), "seconds": round(result.seconds, 3),
            "capture": capture_data(result.capture),
            "outputs": outputs, "onnx": onnx_data(onnx) or None}
    text = "\n".join([result.summary()] + [f"  wrote {kind:<4} {path}" for kind, path in outputs.items()]
                     + ([f"  ONNX max |onnxruntime - torch| = {onnx.max_abs_error:.3g}"] if onnx else []))
    return Outcome(text, data)


def _submodule_outcome(args: argparse.Namespace, inputs: tuple[Any, ...], result: SubmoduleResult) -> Outcome:
    """A model pruned by submodules: the summary and figures (it has no single plan or graph to save)."""
    unsaved = [flag for flag, value in (("-o", args.output), ("--onnx", args.onnx), ("--plan-out", args.plan_out))
               if value]
    if unsaved:
        raise InputError(f"{type(result.module).__name__} was pruned by submodules: the result runs the model's own "
                         f"post-processing, which neither .pt2 nor ONNX holds, and has one plan per submodule; "
                         f"drop {', '.join(unsaved)} (use fxprune.compile(..., submodules=True) from Python)")
    parts = [{"name": part.name, "front_end": part.result.capture.front_end if part.result.capture else None,
              "groups": group_counts(part.result.groups, len(part.result.plan.entries)),
              "params_ratio": rounded_ratio(part.result.after.params, part.result.before.params)}
             for part in result.parts]
    data = {"model": args.model, "inputs": input_shapes(inputs), "before": asdict(result.before),
            "after": asdict(result.after), "params_ratio": rounded_ratio(result.after.params, result.before.params),
            "macs_ratio": rounded_ratio(result.after.macs, result.before.macs), "seconds": round(result.seconds, 3),
            "submodules": {"whole": result.whole or None, "pruned": parts,
                           "left": [{"name": name, "why": why} for name, why in result.left]}}
    return Outcome(result.summary(), data)


def _from_config(path: str, model: Any, inputs: tuple[Any, ...], quiet: bool) -> Any:
    """Run a YAML schedule; a multi-step schedule reports its last step against the original."""
    outcome = load_config(path).run(model, inputs, progress=not quiet)
    if hasattr(outcome, "history"):
        if not quiet:
            print(outcome.summary(), file=sys.stderr)
        return dataclasses.replace(outcome.steps[-1], before=outcome.before)
    return outcome


def sensitivity_command(args: argparse.Namespace, progress: Progress) -> Outcome:
    text, data = run_sensitivity(args, progress)
    return Outcome(text, data)


def inspect_command(args: argparse.Namespace, progress: Progress) -> Outcome:
    _refuse_pt2(args.model, "inspect")
    inputs = _inputs(args)
    model = _model(args.model, progress, args.weights)
    with progress.step(f"capturing {args.model} and finding channel groups"):
        captured = capture(model, inputs, front_end=args.capture, check=args.check_capture)
        macs = captured.macs
        groups = find_groups(captured.module, args.exact)
    counts = group_counts(groups, None)
    mode = "exact" if args.exact else "default"
    header = (f"{type(model).__name__}: {count_params(model):,} params, {macs:,} MACs; {counts['found']} channel "
              f"groups, {counts['prunable']} prunable, {counts['frozen']} frozen ({mode}"
              f" mode)\ncapture {captured.describe()}\n#idx    size  producers  [status]")
    data = {"model": args.model, "inputs": input_shapes(inputs), "params": count_params(model), "macs": macs,
            "exact": args.exact, "capture": capture_data(captured), "counts": counts, "groups": [
                {"index": g.index, "size": g.size, "prunable": g.prunable, "reason": g.reason,
                 "producers": list(g.producers), "modules": list(g.modules), "caveats": list(g.caveats),
                 "members": [{"tensor": m.tensor, "axis": m.axis} for m in g.members]} for g in groups]}
    return Outcome(f"{header}\n{groups.table()}", data)


def export_command(args: argparse.Namespace, progress: Progress) -> Outcome:
    inputs = _inputs(args, args.model)
    module = _model(args.model, progress, args.weights)
    info = _to_onnx(module, inputs, args.output, args.opset, not args.no_dynamic_batch, progress)
    text = (f"wrote {info.path} ({info.file_bytes / 1e6:.2f} MB, opset {info.opset}, {info.exporter} exporter, "
            f"{'dynamic' if not args.no_dynamic_batch else 'fixed'} batch); max |onnxruntime - torch| = "
            f"{info.max_abs_error:.3g}")
    return Outcome(text, {"model": args.model, "inputs": input_shapes(inputs), **onnx_data(info),
                           "dynamic_batch": not args.no_dynamic_batch})


def bench_command(args: argparse.Namespace, progress: Progress) -> Outcome:
    from ..export import benchmark

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
    return Outcome("\n".join([markdown] + lines), data, misses, EXIT_BUDGET if misses else EXIT_OK)


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
            message = f"{name} {format_number(actual)}{unit} {sign} {format_number(limit)}{unit}{change}"
            if len({r.batch_size for r in report.rows}) > 1:
                message += f" at batch {row.batch_size}"
            checks.append({"name": name, "actual": actual, "limit": limit, "ok": ok, "message": message})
    return checks


def _to_onnx(module: Any, inputs: tuple[Any, ...], path: str, opset: int | None, dynamic: bool,
             progress: Progress) -> Any:
    from ..export import to_onnx

    with progress.step(f"exporting {path} and checking it in ONNX Runtime"):
        return to_onnx(module, inputs, path, dynamic_batch=dynamic, opset=opset)
