"""Bias compensation: fold the mean contribution of removed channels into the next bias.

Removing a channel silences it, but in the original network it was rarely zero: after
a BatchNorm with a large shift and a ReLU it carries a sizeable mean. Every layer that
mixed that channel in (a conv with ``groups=1``, a linear: the weight slices the oracle
zeroes; its rule's ``mixes_channels``) loses ``sum over kernel positions of W[:, c] * mean_c``. Adding that term to the
layer's bias restores the expected value of its output, which lowers the error of the
pruned network before any fine-tuning (cf. the "bias correction" of data-free
compression, e.g. Nagel et al., arXiv 1906.04721). It is exact in expectation for
linears and for convolutions away from zero padding; near padding it over-compensates
slightly. Convolutions called as functions (``F.conv2d`` on a parameter) and transposed
convolutions are left as plain removal.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import fx, nn

from ..errors import InputError
from ..ir.parametrized import deepcopy_module
from ..passes.capture import normalize_inputs
from ..passes.plan import keep_mask
from ..pipeline import CompileResult
from ..rules import module_rule

__all__ = ["compensate_bias"]


@dataclass(frozen=True)
class _Consumer:
    """A channel-mixing module some of whose input channels were removed."""

    target: str
    removed: np.ndarray
    kept_outputs: np.ndarray | None


def compensate_bias(result: CompileResult, example_inputs: Any = None, *, calibration: Iterable[Any] | None = None,
                    max_batches: int | None = None) -> fx.GraphModule:
    """A copy of ``result.module`` whose consumers of removed channels absorb their mean contribution.

    Means are taken at each consumer's input in the *original* model (eval mode, on a
    copy: nothing given is modified) over the calibration data. Consumers without a
    bias get one. Opt-in: it changes what the module computes, so the oracle
    (``fxprune.verify``) no longer holds for the returned module.

    Args:
        result: a :class:`fxprune.CompileResult`.
        example_inputs: one batch of forward arguments (a tensor or a tuple), or
        calibration: an iterable of batches, each an input tensor or an ``(inputs, target)``
            pair as for :class:`fxprune.Taylor` (a DataLoader works).
        max_batches: use at most this many calibration batches.

    Raises:
        InputError: neither or both data sources, or no batch at all.

    Example:
        >>> result = fxprune.compile(model, 0.5, example_inputs=(x,))
        >>> module = compensate_bias(result, calibration=loader, max_batches=8)
    """
    batches = _batches(example_inputs, calibration, max_batches)
    keep = keep_mask(result.groups, result.plan)
    consumers = _consumers(result, keep)
    module = deepcopy_module(result.module)
    if not consumers:
        return module
    means = _input_means(result.traced, _contracted_axes(result.traced, {c.target for c in consumers}), batches)
    with torch.no_grad():
        for consumer in consumers:
            _fold(module, result.traced.get_submodule(consumer.target), consumer, means[consumer.target])
    return module


def _batches(example_inputs: Any, calibration: Iterable[Any] | None, limit: int | None) -> Iterator[tuple[Any, ...]]:
    if (example_inputs is None) == (calibration is None):
        raise InputError("compensate_bias needs one data source: example_inputs=(x,) or calibration=loader")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InputError(f"max_batches must be a positive integer or None, got {limit!r}")
    if example_inputs is not None:
        return iter([normalize_inputs(example_inputs)])
    return _calibration(calibration or (), limit)


def _calibration(calibration: Iterable[Any], limit: int | None) -> Iterator[tuple[Any, ...]]:
    for count, batch in enumerate(calibration):
        if limit is not None and count >= limit:
            return
        if isinstance(batch, (tuple, list)) and len(batch) == 2:
            batch = batch[0]  # (inputs, target)
        yield batch if isinstance(batch, tuple) else (batch,)


def _consumers(result: CompileResult, keep: np.ndarray) -> list[_Consumer]:
    """Leaf modules reading a removed channel whose rule says a bias can absorb it (``Rule.mixes_channels``)."""
    params = result.groups.record.params
    found: dict[str, _Consumer] = {}
    for node in result.traced.graph.nodes:
        if node.op != "call_module" or node.target in found:
            continue
        module = result.traced.get_submodule(node.target)
        rule = module_rule(module)
        mixing = rule is not None and rule.mixes_channels is not None and rule.mixes_channels(module)
        inputs = params.get((f"{node.target}.weight", 1)) if mixing else None
        if inputs is None or keep[inputs].all():
            continue
        outputs = params.get((f"{node.target}.weight", 0))
        kept_outputs = None if outputs is None else np.flatnonzero(keep[outputs])
        found[node.target] = _Consumer(node.target, np.flatnonzero(~keep[inputs]), kept_outputs)
    return list(found.values())


def _contracted_axes(traced: fx.GraphModule, targets: set[str]) -> dict[str, tuple[str, int]]:
    """Node name -> (module, the input axis it contracts, as its rule states) for every call of ``targets``."""
    axes = {}
    for node in traced.graph.nodes:
        if node.op == "call_module" and node.target in targets:
            module = traced.get_submodule(node.target)
            rule = module_rule(module)  # one that mixes channels (see _consumers), so it contracts a dim
            axis = rule.contracts(node, module) if rule is not None and rule.contracts is not None else None
            if axis is None:
                raise InputError(f"compensate_bias needs the shapes of {node.format_node()}: pass a result of "
                                 "fxprune.compile, whose traced module carries them")
            axes[node.name] = (node.target, axis)
    return axes


class _MeanCapture(fx.Interpreter):
    """Sum each watched call's input over every axis but the channel axis it contracts."""

    def __init__(self, module: fx.GraphModule, axes: dict[str, tuple[str, int]]) -> None:
        super().__init__(module)
        self.axes = axes
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def run_node(self, n: fx.Node) -> Any:
        if n.name in self.axes:
            args, _ = self.fetch_args_kwargs_from_env(n)
            if args and isinstance(args[0], torch.Tensor):
                target, axis = self.axes[n.name]
                x = args[0].detach().double()
                total = x.movedim(axis, -1).reshape(-1, x.shape[axis])
                self.sums[target] = self.sums.get(target, 0) + total.sum(0)
                self.counts[target] = self.counts.get(target, 0) + total.shape[0]
        return super().run_node(n)


def _input_means(traced: fx.GraphModule, axes: dict[str, tuple[str, int]],
                 batches: Iterator[tuple[Any, ...]]) -> dict[str, Any]:
    # A copy in eval mode: running statistics of the caller's model must not move.
    targets = {target for target, _ in axes.values()}
    capture = _MeanCapture(deepcopy_module(traced).eval(), axes)
    seen = 0
    with torch.no_grad():
        for batch in batches:
            capture.run(*batch)
            seen += 1
    if not seen:
        raise InputError("compensate_bias got no calibration batches")
    missing = targets - set(capture.sums)
    if missing:
        raise InputError(f"modules {sorted(missing)} never ran on the calibration data; pass inputs that reach them")
    return {t: capture.sums[t] / capture.counts[t] for t in targets}


def _fold(pruned: fx.GraphModule, original: Any, consumer: _Consumer, means: torch.Tensor) -> None:
    """Add the removed inputs' mean contribution to the pruned module's bias."""
    weight = original.weight.detach().double()
    per_input = weight.reshape(weight.shape[0], weight.shape[1], -1).sum(-1)  # kernel positions summed
    removed = torch.as_tensor(consumer.removed, device=weight.device)
    delta = per_input.index_select(1, removed) @ means.to(weight.device).index_select(0, removed)
    if consumer.kept_outputs is not None:
        delta = delta.index_select(0, torch.as_tensor(consumer.kept_outputs, device=weight.device))
    target: Any = pruned.get_submodule(consumer.target)
    if target.bias is None:
        target.bias = nn.Parameter(torch.zeros(target.weight.shape[0], dtype=target.weight.dtype,
                                               device=target.weight.device), target.weight.requires_grad)
    target.bias.add_(delta.to(target.bias.dtype))
