"""Working ``train()`` / ``eval()`` for modules loaded by :func:`fxprune.serialize.load`.

torch.export's module raises NotImplementedError on ``train()``; the mode lives in
arguments of the ATen graph (BatchNorm's ``training``, dropout's ``train``), so switching
mode rewrites those arguments and recompiles the graph.

Example:
    >>> module = with_mode_switch(torch.export.load("pruned.pt2").module())   # now in eval mode
    >>> module.train()                                                        # batch statistics, dropout on
"""

from __future__ import annotations

import types

import torch
from torch import fx, nn

from ..errors import InputError

__all__ = ["with_mode_switch"]

# Graph arguments that carry the train/eval mode in torch.export's ATen graph: (position, keyword).
_MODE_ARGUMENTS = {
    torch.ops.aten.batch_norm.default: (5, "training"),
    torch.ops.aten.dropout.default: (2, "train"),
    torch.ops.aten.feature_dropout.default: (2, "train"),
    torch.ops.aten.alpha_dropout.default: (2, "train"),
    torch.ops.aten.feature_alpha_dropout.default: (2, "train"),
}


def with_mode_switch(module: fx.GraphModule) -> fx.GraphModule:
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
