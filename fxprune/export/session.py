"""ONNX Runtime sessions on the CPU, and feeding them the tensors of PyTorch inputs.

Every timed or checked run in fxprune goes through :func:`make_session` and
:func:`run_session`, so that inputs are always named ``input_0``, ``input_1``, ... in
``torch.utils._pytree`` flattening order, as :func:`fxprune.export.to_onnx` names them.

Example:
    >>> session = make_session("model.onnx", threads=2, config={"session.intra_op.allow_spinning": "0"})
    >>> outputs = run_session(session, flat_tensors((torch.randn(1, 3, 64, 64),)))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from torch.utils._pytree import tree_flatten

from ..errors import ExportError

__all__ = ["flat_tensors", "make_session", "run_session"]


def flat_tensors(value: Any) -> list[torch.Tensor]:
    """The tensors in a (nested) structure, in ``torch.utils._pytree`` order."""
    return [leaf for leaf in tree_flatten(value)[0] if isinstance(leaf, torch.Tensor)]


def make_session(path: str | Path | bytes, *, threads: int | None,
                 optimization: ort.GraphOptimizationLevel = ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                 profile_prefix: str | None = None, config: Mapping[str, str] | None = None) -> ort.InferenceSession:
    """An ONNX Runtime CPU session with ``threads`` intra-op threads (``None``: ORT's default).

    ``path`` is an ``.onnx`` file or a serialised model (``bytes``).
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
    source = path if isinstance(path, bytes) else str(path)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def run_session(session: ort.InferenceSession, flat_inputs: Sequence[torch.Tensor]) -> list[np.ndarray]:
    """Run ``session`` on tensors named ``input_0``, ``input_1``, ... (inputs the graph dropped are skipped)."""
    feeds = {f"input_{i}": t.detach().cpu().numpy() for i, t in enumerate(flat_inputs)}
    wanted = [node.name for node in session.get_inputs()]
    missing = [name for name in wanted if name not in feeds]
    if missing:
        raise ExportError(f"the ONNX file expects inputs {missing} that the example inputs do not provide; "
                          "export it with fxprune.export.to_onnx so that inputs are named input_0, input_1, ...")
    return session.run(None, {name: feeds[name] for name in wanted})
