"""What an ``fxprune`` command hands back: exit statuses, its outcome, progress lines and report figures.

A command returns an :class:`Outcome` (text for humans, data for ``--json``); the figures in
that data are built with the helpers here so every command reports shapes, ratios, group
counts and ONNX details alike.

Example:
    >>> outcome = Outcome("pruned to half", {"params_ratio": rounded_ratio(5, 10)})
    >>> outcome.data, outcome.code
    ({'params_ratio': 0.5}, 0)
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..passes.groups import Groups

__all__ = [
    "EXIT_BUDGET",
    "EXIT_INTERNAL",
    "EXIT_OK",
    "EXIT_USAGE",
    "Outcome",
    "Progress",
    "capture_data",
    "format_number",
    "group_counts",
    "input_shapes",
    "onnx_data",
    "rounded_ratio",
]

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_BUDGET = 0, 1, 2, 3


@dataclass
class Outcome:
    """What a command produced: text for humans, data for --json, problems for stderr, exit status."""

    text: str
    data: dict[str, Any]
    problems: list[str] = field(default_factory=list)
    code: int = EXIT_OK


class Progress:
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


def format_number(value: float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:.3g}"


def onnx_data(info: Any) -> dict[str, Any]:
    if info is None:
        return {}
    return {"path": str(info.path), "opset": info.opset, "exporter": info.exporter,
            "max_abs_error": info.max_abs_error, "file_bytes": info.file_bytes}


def capture_data(captured: Any) -> dict[str, Any] | None:
    """Which front end captured the model, and why the others were left (--json)."""
    if captured is None:  # a schedule's step reports its own
        return None
    return {"front_end": captured.front_end, "left": list(captured.left), "dynamic_batch": captured.dynamic_batch,
            "batch_note": captured.note or None,
            "check_seconds": None if captured.check_seconds is None else round(captured.check_seconds, 3)}


def group_counts(groups: Groups, pruned: int | None) -> dict[str, int]:
    counts = {"found": len(groups), "prunable": len(groups.prunable), "frozen": len(groups) - len(groups.prunable)}
    return counts if pruned is None else {**counts, "pruned": pruned}


def input_shapes(inputs: tuple[Any, ...]) -> list[Any]:
    return [[list(t.shape) for t in arg] if isinstance(arg, list) else list(arg.shape) for arg in inputs]


def rounded_ratio(after: int, before: int) -> float | None:
    return round(after / before, 4) if before else None
