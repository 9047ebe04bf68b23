"""One client model through fxprune and through Torch-Pruning, measured in this process.

``benchmarks/clients.py`` runs each function here in a fresh subprocess per model and tool
(``--child NAME --tool fxprune|torch-pruning``), so that a crash or a hang costs one cell of
the table, never the run.

* :func:`measure_fxprune`: ``fxprune.capture`` (front end and seconds), ``fxprune.compile`` in
  exact mode checked by the oracle ``fxprune.verify``, and ``fxprune.compile`` in default mode
  (groups, params and MACs ratios, output structure kept).
* :func:`measure_torch_pruning`: Torch-Pruning's ``MetaPruner`` with L1 magnitude importance at
  the same ratio, the final classifier or head ignored as its README shows; it has no oracle,
  so what is recorded is whether it completes, runs forward and keeps the output shapes.
"""

from __future__ import annotations

import copy
import time
import traceback
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_flatten, tree_map

from .models import INFO, build

__all__ = ["EXACT_RTOL", "measure_fxprune", "measure_torch_pruning", "error_text", "output_signature"]

#: Exact-mode oracle tolerance, relative to max(1, |eager output|), as in benchmarks/conformance.py.
EXACT_RTOL = 1e-4
#: Output width of the heads each builder configures (benchmarks/clients/models.py), by family.
HEAD_WIDTH = {"segmentation": 4, "detection": 5}
DEFAULT_HEAD_WIDTH = {"smp": 4, "ultralytics": 80}


def error_text(exc: BaseException) -> str:
    """``Class: message``, its lines joined by `` / `` (a TraceError names each front end's failure on
    a line of its own), at most 600 characters."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return f"{type(exc).__name__}: {' / '.join(lines)}"[:600]


def fresh(inputs: tuple[Any, ...]) -> tuple[Any, ...]:
    """A copy of the inputs for each call: pytorchvideo's SlowFast rewrites its list input in place."""
    return tree_map(lambda v: v.clone() if isinstance(v, torch.Tensor) else v, inputs)


def output_signature(outputs: Any) -> tuple[str, list[tuple[int, ...]]]:
    """The output's tree structure and the shapes of its tensor leaves."""
    leaves, spec = tree_flatten(outputs)
    return str(spec), [tuple(leaf.shape) for leaf in leaves if isinstance(leaf, torch.Tensor)]


def _out_scale(outputs: Any) -> float:
    leaves, _ = tree_flatten(outputs)
    floats = [leaf for leaf in leaves if isinstance(leaf, torch.Tensor) and leaf.is_floating_point() and leaf.numel()]
    return max([1.0] + [float(leaf.abs().max()) for leaf in floats])


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def measure_fxprune(name: str, ratio: float) -> dict[str, Any]:
    """Capture, exact compile with the oracle, and default compile of one model.

    Returns:
        A JSON-able dict; ``status`` is ``ok``, ``inexact`` (oracle error above tolerance),
        ``shape`` (the pruned module's outputs differ in structure) or ``failed`` with
        ``stage`` and ``error``.
    """
    import fxprune

    out: dict[str, Any] = {"status": "failed"}
    stage = "build"
    try:
        model, inputs = build(name)
        with torch.no_grad():
            reference = model(*fresh(inputs))
        out["out_scale"] = _out_scale(reference)
        stage = "capture"
        started = time.perf_counter()
        try:
            captured = fxprune.capture(model, fresh(inputs))
            out["front_end"], out["left"] = captured.front_end, list(captured.left)
            out["dynamic_batch"] = captured.dynamic_batch
            del captured
            by_parts = False
        except fxprune.TraceError as whole:  # a detector's NMS: prune the submodules that capture
            out["front_end"], out["left"], by_parts = "submodules", [str(whole).splitlines()[0]], True
        out["capture_s"] = time.perf_counter() - started
        stage = "exact"
        started = time.perf_counter()
        exact = fxprune.compile(model, ratio, example_inputs=fresh(inputs), exact=True, submodules=by_parts)
        out["exact_s"] = time.perf_counter() - started
        stage = "verify"
        out["oracle_err"] = float(fxprune.verify(model, exact, fresh(inputs)))
        del exact
        stage = "default"
        started = time.perf_counter()
        result = fxprune.compile(model, ratio, example_inputs=fresh(inputs), submodules=by_parts)
        out["default_s"] = time.perf_counter() - started
        _record_result(out, result)
        stage = "forward"
        with torch.no_grad():
            pruned = result.module(*fresh(inputs))
        out["shapes_kept"] = output_signature(pruned) == output_signature(reference)
    except Exception as exc:  # noqa: BLE001 - a failure is a result: record it and go on
        out.update(stage=stage, error=error_text(exc))
        traceback.print_exc()
        return out
    exact_ok = out["oracle_err"] <= EXACT_RTOL * out["out_scale"]
    out["status"] = "shape" if not out["shapes_kept"] else "ok" if exact_ok else "inexact"
    return out


def _record_result(out: dict[str, Any], result: Any) -> None:
    """Groups, frozen reasons and ratios of a default-mode compile."""
    import fxprune

    if isinstance(result, fxprune.SubmoduleResult):  # the groups of every pruned part
        groups = [group for part in result.parts for group in part.result.groups]
        out["parts"] = [part.name for part in result.parts]
    else:
        groups = list(result.groups)
        out["front_end"] = result.capture.front_end if result.capture is not None else out.get("front_end")
    out["prunable"] = sum(1 for g in groups if g.prunable)
    out["frozen"] = len(groups) - out["prunable"]
    reasons: dict[str, int] = {}
    for group in groups:
        if not group.prunable:
            key = str(group.reason or "unknown")[:120]
            reasons[key] = reasons.get(key, 0) + 1
    out["frozen_reasons"] = dict(sorted(reasons.items(), key=lambda kv: -kv[1]))
    out["params_before"] = result.before.params
    out["params_ratio"] = result.after.params / result.before.params if result.before.params else None
    out["macs_ratio"] = result.after.macs / result.before.macs if result.before.macs else None


def _head_width(name: str) -> int:
    info = INFO[name]
    return HEAD_WIDTH.get(info.family, DEFAULT_HEAD_WIDTH.get(info.library, 10))


def ignored_layers(name: str, model: nn.Module) -> list[nn.Module]:
    """What Torch-Pruning's README ignores: the final classifier (and ultralytics' Detect head).

    The README's recipe is "every Linear whose out_features is the number of classes"; here
    also every conv of that width (segmentation heads) and, for ultralytics, the whole last
    module of ``model.model`` (its Detect / Segment head, as Torch-Pruning's YOLOv8 example does).
    A detection backbone (FPN) has no head: nothing is ignored.
    """
    if INFO[name].family == "detection-backbone":
        return []
    width = _head_width(name)
    ignored: list[nn.Module] = [
        m for m in model.modules()
        if (isinstance(m, nn.Linear) and m.out_features == width)
        or (isinstance(m, nn.modules.conv._ConvNd) and m.out_channels == width)
    ]
    if INFO[name].library == "ultralytics":
        ignored.append(model.model[-1])
    return ignored


def measure_torch_pruning(name: str, ratio: float) -> dict[str, Any]:
    """Prune a copy of one model with Torch-Pruning (MetaPruner, L1 magnitude) and run it.

    Returns:
        A JSON-able dict: ``status`` ``ok`` (pruned, runs, output shapes kept), ``shape``
        (runs, other output shapes), or ``failed`` with ``stage`` and ``error``.
    """
    import torch_pruning as tp

    out: dict[str, Any] = {"status": "failed"}
    stage = "build"
    try:
        original, inputs = build(name)
        model = copy.deepcopy(original)
        with torch.no_grad():
            reference = original(*fresh(inputs))
        stage = "count"
        macs_before, _ = tp.utils.count_ops_and_params(model, fresh(inputs))
        params_before = _params(model)
        stage = "prune"
        started = time.perf_counter()
        pruner = tp.pruner.MetaPruner(
            model, inputs, importance=tp.importance.MagnitudeImportance(p=1), pruning_ratio=ratio,
            ignored_layers=ignored_layers(name, model), forward_fn=lambda m, x: m(*fresh(x)))
        pruner.step()
        out["seconds"] = time.perf_counter() - started
        out["params_ratio"] = _params(model) / params_before
        stage = "forward"
        model.eval()
        with torch.no_grad():
            pruned = model(*fresh(inputs))
        out["shapes_kept"] = output_signature(pruned) == output_signature(reference)
        stage = "count-after"
        macs_after, _ = tp.utils.count_ops_and_params(model, fresh(inputs))
        out["macs_ratio"] = macs_after / macs_before if macs_before else None
    except Exception as exc:  # noqa: BLE001 - a failure is a result: record it and go on
        out.update(stage=stage, error=error_text(exc))
        traceback.print_exc()
        return out
    out["status"] = "ok" if out["shapes_kept"] else "shape"
    return out
