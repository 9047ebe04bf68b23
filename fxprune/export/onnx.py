"""ONNX export that proves itself: write the file, check it, and replay it in ONNX Runtime.

Which exporter. Tried on torch 2.14 / ORT 1.32 with a dynamic batch axis, original and
pruned ``GraphModule``, ORT run at batch 1 and 4: ``torch.onnx.export(..., dynamo=False)``
(TorchScript tracing, deprecated since torch 2.9 but present) and ``dynamo=True``
(``torch.export`` + onnxscript) both export torchvision ResNet-18/50, MobileNet v2/v3,
ShuffleNet v2, DenseNet-121, GoogLeNet, EfficientNet-B0, RegNet-X, SqueezeNet, ConvNeXt-T,
r3d_18, mc3_18, r2plus1d_18, fxprune's C3D (``view(-1, 8192)``) and SlowFast (list input),
outputs matching eager to float rounding. ``exporter="auto"`` uses **TorchScript** and
falls back to dynamo when it raises:

- TorchScript exports 2-30x faster (ResNet-50 6 s vs 10 s, mobilenet_v3_small 1 s vs 33 s,
  tiny SlowFast 4 s vs 37 s on 2 cores), which matters for tests and benchmark sweeps;
- it writes one self-contained file (dynamo puts weights in a side ``.data`` file by
  default; we ask it for one file below protobuf's 2 GB limit);
- the ORT latency of the two files is the same (ResNet-50, 1 thread: 159 vs 160 ms
  original, 40.5 vs 40.4 ms pruned);
- where TorchScript fails, dynamo works: adaptive pooling to a size that is not a factor
  of the input (VGG's 7x7 head on images under 224) is one such case; an exporter that a
  future torch removes is another.

Chatter is silenced in a targeted way: the two TorchScript deprecation warnings,
``TracerWarning`` (its concern, a trace that does not generalise, is what the replay at a
second batch size checks), the TorchScript exporter's C++ graph dump on failure (it
always logs, see :func:`_no_torchscript_graph_dump`), dynamo's progress lines
(``verbose=False``) and ORT's own log (errors reach the caller as :class:`ExportError`).

Example:
    >>> import torch, torchvision
    >>> from fxprune.export import to_onnx
    >>> model = torchvision.models.resnet18()
    >>> exported = to_onnx(model, (torch.randn(1, 3, 64, 64),), "resnet18.onnx")
    >>> exported.max_abs_error < 1e-4
    True
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn
from torch.utils._pytree import tree_flatten, tree_map

from ..errors import ExportError, InputError
from ..ir.parametrized import deepcopy_module
from ..passes.capture import normalize_inputs

__all__ = ["Exporter", "OnnxExport", "to_onnx", "make_session", "run_session", "flat_tensors"]

Exporter = Literal["auto", "torchscript", "dynamo"]
_EXPORTERS = ("auto", "torchscript", "dynamo")


@dataclass(frozen=True)
class OnnxExport:
    """What :func:`to_onnx` wrote and how well ONNX Runtime reproduces PyTorch.

    Attributes:
        path: the ``.onnx`` file.
        opset: the default-domain opset the file declares.
        exporter: ``"torchscript"`` or ``"dynamo"``, the exporter that wrote it.
        max_abs_error: largest |ONNX Runtime - PyTorch| over all outputs on the example inputs.
        file_bytes: size on disk, external weight files included.
    """

    path: Path
    opset: int
    exporter: str
    max_abs_error: float
    file_bytes: int


def to_onnx(module: nn.Module, example_inputs: Any, path: str | Path, *, dynamic_batch: bool = True,
            opset: int | None = None, atol: float = 1e-4, rtol: float = 1e-3,
            exporter: Exporter = "auto") -> OnnxExport:
    """Export ``module`` in eval mode to ONNX, check the file and compare ONNX Runtime with PyTorch.

    ``module`` is not touched: a deep copy in eval mode is exported. Inputs given as
    lists (SlowFast's ``[slow, fast]``) become one ONNX input per tensor, named
    ``input_0``, ``input_1``, ... in flattening order; outputs are ``output_0``, ...

    Args:
        module: any ``nn.Module`` or ``fx.GraphModule`` (e.g. ``fxprune.compile(...).module``).
        example_inputs: positional arguments of ``module.forward`` (a tensor, a tuple, lists of tensors).
        path: where to write the file; parent folders are created.
        dynamic_batch: make dim 0 of every input and batched output symbolic, and check that
            the file also runs at another batch size.
        opset: ONNX opset; ``None`` lets the exporter choose (20 on torch 2.14).
        atol, rtol: an output element fails when ``|ort - torch| > atol + rtol * |torch|``.
        exporter: ``"auto"`` (TorchScript, dynamo if it fails), ``"torchscript"`` or ``"dynamo"``.

    Returns:
        An :class:`OnnxExport` with the path, opset, exporter, error and file size.

    Raises:
        InputError: an option is out of range or ``example_inputs`` holds no tensor.
        ExportError: the exporter failed, ``onnx.checker`` rejected the file, or ONNX Runtime's
            output differs from PyTorch's beyond the tolerance (naming the output and the error).

    Example:
        >>> result = fxprune.compile(torchvision.models.resnet18(), 0.5, example_inputs=(x,))
        >>> to_onnx(result.module, (x,), "pruned.onnx").exporter
        'torchscript'
    """
    _check_options(atol, rtol, opset, exporter)
    inputs = normalize_inputs(example_inputs)
    flat_inputs = flat_tensors(inputs)
    if not flat_inputs:
        raise InputError("example_inputs holds no tensor: pass e.g. (torch.randn(1, 3, 224, 224),)")
    model = deepcopy_module(module).eval()
    with torch.no_grad():
        expected = flat_tensors(model(*inputs))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    used = _export(model, inputs, path, len(flat_inputs), len(expected), dynamic_batch, opset, exporter)
    _check_file(path)
    session = _load(path)
    error = _compare(_replay(session, flat_inputs, "the example inputs"), expected, atol, rtol, "the example inputs")
    if dynamic_batch:
        _check_other_batch(session, flat_inputs, expected, atol, rtol)
    opset, size = _describe(path)
    return OnnxExport(path, opset, used, error, size)


def flat_tensors(value: Any) -> list[torch.Tensor]:
    """The tensors in a (nested) structure, in ``torch.utils._pytree`` order."""
    return [leaf for leaf in tree_flatten(value)[0] if isinstance(leaf, torch.Tensor)]


def make_session(path: str | Path, *, threads: int | None,
                 optimization: ort.GraphOptimizationLevel = ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                 profile_prefix: str | None = None, config: Mapping[str, str] | None = None) -> ort.InferenceSession:
    """An ONNX Runtime CPU session with ``threads`` intra-op threads (``None``: ORT's default).

    ``config`` holds extra session entries (``SessionOptions.add_session_config_entry``) and
    ``profile_prefix`` turns on ORT's profiler, which writes ``<prefix>_<date>.json``.
    """
    options = ort.SessionOptions()
    options.graph_optimization_level = optimization
    # Fatal only: ORT's warnings are about its own graph rewrites, and its errors reach the
    # caller as exceptions that fxprune turns into an ExportError with a fix.
    options.log_severity_level = 4
    if threads is not None:
        options.intra_op_num_threads = threads
    for key, value in (config or {}).items():
        options.add_session_config_entry(key, value)
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_session(session: ort.InferenceSession, flat_inputs: Sequence[torch.Tensor]) -> list[np.ndarray]:
    """Run ``session`` on tensors named ``input_0``, ``input_1``, ... (inputs the graph dropped are skipped)."""
    feeds = {f"input_{i}": t.detach().cpu().numpy() for i, t in enumerate(flat_inputs)}
    wanted = [node.name for node in session.get_inputs()]
    missing = [name for name in wanted if name not in feeds]
    if missing:
        raise ExportError(f"the ONNX file expects inputs {missing} that the example inputs do not provide; "
                          "export it with fxprune.export.to_onnx so that inputs are named input_0, input_1, ...")
    return session.run(None, {name: feeds[name] for name in wanted})


def _check_options(atol: float, rtol: float, opset: int | None, exporter: str) -> None:
    if not (atol >= 0 and rtol >= 0):
        raise InputError(f"atol and rtol must be >= 0, got atol={atol}, rtol={rtol}")
    if opset is not None and (isinstance(opset, bool) or not isinstance(opset, int) or opset < 7):
        raise InputError(f"opset must be an int >= 7 or None (the exporter's default), got {opset!r}")
    if exporter not in _EXPORTERS:
        raise InputError(f"exporter must be one of {_EXPORTERS}, got {exporter!r}")


def _export(model: nn.Module, inputs: tuple[Any, ...], path: Path, n_inputs: int, n_outputs: int,
            dynamic_batch: bool, opset: int | None, exporter: str) -> str:
    """Write ``path`` with the chosen exporter; return the name of the one that succeeded."""
    input_names = [f"input_{i}" for i in range(n_inputs)]
    output_names = [f"output_{i}" for i in range(n_outputs)]
    order = ["torchscript", "dynamo"] if exporter == "auto" else [exporter]
    failures = []
    for name in order:
        try:
            with _quiet_exporters():
                if name == "torchscript":
                    _export_torchscript(model, inputs, path, input_names, output_names, dynamic_batch, opset)
                else:
                    _export_dynamo(model, inputs, path, input_names, output_names, dynamic_batch, opset)
            return name
        except Exception as error:  # noqa: BLE001 - exporters raise anything; each failure is reported below
            failures.append((name, error))
    details = "; ".join(f"{name}: {type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
                        for name, e in failures)
    raise ExportError(f"torch.onnx.export failed ({details}). If the model has data-dependent Python control "
                      "flow, export the traced or pruned GraphModule instead; an unsupported operator needs a "
                      "newer opset (opset=...) or exporter='dynamo'.") from failures[-1][1]


def _export_torchscript(model: nn.Module, inputs: tuple[Any, ...], path: Path, input_names: list[str],
                        output_names: list[str], dynamic_batch: bool, opset: int | None) -> None:
    axes = {name: {0: "batch"} for name in input_names + output_names} if dynamic_batch else None
    with _no_torchscript_graph_dump():
        torch.onnx.export(model, inputs, str(path), dynamo=False, input_names=input_names,
                          output_names=output_names, dynamic_axes=axes, opset_version=opset, do_constant_folding=True)


@contextlib.contextmanager
def _no_torchscript_graph_dump() -> Iterator[None]:
    """Mute the TorchScript exporter's C++ log, which dumps the whole graph when an export fails.

    ``setup_onnx_logging`` tests ``_C._jit_is_onnx_log_enabled`` without calling it, so that log
    is always on; the exception already says what failed, so only ``_jit_onnx_log`` is muted.
    """
    original = getattr(torch._C, "_jit_onnx_log", None)
    if original is None:
        yield
        return
    torch._C._jit_onnx_log = lambda *args: None
    try:
        yield
    finally:
        torch._C._jit_onnx_log = original


def _export_dynamo(model: nn.Module, inputs: tuple[Any, ...], path: Path, input_names: list[str],
                   output_names: list[str], dynamic_batch: bool, opset: int | None) -> None:
    shapes = None
    if dynamic_batch:
        batch = torch.export.Dim("batch")
        shapes = tree_map(lambda v: {0: batch} if isinstance(v, torch.Tensor) and v.dim() else None, inputs)
    # One file (external data only past protobuf's 2 GB limit), like the TorchScript exporter.
    big = sum(p.numel() * p.element_size() for p in model.parameters()) > 1_800_000_000
    torch.onnx.export(model, inputs, str(path), dynamo=True, verbose=False, input_names=input_names,
                      output_names=output_names, dynamic_shapes=shapes, opset_version=opset, external_data=big)


@contextlib.contextmanager
def _quiet_exporters() -> Iterator[None]:
    """Hide the exporters' deprecation and tracer warnings, and nothing else."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"You are using the legacy TorchScript", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=r".*axis name: .* will not be used", category=UserWarning)
        yield


def _check_file(path: Path) -> None:
    try:
        onnx.checker.check_model(str(path))  # the path form also validates files over 2 GB
    except onnx.checker.ValidationError as error:
        raise ExportError(f"onnx.checker rejects {path}: {error}\nTry another opset (opset=...) or "
                          "exporter='dynamo'.") from error


def _compare(actual: Sequence[np.ndarray], expected: Sequence[torch.Tensor], atol: float, rtol: float,
             where: str) -> float:
    """Max |actual - expected| over all outputs; raise on a count, shape or tolerance mismatch."""
    if len(actual) != len(expected):
        raise ExportError(f"ONNX Runtime returns {len(actual)} outputs on {where}, PyTorch {len(expected)}")
    worst = 0.0
    for index, (got, tensor) in enumerate(zip(actual, expected, strict=True)):
        want = tensor.detach().cpu().numpy()
        if got.shape != want.shape:
            raise ExportError(f"output_{index} has shape {got.shape} in ONNX Runtime on {where}, "
                              f"{want.shape} in PyTorch")
        if got.size == 0:
            continue
        diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
        diff[np.isnan(got) & np.isnan(want)] = 0.0  # NaN where PyTorch has NaN too is a match
        diff = np.where(np.isnan(diff), np.inf, diff)
        excess = diff - (atol + rtol * np.abs(want.astype(np.float64)))
        if (excess > 0).any():
            at = np.unravel_index(int(np.argmax(excess)), diff.shape)
            raise ExportError(
                f"output_{index} differs between ONNX Runtime and PyTorch on {where}: max |error| "
                f"{diff.max():.3e} (at {tuple(int(i) for i in at)}: ort {got[at]!r}, torch {want[at]!r}) exceeds "
                f"atol={atol} + rtol={rtol} * |torch|. Raise atol/rtol if the model is numerically "
                "sensitive, or try opset=... or exporter='dynamo'.")
        worst = max(worst, float(diff.max()))
    return worst


def _check_other_batch(session: ort.InferenceSession, flat_inputs: list[torch.Tensor],
                       expected: list[torch.Tensor], atol: float, rtol: float) -> None:
    """Run at batch + 1 (the first sample repeated); a batch size baked into the graph fails here."""
    batch = flat_inputs[0].shape[0] if flat_inputs and flat_inputs[0].dim() else None
    if batch is None or any(t.dim() == 0 or t.shape[0] != batch for t in flat_inputs):
        return  # no common batch axis: nothing to vary
    grown = [torch.cat([t, t[:1]]) for t in flat_inputs]
    where = f"a batch of {batch + 1}"
    outputs = _replay(session, grown, where, hint=_BAKED_BATCH)
    batched = [torch.cat([t, t[:1]]) if t.dim() and t.shape[0] == batch else t for t in expected]
    try:
        _compare(outputs, batched, atol, rtol, where)
    except ExportError as error:  # right at the example batch, wrong at another: a literal batch size
        raise ExportError(f"{error}{_BAKED_BATCH}") from error


_BAKED_BATCH = ("\nThe model probably bakes its batch size into a literal (e.g. x.view(2, -1)): write "
                "torch.flatten(x, 1) or x.view(x.size(0), -1), or pass dynamic_batch=False.")


def _load(path: Path) -> ort.InferenceSession:
    try:
        return make_session(path, threads=None)
    except Exception as error:  # ORT raises its own pybind exception types, none shared with Python's
        raise ExportError(f"ONNX Runtime cannot load {path}: {str(error).splitlines()[0]}\n"
                          "Try another opset (opset=...) or exporter='dynamo'.") from error


def _replay(session: ort.InferenceSession, flat_inputs: list[torch.Tensor], where: str,
            hint: str = "\nTry another opset (opset=...) or exporter='dynamo'.") -> list[np.ndarray]:
    try:
        return run_session(session, flat_inputs)
    except ExportError:
        raise
    except Exception as error:  # ORT's pybind exceptions (Fail, InvalidArgument, ...) share no base
        raise ExportError(f"ONNX Runtime fails on {where}: {str(error).splitlines()[0]}{hint}") from error


def _describe(path: Path) -> tuple[int, int]:
    """The default-domain opset of ``path`` and its size with its external data files."""
    model = onnx.load(str(path), load_external_data=False)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    locations = {entry.value for tensor in model.graph.initializer for entry in tensor.external_data
                 if entry.key == "location"}
    extra = sum((path.parent / name).stat().st_size for name in locations if (path.parent / name).exists())
    return opset, path.stat().st_size + extra
