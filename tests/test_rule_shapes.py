"""The outputs rules state (``Rule.shape``) are what running the operator gives.

Over every node of the operator suite, through both front ends, the outputs stated by
the rules equal fake-tensor propagation of the same node (shape, dtype, strides and
FLOPs); the check also runs once on a deliberately wrong fact, to show it catches one.
Every ATen spelling reaches a rule, so those facts hold for export graphs as well.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import torch
from torch import fx, nn
from torch.utils._pytree import tree_flatten

from fxprune.passes import shapes as shapes_pass
from fxprune.passes.capture import capture
from fxprune.passes.shapes import propagate_shapes
from fxprune.rules import RULES, lookup
from fxprune.rules.output_shapes import valuewise

try:
    from operator_models import CASES
except ImportError:  # tests/ imported as a package
    from tests.operator_models import CASES

NAMES = sorted(CASES)
# A spread of the suite for the slower torch.export front end: layers, norms, joins, arithmetic.
EXPORT_NAMES = [n for n in NAMES if any(k in n for k in ("conv", "bn", "cat", "linear", "residual", "norm"))][:12]


def _signature(value: Any) -> list[Any]:
    """What a later node can depend on: each tensor's shape, dtype and strides; other values as they are."""
    leaves = tree_flatten(value)[0]
    return [(tuple(v.shape), v.dtype, v.stride()) if isinstance(v, torch.Tensor) else v for v in leaves]


def _snapshot(module: fx.GraphModule) -> dict[str, tuple[list[Any], int]]:
    return {n.name: (_signature(n.meta.get("val")), n.meta.get("flops", 0)) for n in module.graph.nodes}


def _stated_nodes(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """Record the nodes whose rule answered with a stated output in the next propagations."""
    answered: set[str] = set()

    def recording(node: fx.Node, module: nn.Module | None = None) -> Any:
        rule = lookup(node, module)
        if rule is None or rule.shape is None:
            return rule

        def shape(m: nn.Module | None, args: tuple, kwargs: dict) -> Any:
            stated = rule.shape(m, args, kwargs)
            if stated is not None:
                answered.add(node.name)
            return stated

        return replace(rule, shape=shape)

    monkeypatch.setattr(shapes_pass, "lookup", recording)
    return answered


def _mismatches(module: fx.GraphModule, inputs: tuple) -> list[str]:
    """Nodes whose stated output differs from running them on fake tensors."""
    propagate_shapes(module, inputs)
    stated = _snapshot(module)
    propagate_shapes(module, inputs, rule_shapes=False)
    reference = _snapshot(module)
    return [f"{name}: stated {stated[name]}, ran {reference[name]}" for name in reference
            if stated[name] != reference[name]]


def _captured(name: str, front_end: str) -> tuple[fx.GraphModule, tuple]:
    case = CASES[name]
    inputs = case.inputs()
    found = capture(case.build(), inputs, front_end=front_end, concrete_args=case.concrete_args)
    return found.module, inputs


@pytest.mark.parametrize("name", NAMES)
def test_stated_shapes_match_fake_propagation(name: str) -> None:
    module, inputs = _captured(name, "auto")
    assert _mismatches(module, inputs) == []


@pytest.mark.parametrize("name", EXPORT_NAMES)
def test_stated_shapes_match_fake_propagation_on_export_graphs(name: str) -> None:
    # ATen overloads are spelled as torch functions (or raised back to modules) before
    # shapes run, so the facts of the torch function's rule reach every ATen spelling.
    module, inputs = _captured(name, "export")
    assert _mismatches(module, inputs) == []


def test_every_aten_spelling_reaches_a_rule() -> None:
    # An overload is spelled as a torch function or method so that its rule, and every fact
    # on it, applies: a spelling whose target has no rule would only rename a freeze.
    from fxprune.rules.spelling import ATEN_SPELLINGS

    ruleless = [str(overload) for overload, spelling in ATEN_SPELLINGS.items() if spelling.adapt is None
                and spelling.target not in (RULES.methods if isinstance(spelling.target, str) else RULES.functions)]
    assert ruleless == []


def test_the_suite_exercises_every_stated_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    answered = _stated_nodes(monkeypatch)
    kinds: set[str] = set()
    for name in NAMES:
        module, inputs = _captured(name, "auto")
        answered.clear()
        propagate_shapes(module, inputs)
        submodules = dict(module.named_modules())
        for node in module.graph.nodes:
            if node.name in answered:
                rule = lookup(node, submodules.get(node.target) if node.op == "call_module" else None)
                kinds.add(rule.shape.__name__)
    assert kinds == {"valuewise", "normalising", "broadcast_binary", "concatenated", "conv_output", "linear_output"}


class MemoryFormats(nn.Module):
    """Channels-last and permuted tensors through the ops whose outputs are stated."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 6, 3, padding=1)
        self.bn, self.gn, self.ln = nn.BatchNorm2d(6), nn.GroupNorm(2, 6), nn.LayerNorm(6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.conv(x))
        y = self.bn(y) + self.gn(y)  # a channels-last and a contiguous operand
        z = self.ln(y.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        w = torch.cat([z.sigmoid(), y.expand_as(z) * 2], 1)
        return w.flatten(1)


def test_stated_shapes_keep_the_real_strides() -> None:
    model = MemoryFormats().eval()
    x = torch.randn(2, 4, 5, 5).to(memory_format=torch.channels_last)
    module = fx.symbolic_trace(model)
    assert _mismatches(module, (x,)) == []


def test_the_check_catches_a_wrong_shape_fact(monkeypatch: pytest.MonkeyPatch) -> None:
    # MaxPool stated as value-wise: same shape as its input, which a pool changes.
    monkeypatch.setitem(RULES.modules, nn.MaxPool2d, replace(RULES.modules[nn.MaxPool2d], shape=valuewise))
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.MaxPool2d(2)).eval()
    mismatched = [line.split(":")[0] for line in _mismatches(fx.symbolic_trace(model), (torch.randn(1, 3, 8, 8),))]
    assert mismatched[0] == "_1"  # the pool (and the output it feeds)
