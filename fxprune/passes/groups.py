"""Channel groups: the connected components of the record the rules wrote (see ``propagate.py``).

A *channel* here is an equivalence class of ids that must be removed together
(a conv filter, the BN entries behind it, the next conv's input slice, the other
side of a residual add). A :class:`ChannelGroup` is a set of spaces linked by
such channels; it is planned as one unit, its ``size`` being its channel count.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import fx
from torch.utils._pytree import tree_flatten

from ..ir.channel_graph import ChannelRecord, connected_components, unique_ints
from ..ir.layout import Layout
from .propagate import propagate_layouts

__all__ = ["Member", "ChannelGroup", "Groups", "find_groups"]


@dataclass(frozen=True, eq=False)
class Member:
    """One axis of one parameter or buffer that a group slices.

    ``channels[i]`` is the group channel that position ``i`` of the axis carries
    (-1 where the position belongs to another group). ``reads`` marks the input
    slices of a channel-mixing consumer (a conv's or linear's input axis).
    """

    tensor: str
    axis: int
    channels: np.ndarray
    reads: bool
    produces: bool = False

    @property
    def module(self) -> str:
        return self.tensor.rpartition(".")[0]


@dataclass(frozen=True, eq=False)
class ChannelGroup:
    """Channels that are removed together, with every tensor axis they touch.

    ``segments`` are subsets of channels that some tensor dim carries alone (one
    branch of a concat, one part of a split): each must keep at least one channel,
    or that dim would be empty. ``parts`` partition the channels by the layers that
    produce them: a concat of two convs has two parts, a residual stream one. A ratio
    applies to each part, so every producing layer loses its share.
    """

    index: int
    size: int
    members: tuple[Member, ...]
    producers: tuple[str, ...]
    frozen_by: tuple[str, ...] = ()
    caveats: tuple[str, ...] = ()
    roots: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64), repr=False)
    segments: tuple[np.ndarray, ...] = field(default=(), repr=False)
    parts: tuple[np.ndarray, ...] = field(default=(), repr=False)
    #: Channels that must be kept although the group prunes (they meet untracked values).
    pinned: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64), repr=False)

    @property
    def prunable(self) -> bool:
        return not self.frozen_by

    @property
    def reason(self) -> str | None:
        """Why the group is frozen, or None."""
        return "; ".join(self.frozen_by) if self.frozen_by else None

    @property
    def name(self) -> str:
        return self.producers[0] if self.producers else self.members[0].module

    @property
    def modules(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(m.module for m in self.members))


@dataclass(frozen=True, eq=False)
class Groups:
    """Every channel group of a traced model, plus what the rewrite needs."""

    groups: tuple[ChannelGroup, ...]
    layouts: dict[fx.Node, Any] = field(repr=False)
    record: ChannelRecord = field(repr=False)
    roots: np.ndarray = field(repr=False)
    exact: bool = False

    def __iter__(self) -> Iterator[ChannelGroup]:
        return iter(self.groups)

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, index: int) -> ChannelGroup:
        return self.groups[index]

    @property
    def prunable(self) -> tuple[ChannelGroup, ...]:
        return tuple(g for g in self.groups if g.prunable)

    def table(self) -> str:
        """One line per group: index, size, status, producing modules."""
        lines = []
        for g in self.groups:
            status = "prunable" if g.prunable else f"frozen: {g.reason}"
            more = f" (+{len(g.producers) - 3} more)" if len(g.producers) > 3 else ""
            lines.append(f"#{g.index:<4} {g.size:>6}  {', '.join(g.producers[:3])}{more}  [{status}]")
        return "\n".join(lines)


def find_groups(module: fx.GraphModule, exact: bool = False, attention: str = "heads") -> Groups:
    """Discover the channel groups of a traced module whose shapes are propagated.

    Args:
        module: output of :func:`fxprune.trace`, after :func:`propagate_shapes`.
        exact: freeze groups whose removal changes kept values (norm statistics
            over channels, softmax or reductions over channels).
        attention: ``"heads"`` (prune whole attention heads) or ``"head_dim"`` (the same
            widths in every head); see :class:`fxprune.rules.context.PropagateContext`.

    Example:
        >>> groups = find_groups(gm)
        >>> print(groups.table())
    """
    layouts, record = propagate_layouts(module, exact, attention)
    return _build_groups(layouts, record, exact)


def _build_groups(layouts: dict[fx.Node, Any], record: ChannelRecord, exact: bool) -> Groups:
    empty = np.zeros(0, dtype=np.int64)
    lefts = np.concatenate([a for a, _ in record.unions]) if record.unions else empty
    rights = np.concatenate([b for _, b in record.unions]) if record.unions else empty
    roots = connected_components(record.size, lefts, rights)
    space_of = record.space_index()
    space_roots = connected_components(len(record.spaces), space_of, space_of[roots])
    # Only spaces linked to a conv/linear output form groups: a parameter axis that
    # no producer reaches (a kernel axis, a lone embedding) is nothing to prune.
    producer_roots = sorted({int(space_roots[s]) for s in record.producers})
    group_of_root = np.full(len(record.spaces), -1, dtype=np.int64)
    group_of_root[producer_roots] = np.arange(len(producer_roots))
    group_of_id = group_of_root[space_roots][space_of] if record.size else empty
    count = len(producer_roots)
    order = np.argsort(group_of_id, kind="stable")
    bounds = np.searchsorted(group_of_id[order], np.arange(count + 1))
    reasons, caveats, pins, pin_reasons = _freeze_reasons(record, roots, group_of_id, exact, count)
    members = _members(record, roots, group_of_id, order, bounds, count)
    producers: list[dict[str, None]] = [{} for _ in range(count)]
    for s in sorted(record.producers):
        producers[group_of_root[space_roots[s]]][record.spaces[s].owner.rpartition(".")[0]] = None
    segments = _segments(layouts, record, roots, group_of_id, count)
    built = []
    for g in range(count):
        class_roots = unique_ints(roots[order[bounds[g]:bounds[g + 1]]])
        parts = tuple(np.searchsorted(class_roots, seg) for seg in segments[g] if seg.size < class_roots.size)
        pinned = unique_ints(np.searchsorted(class_roots, np.concatenate(pins[g]))) if pins[g] else empty
        frozen = tuple(reasons[g]) or ((_single_channel(members[g]),) if class_roots.size < 2 else ())
        if not frozen and pinned.size == class_roots.size:  # every channel pinned: say why
            frozen = tuple(pin_reasons[g])
        group_members = tuple(Member(t, a, np.searchsorted(class_roots, roots[ids]), r, p)
                              for t, a, ids, r, p in members[g])
        built.append(ChannelGroup(g, int(class_roots.size), group_members, tuple(producers[g]), frozen,
                                  tuple(caveats[g]), class_roots, parts,
                                  _producer_parts(class_roots.size, group_members, record), pinned))
    return Groups(tuple(built), layouts, record, roots, exact)


def _single_channel(members: list[tuple[str, int, np.ndarray, bool, bool]]) -> str:
    """Why a group has one channel: really one, or many tied together."""
    if max((ids.size for _, _, ids, _, _ in members), default=1) > 1:
        return "a single channel: grouped convolutions or reshapes tie all of its channels together"
    return "a single channel"


def _producer_parts(size: int, members: tuple[Member, ...], record: ChannelRecord) -> tuple[np.ndarray, ...]:
    """Partition channels by the set of producing parameter axes that carry them."""
    signature = np.zeros(size, dtype=np.uint64)
    rng = np.random.default_rng(0)
    for member in members:
        if member.produces:
            signature[unique_ints(member.channels)] ^= rng.integers(1, 2**63, dtype=np.uint64)
    order = np.argsort(signature, kind="stable")
    cuts = np.flatnonzero(np.diff(signature[order])) + 1
    return tuple(np.sort(part) for part in np.split(order, cuts))


def _segments(layouts: dict[fx.Node, Any], record: ChannelRecord, roots: np.ndarray, group_of_id: np.ndarray,
              count: int) -> list[list[np.ndarray]]:
    """Distinct sets of channel roots carried by one tensor dim or parameter axis, per group."""
    found: list[list[np.ndarray]] = [[] for _ in range(count)]
    columns = [ids[:, None] for ids in record.params.values()]
    for value in layouts.values():
        for layout in tree_flatten(value, is_leaf=lambda x: isinstance(x, Layout))[0]:
            if isinstance(layout, Layout):
                columns.extend(b.ids.reshape(-1, b.width) for b in layout.blocks)
    seen, seen_ids = set(), set()  # segments found, and id columns already looked at
    for column_set in columns:
        for k in range(column_set.shape[1]):
            ids = column_set[:, k]
            ids = ids[ids >= 0]
            raw = ids.tobytes()
            if not ids.size or raw in seen_ids:  # most layers pass their input's ids through
                continue
            seen_ids.add(raw)
            seg = unique_ints(roots[ids])
            key = seg.tobytes()
            if key not in seen:
                seen.add(key)
                # A dim can carry channels of several groups (a split across a concat of
                # unrelated branches): each group keeps one of its own there.
                owners = group_of_id[seg]
                for g in unique_ints(owners[owners >= 0]).tolist():
                    found[g].append(seg[owners == g])
    return found


def _freeze_reasons(record: ChannelRecord, roots: np.ndarray, group_of_id: np.ndarray, exact: bool, count: int
                    ) -> tuple[list[dict[str, None]], list[dict[str, None]], list[list[np.ndarray]],
                               list[dict[str, None]]]:
    """Per group: why it is frozen, its caveats (exact-only reasons outside exact mode), and
    the roots of its pinned channels with why they are pinned."""
    reasons, caveats, pin_reasons = ([dict[str, None]() for _ in range(count)] for _ in range(3))
    pins: list[list[np.ndarray]] = [[] for _ in range(count)]
    for freeze in record.freezes:
        target = pin_reasons if freeze.pin else reasons if (exact or not freeze.exact_only) else caveats
        owners = group_of_id[freeze.ids]
        for g in unique_ints(owners[owners >= 0]).tolist():
            target[g][freeze.reason] = None
            if freeze.pin:
                pins[g].append(roots[freeze.ids[owners == g]])
    return reasons, caveats, pins, pin_reasons


def _members(record: ChannelRecord, roots: np.ndarray, group_of_id: np.ndarray, order: np.ndarray,
             bounds: np.ndarray, count: int) -> list[list[tuple[str, int, np.ndarray, bool, bool]]]:
    members: list[list[tuple[str, int, np.ndarray, bool, bool]]] = [[] for _ in range(count)]
    for (tensor, axis), ids in record.params.items():
        g = int(group_of_id[ids[0]])
        if g >= 0:
            space = record.spaces_of(ids[:1])
            members[g].append((tensor, axis, ids, bool(space & record.readers), bool(space & record.producers)))
    return members
