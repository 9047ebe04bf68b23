"""Dense-prediction networks: torchvision's segmentation models and detection FPN backbones.

They return OrderedDicts of maps (``out``/``aux``, or one per pyramid level) sized from the
input at run time; every one must prune, keep its output container and keys, and pass the
oracle in exact mode.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.detection.backbone_utils import mobilenet_backbone, resnet_fpn_backbone

import fxprune

TOLERANCE = 1e-4
SEGMENTATION = torchvision.models.list_models(module=torchvision.models.segmentation)


def _check(model: nn.Module, x: torch.Tensor) -> fxprune.CompileResult:
    torch.manual_seed(0)
    with torch.no_grad():
        expected = model(x)
    result = fxprune.compile(model, 0.5, example_inputs=(x,), exact=True)
    with torch.no_grad():
        got = result.module(x)
    assert type(got) is OrderedDict and list(got) == list(expected)
    assert all(got[k].shape == expected[k].shape for k in expected)
    peak = max(float(v.abs().max()) for v in expected.values())
    assert fxprune.verify(model, result, (x,)) <= TOLERANCE * max(1.0, peak)
    assert result.after.params < 0.6 * result.before.params
    return result


@pytest.mark.parametrize("name", SEGMENTATION)
def test_segmentation_models_prune_exactly(name: str) -> None:
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None, weights_backbone=None).eval()
    _check(model, torch.randn(1, 3, 64, 64))


@pytest.mark.parametrize("build", [
    lambda: resnet_fpn_backbone(backbone_name="resnet18", weights=None, trainable_layers=5),
    lambda: mobilenet_backbone(backbone_name="mobilenet_v3_small", weights=None, fpn=True, trainable_layers=6),
], ids=["resnet18_fpn", "mobilenet_v3_small_fpn"])
def test_detection_fpn_backbones_prune_exactly(build: Any) -> None:
    torch.manual_seed(0)
    model = build().eval()
    result = _check(model, torch.randn(1, 3, 64, 64))
    # The pyramid levels are outputs (frozen); the backbone stages behind them prune.
    assert any(g.prunable and any(n.startswith("body") for n in g.modules) for g in result.groups)
