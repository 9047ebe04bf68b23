"""First-order Taylor importance (Molchanov et al., arXiv 1611.06440).

The score of a channel is the mean over calibration samples of
``|mean over positions of activation x dLoss/dactivation|`` at every conv or linear
output carrying the channel (every node whose rule is a ``producer``), summed over
those outputs. It runs on a copy of the traced module in eval mode, so neither the
model's weights, gradients nor running statistics change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from torch import fx, nn

from ..errors import InputError
from ..ir.channel_graph import unique_ints
from ..ir.layout import Layout
from ..ir.parametrized import deepcopy_module
from ..rules import lookup
from .groups import ChannelGroup, Groups

__all__ = ["Taylor"]


class Taylor:
    """Taylor importance from calibration batches, usable as ``compile(importance=Taylor(...))``.

    Args:
        data: iterable of ``(inputs, target)`` batches; ``inputs`` is a tensor or a tuple
            of forward arguments.
        loss_fn: ``loss_fn(output, target) -> scalar tensor``, e.g. ``F.cross_entropy``.
        batches: how many batches to use (all when None).

    Example:
        >>> taylor = fxprune.Taylor(loader, torch.nn.functional.cross_entropy, batches=8)
        >>> result = fxprune.compile(model, 0.5, example_inputs=(x,), importance=taylor)
    """

    def __init__(self, data: Iterable[Any], loss_fn: Callable[[Any, Any], torch.Tensor],
                 batches: int | None = None) -> None:
        self.data, self.loss_fn, self.batches = data, loss_fn, batches
        self.scores: dict[int, np.ndarray] = {}

    def prepare(self, groups: Groups, module: fx.GraphModule) -> None:
        lookup = _channel_lookup(groups)
        totals = {g.index: np.zeros(g.size) for g in groups}
        samples = 0
        worker = deepcopy_module(module).eval()
        producers = [n for n in worker.graph.nodes if _is_producer(n, worker)]
        layouts = {n.name: groups.layouts.get(n) for n in module.graph.nodes}
        for count, batch in enumerate(self.data):
            if self.batches is not None and count >= self.batches:
                break
            inputs, target = _split_batch(batch)
            activations = _Capture(worker, {n.name for n in producers}).run(*inputs)
            loss = self.loss_fn(activations.pop("__output__"), target)
            names = list(activations)
            grads = torch.autograd.grad(loss, [activations[n] for n in names], allow_unused=True)
            for name, grad in zip(names, grads, strict=True):
                layout = layouts.get(name)
                if grad is not None and isinstance(layout, Layout):
                    _accumulate(totals, lookup, layout, activations[name].detach() * grad)
            samples += _batch_size(inputs)
        if samples == 0:
            raise InputError("Taylor importance got no calibration batches")
        self.scores = {index: total / samples for index, total in totals.items()}

    def __call__(self, group: ChannelGroup, module: nn.Module) -> np.ndarray:
        if group.index not in self.scores:
            raise InputError("Taylor importance must be prepared on the model first (compile does this)")
        return self.scores[group.index]


def _batch_size(inputs: tuple[Any, ...]) -> int:
    leaves = [t for t in torch.utils._pytree.tree_flatten(inputs)[0] if isinstance(t, torch.Tensor)]
    return int(leaves[0].shape[0]) if leaves and leaves[0].ndim else 1


def _split_batch(batch: Any) -> tuple[tuple[Any, ...], Any]:
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise InputError("Taylor calibration data must yield (inputs, target) pairs")
    inputs, target = batch
    return (inputs if isinstance(inputs, tuple) else (inputs,)), target


def _is_producer(node: fx.Node, module: fx.GraphModule) -> bool:
    """Whether the node's rule says its output is a channel space its weights make (``Rule.producer``)."""
    if node.op not in ("call_module", "call_function", "call_method"):
        return False
    rule = lookup(node, module.get_submodule(str(node.target)) if node.op == "call_module" else None)
    return rule is not None and rule.producer


class _Capture(fx.Interpreter):
    """Run the graph with grad enabled and keep the outputs of the named nodes."""

    def __init__(self, module: fx.GraphModule, names: set[str]) -> None:
        super().__init__(module)
        self.names = names
        self.kept: dict[str, torch.Tensor] = {}

    def run_node(self, n: fx.Node) -> Any:
        result = super().run_node(n)
        if n.name in self.names and isinstance(result, torch.Tensor) and result.requires_grad:
            self.kept[n.name] = result
        return result

    def run(self, *args: Any, initial_env: dict[fx.Node, Any] | None = None,
            enable_io_processing: bool = True) -> dict[str, Any]:
        with torch.enable_grad():
            output = super().run(*args, initial_env=initial_env, enable_io_processing=enable_io_processing)
        return {**self.kept, "__output__": output}


def _channel_lookup(groups: Groups) -> tuple[np.ndarray, np.ndarray]:
    """For every channel id: its group index and its channel index in the group (-1: none)."""
    group_of_root = np.full(groups.record.size, -1, dtype=np.int64)
    class_of_root = np.full(groups.record.size, -1, dtype=np.int64)
    for group in groups:
        group_of_root[group.roots] = group.index
        class_of_root[group.roots] = np.arange(group.size)
    return group_of_root[groups.roots], class_of_root[groups.roots]


def _accumulate(totals: dict[int, np.ndarray], lookup: tuple[np.ndarray, np.ndarray], layout: Layout,
                product: torch.Tensor) -> None:
    """Add each sample's |mean over positions of a*g| into the channels of the tensor's blocks."""
    group_of, class_of = lookup
    for block in layout.blocks:
        if len(block.dims) != 1 or block.width != 1 or block.dims[0] == 0:
            continue
        dim = block.dims[0]
        other = [d for d in range(product.ndim) if d not in (0, dim)]
        per_sample = product.mean(other).abs() if other else product.abs()
        values = per_sample.sum(0).double().cpu().numpy()
        ids = block.ids[:, 0]
        ids, values = ids[ids >= 0], values[ids >= 0]
        for g in unique_ints(group_of[ids]).tolist():
            if g in totals:
                mask = group_of[ids] == g
                totals[g] += np.bincount(class_of[ids][mask], weights=values[mask], minlength=totals[g].size)
