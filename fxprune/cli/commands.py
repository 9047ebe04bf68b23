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
import warnings
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
from .inputs import (
    example_inputs,
    load_calibration,
    load_model,
    load_plan,
    parse_ratios,
)
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
    latency = args.target_latency_ms is not None or args.target_latency is not None
    if sum(bool(v) for v in (args.plan, args.ratio, args.config, latency)) > 1:
        raise InputError("give one of --ratio, --plan, --config or a latency target (--target-latency[-ms])")
    if args.int8 and not latency:
        raise InputError("--int8 on prune makes a latency target (--target-latency[-ms]) measure the INT8 model; "
                         "to quantize a pruned model, run 'fxprune export ... --int8'")
    if args.submodules is not False and (args.config or args.plan):
        raise InputError("--submodules takes --ratio: a config or a saved plan applies to one captured model")
    inputs = _inputs(args)
    model = _model(args.model, progress, args.weights)
    with progress.step(f"pruning {args.model} (trace, groups, plan, rewrite{', measure' if latency else ''})"):
        if args.config:
            result = _from_config(args.config, model, inputs, args.quiet)
        else:
            ratios = load_plan(args.plan) if args.plan else None if latency else parse_ratios(args.ratio)
            result = compile_model(model, ratios, example_inputs=inputs, exact=args.exact, ignore=args.ignore,
                                   round_to=args.round_to, importance=args.importance, capture=args.capture,
                                   check_capture=args.check_capture, submodules=args.submodules,
                                   target_latency_ms=args.target_latency_ms, target_latency=args.target_latency,
                                   latency=_latency_settings(args) if latency else None)
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
            "outputs": outputs, "onnx": onnx_data(onnx) or None,
            "latency": {**asdict(result.latency), "met": result.latency.met} if result.latency else None}
    text = "\n".join([result.summary()] + [f"  wrote {kind:<4} {path}" for kind, path in outputs.items()]
                     + ([f"  ONNX max |onnxruntime - torch| = {onnx.max_abs_error:.3g}"] if onnx else []))
    if result.latency is not None and not result.latency.met:  # a build asked for this latency: fail it
        return Outcome(text, data, [f"budget missed: {result.latency.describe()}"], EXIT_BUDGET)
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


def _latency_settings(args: argparse.Namespace) -> Any:
    from ..export import LatencySettings

    return LatencySettings(threads=args.threads, batch=args.batch, runs=args.latency_runs,
                           session_config=dict(args.session_config), cache_dir=args.latency_cache,
                           progress=not args.quiet, int8=getattr(args, "int8", False))


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
    data = {"model": args.model, "inputs": input_shapes(inputs), **onnx_data(info),
            "dynamic_batch": not args.no_dynamic_batch}
    if args.int8:
        from ..export import quantize

        target = args.int8_output or str(Path(args.output).with_suffix(".int8.onnx"))
        with progress.step(f"quantizing to INT8 ({target})"):
            q = quantize(info.path, _calibration(args, inputs), target, check_inputs=inputs)
        text += (f"\nwrote {q.path} (INT8 QDQ, {q.file_bytes / 1e6:.2f} MB, {q.qdq_nodes} Q/DQ nodes, "
                 f"{q.calibration_batches} calibration batches); max |int8 - float| = {q.max_abs_error:.3g}")
        data["int8"] = {"path": str(q.path), "bytes": q.file_bytes, "max_abs_error": q.max_abs_error,
                        "qdq_nodes": q.qdq_nodes, "calibration_batches": q.calibration_batches}
    return Outcome(text, data)


def _calibration(args: argparse.Namespace, inputs: tuple[Any, ...]) -> list[Any]:
    if args.calibration:
        return load_calibration(args.calibration)
    warnings.warn("fxprune: --int8 without --calibration calibrates on the random --input-shape inputs: "
                  "activation scales fit noise, not data; pass --calibration module:function", UserWarning,
                  stacklevel=2)
    return [inputs]


def bench_command(args: argparse.Namespace, progress: Progress) -> Outcome:
    from ..export import benchmark

    _budget_row(args)  # a contradictory budget option fails before minutes of measuring
    inputs = _inputs(args, args.pruned, args.original)
    original = _model(args.original, progress, args.weights)
    pruned = _model(args.pruned, progress)
    with progress.step(f"benchmarking ({args.runs} runs, {args.warmup} warm-up)"):
        report = benchmark({"original": original, "pruned": pruned}, inputs, runs=args.runs, warmup=args.warmup,
                           threads=args.threads, eager=not args.no_eager, progress=not args.quiet,
                           batch_sizes=(args.batch,) if args.batch else (1,),
                           session_config=dict(args.session_config),
                           int8=_calibration(args, inputs) if args.int8 else None)
    markdown = report.to_markdown()
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(markdown + "\n")
    budgets = _budgets(report, args)
    misses = [f"budget missed: {b['message']}" for b in budgets if not b["ok"]]
    lines = [f"budget ok: {b['message']}" for b in budgets if b["ok"]]
    data = {**json.loads(report.to_json()), "budgets": budgets, "passed": not misses}
    return Outcome("\n".join([markdown] + lines), data, misses, EXIT_BUDGET if misses else EXIT_OK)


def _budget_row(args: argparse.Namespace) -> str:
    """The report row the budgets check: the pruned model, or its INT8 model when quantized."""
    on = args.budget_on or ("int8" if args.int8 else "pruned")
    if on == "int8" and not args.int8:
        raise InputError("--budget-on int8 needs --int8 (and usually --calibration)")
    if args.max_int8_error is not None and not args.int8:
        raise InputError("--max-int8-error needs --int8: it bounds the INT8 model's error against float")
    return "pruned int8" if on == "int8" else "pruned"


def _budgets(report: Any, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every budget given, checked against every row (batch size) of the model ``--budget-on`` names."""
    checks = []
    checked = _budget_row(args)
    int8_error = {r.batch_size: r.int8_error for r in report.rows if r.name == "pruned int8"}
    for row in (r for r in report.rows if r.name == checked):
        for name, actual, limit, unit, higher_is_better in (
                ("latency", row.ort_median_ms, args.max_latency_ms, " ms", False),
                ("speed-up", row.speedup, args.min_speedup, "x", True),
                ("params", row.params, args.max_params, "", False),
                ("size", row.onnx_bytes / 1e6, args.max_size_mb, " MB", False),
                ("INT8 error", int8_error.get(row.batch_size), args.max_int8_error, "", False)):
            if limit is None or actual is None:
                continue
            ok = actual >= limit if higher_is_better else actual <= limit
            sign = (">=" if ok else "<") if higher_is_better else ("<=" if ok else ">")
            change = f" ({(actual / limit - 1) * 100:+,.0f}%)" if not ok else ""
            message = f"{name} {format_number(actual)}{unit} {sign} {format_number(limit)}{unit}{change}"
            if checked != "pruned":
                message += f" ({checked})"
            if len({r.batch_size for r in report.rows}) > 1:
                message += f" at batch {row.batch_size}"
            checks.append({"name": name, "actual": actual, "limit": limit, "ok": ok, "message": message})
    return checks


def _to_onnx(module: Any, inputs: tuple[Any, ...], path: str, opset: int | None, dynamic: bool,
             progress: Progress) -> Any:
    from ..export import to_onnx

    with progress.step(f"exporting {path} and checking it in ONNX Runtime"):
        return to_onnx(module, inputs, path, dynamic_batch=dynamic, opset=opset)
