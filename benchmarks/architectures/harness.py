"""Check one case: the exact-mode oracle, default mode, the input model untouched, and a ratio sweep.

Every failure is recorded as one line in :attr:`Row.failures`; nothing is raised, so one
case never stops the run.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._pytree import TreeSpec, tree_flatten
from torchvision.ops import FrozenBatchNorm2d

import fxprune

from .catalog import Case, Inputs

__all__ = ["EXACT_RTOL", "RATIO", "SWEEP", "Row", "check_case"]

#: Exact-mode oracle tolerance, relative to max(1, max |eager output|).
EXACT_RTOL = 1e-4
RATIO = 0.5
#: Exact-mode compiles beyond the main one: (ratio, extra compile options).
SWEEP: tuple[tuple[float, Mapping[str, Any]], ...] = (
    (0.25, {}), (0.75, {}), (0.5, {"round_to": 4}), (0.6, {"importance": "random"}))
WEIGHT_SEED, NORM_SEED, INPUT_SEED = 0, 1, 123

_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, FrozenBatchNorm2d)
# Norm layers start as the identity; random statistics make a wrongly kept channel visible to the oracle.
_NORM_DRAWS = {
    "weight": lambda shape, gen: torch.rand(shape, generator=gen) + 0.5,
    "bias": lambda shape, gen: torch.randn(shape, generator=gen) * 0.1,
    "running_mean": lambda shape, gen: torch.randn(shape, generator=gen) * 0.2,
    "running_var": lambda shape, gen: torch.rand(shape, generator=gen) + 0.5,
}


@dataclass
class Row:
    """The outcome of one case; figures come from the default-mode compile at :data:`RATIO`."""

    case: str
    family: str
    expected_error: str | None = None
    failures: list[str] = field(default_factory=list)
    oracle_error: float | None = None
    tolerance: float | None = None
    sweep_error: float | None = None
    default_ok: bool = False
    params_ratio: float | None = None
    macs_ratio: float | None = None
    groups: int | None = None
    pruned: int | None = None
    frozen: int | None = None
    freeze_reason: str | None = None
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        """Whether every check of the case held."""
        return not self.failures


@dataclass(frozen=True)
class _Reference:
    """The eager model's output: its pytree structure, leaf shapes and the oracle tolerance."""

    spec: TreeSpec
    shapes: tuple[torch.Size, ...]
    tolerance: float


def check_case(case: Case) -> Row:
    """Run every check of ``case`` and return its row."""
    started = time.perf_counter()
    row = Row(case.name, case.family, case.raises.__name__ if case.raises else None)
    try:
        model, inputs = _prepare(case)
        if case.raises is not None:
            _check_raises(case, model, inputs, row)
        else:
            _check_prunes(case, model, inputs, row)
    except Exception as error:  # noqa: BLE001 - compiles catch their own errors: this is the model or its inputs
        row.failures.append(f"building or running the eager model: {_describe(error)}")
    row.seconds = time.perf_counter() - started
    return row


def _prepare(case: Case) -> tuple[nn.Module, Inputs]:
    """Build the model with seeded random weights and norm statistics, and its seeded inputs."""
    torch.manual_seed(WEIGHT_SEED)
    model = case.build()
    generator = torch.Generator().manual_seed(NORM_SEED)
    with torch.no_grad():
        for module in (m for m in model.modules() if isinstance(m, _NORMS)):
            for name, draw in _NORM_DRAWS.items():
                tensor = getattr(module, name, None)
                if isinstance(tensor, Tensor):
                    tensor.copy_(draw(tensor.shape, generator))
    model.train(case.train_mode)
    torch.manual_seed(INPUT_SEED)
    return model, case.inputs()


def _check_raises(case: Case, model: nn.Module, inputs: Inputs, row: Row) -> None:
    """An untraceable case passes when both modes raise the expected typed error and leave the model as it was."""
    for exact in (True, False):
        label = "exact" if exact else "default"
        before = _state(model)
        try:
            fxprune.compile(model, RATIO, example_inputs=inputs, exact=exact, **case.compile_options)
            row.failures.append(f"{label}: compiled, but {row.expected_error} was expected")
        except Exception as error:  # noqa: BLE001 - any other error is the finding
            if not isinstance(error, case.raises):
                row.failures.append(f"{label}: {_describe(error)}, but {row.expected_error} was expected")
        if not _same_state(before, _state(model)):
            row.failures.append(f"{label}: the input model was modified")


def _check_prunes(case: Case, model: nn.Module, inputs: Inputs, row: Row) -> None:
    """Exact mode within the oracle tolerance, default mode runs, and the sweep stays exact."""
    reference = _reference(model, inputs)
    row.tolerance = reference.tolerance
    options = dict(case.compile_options)
    exact = _compile_checked(model, inputs, reference, row, "exact", RATIO, exact=True, **options)
    if exact is not None:
        row.oracle_error = exact[1]
    failures = len(row.failures)
    default = _compile_checked(model, inputs, reference, row, "default", RATIO, exact=False, **options)
    row.default_ok = default is not None and len(row.failures) == failures
    if default is not None:
        _record_figures(row, default[0])
    if case.sweep and exact is not None:
        errors = [_compile_checked(model, inputs, reference, row, _sweep_label(ratio, extra), ratio, exact=True,
                                   **options, **extra) for ratio, extra in SWEEP]
        row.sweep_error = max((checked[1] for checked in errors if checked is not None), default=None)


def _compile_checked(model: nn.Module, inputs: Inputs, reference: _Reference, row: Row, label: str, ratio: float,
                     **options: Any) -> tuple[fxprune.CompileResult, float] | None:
    """Compile and check: model untouched, output structure and shapes, and (exact mode) the oracle error.

    Returns:
        The result and its oracle error, or None when the compile or the pruned module failed.
    """
    before = _state(model)
    try:
        result = fxprune.compile(model, ratio, example_inputs=inputs, **options)
    except Exception as error:  # noqa: BLE001 - typed or not, a case that should prune and fails is a finding
        row.failures.append(f"{label}: {_describe(error)}")
        return None
    finally:
        if not _same_state(before, _state(model)):
            row.failures.append(f"{label}: the input model was modified")
    try:
        error = fxprune.verify(model, result, inputs)
        spec, shapes = _run(result.module, inputs)
    except Exception as failure:  # noqa: BLE001
        row.failures.append(f"{label}: the pruned module does not run: {_describe(failure)}")
        return None
    if spec != reference.spec:
        row.failures.append(f"{label}: output structure {spec} instead of {reference.spec}")
    elif shapes != reference.shapes:
        row.failures.append(f"{label}: output shapes {[tuple(s) for s in shapes]} instead of "
                            f"{[tuple(s) for s in reference.shapes]}")
    if options.get("exact") and not error <= reference.tolerance:  # written so that NaN fails
        row.failures.append(f"{label}: oracle error {error:.3g} above the tolerance {reference.tolerance:.3g}")
    return result, error


def _sweep_label(ratio: float, extra: Mapping[str, Any]) -> str:
    """``"sweep ratio=0.5 round_to=4"``: names a sweep compile in failure lines."""
    return " ".join(["sweep", f"ratio={ratio}", *(f"{key}={value!r}" for key, value in extra.items())])


def _reference(model: nn.Module, inputs: Inputs) -> _Reference:
    """Run the eager model once: the structure and shapes to match, and the tolerance its scale allows."""
    leaves, spec = tree_flatten(_eval_outputs(model, inputs))
    tensors = [leaf for leaf in leaves if isinstance(leaf, Tensor)]
    scale = max([1.0] + [float(t.abs().max()) for t in tensors if t.numel()])
    return _Reference(spec, tuple(t.shape for t in tensors), EXACT_RTOL * scale)


def _run(module: nn.Module, inputs: Inputs) -> tuple[TreeSpec, tuple[torch.Size, ...]]:
    """The output structure and tensor shapes of ``module``."""
    leaves, spec = tree_flatten(_eval_outputs(module, inputs))
    return spec, tuple(leaf.shape for leaf in leaves if isinstance(leaf, Tensor))


def _eval_outputs(module: nn.Module, inputs: Inputs) -> Any:
    """Run ``module`` in eval mode without grad, then put its state and training flags back: the harness
    never changes the state (BN statistics, QAT observers) of a module it checks. It does not run a deep
    copy instead because modules with legacy ``weight_norm`` cannot be copied."""
    saved = _state(module)
    module.eval()
    try:
        with torch.no_grad():
            return module(*inputs)
    finally:
        module.load_state_dict(saved[0])
        for submodule, training in zip(module.modules(), saved[1], strict=True):
            submodule.training = training


def _state(model: nn.Module) -> tuple[dict[str, Tensor], tuple[bool, ...]]:
    """A copy of everything compile must leave alone: the state dict and every module's training flag."""
    return ({k: v.detach().clone() for k, v in model.state_dict().items()},
            tuple(m.training for m in model.modules()))


def _same_state(a: tuple[dict[str, Tensor], tuple[bool, ...]], b: tuple[dict[str, Tensor], tuple[bool, ...]]
                ) -> bool:
    """Whether two :func:`_state` snapshots are equal, tensors bit for bit."""
    (tensors_a, flags_a), (tensors_b, flags_b) = a, b
    return flags_a == flags_b and tensors_a.keys() == tensors_b.keys() and all(
        tensors_a[k].shape == tensors_b[k].shape and torch.equal(tensors_a[k], tensors_b[k]) for k in tensors_a)


def _record_figures(row: Row, result: fxprune.CompileResult) -> None:
    """Params and MACs ratios, group counts and the main freeze reason of a compile result."""
    row.params_ratio = result.after.params / max(1, result.before.params)
    row.macs_ratio = result.after.macs / max(1, result.before.macs)
    row.groups = len(result.groups)
    row.pruned = len({entry.group for entry in result.plan.entries})
    row.frozen = sum(1 for group in result.groups if not group.prunable)
    row.freeze_reason = main_freeze_reason(result.groups)


def main_freeze_reason(groups: fxprune.Groups) -> str | None:
    """The reason that freezes the most channels, places left out; model outputs count only when
    nothing else freezes channels, since every model has them."""
    channels: Counter[str] = Counter()
    for group in groups:
        for reason in {_without_place(reason) for reason in group.frozen_by}:
            channels[reason] += group.size
    ranked = [reason for reason, _ in channels.most_common() if reason != "model output"]
    return ranked[0] if ranked else next(iter(channels), None)


def _without_place(reason: str) -> str:
    """``"no rule for roll at roll_1"`` -> ``"no rule for roll"``: fxprune reasons end with where they apply."""
    what, separator, _ = reason.rpartition(" at ")
    return what if separator else reason


def _describe(error: BaseException) -> str:
    """``Class: first line``, with ``untyped`` before errors that are not ``fxprune.FxPruneError``."""
    lines = str(error).strip().splitlines()
    typed = "" if isinstance(error, fxprune.FxPruneError) else "untyped "
    return f"{typed}{type(error).__name__}: {lines[0] if lines else ''}"[:240]
