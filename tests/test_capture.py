"""The two capture front ends: one hand-written model per obstacle of symbolic tracing.

Each model runs forward in eager mode but defeats ``torch.fx`` symbolic tracing the way
client libraries do (Ultralytics, transformers, segmentation-models-pytorch,
pytorchvideo). Under ``capture="auto"`` each must be captured by torch.export, pruned,
and pass the oracle; the pruned module keeps the output structure and a dynamic batch.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils._pytree import register_dataclass, tree_flatten, tree_map

import fxprune
from fxprune.errors import InputError, TraceError

TOLERANCE = 1e-4


class ShapeBranch(nn.Module):
    """An ``if`` on a shape, as smp's decoders branch on feature sizes."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.body = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 4, 1)
        self.norm = nn.BatchNorm2d(8)

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.norm(self.stem(x)))
        if y.shape[-1] > 4:
            y = y + self.body(y)
        return self.head(y)


class ListInput(nn.Module):
    """``len()`` of a list input, as pytorchvideo's SlowFast, and a shape ``if`` on a pathway."""

    def __init__(self) -> None:
        super().__init__()
        self.paths = nn.ModuleList([nn.Conv2d(3, 8, 3, padding=1) for _ in range(2)])
        self.fuse = nn.Conv2d(16, 4, 1)

    def forward(self, xs: list[Tensor]) -> Tensor:
        if not isinstance(xs, list):
            raise TypeError("needs a list of pathways")
        features = [self.paths[i](xs[i]).relu() for i in range(len(xs))]
        if features[0].shape[-1] != features[1].shape[-1]:  # pytorchvideo fuses pathways of other rates
            features[1] = F.interpolate(features[1], size=features[0].shape[-2:])
        return self.fuse(torch.cat(features, 1))


class IterateTensor(nn.Module):
    """Iteration over a tensor's parts, as ConvNeXt-style and attention code unpack chunks."""

    def __init__(self) -> None:
        super().__init__()
        self.expand, self.project = nn.Conv2d(3, 16, 1), nn.Conv2d(8, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        mixed = 0
        for part in self.expand(x).split(8, dim=1):
            mixed = mixed + part.sigmoid()
        return self.project(mixed)


class Routed(nn.Module):
    """Ultralytics' loop: layers read earlier outputs by integer indices held in module attributes,
    and a detection head unpacks its input's shape."""

    def __init__(self) -> None:
        super().__init__()
        layers = [nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, stride=2, padding=1),
                  nn.Conv2d(8, 8, 3, padding=1), nn.Upsample(scale_factor=2.0), _Concat(), _Head(16, 6)]
        for index, (layer, source) in enumerate(zip(layers, (-1, -1, -1, -1, [-1, 0], -1), strict=True)):
            layer.i, layer.f = index, source
        self.model = nn.ModuleList(layers)
        self.save = {0}

    def forward(self, x: Tensor) -> tuple[Tensor, dict[str, Any]]:
        saved: list[Tensor | None] = []
        for layer in self.model:
            if layer.f != -1:
                x = saved[layer.f] if isinstance(layer.f, int) else [x if j == -1 else saved[j] for j in layer.f]
            x = layer(x)
            saved.append(x if layer.i in self.save else None)
        return x, {"feats": [saved[0]]}


class _Concat(nn.Module):
    def forward(self, xs: list[Tensor]) -> Tensor:
        return torch.cat(xs, 1)


class _Head(nn.Module):
    def __init__(self, channels: int, outputs: int) -> None:
        super().__init__()
        self.conv, self.outputs = nn.Conv2d(channels, outputs, 1), outputs

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        if h != w:  # Ultralytics rebuilds its anchors when the feature shape changes
            raise ValueError("square inputs only")
        return self.conv(x).view(b, self.outputs, h * w)


@dataclasses.dataclass
class Output:
    """A transformers-style structured output."""

    logits: Tensor
    hidden: dict[str, Tensor]


register_dataclass(Output)


class StructuredOutput(nn.Module):
    """Dataclass and dict outputs behind a shape ``if`` (transformers' ModelOutput)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.block, self.classifier = nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3, padding=1), nn.Linear(8, 5)

    def forward(self, x: Tensor) -> Output:
        hidden = self.stem(x).relu()
        if hidden.dim() == 4:
            hidden = self.block(hidden).relu()
        return Output(self.classifier(hidden.mean((2, 3))), {"last": hidden.mean((2, 3))})


class Asserting(nn.Module):
    """``torch._assert`` on input shapes, as torchvision's ViT and transformers check them."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 8, 3), nn.Conv2d(8, 4, 3)

    def forward(self, x: Tensor) -> Tensor:
        torch._assert(x.shape[1] == 3, "expects RGB")
        if x.shape[-1] < 3:
            raise ValueError("too small")
        return self.b(self.a(x).relu())


class IsinstanceGuard(nn.Module):
    """A skip connection guarded by ``torch.jit.isinstance``: False for a proxy, so symbolic
    tracing records a graph without the concat and the next conv no longer fits."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder, self.up = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
        self.decoder = nn.Conv2d(16, 4, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        skip = self.encoder(x).relu()
        return self.decode(self.up(skip), skip)

    def decode(self, x: Tensor, skip: Tensor | None) -> Tensor:
        if torch.jit.isinstance(skip, torch.Tensor):
            x = torch.cat([x, skip], 1)
        return self.decoder(x)


class DataDependent(nn.Module):
    """A value that decides the graph: captured by neither front end."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 8, 3), nn.Conv2d(8, 4, 3)

    def forward(self, x: Tensor) -> Tensor:
        y = self.a(x)
        if y.mean().item() > 0:
            y = y.relu()
        return self.b(y)


IMAGE = (2, 3, 8, 8)
OBSTACLES = {
    "shape_branch": (ShapeBranch, lambda: (torch.randn(IMAGE),)),
    "list_input": (ListInput, lambda: ([torch.randn(IMAGE), torch.randn(IMAGE)],)),
    "iterate_tensor": (IterateTensor, lambda: (torch.randn(IMAGE),)),
    "routed": (Routed, lambda: (torch.randn(IMAGE),)),
    "structured_output": (StructuredOutput, lambda: (torch.randn(IMAGE),)),
    "asserting": (Asserting, lambda: (torch.randn(IMAGE),)),
    "isinstance_guard": (IsinstanceGuard, lambda: (torch.randn(IMAGE),)),
}


def _build(name: str) -> tuple[nn.Module, tuple[Any, ...]]:
    cls, inputs = OBSTACLES[name]
    torch.manual_seed(0)
    return cls().eval(), inputs()


def _batch(inputs: tuple[Any, ...], size: int) -> tuple[Any, ...]:
    return tree_map(lambda t: torch.randn(size, *t.shape[1:]) if isinstance(t, Tensor) else t, inputs)


@pytest.mark.parametrize("name", sorted(OBSTACLES))
def test_obstacle_prunes_through_export(name: str) -> None:
    model, inputs = _build(name)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = fxprune.compile(model, 0.5, example_inputs=inputs, exact=True)
    assert result.capture.front_end == "export"
    assert result.capture.left and result.capture.left[0].startswith("fx: ")  # says why fx was left
    assert "torch.export" in result.summary()
    assert result.after.params < result.before.params
    peak = max(t.abs().max().item() for t in tree_flatten(model(*inputs))[0] if isinstance(t, Tensor))
    assert fxprune.verify(model, result, inputs) <= TOLERANCE * max(1.0, peak)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # the model is untouched


@pytest.mark.parametrize("name", sorted(OBSTACLES))
def test_obstacle_keeps_structure_and_dynamic_batch(name: str) -> None:
    model, inputs = _build(name)
    result = fxprune.compile(model, 0.5, example_inputs=inputs)
    assert result.capture.dynamic_batch
    bigger = _batch(inputs, IMAGE[0] + 1)
    with torch.no_grad():
        want, got = model(*bigger), result.module(*bigger)
    assert type(got) is type(want)
    want_leaves, want_spec = tree_flatten(want)
    got_leaves, got_spec = tree_flatten(got)
    assert got_spec == want_spec
    assert [t.shape for t in got_leaves] == [t.shape for t in want_leaves]


def test_isinstance_guard_is_caught_by_the_capture_check() -> None:
    model, inputs = _build("isinstance_guard")
    traced = fxprune.trace(model, inputs)  # symbolic tracing "succeeds" with the wrong graph
    assert not any(n.target is torch.cat for n in traced.graph.nodes)
    result = fxprune.compile(model, 0.5, example_inputs=inputs)
    assert "does not run on inputs the model runs on" in result.capture.left[0]
    with pytest.raises(TraceError, match="fx: the captured graph"):
        fxprune.compile(model, 0.5, example_inputs=inputs, capture="fx")


def test_unchecked_capture_still_falls_back_on_a_shape_error() -> None:
    model, inputs = _build("isinstance_guard")
    result = fxprune.compile(model, 0.5, example_inputs=inputs, check_capture=False)
    assert result.capture.front_end == "export" and result.capture.check_seconds is None
    assert "shapes do not propagate" in result.capture.left[0]


def test_traceable_model_stays_on_symbolic_tracing() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3)).eval()
    result = fxprune.compile(model, 0.5, example_inputs=(torch.randn(IMAGE),))
    assert result.capture.front_end == "fx" and result.capture.left == ()
    assert result.capture.check_seconds is not None


def test_data_dependent_value_is_a_trace_error_naming_both_front_ends() -> None:
    with pytest.raises(TraceError) as caught:
        fxprune.compile(DataDependent().eval(), 0.5, example_inputs=(torch.randn(IMAGE),))
    message = str(caught.value)
    assert "fx: " in message and "export: " in message and "Ways out" in message


def test_inputs_the_model_rejects_are_an_input_error() -> None:
    with pytest.raises(InputError, match="does not run on the example inputs"):
        fxprune.compile(ShapeBranch().eval(), 0.5, example_inputs=(torch.randn(2, 5, 8, 8),))


@pytest.mark.parametrize("bad", [{"capture": "dynamo"}, {"check_capture": "yes"}])
def test_bad_capture_arguments(bad: dict[str, Any]) -> None:
    with pytest.raises(InputError):
        fxprune.compile(ShapeBranch().eval(), 0.5, example_inputs=(torch.randn(IMAGE),), **bad)


def test_exported_module_switches_train_and_eval() -> None:
    model, inputs = _build("shape_branch")
    model.norm.running_mean.normal_()
    result = fxprune.compile(model, 0.5, example_inputs=inputs, capture="export")
    pruned = result.module
    assert isinstance(pruned.norm, nn.BatchNorm2d) and not pruned.training
    stats = pruned.norm.running_mean.clone()
    pruned.train()
    pruned(*inputs)
    assert pruned.norm.training and not torch.equal(stats, pruned.norm.running_mean)  # BatchNorm learns
    pruned.eval()
    with torch.no_grad():
        assert torch.equal(pruned(*inputs), pruned(*inputs))
    assert not model.training and not model.norm.training  # the original keeps its mode


def test_exported_dropout_follows_the_mode() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Dropout(0.5), nn.Conv2d(8, 4, 3)).eval()
    x = torch.randn(IMAGE)
    pruned = fxprune.compile(model, 0.5, example_inputs=(x,), capture="export").module
    pruned.train()
    torch.manual_seed(0)
    assert not torch.equal(pruned(x), pruned(x))
    pruned.eval()
    assert torch.equal(pruned(x), pruned(x))


class Classifier(nn.Module):
    """A shape ``if`` in a classifier, for the deployment path of an exported result."""

    def __init__(self) -> None:
        super().__init__()
        self.features = ShapeBranch()
        self.drop, self.fc = nn.Dropout(0.1), nn.Linear(4, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.drop(self.features(x).mean((2, 3))))


def test_exported_result_saves_exports_and_fine_tunes(tmp_path: Any) -> None:
    from fxprune.export import to_onnx
    from fxprune.train import fine_tune

    torch.manual_seed(0)
    model, x = Classifier().eval(), torch.randn(IMAGE)
    result = fxprune.compile(model, 0.5, example_inputs=(x,))
    assert result.capture.front_end == "export"
    loaded = fxprune.load(fxprune.save(result, tmp_path / "pruned.pt2", (x,)))
    with torch.no_grad():
        assert torch.allclose(loaded(x), result.module(x), atol=1e-5)
    assert to_onnx(result.module, (x,), tmp_path / "pruned.onnx").max_abs_error < 1e-4
    before = result.module.fc.weight.detach().clone()
    labels = torch.tensor([0, 2])
    history = fine_tune(result.module, [(x, labels)] * 3, epochs=1, lr=0.1, progress=False)
    assert len(history["loss"]) == 3 and not torch.equal(before, result.module.fc.weight)


def test_schedules_and_sensitivity_capture_through_export() -> None:
    model, inputs = _build("shape_branch")
    schedule = fxprune.prune_iteratively(model, inputs, 0.5, steps=2, progress=False)
    assert schedule.after.params < schedule.before.params
    report = fxprune.sensitivity(model, inputs, lambda m: float(m(*inputs).mean()), ratios=(0.5,), progress=False)
    assert report.rows
    with pytest.raises(TraceError):
        fxprune.sensitivity(model, inputs, lambda m: 0.0, ratios=(0.5,), progress=False, capture="fx")


def _checks_asked(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bool]]:
    """Record the front end and check every analysis asks the capture for."""
    asked: list[tuple[str, bool]] = []
    capture = fxprune.pipeline.capture_model

    def recording(*args: Any, **kwargs: Any) -> Any:
        asked.append((kwargs["front_end"], kwargs["check"]))
        return capture(*args, **kwargs)

    monkeypatch.setattr(fxprune.pipeline, "capture_model", recording)
    return asked


def test_schedules_and_sensitivity_pass_the_capture_options_on(monkeypatch: pytest.MonkeyPatch) -> None:
    model, inputs = _build("shape_branch")
    asked = _checks_asked(monkeypatch)
    schedule = fxprune.prune_iteratively(model, inputs, 0.5, steps=2, progress=False, capture="export",
                                         check_capture=False)
    assert asked == [("export", False)] * 2 and schedule.steps[-1].capture.check_seconds is None
    fxprune.sensitivity(model, inputs, lambda m: 0.0, ratios=(0.5,), progress=False, capture="export",
                        check_capture=False)
    assert asked[2:] == [("export", False)]


def test_config_chooses_the_capture(monkeypatch: pytest.MonkeyPatch) -> None:
    model, inputs = _build("shape_branch")
    with pytest.raises(TraceError, match="cannot trace"):
        fxprune.parse_config("ratios: 0.5\ncapture: fx\n").run(model, inputs)
    asked = _checks_asked(monkeypatch)
    result = fxprune.parse_config("ratios: 0.5\ncapture: export\ncheck_capture: false\n").run(model, inputs)
    assert result.capture.front_end == "export" and result.capture.check_seconds is None
    fxprune.parse_config("ratios: 0.5\ncapture: export\nschedule: {steps: 2}\n").run(model, inputs, progress=False)
    assert asked == [("export", False), ("export", True), ("export", True)]
