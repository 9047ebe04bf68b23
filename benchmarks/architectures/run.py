"""Prune about 120 small architectures and idioms with fxprune and check every result.

The catalog (one module per family: video, dense prediction, detection, attention, mobile nets, ...)
holds tiny reference implementations of public architectures and of the tensor idioms their code
uses, plus torchvision models beyond classification, all with random weights and small inputs.
For each case :func:`architectures.harness.check_case` checks that

* exact mode at ratio 0.5 passes the oracle: ``fxprune.verify`` (pruned module against the masked
  original) is at most ``1e-4 * max(1, max |output|)``;
* default mode at ratio 0.5 compiles, and both pruned modules run with the output pytree structure
  and the output shapes of the model;
* no compile modifies the model (state dict and every module's training flag);
* no compile raises: any error fails the case, and one that is not an ``fxprune.FxPruneError`` is
  reported as ``untyped``; cases marked untraceable instead pass only if both modes raise the typed
  ``fxprune.TraceError``;
* exact mode stays within the oracle over a sweep: ratios 0.25 and 0.75, 0.5 with ``round_to=4``,
  0.6 with ``importance="random"``.

It prints a markdown table and the line ``N cases, K failing`` on stdout, progress on stderr, and
exits with status 1 when any case fails. A full run takes a minute or two on one thread.

Usage::

    python benchmarks/architectures/run.py
    python benchmarks/architectures/run.py --only YOLO ShuffleNet --json /tmp/architectures.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from dataclasses import asdict, replace
from pathlib import Path

import torch

# Run as a script, this file's folder is on sys.path but its package is not: add the folder above it.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from architectures import (
    attention,
    dense,
    detection,
    idioms,
    image2image,
    mobile,
    norms,
    resnets,
    sequence,
    torchvision_models,
    video3d,
    video_blocks,
    video_frames,
    wrappers,
)
from architectures.catalog import Case
from architectures.harness import EXACT_RTOL, RATIO, Row, check_case

__all__ = ["catalog", "main", "markdown"]

FAMILIES = (video3d, video_frames, video_blocks, image2image, dense, detection, torchvision_models, attention,
            norms, resnets, mobile, sequence, wrappers, idioms)


def catalog() -> list[Case]:
    """Every case, tagged with its family: the name of the catalog module that defines it."""
    return [replace(case, family=module.__name__.rpartition(".")[2]) for module in FAMILIES for case in module.CASES]


def select(cases: list[Case], only: list[str] | None) -> list[Case]:
    """The cases whose name or family contains one of ``only`` (case-insensitive), or all of them."""
    if not only:
        return cases
    wanted = [text.lower() for text in only]
    return [case for case in cases if any(text in f"{case.name} {case.family}".lower() for text in wanted)]


def markdown(rows: list[Row]) -> str:
    """The results table, then one line per failing case with what failed."""
    header = ("| case | family | exact oracle error / tolerance | default | params | MACs | groups pruned / frozen "
              "| main freeze reason |")
    note = (f"Params, MACs (after / before), groups and the main freeze reason are those of the default-mode "
            f"compile at ratio {RATIO}; the freeze reason is the one that freezes the most channels, model "
            "outputs aside.")
    lines = [note, "", header, "|---|---|---|---|---|---|---|---|"]
    lines += [_table_row(row) for row in rows]
    failing = [row for row in rows if not row.passed]
    if failing:
        lines += ["", "Failures:"] + [f"- {row.case}: {'; '.join(row.failures)}" for row in failing]
    return "\n".join(lines)


def _table_row(row: Row) -> str:
    """One markdown row."""
    name = row.case if row.passed else f"**FAIL** {row.case}"
    if row.expected_error is not None:
        expected = f"raises {row.expected_error} (expected)"
        cells = [name, row.family, expected, expected, "-", "-", "-", "-"]
    else:
        oracle = "-" if row.oracle_error is None else f"{row.oracle_error:.1e} / {row.tolerance:.1e}"
        groups = "-" if row.groups is None else f"{row.pruned} / {row.frozen} of {row.groups}"
        cells = [name, row.family, oracle, "ok" if row.default_ok else "failed", _ratio(row.params_ratio),
                 _ratio(row.macs_ratio), groups, row.freeze_reason or "-"]
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def _ratio(value: float | None) -> str:
    """A ratio cell with two decimals, ``-`` when there is none."""
    return "-" if value is None else f"{value:.2f}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description="Prune the architecture catalog with fxprune and check each result "
                                                 f"(exact-mode oracle tolerance {EXACT_RTOL:g} x max(1, |output|)).")
    parser.add_argument("--only", nargs="+", metavar="SUBSTRING",
                        help="only the cases whose name or family contains one of these (case-insensitive)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the rows to this JSON file")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, for steady timings)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the selected cases; 0 when every one passes, else 1."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    # Some cases make torch warn on every forward (reentrant checkpoint without grad, QAT observer options,
    # legacy weight_norm): deliberate in the models, and noise that would bury the progress lines.
    warnings.filterwarnings("ignore", module=r"torch(\.|$)")
    cases = select(catalog(), args.only)
    if not cases:
        print(f"no case matches {args.only}", file=sys.stderr)
        return 1
    started = time.perf_counter()
    rows = []
    for number, case in enumerate(cases, 1):
        row = check_case(case)
        rows.append(row)
        status = "ok" if row.passed else "FAIL: " + "; ".join(row.failures)
        print(f"[{number:3d}/{len(cases)}] {row.seconds:5.1f}s {case.family}: {case.name}: {status}", file=sys.stderr)
    failing = sum(not row.passed for row in rows)
    print(markdown(rows))
    print(f"\n{len(rows)} cases, {failing} failing")
    print(f"{time.perf_counter() - started:.0f} s with {args.threads} thread(s)", file=sys.stderr)
    if args.json is not None:
        args.json.write_text(json.dumps([{**asdict(row), "passed": row.passed} for row in rows], indent=1) + "\n")
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
