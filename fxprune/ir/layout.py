"""Channel layouts: which channel every position of a tensor carries.

Every channel of every *space* (a conv's filters, a parameter axis) has a global
integer id. A tensor's :class:`Layout` lists its tracked dims as :class:`Block` s:
an int array of ids, one row of ``K`` ids per position (``K > 1`` when a reshape
folded several tracked axes into one). ``-1`` is an opaque position that fxprune
cannot prune, such as a model input channel. Untracked dims (batch, spatial) are
simply absent.

Because positions carry ids explicitly, every structural rule is array surgery:
a concat concatenates ids, a flatten repeats them, a split slices them, a channel
shuffle reshapes and transposes them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["OPAQUE", "Block", "Layout", "reshape_layout", "dims_of_reshape"]

OPAQUE = -1


@dataclass(frozen=True, eq=False)
class Block:
    """Ids over one or more tracked dims.

    Attributes:
        dims: tensor dims covered, in the order of the first axes of ``ids``.
        ids: int64 array of shape ``[size of each dim] + [K]``.
    """

    dims: tuple[int, ...]
    ids: np.ndarray

    @property
    def width(self) -> int:
        return self.ids.shape[-1]

    def axis_of(self, dim: int) -> int:
        return self.dims.index(dim)


@dataclass(frozen=True, eq=False)
class Layout:
    """The tracked dims of one tensor value."""

    shape: tuple[int, ...]
    blocks: tuple[Block, ...] = ()

    def block_at(self, dim: int) -> Block | None:
        for block in self.blocks:
            if dim in block.dims:
                return block
        return None

    def ids_at(self, dim: int) -> np.ndarray | None:
        """Ids of ``dim`` as a ``(size, K)`` array, when ``dim`` is a block of its own."""
        block = self.block_at(dim)
        if block is None or len(block.dims) != 1:
            return None
        return block.ids

    def with_blocks(self, shape: tuple[int, ...], blocks: list[Block]) -> Layout:
        return Layout(tuple(shape), tuple(b for b in blocks if b.ids.size))

    def renamed(self, shape: tuple[int, ...], dim_map: dict[int, int]) -> Layout:
        """Same ids on renamed dims; blocks touching a dim not in ``dim_map`` are dropped."""
        blocks = [Block(tuple(dim_map[d] for d in b.dims), b.ids)
                  for b in self.blocks if all(d in dim_map for d in b.dims)]
        return Layout(tuple(shape), tuple(blocks))


def dims_of_reshape(old: tuple[int, ...], new: tuple[int, ...]) -> list[tuple[list[int], list[int]]]:
    """Pair runs of old dims with runs of new dims whose products are equal.

    Example: ``(2, 6, 4) -> (12, 2, 2)`` gives ``[([0, 1], [0]), ([2], [1, 2])]``.
    """
    old_prefix = np.cumprod([1, *old])
    new_prefix = np.cumprod([1, *new])
    common = sorted(set(old_prefix.tolist()) & set(new_prefix.tolist()))
    groups: list[tuple[list[int], list[int]]] = [([], []) for _ in common[1:]]
    for sizes, prefix, side in ((old, old_prefix, 0), (new, new_prefix, 1)):
        for dim in range(len(sizes)):
            # A dim belongs to the first run whose boundary its end reaches.
            run = max(0, int(np.searchsorted(common, prefix[dim + 1])) - 1)
            groups[min(run, len(groups) - 1)][side].append(dim)
    return [g for g in groups if g[0] or g[1]]


def reshape_layout(layout: Layout, new_shape: tuple[int, ...]) -> tuple[Layout, list[Block]]:
    """Carry ids through a reshape (view, flatten, unflatten, squeeze, ...).

    Returns the new layout and the blocks that could not be carried (a block that
    straddles two independent runs of dims); the caller freezes those.
    """
    old_shape = layout.shape
    if int(np.prod(old_shape)) == 0:
        return Layout(tuple(new_shape)), list(layout.blocks)
    blocks: list[Block] = []
    lost: list[Block] = []
    for old_dims, new_dims in dims_of_reshape(old_shape, tuple(new_shape)):
        inside = [b for b in layout.blocks if set(b.dims) & set(old_dims)]
        if not inside:
            continue
        straddling = [b for b in inside if not set(b.dims) <= set(old_dims)]
        if straddling:
            lost.extend(inside)
            continue
        full = _broadcast_full(inside, old_dims, old_shape)
        full = full.reshape([new_shape[d] for d in new_dims] + [full.shape[-1]])
        carried, dropped = split_components(tuple(new_dims), full)
        blocks.extend(carried)
        lost.extend(dropped)
    return Layout(tuple(new_shape), tuple(blocks)), lost


def _broadcast_full(blocks: list[Block], dims: list[int], shape: tuple[int, ...]) -> np.ndarray:
    """Stack the blocks' ids over all of ``dims`` (in order), components side by side."""
    sizes = [shape[d] for d in dims]
    parts = []
    for block in blocks:
        order = sorted(range(len(block.dims)), key=lambda a: block.dims[a])
        ids = np.transpose(block.ids, [*order, len(order)])
        view_shape = [shape[d] if d in block.dims else 1 for d in dims] + [block.width]
        parts.append(np.broadcast_to(ids.reshape(view_shape), sizes + [block.width]))
    return np.concatenate(parts, axis=-1)


def split_components(dims: tuple[int, ...], full: np.ndarray) -> tuple[list[Block], list[Block]]:
    """Drop dims that ids do not vary along, and separate independent components.

    Returns the blocks and, separately, components that are one channel broadcast
    over the whole run: no dim carries them any more, so the caller freezes them.
    """
    varying: dict[tuple[int, ...], list[int]] = {}
    for component in range(full.shape[-1]):
        values = full[..., component]
        axes = tuple(a for a in range(len(dims)) if values.shape[a] > 1
                     and not (np.diff(values, axis=a) == 0).all())
        varying.setdefault(axes, []).append(component)
    blocks: list[Block] = []
    constant: list[Block] = []
    for axes, components in _merge_overlapping(varying).items():
        index = tuple(slice(None) if a in axes else 0 for a in range(len(dims)))
        ids = full[..., components][index]  # components first: mixed fancy indexing reorders axes
        block = Block(tuple(dims[a] for a in axes), np.ascontiguousarray(ids))
        (blocks if axes else constant).append(block)
    return blocks, constant


def _merge_overlapping(varying: dict[tuple[int, ...], list[int]]) -> dict[tuple[int, ...], list[int]]:
    merged: list[tuple[set[int], list[int]]] = []
    for axes, components in varying.items():
        axes_set, comps = set(axes), list(components)
        for other in [m for m in merged if m[0] & axes_set]:
            merged.remove(other)
            axes_set |= other[0]
            comps += other[1]
        merged.append((axes_set, comps))
    return {tuple(sorted(a)): sorted(c) for a, c in merged}
