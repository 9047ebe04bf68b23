"""Latency of models side by side in ONNX Runtime (and eager PyTorch), against their MACs.

Each model is exported with :func:`fxprune.export.to_onnx` (so every timed file is
also a checked one), then timed on the CPU execution provider with graph
optimisation level ALL: ``warmup`` untimed runs, then ``runs`` timed runs, reported
as median and 90th percentile. The first model is the baseline: every row gets
``speedup = baseline median / its median`` and ``macs_reduction = baseline MACs / its
MACs``, and ``efficiency = speedup / macs_reduction`` says how much of the ideal
speed-up that pruning promised the runtime delivers (1.0: all of it).

What moves efficiency (measured on ORT 1.32, 2-core AVX-512 CPU, batch 1):

- channel counts: ORT runs 2D convs in its blocked NCHWc layout only when the channel
  counts suit the block (16 floats on AVX-512); other convs fall back to im2col + GEMM
  plus layout reorders. ResNet-50 at ratio 0.3 keeps 17 of 53 convs blocked
  (efficiency 0.74), with ``round_to=8`` or ``16`` all 53 (0.93-1.0);
- 3D convs never use NCHWc: they run im2col + GEMM, and thin GEMMs (few output channels,
  as in R(2+1)D's (3,1,1) temporal convs) are bound by memory traffic that shrinks with
  the input channels only (2x at ratio 0.5, not 4x), so video models reach 0.8-0.9;
- a shared machine: ORT's intra-op threads spin while waiting, which, when other
  processes compete for the cores, doubles latency and halves efficiency. Pass
  ``session_config={"session.intra_op.allow_spinning": "0"}`` (or ``threads=1``) there;
  the default stays ORT's own so that figures match a default deployment.

Example:
    >>> import torch, torchvision, fxprune
    >>> from fxprune.export import benchmark
    >>> model, x = torchvision.models.resnet18(), torch.randn(1, 3, 64, 64)
    >>> pruned = fxprune.compile(model, 0.5, example_inputs=(x,)).module
    >>> report = benchmark((model, pruned), (x,), runs=10)
    >>> print(report.to_markdown())
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import onnxruntime as ort
import torch
from torch import nn

from ..errors import InputError
from ..ir.parametrized import deepcopy_module
from ..passes.capture import normalize_inputs
from ..passes.figures import count_params, human_count
from ..progress import progress as progress_of
from .onnx import OnnxExport, to_onnx
from .quantize import calibration_batches, quantize
from .session import flat_tensors, make_session, run_session
from .timing import count_macs, median, p90, time_calls, with_batch

__all__ = ["BenchmarkRow", "BenchmarkReport", "benchmark"]


@dataclass(frozen=True)
class BenchmarkRow:
    """One model at one batch size. Latencies in milliseconds; ratios against the baseline model."""

    name: str
    batch_size: int
    ort_median_ms: float
    ort_p90_ms: float
    eager_median_ms: float | None
    eager_p90_ms: float | None
    onnx_bytes: int
    params: int
    macs: int
    speedup: float
    macs_reduction: float
    efficiency: float
    eager_speedup: float | None
    int8_error: float | None = None


@dataclass(frozen=True)
class BenchmarkReport:
    """What :func:`benchmark` measured: one row per model and batch size, baseline first.

    Attributes:
        rows: the measurements.
        baseline: name of the model the ratios are relative to.
        threads, runs, warmup: the settings used (threads for both ORT and eager).
        session_config: the extra ONNX Runtime session entries used.
        versions: torch and onnxruntime versions, for comparing reports.
    """

    rows: tuple[BenchmarkRow, ...]
    baseline: str
    threads: int
    runs: int
    warmup: int
    session_config: Mapping[str, str]
    versions: Mapping[str, str]

    def to_json(self) -> str:
        """The report as JSON; :meth:`from_json` reads it back."""
        return json.dumps({**asdict(self), "session_config": dict(self.session_config),
                           "versions": dict(self.versions)}, indent=2)

    @classmethod
    def from_json(cls, text: str) -> BenchmarkReport:
        """Parse :meth:`to_json`'s output.

        Example:
            >>> BenchmarkReport.from_json(report.to_json()) == report
            True
        """
        data = json.loads(text)
        rows = tuple(BenchmarkRow(**row) for row in data.pop("rows"))
        return cls(rows=rows, **data)

    def to_markdown(self) -> str:
        """A GitHub-flavoured table, one line per row, with the settings underneath."""
        header = ["model", "batch", "ORT median ms", "ORT p90 ms", "eager median ms", "params", "MACs",
                  "ONNX MB", "speed-up", "MACs reduction", "efficiency"]
        int8 = any(r.int8_error is not None for r in self.rows)
        header += ["INT8 max err"] if int8 else []
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for r in self.rows:
            cells = [r.name, str(r.batch_size), f"{r.ort_median_ms:.2f}", f"{r.ort_p90_ms:.2f}",
                     "-" if r.eager_median_ms is None else f"{r.eager_median_ms:.2f}", human_count(r.params),
                     human_count(r.macs), f"{r.onnx_bytes / 1e6:.1f}", f"{r.speedup:.2f}x", f"{r.macs_reduction:.2f}x",
                     f"{r.efficiency:.2f}"]
            cells += (["-" if r.int8_error is None else f"{r.int8_error:.3g}"] if int8 else [])
            lines.append("| " + " | ".join(cells) + " |")
        versions = ", ".join(f"{k} {v}" for k, v in self.versions.items())
        config = "".join(f", {k}={v}" for k, v in self.session_config.items())
        lines.append(f"\nONNX Runtime CPU, {self.threads} threads{config}, {self.warmup} warm-up + {self.runs} timed "
                     f"runs; baseline {self.baseline}; {versions}")
        return "\n".join(lines)


def benchmark(models: Mapping[str, nn.Module] | tuple[nn.Module, nn.Module], example_inputs: Any, *,
              runs: int = 50, warmup: int = 10, threads: int | None = None, eager: bool = True,
              batch_sizes: Sequence[int] = (1,), workdir: str | Path | None = None, progress: bool = True,
              session_config: Mapping[str, str] | None = None, int8: Iterable[Any] | None = None) -> BenchmarkReport:
    """Export each model to ONNX and time it in ONNX Runtime (and eager PyTorch) side by side.

    No model is modified: each is copied and put in eval mode. Timed runs alternate
    between the models (run 1 of each, run 2 of each, ...), so that a change in machine
    load during the benchmark hits every model alike and the ratios stay meaningful.

    Args:
        models: ``{name: model}``, the first being the baseline, or ``(original, pruned)``.
        example_inputs: positional arguments of ``forward``; dim 0 of every tensor is the batch,
            resized to each of ``batch_sizes`` by repeating or dropping samples.
        runs, warmup: timed and untimed runs per model and batch size.
        threads: ORT ``intra_op_num_threads`` and ``torch.set_num_threads`` (default: ``os.cpu_count()``);
            torch's setting is restored afterwards.
        eager: also time eager PyTorch under ``torch.inference_mode``.
        batch_sizes: batch sizes to measure (one ONNX file per model serves them all).
        workdir: where to keep the ONNX files; a temporary folder, deleted afterwards, when ``None``.
        progress: show a tqdm bar on a terminal, plain lines on stderr otherwise.
        session_config: extra ONNX Runtime session entries, e.g. ``{"session.intra_op.allow_spinning": "0"}``.
        int8: calibration batches (see :func:`fxprune.export.quantize`): every model also gets a
            ``"<name> int8"`` row, its ONNX file quantized to static INT8 QDQ (no eager time; the
            row's ``int8_error`` is the largest |INT8 - float| output on the first batch).

    Returns:
        A :class:`BenchmarkReport`: ``.rows``, ``.to_markdown()``, ``.to_json()``.

    Raises:
        InputError: an argument is malformed (no models, runs < 1, a batch size < 1, ...).
        ExportError: a model does not export, or ONNX Runtime does not reproduce it.

    Example:
        >>> report = benchmark({"original": model, "pruned": result.module}, (x,), runs=20, threads=4)
        >>> report.rows[1].speedup, report.rows[1].efficiency
    """
    named = {name: deepcopy_module(model).eval() for name, model in _named_models(models).items()}
    threads = (os.cpu_count() or 1) if threads is None else threads
    _check_settings(runs, warmup, threads, batch_sizes)
    inputs = normalize_inputs(example_inputs)
    steps = len(named) * (2 if int8 is not None else 1) + len(batch_sizes) * (2 if eager else 1)
    bar = progress_of(total=steps, desc="benchmark", unit="step", enabled=progress, leave=False)
    with _folder(workdir) as folder, bar:
        exported = {name: _export(name, model, inputs, folder / f"{index}_{_file_stem(name)}.onnx", bar)
                    for index, (name, model) in enumerate(named.items())}
        files: dict[str, tuple[Path, int, float | None, str]] = {
            name: (e.path, e.file_bytes, None, name) for name, e in exported.items()}
        if int8 is not None:
            files.update(_quantized(exported, calibration_batches(int8), folder, bar))
        sessions = {name: make_session(f[0], threads=threads, config=session_config) for name, f in files.items()}
        measured = []
        for batch in batch_sizes:
            batch_inputs = with_batch(inputs, batch)
            flat = flat_tensors(batch_inputs)
            bar.set_postfix_str(f"ONNX Runtime, batch {batch}")
            ort_times = time_calls({n: partial(run_session, s, flat) for n, s in sessions.items()}, runs, warmup)
            bar.update()
            eager_times = _time_eager(named, batch_inputs, runs, warmup, threads, bar) if eager else {}
            macs = {name: count_macs(model, batch_inputs) for name, model in named.items()}
            measured += [{"name": name, "batch_size": batch, "ort": ort_times[name], "eager": eager_times.get(name),
                          "onnx_bytes": size, "params": count_params(named[source]), "macs": macs[source],
                          "int8_error": error} for name, (_, size, error, source) in files.items()]
    baseline = next(iter(named))
    return BenchmarkReport(tuple(_relative_rows(measured, baseline)), baseline, threads, runs, warmup,
                           dict(session_config or {}), {"torch": torch.__version__, "onnxruntime": ort.__version__})


@contextlib.contextmanager
def _folder(workdir: str | Path | None) -> Iterator[Path]:
    """``workdir`` (created if needed), or a temporary folder deleted on exit."""
    if workdir is not None:
        Path(workdir).mkdir(parents=True, exist_ok=True)
        yield Path(workdir)
        return
    with tempfile.TemporaryDirectory(prefix="fxprune-bench-") as scratch:
        yield Path(scratch)


def _named_models(models: Mapping[str, nn.Module] | tuple[nn.Module, nn.Module]) -> dict[str, nn.Module]:
    if isinstance(models, tuple) and len(models) == 2:
        models = {"original": models[0], "pruned": models[1]}
    if not isinstance(models, Mapping) or not models:
        raise InputError("models must be a non-empty {name: module} mapping or an (original, pruned) pair")
    for name, model in models.items():
        if not isinstance(model, nn.Module):
            raise InputError(f"models[{name!r}] is a {type(model).__name__}, not an nn.Module")
    return dict(models)


def _check_settings(runs: int, warmup: int, threads: int, batch_sizes: Sequence[int]) -> None:
    def positive(value: object) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 1

    if not positive(runs) or not (positive(warmup) or warmup == 0):
        raise InputError(f"runs must be >= 1 and warmup >= 0, got runs={runs!r}, warmup={warmup!r}")
    if not positive(threads):
        raise InputError(f"threads must be a positive int (or None for os.cpu_count()), got {threads!r}")
    if not batch_sizes or not all(positive(b) for b in batch_sizes):
        raise InputError(f"batch_sizes must be positive ints, e.g. (1, 8), got {batch_sizes!r}")


def _export(name: str, model: nn.Module, inputs: tuple[Any, ...], path: Path, bar: Any) -> OnnxExport:
    bar.set_postfix_str(f"export {name}")
    exported = to_onnx(model, inputs, path)
    bar.update()
    return exported


def _quantized(exported: Mapping[str, OnnxExport], batches: list[Any], folder: Path,
               bar: Any) -> dict[str, tuple[Path, int, float, str]]:
    files = {}
    for name, e in exported.items():
        bar.set_postfix_str(f"INT8 {name}")
        q = quantize(e.path, batches, e.path.with_suffix(".int8.onnx"))
        files[f"{name} int8"] = (q.path, q.file_bytes, q.max_abs_error, name)
        bar.update()
    return files


def _relative_rows(measured: list[dict[str, Any]], baseline: str) -> list[BenchmarkRow]:
    base = {m["batch_size"]: m for m in measured if m["name"] == baseline}
    rows = []
    for m in measured:
        ref = base[m["batch_size"]]
        speedup = median(ref["ort"]) / median(m["ort"])
        macs_reduction = ref["macs"] / m["macs"] if m["macs"] else float("nan")
        eager_speedup = median(ref["eager"]) / median(m["eager"]) if m["eager"] else None
        rows.append(BenchmarkRow(
            m["name"], m["batch_size"], median(m["ort"]), p90(m["ort"]),
            median(m["eager"]) if m["eager"] else None, p90(m["eager"]) if m["eager"] else None,
            m["onnx_bytes"], m["params"], m["macs"], speedup, macs_reduction, speedup / macs_reduction,
            eager_speedup, m["int8_error"]))
    return rows


def _time_eager(models: Mapping[str, nn.Module], inputs: tuple[Any, ...], runs: int, warmup: int, threads: int,
                bar: Any) -> dict[str, list[float]]:
    bar.set_postfix_str("eager PyTorch")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            return time_calls({name: partial(model, *inputs) for name, model in models.items()}, runs, warmup)
    finally:
        torch.set_num_threads(previous)
        bar.update()


def _file_stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "model"
