"""Channel importance: one score per channel of a group, aggregated over its members.

A scorer is any callable ``fn(group, module) -> scores`` with one finite score per
channel (a tensor, an array or a list). Higher means more important. Scorers only
score: planning is elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from ..ir.parametrized import find_tensor
from ..rules import declared_rule
from .groups import ChannelGroup, Groups

__all__ = ["Importance", "l1", "l2", "bn_scale", "random_scores", "IMPORTANCE", "score_groups"]

Importance = Callable[[ChannelGroup, nn.Module], torch.Tensor | np.ndarray | list]


def _per_channel(group: ChannelGroup, module: nn.Module, power: int) -> np.ndarray:
    """Sum of ``|w| ** power`` over each channel's slices of every member parameter."""
    scores = np.zeros(group.size, dtype=np.float64)
    for member in group.members:
        # Parameters and computed (weight-normalised) weights; buffers (running statistics)
        # say nothing about importance.
        tensor = find_tensor(module, member.tensor, buffers=False)
        if tensor is None:
            continue
        magnitude = tensor.detach().abs() if power == 1 else tensor.detach().square()
        others = [d for d in range(tensor.dim()) if d != member.axis]
        # Reducing in place of a transposed copy: 3x faster on conv weights' input axis.
        values = (magnitude.sum(dim=others) if others else magnitude).double().cpu().numpy()
        scores += np.bincount(member.channels, weights=values, minlength=group.size)
    return scores


def l1(group: ChannelGroup, module: nn.Module) -> np.ndarray:
    """Sum of absolute weights over every member slice of a channel (Li et al., 1608.08710)."""
    return _per_channel(group, module, 1)


def l2(group: ChannelGroup, module: nn.Module) -> np.ndarray:
    """Euclidean norm of all weights of a channel, across every member."""
    return np.sqrt(_per_channel(group, module, 2))


def _is_norm(module: nn.Module) -> bool:
    """A normalisation layer by its rule (``Rule.norm``), subclasses with their own forward included."""
    rule = declared_rule(module)
    return rule is not None and rule.norm


def bn_scale(group: ChannelGroup, module: nn.Module) -> np.ndarray:
    """|gamma| of the normalisation layers in the group (network slimming, Liu et al. 1708.06519).

    Groups without a normalisation layer fall back to :func:`l1`.
    """
    scores = np.zeros(group.size, dtype=np.float64)
    found = False
    for member in group.members:
        owner = module.get_submodule(member.module) if member.module else module
        weight = getattr(owner, "weight", None)
        if _is_norm(owner) and member.tensor.endswith(".weight") and isinstance(weight, torch.Tensor):
            values = weight.detach().abs().double().reshape(-1).cpu().numpy()
            scores += np.bincount(member.channels, weights=values, minlength=group.size)
            found = True
    return scores if found else l1(group, module)


def random_scores(group: ChannelGroup, module: nn.Module, seed: int = 0) -> np.ndarray:
    """Uniform random scores, reproducible per group (a baseline for the others)."""
    return np.random.default_rng([seed, group.index]).random(group.size)


IMPORTANCE: dict[str, Importance] = {"l1": l1, "l2": l2, "bn_scale": bn_scale, "random": random_scores}


def score_groups(groups: Groups, module: nn.Module, importance: str | Importance = "l1") -> dict[int, np.ndarray]:
    """Scores for every prunable group, keyed by group index.

    Raises:
        InputError: unknown importance name, or a scorer returning the wrong
            number of scores or non-finite values.
    """
    if isinstance(importance, str):
        if importance not in IMPORTANCE:
            raise InputError(f"unknown importance '{importance}'; choose one of {sorted(IMPORTANCE)} "
                             "or pass a callable fn(group, module) -> scores")
        scorer = IMPORTANCE[importance]
    elif callable(importance):
        scorer = importance
    else:
        raise InputError(f"importance must be a name or a callable, got {type(importance).__name__}")
    prepare = getattr(scorer, "prepare", None)
    if callable(prepare):  # scorers that need data (Taylor) collect it once
        prepare(groups, module)
    scores = {}
    for group in groups.prunable:
        raw = scorer(group, module)
        values = np.asarray(raw.detach().cpu() if isinstance(raw, torch.Tensor) else raw, dtype=np.float64)
        if values.shape != (group.size,) or not np.isfinite(values).all():
            raise InputError(f"importance for group #{group.index} ({group.name}) must be {group.size} finite "
                             f"scores, got shape {values.shape}")
        scores[group.index] = values
    return scores
