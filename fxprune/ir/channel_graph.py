"""The mutable record that operator rules write while groups are discovered.

Rules never see union-find internals: they allocate spaces, ask for the ids of a
parameter axis, ``unify`` two id arrays position by position, and ``freeze`` ids
with a reason. ``solve`` turns the record into connected components at the end,
vectorised, so the cost stays linear in the number of channel ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .layout import OPAQUE

__all__ = ["Space", "Freeze", "ChannelRecord", "connected_components", "unique_ints"]


def unique_ints(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values of an int array: ``np.unique`` without its per-call overhead.

    NumPy 2's ``np.unique`` hashes first and sorts after, ~40 us even for a handful of
    ids; channel analysis calls it once per tensor dim, thousands of times per model.
    """
    ordered = np.sort(values.reshape(-1), kind="stable")
    if ordered.size < 2:
        return ordered
    keep = np.empty(ordered.size, dtype=bool)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]


@dataclass(frozen=True)
class Space:
    """A run of fresh channel ids: one axis of one parameter (or a rule's own)."""

    start: int
    size: int
    owner: str
    axis: int


@dataclass(frozen=True)
class Freeze:
    """Ids that must be kept, and why. ``exact_only`` reasons only bind in exact mode.

    A ``pin`` keeps just those channels: the rest of their group stays prunable (a
    conv reading a concat of pruned features and untracked coordinates keeps the
    coordinate slices of its weight). Otherwise the whole group is frozen.
    """

    ids: np.ndarray
    reason: str
    exact_only: bool = False
    pin: bool = False


@dataclass
class ChannelRecord:
    """Spaces, unions, freezes and parameter members collected by the rules."""

    spaces: list[Space] = field(default_factory=list)
    unions: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    freezes: list[Freeze] = field(default_factory=list)
    params: dict[tuple[str, int], np.ndarray] = field(default_factory=dict)
    producers: set[int] = field(default_factory=set)
    readers: set[int] = field(default_factory=set)
    #: Ids of multi-dim blocks that must stay rectangular: pruned along one axis only
    #: (``resolve_folds`` chooses it once every rule has run), with where the fold is.
    folds: list[tuple[np.ndarray, str]] = field(default_factory=list)
    #: Ids summed over by a contraction between activations (a query/key width): no
    #: weight reads them, so the oracle silences them at their producers.
    contracted: list[np.ndarray] = field(default_factory=list)
    size: int = 0
    # First id of every space, in a buffer grown by doubling: spaces_of searches it once per
    # call, and converting a list there made discovery quadratic in the number of layers.
    _starts: np.ndarray = field(default_factory=lambda: np.zeros(64, dtype=np.int64))

    def new_space(self, size: int, owner: str, axis: int = 0) -> np.ndarray:
        space = Space(self.size, size, owner, axis)
        if len(self.spaces) == self._starts.size:
            self._starts = np.concatenate([self._starts, np.zeros_like(self._starts)])
        self._starts[len(self.spaces)] = space.start
        self.spaces.append(space)
        self.size += size
        return np.arange(space.start, space.start + size, dtype=np.int64)

    def param_axis(self, name: str, axis: int, size: int) -> np.ndarray:
        """Ids of one axis of a parameter or buffer; the same ids on every call."""
        key = (name, axis)
        if key not in self.params:
            self.params[key] = self.new_space(size, name, axis)
        return self.params[key]

    def mark(self, ids: np.ndarray, *, producer: bool = False, reader: bool = False) -> None:
        """Flag the spaces of ``ids``: producers make a group prunable; readers are
        the weight slices the oracle zeroes (channel-mixing consumers)."""
        spaces = self.spaces_of(ids)
        if producer:
            self.producers |= spaces
        if reader:
            self.readers |= spaces

    def spaces_of(self, ids: np.ndarray) -> set[int]:
        ids = np.asarray(ids).reshape(-1)
        ids = ids[ids != OPAQUE]
        starts = self._starts[:len(self.spaces)]
        return set(unique_ints(np.searchsorted(starts, ids, side="right") - 1).tolist())

    def unify(self, a: np.ndarray, b: np.ndarray, reason: str) -> None:
        """Make ``a[i]`` and ``b[i]`` one channel; opaque on either side pins the other."""
        a, b = np.asarray(a).reshape(-1), np.asarray(b).reshape(-1)
        if a.shape != b.shape:
            self.freeze(a, reason + " (shape mismatch)")
            self.freeze(b, reason + " (shape mismatch)")
            return
        opaque = (a == OPAQUE) | (b == OPAQUE)
        if opaque.any():
            pinned = np.where(opaque, np.maximum(a, b), OPAQUE)
            pinned = pinned[pinned != OPAQUE]
            if pinned.size:
                self.freezes.append(Freeze(pinned, reason + " with an untracked tensor", pin=True))
        both = ~opaque
        if both.any():
            self.unions.append((a[both], b[both]))

    def freeze(self, ids: np.ndarray, reason: str, exact_only: bool = False) -> None:
        ids = np.asarray(ids).reshape(-1)
        ids = ids[ids != OPAQUE]
        if ids.size:
            self.freezes.append(Freeze(ids, reason, exact_only))

    def fold(self, ids: np.ndarray, where: str) -> None:
        """Require the multi-dim block ``ids`` (``[size of each dim] + [K]``) to stay rectangular."""
        self.folds.append((ids, where))

    def contract(self, ids: np.ndarray) -> None:
        """Record ids that a contraction of two activations sums over."""
        ids = np.asarray(ids).reshape(-1)
        ids = ids[ids != OPAQUE]
        if ids.size:
            self.contracted.append(ids)

    def resolve_folds(self) -> None:
        """Tie every fold along all its axes but one, so that what is kept is a rectangle.

        The axis left free is the one along which the fold's ids are most distinct once the
        rules' unions are applied: a rule that already tied a fold (a contraction keeping
        whole heads) decides it; an untouched fold is pruned along its longest axis.
        """
        if not self.folds:
            return
        lefts = np.concatenate([a for a, _ in self.unions]) if self.unions else np.zeros(0, dtype=np.int64)
        rights = np.concatenate([b for _, b in self.unions]) if self.unions else np.zeros(0, dtype=np.int64)
        roots = connected_components(self.size, lefts, rights)
        seen: set[tuple[bytes, tuple[int, ...]]] = set()
        for ids, where in self.folds:
            key = (ids.tobytes(), ids.shape)
            if key in seen:
                continue
            seen.add(key)
            primary = _free_axis(np.where(ids >= 0, roots[np.maximum(ids, 0)], OPAQUE))
            axes = ids.ndim - 1
            anchor = ids[tuple(slice(None) if a == primary else slice(0, 1) for a in range(axes))]
            self.unify(np.broadcast_to(anchor, ids.shape), ids, f"rectangular channel fold at {where}")

    def space_index(self) -> np.ndarray:
        """For every id, the index of the space it was allocated in."""
        sizes = np.array([s.size for s in self.spaces], dtype=np.int64)
        return np.repeat(np.arange(len(self.spaces), dtype=np.int64), sizes)


def _free_axis(roots: np.ndarray) -> int:
    """The axis of a fold whose line through the origin holds the most distinct channels
    (then the longest, then the last)."""
    axes = roots.ndim - 1

    def distinct(axis: int) -> int:
        line = roots[tuple(slice(None) if a == axis else 0 for a in range(axes))]
        return int(np.unique(line.reshape(line.shape[0], -1), axis=0).shape[0])

    return max(range(axes), key=lambda a: (distinct(a), roots.shape[a], a))


def connected_components(size: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Root (smallest member) of every node of an undirected graph given as edges.

    Vectorised hooking with pointer jumping: every round links each edge's larger
    root under its smaller one, then flattens the forest. Rounds are logarithmic
    in practice, each a few numpy passes over the edges.
    """
    parent = np.arange(size, dtype=np.int64)
    while left.size:
        parent = _flatten(parent)
        root_left, root_right = parent[left], parent[right]
        differ = root_left != root_right
        if not differ.any():
            break
        low = np.minimum(root_left[differ], root_right[differ])
        high = np.maximum(root_left[differ], root_right[differ])
        np.minimum.at(parent, high, low)
        left, right = left[differ], right[differ]
    return _flatten(parent)


def _flatten(parent: np.ndarray) -> np.ndarray:
    while True:
        grand = parent[parent]
        if np.array_equal(grand, parent):
            return parent
        parent = grand
