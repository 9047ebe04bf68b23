"""Every spelling of every rule on a one-node graph (the table is tests/spelling_examples.py).

For each registered spelling (module type, torch function, Tensor method, ATen overload),
a graph of one call whose tensor inputs are parameters (so that every dim of size > 1
carries channel ids) goes through shape propagation, the ATen lowering for an overload
(which must spell it as a function or method with a rule), and channel propagation:

* the registry has a rule for the call, and it ran: no freeze of the fallbacks (no rule,
  a form the rule cannot handle, a result that does not match the value);
* the output carries channel ids that the rule left prunable (a rule that froze
  everything it touches fails here).

A rule that resizes a module or rewrites literal channel counts is also pruned between a
producer and a consumer, in exact mode, and must pass the oracle and shrink something (in
default mode, keeping the output shapes, for a layer norm's normalised dim).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from spelling_examples import EXAMPLES, Example, Method, T
from torch import fx, nn
from torch.utils._pytree import tree_flatten, tree_map

import fxprune
from fxprune.ir.channel_graph import connected_components
from fxprune.ir.layout import OPAQUE, Layout
from fxprune.passes.capture_export import lower
from fxprune.passes.propagate import propagate_layouts
from fxprune.passes.shapes import propagate_shapes
from fxprune.rules import RULES, lookup, register_optional_rules
from fxprune.rules.spelling import ATEN_SPELLINGS

#: Freeze reasons that mean the rule did not run or did not fit (passes/propagate.py).
FALLBACKS = ("no rule for", "unsupported form", "internal: rule result")

aten = torch.ops.aten
_COMPARISONS = ("eq", "ne", "lt", "le", "gt", "ge")
#: Spellings these tests found broken, each failing its test (strict xfail: a fix must remove it).
KNOWN_GAPS: dict[Any, str] = {}


def _registered() -> list[Any]:
    register_optional_rules()
    return [*RULES.modules, *RULES.functions, *(Method(m) for m in RULES.methods), *ATEN_SPELLINGS]


def _id(key: Any) -> str:
    if isinstance(key, type):
        return f"module:{key.__name__}"
    if isinstance(key, Method):
        return f"method:{key.name}"
    if isinstance(key, torch._ops.OpOverload):
        return f"aten:{key}"
    return f"function:{getattr(key, '__module__', None)}.{getattr(key, '__name__', key)}"


KEYS = sorted(EXAMPLES, key=_id)


def test_every_spelling_has_an_example() -> None:
    registered = _registered()
    missing = sorted(_id(key) for key in registered if key not in EXAMPLES)
    assert not missing, f"give these spellings an example in tests/spelling_examples.py: {missing}"
    stale = sorted(_id(key) for key in EXAMPLES if key not in set(registered))
    assert not stale, f"examples of spellings no rule registers (remove them): {stale}"


def _tensor(spec: T, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    if spec.dtype == torch.bool:
        return torch.rand(spec.shape, generator=gen) > 0.5
    return torch.randn(spec.shape, generator=gen).to(spec.dtype)


def _one_node(key: Any, example: Example) -> tuple[fx.GraphModule, str]:
    """A GraphModule that makes one call of ``key``, its tensors read as parameters."""
    root, graph = nn.Module(), fx.Graph()
    count = iter(range(1000))

    def attribute(spec: Any) -> Any:
        if not isinstance(spec, T):
            return spec
        name = f"t{next(count)}"
        root.register_parameter(name, nn.Parameter(_tensor(spec, int(name[1:])), requires_grad=False))
        return graph.get_attr(name)

    args = tree_map(attribute, example.args, is_leaf=lambda leaf: isinstance(leaf, T))
    kwargs = tree_map(attribute, example.kwargs, is_leaf=lambda leaf: isinstance(leaf, T))
    if example.module is not None:
        root.add_module("m", example.module().eval())
        node = graph.call_module("m", args, kwargs)
    elif isinstance(key, Method):
        node = graph.call_method(key.name, args, kwargs)
    else:
        node = graph.call_function(key, args, kwargs)
    graph.output(None)  # nothing is a model output: every freeze below is the rule's own
    return fx.GraphModule(root, graph), node.name


def _frozen(record: Any) -> np.ndarray:
    """For every id, whether its group is frozen."""
    unions = record.unions
    left = np.concatenate([a for a, _ in unions]) if unions else np.zeros(0, np.int64)
    right = np.concatenate([b for _, b in unions]) if unions else np.zeros(0, np.int64)
    component = connected_components(record.size, left, right)
    frozen = np.zeros(record.size, bool)
    for freeze in record.freezes:
        frozen[freeze.ids] = True
    frozen_components = np.zeros(component.max() + 1 if record.size else 0, bool)
    frozen_components[component[frozen]] = True
    return frozen_components[component]


def _cases(keys: list[Any]) -> list[Any]:
    return [pytest.param(key, id=_id(key), marks=[pytest.mark.xfail(reason=KNOWN_GAPS[key], strict=True)]
                         if key in KNOWN_GAPS else []) for key in keys]


@pytest.mark.parametrize("key", _cases(KEYS))
def test_one_node(key: Any) -> None:
    example = EXAMPLES[key]
    module, name = _one_node(key, example)
    propagate_shapes(module, ())
    if isinstance(key, torch._ops.OpOverload):
        module = lower(module, module)
        left = [n.format_node() for n in module.graph.nodes if isinstance(n.target, torch._ops.OpOverload)]
        assert not left, f"{key}: not spelled: {left}"
        propagate_shapes(module, ())
    nodes = {n.name: n for n in module.graph.nodes}
    if name not in nodes:  # an alias, spelled as its input
        return
    node = nodes[name]
    submodule = module.get_submodule(node.target) if node.op == "call_module" else None
    assert lookup(node, submodule) is not None, f"no rule for {node.format_node()}"
    layouts, record = propagate_layouts(module, exact=True)
    fallbacks = [f.reason for f in record.freezes if any(reason in f.reason for reason in FALLBACKS)]
    assert not fallbacks, f"{node.format_node()}: {fallbacks}"
    if example.tracks:
        leaves = tree_flatten(layouts[node], is_leaf=lambda leaf: isinstance(leaf, Layout))[0]
        ids = np.concatenate([b.ids.reshape(-1) for o in leaves if isinstance(o, Layout) for b in o.blocks] or
                             [np.zeros(0, np.int64)])
        ids = ids[ids != OPAQUE]
        assert ids.size, f"{node.format_node()}: the output tracks no channel"
        assert not _frozen(record)[ids].all(), (
            f"{node.format_node()}: every output channel frozen: {[f.reason for f in record.freezes]}")


# --------------------------------------------------------------------------- resizing rules: a tiny prune

PRUNED = [key for key in KEYS if EXAMPLES[key].prune]


def _layer(shape: tuple[int, ...], last_dim: bool) -> nn.Module:
    """A channel-mixing layer on dim 1 (the last dim with ``last_dim``, or for a rank-2 tensor)."""
    if last_dim or len(shape) == 2:
        return nn.Linear(shape[-1], shape[-1])
    return (nn.Conv1d, nn.Conv2d, nn.Conv3d)[len(shape) - 3](shape[1], shape[1], 1)


class _Chain(nn.Module):
    """producer -> the example's call -> one consumer per output: its channels prunable between layers."""

    def __init__(self, key: Any, example: Example) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.key, self.example = key, example
        self.producer = _layer(example.args[0].shape, example.last_dim)
        for index, spec in enumerate(example.args[1:]):
            if isinstance(spec, T):
                self.register_parameter(f"p{index}", nn.Parameter(_tensor(spec, index + 1)))
        if example.module is not None:
            self.m = example.module()
        with torch.no_grad():
            out = self._call(torch.zeros(example.args[0].shape))
        self.outputs = len(out) if isinstance(out, (tuple, list)) else 0
        self.consumers = nn.ModuleList(_layer(o.shape, example.last_dim) for o in (out if self.outputs else [out]))

    def _call(self, h: torch.Tensor) -> Any:
        rest = [getattr(self, f"p{i}") if isinstance(spec, T) else spec for i, spec in enumerate(self.example.args[1:])]
        if self.example.module is not None:
            return self.m(h)
        if isinstance(self.key, Method):
            return getattr(h, self.key.name)(*rest, **self.example.kwargs)
        return self.key(h, *rest, **self.example.kwargs)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        y = self._call(self.producer(x))
        ys = [y[i] for i in range(self.outputs)] if self.outputs else [y]
        return tuple(consumer(o) for consumer, o in zip(self.consumers, ys, strict=True))


@pytest.mark.parametrize("key", _cases(PRUNED))
def test_resizing_rule_prunes_exactly(key: Any) -> None:
    example = EXAMPLES[key]
    model = _Chain(key, example).eval()
    inputs = (_tensor(example.args[0], 0),)
    result = fxprune.compile(model, 0.5, example_inputs=inputs, exact=example.exact)
    with torch.no_grad():
        outputs, pruned = model(*inputs), result.module(*inputs)
    assert [o.shape for o in pruned] == [o.shape for o in outputs]
    if example.exact:
        scale = max(1.0, max(float(o.abs().max()) for o in outputs))
        assert fxprune.verify(model, result, inputs) <= 1e-4 * scale
    assert result.after.params < result.before.params, result.summary()
