"""Saving pruned modules as self-contained ``.pt2`` archives, loadable without the model's class.

A pruned :class:`torch.fx.GraphModule` refers to the Python classes of the model it
came from, so pickling it (``torch.save``) needs those classes at load time and runs
arbitrary code from the file. fxprune instead captures the module with
:func:`torch.export.export` (a graph of ATen operators with a dynamic batch axis) and
writes it with :func:`torch.export.save`: the graph is JSON, the weights raw bytes. The
plan and the before/after figures ride along as ``extra/fxprune.json`` in the same zip,
readable with :func:`read_metadata` without loading the model.

The capture and its check live in :mod:`fxprune.serialize.capture`, the refusal of unsafe
archives in :mod:`fxprune.serialize.archive`, and the ``train()`` / ``eval()`` switch of
loaded modules in :mod:`fxprune.serialize.modes`.

Example:
    >>> result = fxprune.compile(model, 0.5, example_inputs=(x,))
    >>> fxprune.serialize.save(result, "pruned.pt2")
    >>> module = fxprune.serialize.load("pruned.pt2")   # in any process, no model class needed
    >>> module(x).shape, read_metadata("pruned.pt2")["after"]["params"]
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import InputError
from ..passes.capture import normalize_inputs
from ..passes.plan import Plan
from ..version import __version__
from .archive import check_archive, existing_file, open_archive
from .capture import check_program, eval_mode, export_program, recorded_inputs
from .modes import with_mode_switch

__all__ = ["METADATA_FILE", "load", "read_example_inputs", "read_metadata", "read_plan", "save"]

METADATA_FILE = "fxprune.json"
_FORMAT = "fxprune-pt2"


def save(result_or_module: Any, path: str | Path, example_inputs: Any = None, *, dynamic_batch: bool = True,
         metadata: Mapping[str, Any] | None = None) -> Path:
    """Write a pruned module (or any exportable module) to a ``.pt2`` archive.

    The module is captured in eval mode (its own mode is left as it was). With
    ``dynamic_batch`` the batch axis of every input may take any size at load time;
    if the model fixes its batch size, the archive keeps the example's batch and a
    warning says so (``read_metadata(path)["dynamic_batch"]`` is then False).

    Args:
        result_or_module: a :class:`fxprune.CompileResult` (its plan and figures are
            stored too) or an ``nn.Module``.
        path: the file to write, usually ending in ``.pt2``.
        example_inputs: positional arguments of ``forward`` (a tensor, a tuple, lists of
            tensors such as SlowFast's ``[slow, fast]``). Optional for modules made by
            :func:`fxprune.compile`, which remember their input shapes.
        dynamic_batch: let the batch axis (dim 0 of every input) vary.
        metadata: extra JSON-serialisable values, stored under ``"extra"``.

    Returns:
        The path written.

    Raises:
        ExportError: if torch.export cannot capture the module, or the captured
            program does not reproduce the module's output.
        InputError: if no example inputs are given or known.

    Example:
        >>> save(result, "r2plus1d_pruned.pt2", metadata={"dataset": "ucf101"})
    """
    module = getattr(result_or_module, "module", result_or_module)
    if not isinstance(module, nn.Module):
        raise InputError(f"save needs a CompileResult or an nn.Module, got {type(result_or_module).__name__}")
    inputs = normalize_inputs(example_inputs) if example_inputs is not None else recorded_inputs(module)
    with eval_mode(module):
        program, dynamic = export_program(module, inputs, dynamic_batch)
        check_program(module, program, inputs)
    info = _metadata(result_or_module, module, inputs, dynamic, metadata)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(program, path, extra_files={METADATA_FILE: json.dumps(info)})
    return path


def load(path: str | Path) -> nn.Module:
    """Load a module written by :func:`save` (or any plain ``torch.export.save`` archive).

    No model class is imported and nothing but plain tensors is unpickled (with
    ``weights_only=True``): archives holding pickled tensor subclasses, custom objects,
    other pickles or compiled (AOTInductor) code are refused before torch reads them.

    What the loaded module is good for:

    * **inference**: call it like the original (same input structure, any batch size
      when saved with ``dynamic_batch``; other dims are fixed to the saved shapes);
    * **export**: :func:`fxprune.export.to_onnx`, ``torch.export.export`` and
      :func:`save` accept it again;
    * **fine-tuning**: it is a ``GraphModule`` of ATen operators whose parameters are
      ordinary ``nn.Parameter``\\ s, so autograd and optimisers work. ``.train()`` and
      ``.eval()`` switch BatchNorm (batch statistics, running-stat updates) and
      dropout, which torch.export's own module refuses to do. Python code that branched
      on ``self.training`` (e.g. auxiliary heads) stays as it was in eval mode;
      ``num_batches_tracked`` is not counted, so BatchNorm with ``momentum=None``
      (cumulative averages) keeps its running statistics as saved.

    It cannot be pruned again: fxprune's rules read ``nn.Module`` layers, which the
    ATen graph no longer has; prune the original model instead.

    Raises:
        InputError: if the file is missing, not a ``.pt2`` archive, or uses unsafe features.

    Example:
        >>> module = load("pruned.pt2")
        >>> logits = module(torch.randn(8, 3, 224, 224))
    """
    path = existing_file(path)
    check_archive(path)
    try:
        program = torch.export.load(path)
    except Exception as error:  # a corrupt archive or one from an incompatible torch version
        raise InputError(f"cannot load '{path}': {type(error).__name__}: {error}. Was it written by "
                         f"fxprune.save with this torch version ({torch.__version__})?") from error
    return with_mode_switch(program.module())


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The ``extra/fxprune.json`` of an archive written by :func:`save`, without loading the model.

    Keys: ``format``, ``version``, ``torch``, ``model``, ``inputs`` (one entry per
    positional argument: ``{"shape", "dtype"}`` or a list of them), ``dynamic_batch``,
    ``params``, and for a CompileResult ``plan`` (``Plan.to_json`` form), ``before``,
    ``after`` (``{"params", "macs"}``), ``groups`` (counts) and ``seconds``; ``extra``
    holds what the caller passed as ``metadata``.

    Example:
        >>> read_metadata("pruned.pt2")["after"]
        {'params': 3055880, 'macs': 147221504}
    """
    path = existing_file(path)
    with open_archive(path) as archive:
        names = [n for n in archive.namelist() if n.endswith(f"/extra/{METADATA_FILE}")]
        if not names:
            raise InputError(f"'{path}' has no fxprune metadata: was it written by fxprune.save?")
        return json.loads(archive.read(names[0]))


def read_plan(path: str | Path) -> Plan | None:
    """The pruning plan stored with an archive (None when a plain module was saved)."""
    plan = read_metadata(path).get("plan")
    return None if plan is None else Plan.from_json(json.dumps(plan))


def read_example_inputs(path: str | Path) -> tuple[Any, ...]:
    """Random inputs with the shapes recorded in an archive's metadata (for export and benchmarks)."""
    def build(spec: Any) -> Any:
        if isinstance(spec, list):
            return [build(s) for s in spec]
        dtype = getattr(torch, spec["dtype"])
        shape = tuple(spec["shape"])
        return torch.randn(shape, dtype=dtype) if dtype.is_floating_point else torch.zeros(shape, dtype=dtype)

    return tuple(build(spec) for spec in read_metadata(path)["inputs"])


def _describe(arg: Any) -> Any:
    if isinstance(arg, torch.Tensor):
        return {"shape": list(arg.shape), "dtype": str(arg.dtype).removeprefix("torch.")}
    if isinstance(arg, (list, tuple)) and all(isinstance(a, torch.Tensor) for a in arg):
        return [_describe(a) for a in arg]
    raise InputError(f"save handles tensors and lists of tensors as inputs, got {type(arg).__name__}")


def _metadata(result: Any, module: nn.Module, inputs: tuple[Any, ...], dynamic: bool,
              extra: Mapping[str, Any] | None) -> dict[str, Any]:
    info: dict[str, Any] = {
        "format": _FORMAT, "version": 1, "fxprune": __version__, "torch": torch.__version__,
        "model": type(getattr(result, "traced", module)).__name__,
        "inputs": [_describe(arg) for arg in inputs], "dynamic_batch": dynamic,
        "params": sum(p.numel() for p in module.parameters()), "extra": dict(extra or {}),
    }
    plan = getattr(result, "plan", None)
    if isinstance(plan, Plan):
        groups = result.groups
        info.update(plan=json.loads(plan.to_json()), seconds=result.seconds,
                    before={"params": result.before.params, "macs": result.before.macs},
                    after={"params": result.after.params, "macs": result.after.macs},
                    groups={"found": len(groups), "prunable": len(groups.prunable),
                            "pruned": len(plan.entries), "frozen": len(groups) - len(groups.prunable)})
    try:
        json.dumps(info)
    except TypeError as error:
        raise InputError(f"save metadata must be JSON-serialisable: {error}") from error
    return info
