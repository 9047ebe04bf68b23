"""Distributed plumbing for fine-tuning under ``torchrun``: process group, sharded loaders, checksums.

``torchrun`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` in each process;
:func:`distributed_session` turns that into an initialised process group
(gloo on CPU, NCCL on GPU) for the duration of a ``with`` block, and
:func:`make_loader` gives each rank a disjoint shard of the data.

Example:
    >>> with distributed_session("cpu") as info:
    ...     loader = make_loader(dataset, batch_size=4, shuffle=True)
    ...     print(info.rank, info.world_size)
    0 1
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from fxprune.errors import InputError

__all__ = ["DistributedInfo", "distributed_session", "launched_with_torchrun", "make_loader", "weights_checksum"]


@dataclass(frozen=True)
class DistributedInfo:
    """Where this process stands: rank, world size and the device it trains on."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that logs and shows progress."""
        return self.rank == 0


def launched_with_torchrun() -> bool:
    """True when ``torchrun`` (or ``torch.distributed.run``) started this process.

    Example:
        >>> launched_with_torchrun()
        False
    """
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def _rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    if launched_with_torchrun():
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    return 0, 1


def _device(device: str | torch.device, local_rank: int) -> torch.device:
    resolved = torch.device(device)
    if resolved.type == "cuda" and resolved.index is None:
        # One GPU per process: torchrun's LOCAL_RANK picks it.
        resolved = torch.device("cuda", local_rank)
    return resolved


@contextmanager
def distributed_session(device: str | torch.device = "cpu") -> Iterator[DistributedInfo]:
    """Joins the ``torchrun`` process group for the duration of a ``with`` block.

    Outside ``torchrun`` this is a no-op giving rank 0 of 1. A group that is
    already initialised is reused and left alone; one created here is
    destroyed on exit. The backend is NCCL for a CUDA device, else gloo.

    Example:
        >>> with distributed_session("cpu") as info:
        ...     loader = make_loader(dataset, batch_size=4, shuffle=True)
        ...     fine_tune(model, loader, steps=100)
        ...     print(info.rank, info.world_size)
        0 1
    """
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    resolved = _device(device, local_rank)
    created = False
    if launched_with_torchrun() and not (dist.is_available() and dist.is_initialized()):
        if not dist.is_available():
            raise InputError("this torch build has no torch.distributed; run without torchrun")
        if resolved.type == "cuda":
            torch.cuda.set_device(resolved)
        dist.init_process_group(backend="nccl" if resolved.type == "cuda" else "gloo")
        created = True
    rank, world_size = _rank_and_world()
    try:
        yield DistributedInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=resolved)
    finally:
        if created:
            dist.destroy_process_group()


def make_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool = False,
    *,
    distributed: bool | None = None,
    num_workers: int = 0,
    seed: int = 0,
    drop_last: bool = False,
) -> DataLoader:
    """Builds a DataLoader, sharded across ranks with a ``DistributedSampler`` when distributed.

    Args:
        dataset: A map-style dataset of ``(inputs, label)`` pairs.
        batch_size: Samples per batch (per rank when distributed).
        shuffle: Reshuffle every epoch (seeded by ``seed`` and the epoch).
        distributed: ``None`` detects ``torchrun`` or an initialised process group.
        num_workers: DataLoader worker processes (video decoding is CPU-bound).
        seed: Shuffling seed; the same on every rank, so the shards are disjoint.
        drop_last: Drop the last incomplete batch.

    Raises:
        InputError: If ``distributed=True`` outside ``torchrun`` and without a group.

    Example:
        >>> loader = make_loader(UCF101("UCF101", split="train"), batch_size=8, shuffle=True)
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive int, got {batch_size!r}")
    rank, world_size = _rank_and_world()
    if distributed is None:
        distributed = world_size > 1
    elif distributed and not (launched_with_torchrun() or (dist.is_available() and dist.is_initialized())):
        raise InputError("distributed=True needs torchrun (RANK/WORLD_SIZE) or an initialised process group")
    if distributed:
        sampler: DistributedSampler = DistributedSampler(
            dataset, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last
        )
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers, drop_last=drop_last)
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        num_workers=num_workers,
        drop_last=drop_last,
    )


def weights_checksum(module: nn.Module) -> str:
    """SHA-256 of every parameter and buffer (name, dtype, shape, bytes), in state_dict order.

    Equal checksums mean bitwise-equal weights, e.g. across distributed ranks.

    Example:
        >>> weights_checksum(nn.Linear(2, 2)) == weights_checksum(nn.Linear(2, 2))
        False
    """
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
