"""Saving pruned modules as self-contained ``.pt2`` archives, loadable without the model's class.

A pruned :class:`torch.fx.GraphModule` refers to the Python classes of the model it
came from, so pickling it (``torch.save``) needs those classes at load time and runs
arbitrary code from the file. fxprune instead captures the module with
:func:`torch.export.export` (a graph of ATen operators with a dynamic batch axis) and
writes it with :func:`torch.export.save`: the graph is JSON, the weights raw bytes. The
plan and the before/after figures ride along as ``extra/fxprune.json`` in the same zip,
readable with :func:`read_metadata` without loading the model.

Example:
    >>> result = fxprune.compile(model, 0.5, example_inputs=(x,))
    >>> fxprune.serialize.save(result, "pruned.pt2")
    >>> module = fxprune.serialize.load("pruned.pt2")   # in any process, no model class needed
    >>> module(x).shape, read_metadata("pruned.pt2")["after"]["params"]
"""

from __future__ import annotations

import contextlib
import io
import json
import types
import warnings
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import fx, nn
from torch.export import Dim
from torch.utils._pytree import tree_flatten, tree_map, tree_unflatten

from .errors import ExportError, InputError
from .passes.plan import Plan
from .tracing import normalize_inputs

__all__ = ["METADATA_FILE", "load", "read_example_inputs", "read_metadata", "read_plan", "save"]

METADATA_FILE = "fxprune.json"
_FORMAT = "fxprune-pt2"
_TOLERANCE = 1e-4

# Graph arguments that carry the train/eval mode in torch.export's ATen graph: (position, keyword).
_MODE_ARGUMENTS = {
    torch.ops.aten.batch_norm.default: (5, "training"),
    torch.ops.aten.dropout.default: (2, "train"),
    torch.ops.aten.feature_dropout.default: (2, "train"),
    torch.ops.aten.alpha_dropout.default: (2, "train"),
    torch.ops.aten.feature_alpha_dropout.default: (2, "train"),
}


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
    inputs = normalize_inputs(example_inputs) if example_inputs is not None else _recorded_inputs(module)
    with _eval_mode(module):
        program, dynamic = _export(module, inputs, dynamic_batch)
        _check_program(module, program, inputs)
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
    path = _existing(path)
    _check_archive(path)
    try:
        program = torch.export.load(path)
    except Exception as error:  # a corrupt archive or one from an incompatible torch version
        raise InputError(f"cannot load '{path}': {type(error).__name__}: {error}. Was it written by "
                         f"fxprune.save with this torch version ({torch.__version__})?") from error
    return _with_mode_switch(program.module())


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
    path = _existing(path)
    with _open_archive(path) as archive:
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


@contextlib.contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    """Eval mode for the duration, then every submodule's own mode back (save changes nothing)."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for submodule, training in modes:
            submodule.training = training


def _export(module: nn.Module, inputs: tuple[Any, ...], dynamic_batch: bool) -> tuple[Any, bool]:
    if dynamic_batch:
        shapes = _batch_shapes(inputs)
        if shapes is not None:
            try:
                return torch.export.export(module, _doubled(inputs), dynamic_shapes=shapes), True
            except Exception as error:  # the model fixes its batch size: keep the example's
                first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                warnings.warn(f"fxprune.save: the batch axis cannot be dynamic ({first_line}); "
                              "the archive accepts the example's batch size only", stacklevel=3)
    try:
        return torch.export.export(module, inputs), False
    except Exception as error:
        raise ExportError(f"torch.export cannot capture {type(module).__name__}: {type(error).__name__}: "
                          f"{error}\nMake the forward free of data-dependent Python control flow, or save "
                          "the result's plan (result.plan.save) and re-apply it to the original model.") from error


def _tensors(inputs: Any) -> list[torch.Tensor]:
    return [leaf for leaf in tree_flatten(inputs)[0] if isinstance(leaf, torch.Tensor)]


def _batch_shapes(inputs: tuple[Any, ...]) -> Any:
    """``dynamic_shapes`` marking dim 0 of every tensor as one shared batch dim (None if they differ)."""
    tensors = _tensors(inputs)
    if not tensors or any(t.dim() == 0 for t in tensors) or len({t.shape[0] for t in tensors}) != 1:
        return None
    batch = Dim("batch", min=1)
    return tuple(tree_map(lambda leaf: {0: batch} if isinstance(leaf, torch.Tensor) else None, arg)
                 for arg in inputs)


def _doubled(inputs: tuple[Any, ...]) -> tuple[Any, ...]:
    """A batch of 2: torch.export specialises dims of size 1, so a batch of 1 cannot become dynamic."""
    def grow(leaf: Any) -> Any:
        return torch.cat([leaf, leaf]) if isinstance(leaf, torch.Tensor) and leaf.shape[0] == 1 else leaf

    return tree_map(grow, inputs)


def _check_program(module: nn.Module, program: Any, inputs: tuple[Any, ...]) -> None:
    with torch.no_grad():
        expected = _tensors(module(*inputs))
        actual = _tensors(program.module()(*inputs))
    if len(expected) != len(actual) or any(e.shape != a.shape for e, a in zip(expected, actual)):
        raise ExportError("the exported program's outputs differ in structure or shape from the module's")
    for e, a in zip(expected, actual):
        if e.is_floating_point():
            error = (e - a).abs().max().item() if e.numel() else 0.0
            if not error <= _TOLERANCE * max(1.0, e.abs().max().item()):
                raise ExportError(f"the exported program differs from the module by {error:.3g} (max abs)")


def _recorded_inputs(module: nn.Module) -> tuple[Any, ...]:
    """Inputs shaped like the ones fxprune.compile propagated through the module."""
    message = "save needs example_inputs for this module: pass example_inputs=(torch.randn(1, 3, 224, 224),)"
    if not isinstance(module, fx.GraphModule):
        raise InputError(message)
    values = [n.meta.get("val") for n in module.graph.nodes if n.op == "placeholder"]
    if not values or not all(isinstance(v, torch.Tensor) for v in values):
        raise InputError(message)
    tensors = [torch.randn(tuple(v.shape), dtype=v.dtype) if v.dtype.is_floating_point
               else torch.zeros(tuple(v.shape), dtype=v.dtype) for v in values]
    tree = getattr(module.graph._codegen, "pytree_info", None)
    if tree is None:
        return tuple(tensors)
    # fxprune.trace flattens list arguments; its in_spec starts with ``self``
    with_self = bool(tree.orig_args) and tree.orig_args[0] == "self"
    unflattened = tree_unflatten([None] * with_self + tensors, tree.in_spec)
    return tuple(unflattened[with_self:])


def _describe(arg: Any) -> Any:
    if isinstance(arg, torch.Tensor):
        return {"shape": list(arg.shape), "dtype": str(arg.dtype).removeprefix("torch.")}
    if isinstance(arg, (list, tuple)) and all(isinstance(a, torch.Tensor) for a in arg):
        return [_describe(a) for a in arg]
    raise InputError(f"save handles tensors and lists of tensors as inputs, got {type(arg).__name__}")


def _metadata(result: Any, module: nn.Module, inputs: tuple[Any, ...], dynamic: bool,
              extra: Mapping[str, Any] | None) -> dict[str, Any]:
    from . import __version__

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


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no such file: '{path}'")
    return path


@contextlib.contextmanager
def _open_archive(path: Path) -> Iterator[zipfile.ZipFile]:
    try:
        with zipfile.ZipFile(path) as archive:
            yield archive
    except zipfile.BadZipFile as error:
        raise InputError(f"'{path}' is not a .pt2 archive (written by fxprune.save or torch.export.save)") \
            from error


def _check_archive(path: Path) -> None:
    """Refuse archives whose loading would unpickle objects or run compiled code."""
    with _open_archive(path) as archive:
        names = archive.namelist()
        roots = {n.split("/", 1)[0] for n in names}
        if len(roots) != 1 or f"{roots.pop()}/archive_format" not in names:
            raise InputError(f"'{path}' is not a .pt2 archive written by torch.export.save (torch >= 2.7)")
        for name in names:
            inner = name.split("/", 1)[-1]
            if inner.startswith(("data/aotinductor/", "data/executorch/", "data/mtia")) \
                    or (inner.startswith(("data/weights/", "data/constants/")) and inner.endswith(".pt")):
                _refuse(path, f"it contains '{inner}'")
            if inner.startswith(("data/weights/", "data/constants/")) and inner.endswith("_config.json"):
                _check_payloads(path, json.loads(archive.read(name)))
            if inner.startswith("data/sample_inputs/"):
                _check_pickle(path, archive.read(name), inner)


def _check_payloads(path: Path, config: dict[str, Any]) -> None:
    for fqn, payload in config.get("config", {}).items():
        if payload.get("use_pickle") or str(payload.get("path_name", "")).startswith(("custom_obj_", "opaque_obj_")):
            _refuse(path, f"'{fqn}' is stored as a pickled object")


def _check_pickle(path: Path, data: bytes, name: str) -> None:
    if not data:
        return
    try:  # torch.export.load retries this with weights_only=False: only let safe pickles through
        torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except Exception as error:
        _refuse(path, f"'{name}' is not a plain tensor pickle ({type(error).__name__})")


def _refuse(path: Path, why: str) -> None:
    raise InputError(f"refusing to load '{path}': {why}, which could run arbitrary code. Re-save the model "
                     "with fxprune.save, which writes plain tensors only.")


def _with_mode_switch(module: fx.GraphModule) -> fx.GraphModule:
    """Give the loaded module working ``train()`` / ``eval()`` (torch.export's raise NotImplementedError)."""
    module.train = types.MethodType(_set_mode, module)  # type: ignore[method-assign]
    module.eval = types.MethodType(lambda self: self.train(False), module)  # type: ignore[method-assign]
    return module.eval()


def _set_mode(module: fx.GraphModule, mode: bool = True) -> fx.GraphModule:
    if not isinstance(mode, bool):
        raise InputError(f"train(mode) takes a bool, got {mode!r}")
    nn.Module.train(module, mode)
    changed = False
    for node in module.graph.nodes:
        position, keyword = _MODE_ARGUMENTS.get(node.target, (None, None))
        if position is None or _without_running_stats(node):
            continue
        if keyword in node.kwargs and node.kwargs[keyword] != mode:
            node.update_kwarg(keyword, mode)
            changed = True
        elif len(node.args) > position and node.args[position] != mode:
            node.update_arg(position, mode)
            changed = True
    if changed:
        module.recompile()
    return module


def _without_running_stats(node: fx.Node) -> bool:
    """BatchNorm(track_running_stats=False) always normalises with batch statistics, in both modes."""
    if node.target is not torch.ops.aten.batch_norm.default:
        return False
    running_mean = node.args[3] if len(node.args) > 3 else node.kwargs.get("running_mean")
    return running_mean is None
