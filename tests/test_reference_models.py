"""Tests of the reference video models in ``fxprune.models``."""

from __future__ import annotations

import sys
from typing import Any

import pytest
import torch
import torch.fx
from torch import nn

from fxprune.models import C3D, SlowFast, c3d, slowfast, slowfast_inputs, video

__all__: list[str] = []

TINY_C3D: dict[str, Any] = {
    "num_classes": 7,
    "width": 0.125,
    "input_size": 32,
    "clip_length": 16,
}
TINY_SLOWFAST: dict[str, Any] = {"num_classes": 7, "base_width": 16, "depth": (1, 1)}


def _count(model: nn.Module, kind: type[nn.Module]) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


# --- C3D -------------------------------------------------------------------


def test_c3d_default_shape_and_flat_features() -> None:
    model = C3D().eval()
    assert model.flat_features == 8192
    assert isinstance(model.flat_features, int)
    assert model.fc6.in_features == 8192
    with torch.no_grad():
        out = model(torch.randn(1, 3, 16, 112, 112))
    assert out.shape == (1, 101)


def test_c3d_tiny_shape() -> None:
    model = c3d(**TINY_C3D)
    assert isinstance(model, C3D)
    assert model.flat_features == 64 * 1 * 2 * 2
    assert model(torch.randn(2, 3, 16, 32, 32)).shape == (2, 7)


def test_c3d_layer_counts() -> None:
    model = C3D(**TINY_C3D)
    assert _count(model, nn.Conv3d) == 8
    assert _count(model, nn.MaxPool3d) == 5
    assert _count(model, nn.Linear) == 3
    assert model.pool1.kernel_size == (1, 2, 2)
    assert model.pool5.padding == (0, 1, 1)


def test_c3d_width_scales_every_layer() -> None:
    model = C3D(width=0.5, input_size=16)
    assert [m.out_channels for m in model.modules() if isinstance(m, nn.Conv3d)] == [
        32,
        64,
        128,
        128,
        256,
        256,
        256,
        256,
    ]
    assert model.fc7.out_features == 2048
    assert C3D(width=1e-6, input_size=16).conv1.out_channels == 1


def test_c3d_he_init_keeps_the_signal_through_eight_convs() -> None:
    # With PyTorch's default init the pool5 features of this BatchNorm-free stack
    # come out ~100x weaker than the input and training stalls at chance.
    model = C3D(num_classes=4, input_size=32, width=0.25).eval()
    features: list[torch.Tensor] = []
    model.pool5.register_forward_hook(lambda module, args, out: features.append(out))
    with torch.no_grad():
        model(torch.randn(4, 3, 16, 32, 32))
    assert 0.1 < features[0].std().item() < 10.0
    assert all(float(m.bias.abs().max()) == 0.0 for m in model.modules() if isinstance(m, (nn.Conv3d, nn.Linear)))


def test_c3d_traces_with_literal_view() -> None:
    model = C3D(**TINY_C3D).eval()
    traced = torch.fx.symbolic_trace(model)
    views = [
        n for n in traced.graph.nodes if n.op == "call_method" and n.target == "view"
    ]
    assert len(views) == 1 and views[0].args[1:] == (-1, model.flat_features)
    x = torch.randn(2, 3, 16, 32, 32)
    with torch.no_grad():
        assert torch.allclose(traced(x), model(x))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_classes": 0},
        {"in_channels": -1},
        {"num_classes": 2.0},
        {"num_classes": True},
        {"width": 0},
        {"width": float("nan")},
        {"dropout": 1.0},
        {"dropout": -0.1},
        {"clip_length": 8},
        {"input_size": 15},
    ],
)
def test_c3d_rejects_bad_args(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        C3D(**kwargs)


# --- SlowFast --------------------------------------------------------------


def test_slowfast_inputs_shapes() -> None:
    slow, fast = slowfast_inputs(2, clip_length=4, size=32, alpha=4)
    assert slow.shape == (2, 3, 4, 32, 32)
    assert fast.shape == (2, 3, 16, 32, 32)
    assert torch.equal(slow, fast[:, :, ::4])


def test_slowfast_tiny_shape() -> None:
    model = slowfast(**TINY_SLOWFAST)
    assert isinstance(model, SlowFast)
    assert model(slowfast_inputs(2, clip_length=4, size=32, alpha=4)).shape == (2, 7)


@pytest.mark.parametrize("alpha", [1, 2, 8])
def test_slowfast_other_alphas(alpha: int) -> None:
    model = SlowFast(alpha=alpha, **TINY_SLOWFAST).eval()
    with torch.no_grad():
        out = model(slowfast_inputs(1, clip_length=2, size=32, alpha=alpha))
    assert out.shape == (1, 7)


def test_slowfast_default_shape() -> None:
    model = SlowFast().eval()
    with torch.no_grad():
        out = model(slowfast_inputs(1, clip_length=2, size=32, alpha=4))
    assert out.shape == (1, 101)


def test_slowfast_laterals_are_time_strided() -> None:
    model = SlowFast(depth=(1, 1, 1), base_width=16)
    assert len(model.laterals) == 3  # after the stem and stages 1 and 2
    for lateral in model.laterals:
        conv = lateral.conv
        assert isinstance(conv, nn.Conv3d)
        assert conv.kernel_size == (5, 1, 1)
        assert conv.stride == (4, 1, 1)
        assert conv.padding == (2, 0, 0)
        assert conv.out_channels == 2 * conv.in_channels


def test_slowfast_rejects_single_tensor() -> None:
    model = SlowFast(**TINY_SLOWFAST)
    with pytest.raises(ValueError, match="list"):
        model(torch.randn(2, 3, 4, 32, 32))


def test_slowfast_traces_with_list_placeholders() -> None:
    model = SlowFast(**TINY_SLOWFAST).eval()
    traced = torch.fx.symbolic_trace(
        model, concrete_args={"x": [torch.fx.PH, torch.fx.PH]}
    )
    placeholders = [n for n in traced.graph.nodes if n.op == "placeholder"]
    assert len(placeholders) == 2
    cats = [n for n in traced.graph.nodes if n.target is torch.cat]
    assert len(cats) == 3  # two lateral fusions and the head
    inputs = slowfast_inputs(2, clip_length=4, size=32, alpha=4)
    with torch.no_grad():
        assert torch.allclose(traced(inputs), model(inputs))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_classes": 0},
        {"alpha": 0},
        {"beta_inv": 0},
        {"base_width": 1.5},
        {"depth": ()},
        {"depth": (1, 0)},
        {"depth": 2},
        {"dropout": 1.5},
    ],
)
def test_slowfast_rejects_bad_args(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SlowFast(**kwargs)


def test_slowfast_inputs_rejects_bad_args() -> None:
    with pytest.raises(ValueError):
        slowfast_inputs(0, clip_length=4, size=32, alpha=4)


# --- torchvision wrappers ---------------------------------------------------


@pytest.mark.parametrize("name", ["r3d_18", "mc3_18", "r2plus1d_18"])
def test_torchvision_video_models(name: str) -> None:
    pytest.importorskip("torchvision")
    model = getattr(video, name)(num_classes=5).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 4, 32, 32)).shape == (1, 5)


def test_torchvision_missing_gives_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry in sys.modules makes the import fail as if not installed.
    for module in ("torchvision", "torchvision.models", "torchvision.models.video"):
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ImportError, match="pip install torchvision"):
        video.r3d_18()
