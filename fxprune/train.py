"""Fine-tuning and evaluation of (pruned) classifiers, in one process or under ``torchrun``.

Pruning removes channels a network relied on; a short fine-tune recovers most
of the accuracy. These helpers work the same for a plain ``nn.Module`` and a
``GraphModule`` emitted by :func:`fxprune.compile`. Launched by ``torchrun``
(``RANK`` and ``WORLD_SIZE`` set), they join the process group (gloo on CPU,
NCCL on GPU), shard the data with a ``DistributedSampler``, train through
``DistributedDataParallel`` and leave the group when done.

Example:
    >>> from fxprune.train import fine_tune, evaluate, make_loader
    >>> loader = make_loader(dataset, batch_size=8, shuffle=True)
    >>> history = fine_tune(result.module, loader, epochs=2, lr=1e-3)
    >>> accuracy = evaluate(result.module, make_loader(test_set, batch_size=8))
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

from fxprune.distributed import (
    DistributedInfo,
    distributed_session,
    make_loader,
    weights_checksum,
)
from fxprune.errors import InputError
from fxprune.progress import progress as progress_of

__all__ = ["distributed_session", "evaluate", "fine_tune", "make_loader", "weights_checksum"]

_OPTIMIZERS = ("sgd", "adamw")
_SCHEDULES = ("constant", "cosine")


def _to_device(inputs: Any, device: torch.device) -> Any:
    """Moves a tensor, or a list/tuple of tensors (SlowFast's [slow, fast]), to ``device``."""
    if isinstance(inputs, (list, tuple)):
        return [_to_device(item, device) for item in inputs]
    return inputs.to(device, non_blocking=True)


def _batches(loader: Iterable, epochs: int, steps: int | None) -> Iterator[tuple[int, Any]]:
    """Yields (epoch, batch): ``epochs`` passes, or exactly ``steps`` batches cycling the loader."""
    epoch, done = 0, 0
    while (epoch < epochs) if steps is None else (done < steps):
        sampler = getattr(loader, "sampler", None)
        if isinstance(sampler, DistributedSampler):
            sampler.set_epoch(epoch)  # a new shuffle each epoch, identical on every rank
        seen = 0
        for batch in loader:
            seen, done = seen + 1, done + 1
            yield epoch, batch
            if steps is not None and done >= steps:
                return
        if seen == 0:
            raise InputError("the loader yielded no batch; is the dataset (or this rank's shard) empty?")
        epoch += 1


def _optimizer(name: str, module: nn.Module, lr: float, momentum: float, weight_decay: float) -> torch.optim.Optimizer:
    parameters = [p for p in module.parameters() if p.requires_grad]
    if not parameters:
        raise InputError("the module has no trainable parameters (all have requires_grad=False)")
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=momentum, weight_decay=weight_decay)
    return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)


def _scheduler(
    name: str, solver: torch.optim.Optimizer, total: int | None, warmup: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The per-step learning-rate schedule: constant, or linear warm-up then cosine decay to 0."""
    if name == "constant":
        return None
    if total is None:
        raise InputError("schedule='cosine' needs the number of steps: pass steps= or a loader with a length")
    warmup = min(warmup, total - 1)
    decay = torch.optim.lr_scheduler.CosineAnnealingLR(solver, T_max=max(1, total - warmup))
    if warmup == 0:
        return decay
    ramp = torch.optim.lr_scheduler.LinearLR(solver, start_factor=1.0 / (warmup + 1), total_iters=warmup)
    return torch.optim.lr_scheduler.SequentialLR(solver, [ramp, decay], milestones=[warmup])


def _check_options(epochs: int, lr: float, steps: int | None, optimizer: str, schedule: str, warmup: int) -> None:
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise InputError(f"epochs must be a positive int, got {epochs!r}")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise InputError(f"steps must be None or a positive int, got {steps!r}")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise InputError(f"lr must be a finite number > 0, got {lr!r}")
    if optimizer not in _OPTIMIZERS:
        raise InputError(f"optimizer must be one of {_OPTIMIZERS}, got {optimizer!r}")
    if schedule not in _SCHEDULES:
        raise InputError(f"schedule must be one of {_SCHEDULES}, got {schedule!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise InputError(f"warmup must be an int >= 0, got {warmup!r}")


def _mean_over_ranks(value: torch.Tensor, info: DistributedInfo) -> float:
    if info.world_size > 1:
        value = value.clone()
        dist.all_reduce(value)
        value /= info.world_size
    return float(value)


def fine_tune(
    module: nn.Module,
    loader: Iterable,
    *,
    epochs: int = 1,
    lr: float = 1e-3,
    steps: int | None = None,
    device: str | torch.device = "cpu",
    optimizer: str = "sgd",
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    schedule: str = "constant",
    warmup: int = 0,
    progress: bool = True,
    teacher: nn.Module | None = None,
    distill: float = 0.5,
    temperature: float = 4.0,
) -> dict[str, Any]:
    """Trains ``module`` in place with cross-entropy (and, given a ``teacher``, distillation) and a fresh optimizer.

    The module is moved to ``device`` and trained in place (as any PyTorch
    training loop does); pass ``copy.deepcopy(module)`` to keep the original.
    Under ``torchrun`` every rank runs this with its shard of the data (see
    :func:`make_loader`); gradients are averaged by ``DistributedDataParallel``
    so all ranks end with the same weights.

    Args:
        module: A classifier mapping a batch of inputs to logits (a tensor or,
            for SlowFast, a ``[slow, fast]`` list).
        loader: Yields ``(inputs, labels)`` batches.
        epochs: Passes over the loader (ignored when ``steps`` is given).
        lr: Learning rate.
        steps: Run exactly this many optimizer steps, cycling over the loader.
        device: ``"cpu"``, ``"cuda"`` (one GPU per rank under torchrun) or a device.
        optimizer: ``"sgd"`` (with ``momentum``) or ``"adamw"``.
        momentum: SGD momentum.
        weight_decay: Decoupled (AdamW) or L2 (SGD) weight decay.
        schedule: ``"constant"`` learning rate, or ``"cosine"``: ``warmup`` steps of
            linear ramp-up, then cosine decay to zero at the last step (needs a
            known number of steps: ``steps`` or a loader with a length).
        warmup: Warm-up steps of the cosine schedule.
        progress: Show a progress bar (stderr, rank 0 only).
        teacher: A model whose logits the module also learns from (knowledge distillation,
            Hinton et al., arXiv 1503.02531), typically the unpruned original. It runs in eval
            mode without gradients (its mode is restored afterwards) on every rank's own batch.
        distill: Weight of the distillation term: the loss is
            ``distill * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - distill) * CE(s, labels)``
            for student logits ``s`` and teacher logits ``t`` (``F.kl_div`` of the student's
            log-probabilities against the teacher's probabilities, batch mean); ignored without
            a teacher. ``T^2`` keeps the soft term's gradients on the scale of the hard one's.
        temperature: ``T``, which softens both distributions (> 0).

    Returns:
        ``{"loss": [per-step loss, averaged over ranks], "lr": [per-step learning rate], "steps", "epochs",
        "seconds", "world_size"}``.

    Raises:
        InputError: For a bad option, an empty loader or nothing to train.

    Example:
        >>> history = fine_tune(pruned, make_loader(train_set, 8, shuffle=True), steps=200, lr=0.01)
        >>> history["loss"][-1] < history["loss"][0]
        True
    """
    _check_options(epochs, lr, steps, optimizer, schedule, warmup)
    _check_distillation(teacher, distill, temperature)
    started = time.perf_counter()
    was_training = module.training
    teacher_was_training = teacher.training if teacher is not None else False
    with distributed_session(device) as info:
        module.to(info.device)
        if teacher is not None:
            teacher.to(info.device).eval()
        loss_of = _loss(teacher, distill, temperature)
        model = module
        if info.world_size > 1:
            model = DistributedDataParallel(
                module, device_ids=[info.device.index] if info.device.type == "cuda" else None
            )
        solver = _optimizer(optimizer, module, lr, momentum, weight_decay)
        total = steps if steps is not None else _epoch_steps(loader, epochs)
        scheduler = _scheduler(schedule, solver, total, warmup)
        bar = progress_of(total=total, desc="fine-tune", unit="step", enabled=progress and info.is_main)
        model.train()
        losses, rates, epochs_run = _train_steps(model, solver, scheduler, _batches(loader, epochs, steps), info, bar,
                                                 loss_of)
        bar.close()
        module.train(was_training)
        if teacher is not None:
            teacher.train(teacher_was_training)
        seconds = time.perf_counter() - started
        return {
            "loss": losses,
            "lr": rates,
            "steps": len(losses),
            "epochs": epochs_run,
            "seconds": seconds,
            "world_size": info.world_size,
            "distill": distill if teacher is not None else 0.0,
        }


def _train_steps(
    model: nn.Module,
    solver: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    batches: Iterator[tuple[int, Any]], info: DistributedInfo, bar: Any,
    loss_of: Callable[[torch.Tensor, Any, torch.Tensor], torch.Tensor] | None = None,
) -> tuple[list[float], list[float], int]:
    """One optimizer step per batch; returns the per-step losses and learning rates and the epochs begun."""
    losses: list[float] = []
    rates: list[float] = []
    epoch = -1
    for epoch, (inputs, labels) in batches:
        inputs, labels = _to_device(inputs, info.device), labels.to(info.device)
        loss = (loss_of or _loss(None, 0.0, 1.0))(model(inputs), inputs, labels)
        solver.zero_grad(set_to_none=True)
        loss.backward()
        rates.append(solver.param_groups[0]["lr"])
        solver.step()
        if scheduler is not None:
            scheduler.step()
        losses.append(_mean_over_ranks(loss.detach(), info))
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.4f}", epoch=epoch)
    return losses, rates, epoch + 1


def _loss(teacher: nn.Module | None, distill: float,
          temperature: float) -> Callable[[torch.Tensor, Any, torch.Tensor], torch.Tensor]:
    """``loss(student_logits, inputs, labels)``: cross-entropy, mixed with distillation when there is a teacher."""
    def loss(logits: torch.Tensor, inputs: Any, labels: torch.Tensor) -> torch.Tensor:
        hard = F.cross_entropy(logits, labels)
        if teacher is None or distill == 0:
            return hard
        with torch.no_grad():
            target = teacher(inputs)
        soft = F.kl_div(F.log_softmax(logits / temperature, dim=1), F.softmax(target / temperature, dim=1),
                        reduction="batchmean")
        return distill * temperature**2 * soft + (1 - distill) * hard

    return loss


def _check_distillation(teacher: nn.Module | None, distill: float, temperature: float) -> None:
    if teacher is not None and not isinstance(teacher, nn.Module):
        raise InputError(f"teacher must be an nn.Module (e.g. the unpruned model), got {type(teacher).__name__}")
    if isinstance(distill, bool) or not isinstance(distill, (int, float)) or not 0 <= distill <= 1:
        raise InputError(f"distill must be a weight in [0, 1], got {distill!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0 \
            or not math.isfinite(temperature):
        raise InputError(f"temperature must be a finite number > 0, got {temperature!r}")


def _epoch_steps(loader: Iterable, epochs: int) -> int | None:
    try:
        return epochs * len(loader)  # type: ignore[arg-type]
    except TypeError:
        return None  # an iterable-style loader has no length; the bar counts without a total


@torch.no_grad()
def evaluate(
    module: nn.Module, loader: Iterable, *, device: str | torch.device = "cpu", progress: bool = False
) -> float:
    """Returns the top-1 accuracy of ``module`` over ``loader``, in [0, 1].

    Runs in eval mode and restores the module's previous mode. With a
    distributed loader under ``torchrun`` the counts of all ranks are summed,
    so every rank returns the accuracy over the whole dataset (the sampler's
    padding may count up to world_size - 1 samples twice).

    Raises:
        InputError: If the loader yields no sample.

    Example:
        >>> evaluate(pruned, make_loader(test_set, batch_size=16))
        0.8125
    """
    was_training = module.training
    with distributed_session(device) as info:
        module.to(info.device).eval()
        counts = torch.zeros(2, dtype=torch.float64, device=info.device)
        bar = progress_of(loader, "evaluate", unit="batch", enabled=progress and info.is_main)
        for inputs, labels in bar:
            logits = module(_to_device(inputs, info.device))
            labels = labels.to(info.device)
            counts += torch.stack(
                [(logits.argmax(dim=1) == labels).sum(), torch.tensor(labels.numel(), device=info.device)]
            )
        if info.world_size > 1 and isinstance(getattr(loader, "sampler", None), DistributedSampler):
            dist.all_reduce(counts)
        module.train(was_training)
    if counts[1] == 0:
        raise InputError("the loader yielded no sample to evaluate")
    return float(counts[0] / counts[1])
