"""Conformance sweep: prune every torchvision model and tabulate the outcome.

For each model of the zoo table (``fxprune/testing/zoo.py``), including the slow ones
unless ``--fast-only`` is given, this script

* compiles in exact mode at the ratio (default 0.5) and measures the oracle
  error with ``fxprune.verify`` (pruned module vs masked original),
* compiles in default mode at the same ratio,
* records prunable / frozen channel-group counts, params and MACs ratios
  (after / before, default mode), both compile times, and a status
  (``ok``, ``inexact`` when the oracle error is above tolerance, or
  ``failed`` with the error class and message).

Each model runs in a forked child process with a time limit, so one failure
(exception, crash or out-of-memory) never stops the sweep. Results go to
``docs/conformance.md`` (markdown) and ``benchmarks/conformance.json``.

``benchmarks/conformance.json`` is also the zoo tests' pin file: ``tests/test_zoo.py``
asserts each model's prunable-group count and params ratios against it. ``--update``
merges the models of this run into the existing reports (the other models keep their
rows), which is how pins are regenerated after an intended change.

Example::

    python3 benchmarks/conformance.py --fast-only
    python3 benchmarks/conformance.py --models resnet18 vit_b_16 --out /tmp/c.md
    python3 benchmarks/conformance.py --models resnet18 --update   # re-pin one model
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # this checkout's fxprune, not an installed one
    sys.path.insert(0, str(REPO_ROOT))

from zoo_measure import run_forked  # noqa: E402  (benchmarks/zoo_measure.py, next to this script)

from fxprune.testing import zoo  # noqa: E402

DEFAULT_MD = REPO_ROOT / "docs" / "conformance.md"
DEFAULT_JSON = REPO_ROOT / "benchmarks" / "conformance.json"
#: Exact-mode oracle tolerance, relative to max(1, |eager output|).
EXACT_RTOL = 1e-4


@dataclass
class Outcome:
    """Conformance result of one model."""

    model: str
    shape: list[int] | None = None
    slow: bool = False
    status: str = "failed"  # ok | inexact | failed
    stage: str | None = None  # build | exact | verify | default | child
    error: str | None = None
    groups: int | None = None
    prunable: int | None = None
    frozen: int | None = None
    frozen_reasons: dict[str, int] = field(default_factory=dict)
    params_before: int | None = None
    params_ratio: float | None = None
    macs_ratio: float | None = None
    exact_params_ratio: float | None = None
    oracle_err: float | None = None
    out_scale: float | None = None
    exact_s: float | None = None
    default_s: float | None = None
    wall_s: float | None = None


def _error_text(exc: BaseException) -> str:
    """Return ``Class: first line of message`` (truncated to 200 chars)."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first}"[:200]


def _ratio(after: int | float, before: int | float) -> float | None:
    """Return ``after / before`` or None when ``before`` is 0."""
    return after / before if before else None


def _record_groups(out: Outcome, result: Any) -> None:
    """Fill the channel-group counts of ``out`` from a compile result."""
    groups = list(result.groups)
    out.groups = len(groups)
    out.prunable = sum(1 for g in groups if g.prunable)
    out.frozen = out.groups - out.prunable
    reasons: dict[str, int] = {}
    for g in groups:
        if not g.prunable:
            key = str(g.reason or "unknown")[:80]
            reasons[key] = reasons.get(key, 0) + 1
    out.frozen_reasons = dict(sorted(reasons.items(), key=lambda kv: -kv[1]))


def _compile_seconds(result: Any, wall: float) -> float:
    """Prefer the compile result's own timing, fall back to wall time."""
    seconds = getattr(result, "seconds", None)
    return float(seconds) if seconds is not None else wall


def evaluate(name: str, ratio: float) -> Outcome:
    """Run the exact and default compiles of one model in this process.

    Args:
        name: Zoo model name.
        ratio: Pruning ratio.

    Returns:
        The :class:`Outcome`; exceptions are caught and recorded.
    """
    import fxprune

    out = Outcome(model=name, slow=name in zoo.SLOW)
    out.shape = list(zoo.INPUT_SHAPES.get(name, ())) or None
    stage = "build"
    try:
        model, inputs = zoo.build(name)
        with torch.no_grad():
            reference = model(*inputs)
        out.out_scale = max(1.0, float(reference.abs().max()))

        stage = "exact"
        t0 = time.perf_counter()
        exact = fxprune.compile(model, ratio, example_inputs=inputs, exact=True)
        out.exact_s = _compile_seconds(exact, time.perf_counter() - t0)
        out.exact_params_ratio = _ratio(exact.after.params, exact.before.params)

        stage = "verify"
        out.oracle_err = float(fxprune.verify(model, exact, inputs))
        del exact

        stage = "default"
        t0 = time.perf_counter()
        result = fxprune.compile(model, ratio, example_inputs=inputs)
        out.default_s = _compile_seconds(result, time.perf_counter() - t0)
        _record_groups(out, result)
        out.params_before = result.before.params
        out.params_ratio = _ratio(result.after.params, result.before.params)
        out.macs_ratio = _ratio(result.after.macs, result.before.macs)
        with torch.no_grad():
            pruned_out = result.module(*inputs)
        if pruned_out.shape != reference.shape:
            raise AssertionError(
                f"output shape {tuple(pruned_out.shape)} != {tuple(reference.shape)}")
    except Exception as exc:  # noqa: BLE001 - record every failure, keep sweeping
        out.status, out.stage, out.error = "failed", stage, _error_text(exc)
        traceback.print_exc(file=sys.stderr)
        return out
    out.stage = None
    out.status = "ok" if out.oracle_err <= EXACT_RTOL * out.out_scale else "inexact"
    return out


def _child(name: str, ratio: float, conn: Any) -> None:
    """Forked child entry point: evaluate one model and send the outcome back."""
    try:
        outcome = evaluate(name, ratio)
    except BaseException as exc:  # noqa: BLE001
        outcome = Outcome(model=name, stage="child", error=_error_text(exc))
    conn.send(asdict(outcome))
    conn.close()


def evaluate_isolated(name: str, ratio: float, timeout_s: float) -> Outcome:
    """Evaluate one model in a forked child with a time limit.

    Args:
        name: Zoo model name.
        ratio: Pruning ratio.
        timeout_s: Kill the child after this many seconds.

    Returns:
        The child's :class:`Outcome`, or a failed one if it crashed or timed out.
    """
    payload, exitcode = run_forked(_child, (name, ratio), timeout_s, grace_s=10.0)
    if payload is not None:
        return Outcome(**payload)
    why = (f"TimeoutError: exceeded {timeout_s:.0f}s" if exitcode in (None, -9)
           else f"ChildProcessError: exit code {exitcode} (crash or out of memory)")
    return Outcome(model=name, shape=list(zoo.INPUT_SHAPES.get(name, ())) or None,
                   slow=name in zoo.SLOW, stage="child", error=why)


def select_models(args: argparse.Namespace) -> list[str]:
    """Return the model names the options ask for, in table order."""
    names = list(zoo.ALL) + [n for n in zoo.UNTRACEABLE if n not in zoo.INPUT_SHAPES]
    if args.models:
        unknown = sorted(set(args.models) - set(names))
        if unknown:
            raise SystemExit(f"unknown model(s): {', '.join(unknown)}")
        names = [n for n in names if n in set(args.models)]
    if args.fast_only:
        names = [n for n in names if n not in zoo.SLOW and n not in zoo.UNTRACEABLE]
    return names


def _fmt(value: float | int | None, spec: str) -> str:
    """Format an optional number, ``-`` when missing."""
    return "-" if value is None else format(value, spec)


def _status_cell(o: Outcome) -> str:
    """Markdown status cell: ``ok``, ``inexact``, or ``failed (stage): error``."""
    if o.status != "failed":
        return o.status
    error = (o.error or "").replace("|", "\\|").replace("\n", " ")
    return f"failed ({o.stage}): {error}"


def markdown(outcomes: list[Outcome], meta: dict[str, Any]) -> str:
    """Render the conformance report as markdown."""
    ok = sum(o.status == "ok" for o in outcomes)
    inexact = sum(o.status == "inexact" for o in outcomes)
    failed = sum(o.status == "failed" for o in outcomes)
    lines = [
        "# Conformance: torchvision model zoo",
        "",
        f"- command: `{meta['command']}`",
        f"- date: {meta['date']}",
        f"- torch {meta['torch']}, torchvision {meta['torchvision']}, python {meta['python']}",
        f"- machine: {meta['machine']}, {meta['cpu_count']} cores, {meta['threads']} torch threads",
        *(f"- updated: `{u['command']}` on {u['date']} ({len(u['models'])} models)"
          for u in meta.get("updates", [])),
        f"- ratio {meta['ratio']}; oracle tolerance {EXACT_RTOL:g} x max(1, |output|)",
        f"- result: {ok} ok, {inexact} inexact, {failed} failed of {len(outcomes)} models",
        "",
        "Params and MACs ratios are after / before in default mode; the oracle error "
        "is the max abs difference between the exact-mode pruned module and the masked "
        "original (`fxprune.verify`). Slow models are marked *.",
        "",
        "| model | input | groups prunable / frozen | params ratio | MACs ratio "
        "| oracle max err | exact s | default s | status |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        shape = "x".join(map(str, o.shape)) if o.shape else "-"
        groups = f"{o.prunable} / {o.frozen}" if o.groups is not None else "-"
        lines.append(
            f"| {o.model}{' *' if o.slow else ''} | {shape} | {groups} "
            f"| {_fmt(o.params_ratio, '.3f')} | {_fmt(o.macs_ratio, '.3f')} "
            f"| {_fmt(o.oracle_err, '.2e')} | {_fmt(o.exact_s, '.2f')} "
            f"| {_fmt(o.default_s, '.2f')} | {_status_cell(o)} |")
    return "\n".join(lines) + "\n"


def metadata(args: argparse.Namespace) -> dict[str, Any]:
    """Collect the environment header of the report."""
    import torchvision

    return {
        "command": "python3 " + " ".join(shlex.quote(a) for a in sys.argv),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "machine": f"{platform.system()} {platform.machine()}",
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "ratio": args.ratio,
    }


def write_reports(outcomes: list[Outcome], meta: dict[str, Any], md_path: Path,
                  json_path: Path) -> None:
    """Write the markdown and JSON reports."""
    md_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.write_text(markdown(outcomes, meta))
    json_path.parent.mkdir(parents=True, exist_ok=True)
    payload = {**meta, "models": [asdict(o) for o in outcomes]}
    json_path.write_text(json.dumps(payload, indent=1) + "\n")


def merged(outcomes: list[Outcome], meta: dict[str, Any], base: dict[str, Any] | None
           ) -> tuple[list[Outcome], dict[str, Any]]:
    """This run's outcomes merged into the report ``base`` read before the run (``--update``).

    Models of this run replace their old rows, the others keep theirs, in table order;
    the old header stays and lists this run under ``updates``.
    """
    if base is None:
        return outcomes, meta
    rows = {row["model"]: Outcome(**row) for row in base["models"]}
    rows.update((o.model, o) for o in outcomes)
    update = {"command": meta["command"], "date": meta["date"], "models": [o.model for o in outcomes]}
    header = {key: value for key, value in base.items() if key != "models"}
    header["updates"] = [*base.get("updates", []), update]
    rank = {name: index for index, name in enumerate([*zoo.ALL, *sorted(zoo.UNTRACEABLE)])}
    return sorted(rows.values(), key=lambda o: (rank.get(o.model, len(rank)), o.model)), header


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse command-line options."""
    parser = argparse.ArgumentParser(
        description="Prune every torchvision classification/video model with fxprune "
                    "(exact and default mode) and write a conformance table.")
    parser.add_argument("--models", nargs="+", metavar="NAME",
                        help="only these zoo model names (default: every model, slow included)")
    parser.add_argument("--fast-only", action="store_true",
                        help="skip the models in zoo.SLOW (and the untraceable ones)")
    parser.add_argument("--out", type=Path, default=DEFAULT_MD,
                        help="markdown report path (default docs/conformance.md)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON,
                        help="JSON report path (default benchmarks/conformance.json)")
    parser.add_argument("--ratio", type=float, default=0.5,
                        help="pruning ratio for both compiles (default 0.5)")
    parser.add_argument("--timeout", type=float, default=900.0,
                        help="seconds before a model's child process is killed (default 900)")
    parser.add_argument("--no-isolate", action="store_true",
                        help="run models in this process instead of forked children "
                             "(easier debugging; a crash then ends the sweep)")
    parser.add_argument("--update", action="store_true",
                        help="merge this run's models into the existing reports instead of replacing "
                             "them (re-pins these models for tests/test_zoo.py)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the sweep.

    Returns:
        0 when every selected model is ``ok``, else 1.
    """
    from fxprune.progress import progress

    args = parse_args(argv)
    names = select_models(args)
    meta = metadata(args)
    base = json.loads(args.json.read_text()) if args.update and args.json.exists() else None
    outcomes: list[Outcome] = []
    bar = progress(names, "conformance", unit="model")
    for name in bar:
        bar.set_postfix_str(name)
        t0 = time.perf_counter()
        outcome = (evaluate(name, args.ratio) if args.no_isolate
                   else evaluate_isolated(name, args.ratio, args.timeout))
        outcome.wall_s = round(time.perf_counter() - t0, 3)
        outcomes.append(outcome)
        if outcome.status != "ok":
            bar.write(f"{name}: {_status_cell(outcome)}")
        rows, header = merged(outcomes, meta, base)
        write_reports(rows, header, args.out, args.json)  # partial results survive
    ok = sum(o.status == "ok" for o in outcomes)
    print(f"{ok}/{len(outcomes)} ok; wrote {args.out} and {args.json}")
    return 0 if ok == len(outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
