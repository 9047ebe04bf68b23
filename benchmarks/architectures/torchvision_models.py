"""torchvision models beyond classification: segmentation, detection backbones with FPN, quantizable models.

All are built with ``weights=None`` and ``weights_backbone=None``: random weights, nothing downloaded.
"""

from __future__ import annotations

from torch import nn
from torchvision.models import quantization, segmentation
from torchvision.models.detection.backbone_utils import mobilenet_backbone, resnet_fpn_backbone
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from .catalog import LARGE_IMAGE, case

__all__ = ["CASES"]

_NO_WEIGHTS = {"weights": None, "weights_backbone": None}

CASES = (
    case("fcn_resnet50(aux_loss=True), dict output", lambda: segmentation.fcn_resnet50(**_NO_WEIGHTS, aux_loss=True),
         LARGE_IMAGE),
    case("fcn_resnet50(aux_loss=False)", lambda: segmentation.fcn_resnet50(**_NO_WEIGHTS, aux_loss=False),
         LARGE_IMAGE, sweep=False),
    case("deeplabv3_mobilenet_v3_large", lambda: segmentation.deeplabv3_mobilenet_v3_large(**_NO_WEIGHTS),
         LARGE_IMAGE),
    case("deeplabv3_resnet50", lambda: segmentation.deeplabv3_resnet50(**_NO_WEIGHTS), LARGE_IMAGE, sweep=False),
    case("lraspp_mobilenet_v3_large", lambda: segmentation.lraspp_mobilenet_v3_large(**_NO_WEIGHTS), LARGE_IMAGE),
    case("resnet_fpn_backbone(resnet18): FrozenBatchNorm2d, LastLevelMaxPool",
         lambda: resnet_fpn_backbone(backbone_name="resnet18", weights=None), LARGE_IMAGE),
    case("resnet_fpn_backbone(resnet18, norm_layer=BatchNorm2d, P6P7 from P5)",
         lambda: resnet_fpn_backbone(backbone_name="resnet18", weights=None, norm_layer=nn.BatchNorm2d,
                                     extra_blocks=LastLevelP6P7(256, 256)), LARGE_IMAGE),
    case("resnet_fpn_backbone(resnet18, returned_layers=[2, 3, 4], P6P7 from C5)",
         lambda: resnet_fpn_backbone(backbone_name="resnet18", weights=None, returned_layers=[2, 3, 4],
                                     extra_blocks=LastLevelP6P7(512, 256)), LARGE_IMAGE),
    case("mobilenet_backbone(mobilenet_v3_large, fpn=True)",
         lambda: mobilenet_backbone(backbone_name="mobilenet_v3_large", weights=None, fpn=True), LARGE_IMAGE),
    case("mobilenet_backbone(mobilenet_v2, fpn=False)",
         lambda: mobilenet_backbone(backbone_name="mobilenet_v2", weights=None, fpn=False), LARGE_IMAGE),
    case("quantizable resnet18 (quantize=False)", lambda: quantization.resnet18(weights=None, quantize=False),
         LARGE_IMAGE, sweep=False),
    case("quantizable mobilenet_v3_large (quantize=False)",
         lambda: quantization.mobilenet_v3_large(weights=None, quantize=False), LARGE_IMAGE, sweep=False),
    case("quantizable shufflenet_v2_x0_5 (quantize=False)",
         lambda: quantization.shufflenet_v2_x0_5(weights=None, quantize=False), LARGE_IMAGE, sweep=False),
)
