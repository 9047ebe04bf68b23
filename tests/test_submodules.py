"""Models neither front end captures whole: their submodules are pruned and spliced back.

``Gated`` has a loop over channels picked by their values at its top level (as a detector's
NMS keeps a data-dependent number of boxes) around two prunable conv blocks; ``Nested``
hides such a loop inside a child, which is then split into its own children. The
torchvision detectors themselves run in ``benchmarks/detectors.py`` (slow).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

import fxprune
from fxprune.drivers.submodules import SubmoduleResult, verify_submodules
from fxprune.errors import InputError, PlanError, TraceError
from fxprune.passes.figures import count_params
from fxprune.passes.module_calls import record_calls

try:  # pytest puts tests/ on sys.path
    from cli_factory import gated
except ImportError:  # pragma: no cover
    from tests.cli_factory import gated

TOLERANCE = 1e-5
X = torch.randn(2, 3, 8, 8)


class _Decide(nn.Module):
    """A child that loops over channels picked by their values before its own conv block."""

    def __init__(self) -> None:
        super().__init__()
        self.mix = nn.Sequential(nn.Conv2d(8, 16, 1), nn.ReLU(), nn.Conv2d(16, 4, 1))

    def forward(self, y: Tensor, scale: float = 1.0) -> Tensor:
        for channel in torch.nonzero(y.mean((0, 2, 3)) > y.mean()).flatten().tolist():
            y = y + scale * y[:, channel:channel + 1]
        return self.mix(y)


class Nested(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1))
        self.decide = _Decide()

    def forward(self, x: Tensor) -> Tensor:
        return self.decide(self.features(x), scale=0.5)


class _ShapeBranch(nn.Module):
    """Takes another branch at small sizes: torch.export specialises it on the first call's."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1))

    def forward(self, y: Tensor) -> Tensor:
        if y.shape[-1] > 4:
            return self.block(y)
        return 2 * y


class TwoScales(nn.Module):
    """One submodule called at two sizes, and a loop on values at the top level."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 1)
        self.branch = _ShapeBranch()

    def forward(self, x: Tensor) -> Tensor:
        y = self.stem(x)
        out = self.branch(y) + F.interpolate(self.branch(F.avg_pool2d(y, 4)), size=y.shape[-2:])
        for channel in torch.nonzero(out.mean((0, 2, 3)) > out.mean()).flatten().tolist():
            out = out + out[:, channel:channel + 1]
        return out


def _width(model: nn.Module, path: str) -> int:
    return model.get_submodule(path).out_channels


def _outputs(model: nn.Module, x: Tensor = X) -> Tensor:
    with torch.no_grad():
        return model.eval()(x)


def test_the_whole_model_does_not_capture() -> None:
    with pytest.raises(TraceError, match=r"(?s)fx: .*\n  export: .*submodules=True"):
        fxprune.compile(gated(), 0.5, example_inputs=(X,))


@pytest.mark.parametrize("exact", [True, False])
def test_both_blocks_are_pruned_spliced_and_pass_the_oracle(exact: bool) -> None:
    model = gated()
    original = {k: v.clone() for k, v in model.state_dict().items()}
    result = fxprune.compile(model, 0.5, example_inputs=(X,), submodules=True, exact=exact)
    assert isinstance(result, SubmoduleResult) and result.pruned == ("features", "head")
    assert "fx: " in result.whole and "export: " in result.whole
    assert all(len(part.result.plan.entries) == 1 for part in result.parts)
    module = result.module
    assert isinstance(module.features, fx.GraphModule) and isinstance(module.head, fx.GraphModule)
    assert _width(module, "features.0") == 4 and _width(module, "head.0") == 8
    # The boundaries stay: the loop and the head see the features' 8 channels, the output keeps 4.
    assert _width(module, "features.3") == 8 and _width(module, "head.2") == 4
    assert _outputs(module).shape == (2, 4, 8, 8)
    errors = verify_submodules(model, result, (X,))
    assert set(errors) == {"features", "head", ""} and max(errors.values()) < TOLERANCE, errors
    assert fxprune.verify(model, result, (X,)) == max(errors.values())
    assert result.after.params == count_params(module) < result.before.params == count_params(model)
    assert result.after.macs < result.before.macs
    assert all(torch.equal(v, original[k]) for k, v in model.state_dict().items())  # not modified


def test_dead_channels_come_out_with_the_outputs_unchanged() -> None:
    """Channels whose filters are zero compute nothing: pruning them keeps the model's outputs."""
    model = gated()
    with torch.no_grad():
        for conv in (model.features[0], model.head[0]):
            conv.weight[::2] = 0
            conv.bias[::2] = 0
        model.features[1].bias[::2] = 0  # BatchNorm of a zero channel stays zero
        model.features[1].running_mean[::2] = 0
    result = fxprune.compile(model, 0.5, example_inputs=(X,), submodules=True, exact=True)
    assert _width(result.module, "features.0") == 4 and _width(result.module, "head.0") == 8
    torch.testing.assert_close(_outputs(result.module), _outputs(model))


def test_a_child_that_does_not_capture_is_split_into_its_children() -> None:
    torch.manual_seed(0)
    model = Nested().eval()
    result = fxprune.compile(model, 0.5, example_inputs=(X,), submodules=True)
    assert result.pruned == ("features", "decide.mix")
    assert [name for name, _ in result.left] == ["decide"] and "children are tried" in result.left[0][1]
    assert fxprune.verify(model, result, (X,)) < TOLERANCE
    text = result.summary()
    assert "pruned  decide.mix (fx)" in text and "left    decide: not pruned: fx:" in text


def test_a_model_that_captures_whole_gives_the_usual_result() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3)).eval()
    result = fxprune.compile(model, 0.5, example_inputs=(X,), submodules=True)
    assert isinstance(result, fxprune.CompileResult) and result.module.get_submodule("0").out_channels == 4


def test_a_graph_specialised_on_its_first_call_is_split_when_another_call_differs() -> None:
    torch.manual_seed(0)
    model = TwoScales().eval()
    result = fxprune.compile(model, 0.5, example_inputs=(X,), submodules=True)
    assert result.pruned == ("stem", "branch.block") and [name for name, _ in result.left] == ["branch"]
    assert "on a call with inputs [(2, 8, 2, 2)] the graph computes other values" in result.left[0][1]
    assert _width(result.module, "branch.block.0") == 4
    assert fxprune.verify(model, result, (X,)) < TOLERANCE


def test_named_submodules_and_patterns_of_the_whole_model() -> None:
    model = gated()
    result = fxprune.compile(model, 0.5, example_inputs=(X,), submodules=["head"])
    assert result.pruned == ("head",) and result.whole == "" and _width(result.module, "features.0") == 8
    result = fxprune.compile(model, {"features.*": 0.5}, example_inputs=(X,), submodules=True)
    assert _width(result.module, "features.0") == 4 and _width(result.module, "head.0") == 16
    result = fxprune.compile(model, 0.5, example_inputs=(X,), submodules=True, ignore=["features.0"])
    assert _width(result.module, "features.0") == 8 and _width(result.module, "head.0") == 8
    assert fxprune.verify(model, result, (X,)) < TOLERANCE


@pytest.mark.parametrize("options, error, message", [
    ({"submodules": ["head", "tail"]}, InputError, "submodule 'tail' is not a module of Gated"),
    ({"submodules": "head"}, InputError, "a list of submodule names"),
    ({"submodules": ["head", "head.0"]}, InputError, "'head.0' is inside 'head'"),
    ({"submodules": True, "ratios": {"neck.*": 0.5}}, PlanError, "'neck.*' matches no module"),
    ({"submodules": True, "ratios": {0: 0.5}}, PlanError, "group indices"),
])
def test_bad_submodule_arguments(options: dict, error: type, message: str) -> None:
    ratios = options.pop("ratios", 0.5)
    with pytest.raises(error, match=message):
        fxprune.compile(gated(), ratios, example_inputs=(X,), **options)


def test_calls_are_recorded_with_keywords_in_their_positions() -> None:
    torch.manual_seed(0)
    model = Nested().eval()
    calls = record_calls(model, (X,), ["decide", "decide.mix"])
    (decide,), (mix,) = calls["decide"], calls["decide.mix"]
    assert decide.problem == "" and decide.args[1] == 0.5 and decide.args[0].shape == (2, 8, 8, 8)
    assert mix.args[0].shape == (2, 8, 8, 8)


def test_a_failed_trace_leaves_the_model_as_it_was() -> None:
    """A forward that stores what it computes (torchvision's AnchorGenerator) must not keep a Proxy."""

    class Caching(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)
            self.scale = torch.ones(1)

        def forward(self, x: Tensor) -> Tensor:
            self.scale = self.scale.to(x.dtype)
            y = self.conv(x) * self.scale
            return y if len(torch.nonzero(y > 0)) else -y

    model = Caching()
    with pytest.raises(TraceError):
        fxprune.trace(model, (X,))
    assert type(model.scale) is torch.Tensor and model(X).shape == (2, 4, 8, 8)
