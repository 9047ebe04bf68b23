"""The fuzzing property: a random model compiles in exact and default mode, keeps its outputs' shapes,
passes the oracle in exact mode and is never modified; a failure is a typed :class:`FuzzFailure`."""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import Tensor, nn

from .fuzz_models import NetSpec

__all__ = ["TOLERANCE", "FuzzFailure", "check_example"]



TOLERANCE = 1e-4


class FuzzFailure(AssertionError):
    """The property failed: a wrong model, a changed output shape, or an untyped exception."""


def _output_tensors(value: Any) -> list[Tensor]:
    from torch.utils._pytree import tree_flatten
    return [leaf for leaf in tree_flatten(value)[0] if isinstance(leaf, Tensor)]


@torch.no_grad()
def _outputs(module: nn.Module, inputs: tuple[Any, ...]) -> list[Tensor]:
    import copy
    return _output_tensors(copy.deepcopy(module).eval()(*inputs))


def check_example(spec: NetSpec, ratio: float, round_to: int | None) -> str:
    """Compile ``spec``'s model in exact and default mode and check the promise.

    Returns ``"passed"`` (``"passed, nothing pruned"`` when the exact plan is empty) or
    ``"typed: <message>"`` for a typed ``FxPruneError``;
    raises :class:`FuzzFailure` (with the cause chained) when the promise is broken.
    """
    import fxprune

    model, inputs = spec.build(), spec.inputs()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    reference = _outputs(model, inputs)
    shapes = [tuple(t.shape) for t in reference]
    tolerance = TOLERANCE * max([1.0] + [float(t.abs().max()) for t in reference if t.numel()])
    outcome = "passed"
    for exact in (True, False):
        try:
            result = cast(fxprune.CompileResult,  # submodules=False: one captured model
                          fxprune.compile(model, ratio, example_inputs=inputs, exact=exact, round_to=round_to))
        except fxprune.FxPruneError as error:
            outcome = f"typed: {type(error).__name__}: {str(error).splitlines()[0]}"
            continue
        except Exception as error:
            raise FuzzFailure(f"exact={exact}: untyped {type(error).__name__}: {error}") from error
        finally:
            changed = [k for k, v in model.state_dict().items() if not torch.equal(v, state[k])]
            if changed or model.training != spec.train:
                raise FuzzFailure(f"exact={exact}: compile modified the model: {changed or 'its mode'}")
        try:
            got = [tuple(t.shape) for t in _outputs(result.module, inputs)]
            err = fxprune.verify(model, result, inputs) if exact else 0.0
        except Exception as error:
            raise FuzzFailure(f"exact={exact}: the pruned module fails: {type(error).__name__}: {error}") from error
        if got != shapes:
            raise FuzzFailure(f"exact={exact}: output shapes {got} != {shapes}")
        if not err <= tolerance:
            raise FuzzFailure(f"exact={exact}: oracle error {err} > {tolerance}")
        if exact and not result.plan.entries:
            outcome = "passed, nothing pruned"
    return outcome
