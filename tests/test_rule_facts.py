"""The other facts rules state are what the operator does.

- ``contracts``: the MACs estimated from it equal those of the rewritten module;
- ``producer``: the nodes whose propagation marks a producer space;
- ``mixes_channels`` and ``norm``: a numeric probe of each module in the suite.

Each check also runs once on a deliberately wrong fact, to show it would catch one
(``tests/test_rule_shapes.py`` checks ``shape``).
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import pytest
import torch
from torch import fx, nn

import fxprune
from fxprune.ir.channel_graph import ChannelRecord
from fxprune.passes import propagate as propagate_pass
from fxprune.passes.capture import capture
from fxprune.passes.importance import score_groups
from fxprune.passes.plan import make_plan
from fxprune.rules import RULES, declared_rule, lookup, module_rule

try:
    from operator_models import CASES
except ImportError:  # tests/ imported as a package
    from tests.operator_models import CASES

NAMES = sorted(CASES)


def _captured(name: str) -> fx.GraphModule:
    case = CASES[name]
    return capture(case.build(), case.inputs(), concrete_args=case.concrete_args).module


# --------------------------------------------------------------------------- contracts


def _estimate_error(name: str) -> int:
    """Estimated minus measured MACs of the case pruned at 0.5 (plain l1, default mode)."""
    case = CASES[name]
    model = case.build()
    analysis = fxprune.analyze(model, case.inputs(), concrete_args=case.concrete_args)
    plan = make_plan(analysis.groups, score_groups(analysis.groups, analysis.traced), 0.5)
    return analysis.estimate(plan).macs - fxprune.apply_plan(analysis, plan).after.macs


# Cases whose FLOPs all come from convs and linears (the nodes a rule's ``contracts`` covers).
LAYER_NAMES = [n for n in NAMES if any(k in n for k in ("conv", "linear", "residual", "dense"))]


@pytest.mark.parametrize("name", LAYER_NAMES)
def test_contracted_dims_make_the_mac_estimate_exact(name: str) -> None:
    assert _estimate_error(name) == 0


def test_a_missing_contracted_dim_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    for kind, rule in list(RULES.modules.items()):
        if rule.contracts is not None:
            monkeypatch.setitem(RULES.modules, kind, replace(rule, contracts=None))
    assert _estimate_error(LAYER_NAMES[0]) > 0


# --------------------------------------------------------------------------- producer


def _producer_marks(name: str, monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, Any], set[str]]:
    """(node -> its rule, for the nodes whose rule says producer; the nodes whose propagation
    marked a producer space)."""
    marked: set[str] = set()
    current: list[fx.Node] = []
    run_rule, mark = propagate_pass._run_rule, ChannelRecord.mark

    def running(ctx: Any) -> Any:
        current[:] = [ctx.node]
        return run_rule(ctx)

    def marking(self: ChannelRecord, ids: Any, *, producer: bool = False, reader: bool = False) -> None:
        if producer and current:
            marked.add(current[0].name)
        mark(self, ids, producer=producer, reader=reader)

    monkeypatch.setattr(propagate_pass, "_run_rule", running)
    monkeypatch.setattr(ChannelRecord, "mark", marking)
    module = _captured(name)
    propagate_pass.propagate_layouts(module, exact=False)
    submodules = dict(module.named_modules())
    said = {}
    for node in module.graph.nodes:
        rule = lookup(node, submodules.get(node.target) if node.op == "call_module" else None) \
            if node.op.startswith("call") else None
        if rule is not None and rule.producer:
            said[node.name] = rule
    return said, marked


@pytest.mark.parametrize("name", NAMES)
def test_every_node_that_makes_a_channel_space_is_a_producer(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    said, marked = _producer_marks(name, monkeypatch)
    assert marked <= set(said)  # else Taylor would miss that space


def test_every_producer_rule_makes_channel_spaces(monkeypatch: pytest.MonkeyPatch) -> None:
    # Not every call does (a conv whose weight is computed from the input tracks none),
    # but a rule saying producer that never does, over the whole suite, is wrong.
    said_rules: dict[int, Any] = {}
    making: set[int] = set()
    for name in NAMES:
        said, marked = _producer_marks(name, monkeypatch)
        said_rules.update({id(rule): rule for rule in said.values()})
        making |= {id(rule) for node, rule in said.items() if node in marked}
    assert len(said_rules) >= 3 and set(said_rules) == making


def test_a_missing_producer_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    conv = RULES.modules[nn.Conv2d]
    for kind in [kind for kind, rule in RULES.modules.items() if rule is conv]:
        monkeypatch.setitem(RULES.modules, kind, replace(conv, producer=False))
    said, marked = _producer_marks(next(n for n in NAMES if "conv" in n), monkeypatch)
    assert not marked <= set(said)


# --------------------------------------------------------------------------- mixes_channels, norm


def _suite_modules() -> list[tuple[str, nn.Module, torch.Tensor]]:
    """Every leaf module with a rule and a weight in the operator suite, with an input it was called on."""
    found: dict[str, tuple[str, nn.Module, torch.Tensor]] = {}
    for name in NAMES:
        model = CASES[name].build()
        calls: list[tuple[str, nn.Module, torch.Tensor]] = []
        for path, module in model.named_modules():
            if module_rule(module) is not None and isinstance(getattr(module, "weight", None), torch.Tensor):
                module.register_forward_pre_hook(
                    lambda m, args, path=path, calls=calls: calls.append((path, m, args[0])) if args else None)
        with torch.no_grad():
            model(*CASES[name].inputs())
        for path, module, x in calls:
            found.setdefault(repr(module), (f"{name}:{path}", module, x))
    return sorted(found.values(), key=lambda item: item[0])


def _folds_through_weight(module: nn.Module, x: torch.Tensor) -> bool:
    """Setting input channel 0 to a constant m instead of 0 adds ``m * weight[:, 0]`` summed over the
    kernel to every output position: what bias compensation relies on. Convs are probed without
    padding on one output position's window, so that no position sees the border."""
    if isinstance(module, nn.modules.conv._ConvNd):
        module = copy.deepcopy(module)
        module.padding = (0,) * len(module.kernel_size)
        spans = [d * (k - 1) + 1 for d, k in zip(module.dilation, module.kernel_size, strict=True)]
        x = torch.randn(2, module.in_channels, *spans)
    axis = x.dim() - 1 if isinstance(module, nn.Linear) else 1
    weight = module.weight.detach()
    if weight.dim() < 2 or weight.shape[1] != x.shape[axis]:
        return False
    with torch.no_grad():
        zero, const = x.clone(), x.clone()
        zero.select(axis, 0).zero_()
        const.select(axis, 0).fill_(0.7)
        delta = (module(const) - module(zero)).movedim(axis, -1)
    expected = weight.reshape(weight.shape[0], weight.shape[1], -1)[:, 0].sum(-1) * 0.7
    return delta.shape[-1] == expected.numel() and torch.allclose(delta, expected.expand_as(delta), atol=1e-5)


def _scales_channels(module: nn.Module, x: torch.Tensor) -> bool:
    """Doubling ``weight[c]`` doubles ``output - bias`` at channel c and nothing else: a per-channel gamma."""
    weight = module.weight
    if weight.dim() != 1:
        return False
    axis = x.dim() - 1 if isinstance(module, nn.LayerNorm) else 1
    bias = module.bias.detach() if getattr(module, "bias", None) is not None else torch.zeros_like(weight)
    shape = [1] * x.dim()
    shape[axis] = -1
    module = copy.deepcopy(module).eval()
    with torch.no_grad():
        before = module(x) - bias.reshape(shape)
        module.weight[0] *= 2
        after = module(x) - bias.reshape(shape)
    expected = before.clone()
    expected.select(axis, 0).mul_(2)
    return torch.allclose(after, expected, atol=1e-5)


MODULES = _suite_modules()


IDS = [where for where, _, _ in MODULES]


@pytest.mark.parametrize("where, module, x", MODULES, ids=IDS)
def test_mixes_channels_is_what_bias_compensation_can_fold(where: str, module: nn.Module, x: torch.Tensor) -> None:
    assert _mixes(module) == _folds_through_weight(module.eval(), x)


@pytest.mark.parametrize("where, module, x", MODULES, ids=IDS)
def test_norm_is_a_per_channel_scale(where: str, module: nn.Module, x: torch.Tensor) -> None:
    assert declared_rule(module).norm == _scales_channels(module, x)


def _mixes(module: nn.Module) -> bool:
    rule = module_rule(module)
    return rule.mixes_channels is not None and rule.mixes_channels(module)


def test_the_suite_has_both_kinds_of_each_module_fact() -> None:
    mixing = [_mixes(m) for _, m, _ in MODULES]
    norms = [declared_rule(m).norm for _, m, _ in MODULES]
    assert True in mixing and False in mixing and True in norms and False in norms


def test_a_norm_subclass_with_its_own_forward_is_still_a_norm_for_bn_scale() -> None:
    class BatchNormAct(nn.BatchNorm2d):  # as timm's BatchNormAct2d
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(super().forward(x))

    module = BatchNormAct(4)
    assert module_rule(module) is None  # its computation is not the rule's...
    assert declared_rule(module).norm  # ...but its weight is still a gamma
