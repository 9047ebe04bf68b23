"""Static INT8 quantization of an exported model with ONNX Runtime's own tool, checked against the float model.

:func:`quantize` calls ``onnxruntime.quantization.quantize_static`` in QDQ format
(QuantizeLinear/DequantizeLinear pairs around each quantized operator, which ORT's CPU
provider fuses into integer kernels), with per-channel weights (one scale per output
channel: pruned convs have uneven filter norms) and MinMax calibration over the batches
given, after ORT's recommended pre-processing (``quant_pre_process``: graph
optimisation, so that folded biases are initializers the quantizer can see).
Activations are unsigned and weights signed 8-bit, ORT's recommended pairing on x86.
The quantized file is then replayed next to the float one on the check inputs (default:
the first calibration batch), and the largest output difference is reported; an
``evaluate`` callable also gets each model's runner, to report a metric for both.

Example:
    >>> exported = to_onnx(result.module, (x,), "pruned.onnx")
    >>> q = quantize(exported.path, [(torch.randn(8, 3, 224, 224),)], "pruned.int8.onnx")
    >>> q.qdq_nodes > 0, q.max_abs_error
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process
from torch.utils.data import DataLoader

from ..errors import ExportError, InputError
from ..passes.capture import normalize_inputs
from .session import flat_tensors, make_session, run_session

__all__ = ["QuantizedExport", "quantize", "calibration_batches"]

Runner = Callable[[Any], list[np.ndarray]]


@dataclass(frozen=True)
class QuantizedExport:
    """What :func:`quantize` wrote and how close it stays to the float model.

    Attributes:
        path: the INT8 ``.onnx`` file.
        float_path: the float model it was made from.
        max_abs_error: largest |INT8 - float| output over the check inputs.
        file_bytes, float_bytes: sizes on disk.
        qdq_nodes: QuantizeLinear and DequantizeLinear nodes in the file.
        calibration_batches: batches the calibration ran over.
        metric, float_metric: what ``evaluate`` returned for the INT8 and the float model.
    """

    path: Path
    float_path: Path
    max_abs_error: float
    file_bytes: int
    float_bytes: int
    qdq_nodes: int
    calibration_batches: int
    metric: float | None = None
    float_metric: float | None = None


def quantize(onnx_path: str | Path, calibration: Iterable[Any], out_path: str | Path, *,
             check_inputs: Any = None, evaluate: Callable[[Runner], float] | None = None,
             per_channel: bool = True, max_batches: int | None = None) -> QuantizedExport:
    """Quantize ``onnx_path`` (written by :func:`fxprune.export.to_onnx`) to static INT8 QDQ at ``out_path``.

    Args:
        onnx_path: the float model; its inputs are named ``input_0``, ``input_1``, ...
        calibration: batches of example inputs (each what ``forward`` takes: a tensor or a tuple
            of them), or a ``DataLoader`` whose batches are ``(inputs, labels)``.
        out_path: where to write the INT8 model.
        check_inputs: inputs to compare float and INT8 outputs on (default: the first batch).
        evaluate: ``evaluate(run) -> metric``, where ``run(inputs)`` returns a model's outputs;
            called once per model, e.g. to measure accuracy over a test loader.
        per_channel: one weight scale per output channel (else one per tensor).
        max_batches: calibrate on at most this many batches.

    Raises:
        InputError: the calibration yields no batch.
        ExportError: ONNX Runtime's quantizer fails on the model.
    """
    source, target = Path(onnx_path), Path(out_path)
    batches = calibration_batches(calibration, max_batches)
    if not batches:
        raise InputError("the calibration data yields no batch: pass a few batches of inputs (or a DataLoader)")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(prefix="fxprune-quantize-") as folder, _quiet_quantizer():
            prepared = Path(folder) / "prepared.onnx"
            quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
            quantize_static(str(prepared), str(target), _Reader(batches), quant_format=QuantFormat.QDQ,
                            per_channel=per_channel, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    except Exception as error:  # the quantizer raises whatever its passes raise
        raise ExportError(f"onnxruntime.quantization.quantize_static fails on {source}: "
                          f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}") from error
    runners = [_runner(source), _runner(target)]
    check = normalize_inputs(check_inputs) if check_inputs is not None else batches[0]
    reference, quantized = (run(check) for run in runners)
    max_error = max((float(np.max(np.abs(q.astype(np.float64) - r)))
                     for q, r in zip(quantized, reference, strict=True) if r.size), default=0.0)
    metrics = [evaluate(run) for run in runners] if evaluate is not None else [None, None]
    nodes = sum(node.op_type in ("QuantizeLinear", "DequantizeLinear") for node in onnx.load(str(target)).graph.node)
    return QuantizedExport(target, source, max_error, target.stat().st_size, source.stat().st_size, nodes, len(batches),
                           metrics[1], metrics[0])


def calibration_batches(calibration: Iterable[Any], max_batches: int | None = None) -> list[tuple[Any, ...]]:
    """The calibration data as a list of positional-argument tuples (a DataLoader's labels dropped)."""
    loader = isinstance(calibration, DataLoader)
    batches: list[tuple[Any, ...]] = []
    for batch in calibration:
        if max_batches is not None and len(batches) >= max_batches:
            break
        batches.append(normalize_inputs(batch[0] if loader else batch))
    return batches


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """The quantizer logs advice through the root logger; errors still raise."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _runner(path: Path) -> Runner:
    session = make_session(path, threads=None)
    return lambda inputs: run_session(session, flat_tensors(normalize_inputs(inputs)))


class _Reader(CalibrationDataReader):
    """Feeds ORT's calibrator one batch at a time, inputs named as :func:`to_onnx` names them."""

    def __init__(self, batches: list[tuple[Any, ...]]) -> None:
        self._feeds: Iterator[dict[str, np.ndarray]] = iter(
            [{f"input_{i}": t.detach().cpu().numpy() for i, t in enumerate(flat_tensors(b))} for b in batches])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)
