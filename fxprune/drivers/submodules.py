"""Pruning a model that does not capture whole: its largest submodules that do, spliced back.

torchvision's detectors end in data-dependent post-processing (NMS keeps a number of
boxes known only at run time) that neither front end captures, yet their backbone, FPN
and heads do capture. :func:`prune_submodules` walks the module tree top-down: one eager
run of the whole model records what each submodule of the current level is called with
(:func:`~fxprune.passes.module_calls.record_calls`), each is pruned on its own on those
inputs, and a submodule that does not capture is split into its children. Each pruned
submodule keeps the channels at its boundary (its inputs are opaque and its outputs
pinned, as every model's are), so it fits the uncaptured code around it; the pruned
GraphModules replace the submodules in a copy of the model, under the same names, and
the copy runs the model's own post-processing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_flatten, tree_map

from ..errors import InputError, PlanError, RewriteError, TraceError
from ..ir.parametrized import deepcopy_module
from ..passes.capture import output_mismatch
from ..passes.capture_export import eval_mode, first_line, fresh_inputs
from ..passes.figures import Figures, count_params, human_count
from ..passes.module_calls import ModuleCall, eager_macs, record_calls
from ..passes.oracle import masked_reference, max_difference
from ..pipeline import CompileResult

__all__ = ["Part", "PruneOne", "SubmoduleResult", "capture_failures", "prune_submodules", "verify_submodules"]

#: Prunes one submodule: ``prune(submodule, its positional inputs, its qualified name)``.
PruneOne = Callable[[nn.Module, tuple[Any, ...], str], CompileResult]


@dataclass(frozen=True)
class Part:
    """One pruned submodule: its name, its compile result, and the inputs it was captured on."""

    name: str
    result: CompileResult
    inputs: tuple[Any, ...]
    calls: int


@dataclass(frozen=True)
class SubmoduleResult:
    """What :func:`fxprune.compile` returns when it prunes submodules.

    Attributes:
        module: a copy of the model with every pruned submodule replaced by its GraphModule.
        parts: the pruned submodules, outermost first.
        left: ``(name, why)`` of every submodule with parameters that was not pruned whole.
        whole: why the whole model was not captured ("" when submodules were named).
        before, after: parameters and MACs of the whole model (MACs of one eager run on the
            example inputs, counted as fxprune counts a graph's).
        seconds: wall time.
    """

    module: nn.Module
    parts: tuple[Part, ...]
    left: tuple[tuple[str, str], ...]
    whole: str
    before: Figures
    after: Figures
    seconds: float

    @property
    def pruned(self) -> tuple[str, ...]:
        return tuple(part.name for part in self.parts)

    @property
    def parts_before(self) -> Figures:
        """Parameters and MACs of the pruned submodules before pruning, on their recorded inputs."""
        return Figures(sum(p.result.before.params for p in self.parts), sum(p.result.before.macs for p in self.parts))

    @property
    def parts_after(self) -> Figures:
        """The same after pruning: unlike the whole model's MACs, these do not depend on how many
        boxes the pruned model's own NMS keeps (which sets the work of the heads after it)."""
        return Figures(sum(p.result.after.params for p in self.parts), sum(p.result.after.macs for p in self.parts))

    def summary(self) -> str:
        ratio = lambda a, b: f"{a / b:.3f}x" if b else "n/a"  # noqa: E731
        lines = [f"fxprune {type(self.module).__name__} by submodules ({len(self.parts)} pruned, "
                 f"{self.seconds:.2f} s)",
                 f"  params  {human_count(self.before.params):>9} -> {human_count(self.after.params):>9}  "
                 f"({ratio(self.after.params, self.before.params)})",
                 f"  MACs    {human_count(self.before.macs):>9} -> {human_count(self.after.macs):>9}  "
                 f"({ratio(self.after.macs, self.before.macs)}, one eager run)",
                 f"  parts   MACs {human_count(self.parts_before.macs)} -> {human_count(self.parts_after.macs)} "
                 f"({ratio(self.parts_after.macs, self.parts_before.macs)}) in the pruned submodules, on their "
                 "recorded inputs"]
        if self.whole:
            lines.append(f"  whole model not captured: {self.whole}")
        for part in self.parts:
            result, groups = part.result, part.result.groups
            front = result.capture.front_end if result.capture is not None else "?"
            lines.append(f"  pruned  {part.name} ({front}): {len(result.plan.entries)} of {len(groups)} groups "
                         f"pruned, params {ratio(result.after.params, result.before.params)}, MACs "
                         f"{ratio(result.after.macs, result.before.macs)}")
        lines += [f"  left    {name}: {why}" for name, why in self.left]
        return "\n".join(lines)


def prune_submodules(model: nn.Module, example_inputs: tuple[Any, ...], prune: PruneOne, *,
                     names: Sequence[str] | None = None, whole: str = "",
                     started: float | None = None) -> SubmoduleResult:
    """Prune the largest submodules of ``model`` that capture, and splice them into a copy.

    Args:
        model: the model; it is not modified.
        example_inputs: positional arguments of ``model.forward``.
        prune: prunes one submodule on its inputs (``fxprune.compile`` with the user's options).
        names: submodules to start from (default: the model's children); one that does not
            capture is split into its children.
        whole: why the whole model was not captured, for the summary.
        started: when the compile started (``time.perf_counter()``), for the seconds reported.

    Raises:
        InputError: a named submodule does not exist, or no submodule captures.
    """
    started = time.perf_counter() if started is None else started
    frontier = _start(model, names)
    parts: list[Part] = []
    left: list[tuple[str, str]] = []
    while frontier:
        calls = record_calls(model, example_inputs, frontier)
        split: list[str] = []
        for name in frontier:
            outcome = _prune_one(model.get_submodule(name), name, calls[name], prune)
            if isinstance(outcome, Part):
                parts.append(outcome)
                continue
            children = _children(model, name)
            left.append((name, outcome + ("; its children are tried" if children else "")))
            split += children
        frontier = split
    if not parts:
        raise InputError(f"no submodule of {type(model).__name__} captures: "
                         + "; ".join(f"{name}: {why}" for name, why in left[:4]))
    spliced = _splice(model, parts)
    before = Figures(count_params(model), eager_macs(model, example_inputs))
    after = Figures(count_params(spliced), eager_macs(spliced, example_inputs))
    return SubmoduleResult(spliced, tuple(parts), tuple(left), whole, before, after, time.perf_counter() - started)


def capture_failures(error: Exception) -> str:
    """One line: each front end's failure in a capture error (shortened), else the error's first line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip().startswith(("fx:", "export:"))]
    return " | ".join(line if len(line) <= 160 else line[:157] + "..." for line in lines) or first_line(error)


def verify_submodules(model: nn.Module, result: SubmoduleResult, example_inputs: tuple[Any, ...]) -> dict[str, float]:
    """The oracle of each pruned submodule on its inputs, and of the whole model (key ``""``).

    The whole model's reference is a copy of ``model`` with each pruned submodule replaced by
    its masked reference; in exact mode the pruned model's outputs (a detector's boxes,
    scores and labels after NMS) equal the reference's up to float rounding.
    """
    errors = {}
    references = []
    for part in result.parts:
        reference = masked_reference(model.get_submodule(part.name), part.result.groups, part.result.plan)
        errors[part.name] = max_difference(reference, part.result.module, part.inputs)
        references.append((part.name, reference))
    # In float64, so that rounding cannot reorder the near-tied scores that data-dependent
    # post-processing (top-k, NMS) sorts: that would compare different boxes.
    errors[""] = _whole_difference(_replaced(model, references), result.module, example_inputs)
    return errors


def _whole_difference(reference: nn.Module, pruned: nn.Module, example_inputs: tuple[Any, ...]) -> float:
    try:
        return max_difference(deepcopy_module(reference).double(), deepcopy_module(pruned).double(),
                              _double(example_inputs))
    except Exception:  # noqa: BLE001 - a model that only runs in its own dtype (float constants in its code): as it is
        return max_difference(reference, pruned, example_inputs)


def _double(inputs: Any) -> Any:
    return tree_map(lambda leaf: leaf.double() if isinstance(leaf, torch.Tensor) and leaf.is_floating_point()
                    else leaf, inputs)


def _start(model: nn.Module, names: Sequence[str] | None) -> list[str]:
    if names is None:
        return _children(model, "")
    modules = dict(model.named_modules())
    for name in names:
        if name not in modules:
            close = [n for n in modules if n and (n.startswith(name) or name.startswith(n))][:5]
            raise InputError(f"submodule '{name}' is not a module of {type(model).__name__}"
                             + (f"; close names: {', '.join(close)}" if close else ""))
    nested = [(outer, inner) for outer in names for inner in names if inner.startswith(f"{outer}.")]
    if nested:
        raise InputError(f"submodule '{nested[0][1]}' is inside '{nested[0][0]}': name one of them")
    return list(dict.fromkeys(names))


def _children(model: nn.Module, name: str) -> list[str]:
    """Children with parameters: a module without any has nothing to prune."""
    prefix = f"{name}." if name else ""
    return [prefix + child for child, module in model.get_submodule(name).named_children()
            if any(True for _ in module.parameters())]


def _prune_one(module: nn.Module, name: str, calls: list[ModuleCall], prune: PruneOne) -> Part | str:
    """The pruned submodule, or why it was not pruned (it is then split into its children)."""
    if not calls:
        return "not called by the model's forward on the example inputs"
    if calls[0].problem:
        return calls[0].problem
    try:
        result = prune(module, calls[0].args, name)
    except PlanError:
        raise  # the user's ratios or patterns: splitting would not help
    except (TraceError, InputError, RewriteError) as error:
        return f"not pruned: {capture_failures(error)}"
    problem = _replays(module, result, calls[1:])
    return problem or Part(name, result, calls[0].args, len(calls))


def _replays(module: nn.Module, result: CompileResult, calls: list[ModuleCall]) -> str | None:
    """Why the captured graph or the pruned module does not serve another call, if it does not.

    A graph captured by torch.export is specialised on the first call's shapes, and symbolic
    tracing can record another function for other inputs; each call with other input shapes
    is replayed on the captured graph (values compared with the submodule's) and on the
    pruned module (shapes compared).
    """
    seen = set()
    for call in calls:
        shapes = tuple(tuple(leaf.shape) for leaf in tree_flatten(call.args)[0] if isinstance(leaf, torch.Tensor))
        if call.problem or shapes in seen:
            if call.problem:
                return f"another call cannot be replayed: {call.problem}"
            continue
        seen.add(shapes)
        with eval_mode(module), torch.no_grad():
            expected = module(*fresh_inputs(call.args))
        mismatch = output_mismatch(result.traced, call.args, expected)
        if mismatch is None:
            mismatch = _shape_mismatch(result.module, call.args, expected)
        if mismatch is not None:
            return f"captured on its first call, but on a call with inputs {list(shapes)} the graph {mismatch}"
    return None


def _shape_mismatch(module: nn.Module, args: tuple[Any, ...], expected: Any) -> str | None:
    try:
        with eval_mode(module), torch.no_grad():
            actual = module(*fresh_inputs(args))
    except Exception as error:  # noqa: BLE001 - the pruned module must serve every call the original serves
        return f"pruned does not run ({type(error).__name__}: {first_line(error)})"
    want, got = tree_flatten(expected), tree_flatten(actual)
    if want[1] != got[1] or [getattr(a, "shape", None) for a in want[0]] != [getattr(b, "shape", None)
                                                                            for b in got[0]]:
        return "pruned returns other shapes"
    return None


def _splice(model: nn.Module, parts: list[Part]) -> nn.Module:
    """A copy of ``model`` with each pruned submodule in place of the original, under its name."""
    return _replaced(model, [(part.name, part.result.module) for part in parts])


def _replaced(model: nn.Module, replacements: list[tuple[str, nn.Module]]) -> nn.Module:
    copy = deepcopy_module(model)
    for name, module in replacements:
        parent, _, attribute = name.rpartition(".")
        setattr(copy.get_submodule(parent), attribute, module)
    return copy
