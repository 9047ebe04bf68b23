"""Registry of client-library models for probing fxprune's torch.export front end.

Every entry builds a randomly initialised model from a config (no weights are
ever downloaded) and small example inputs with batch size 2, so that dim 0 can
be marked dynamic in ``torch.export`` without being specialised as a size-1
dimension.  Libraries are imported lazily inside each builder, so importing
this module needs only torch; a builder raises ``ImportError`` when its
library is missing (``python -m pip install -e ".[clients]"``; the versions
probed are in ``benchmarks/clients/PROBE.md``).

Libraries covered: ultralytics (YOLO detect/segment), HF transformers (ResNet,
ConvNeXt, VideoMAE), segmentation-models-pytorch (every architecture with a
ResNet and a MobileNetV2 encoder), pytorchvideo (slow ResNet, SlowFast, X3D,
R(2+1)D, CSN), timm (one model per CNN family) and torchvision (detection and
segmentation).

Example:
    >>> from benchmarks.clients.models import MODELS, INFO
    >>> model, inputs = MODELS["timm.resnet18"]()
    >>> INFO["timm.resnet18"].library
    'timm'
    >>> out = model(*inputs)

Attributes:
    MODELS: ``name -> builder``; each builder returns ``(model in eval mode,
        example_inputs tuple)``.
    INFO: ``name -> ModelInfo`` with the ``library`` and ``family`` tags.
    Builder: type of a builder function.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["MODELS", "INFO", "ModelInfo", "Builder", "build", "names"]

# Nothing here may touch the network; set before any HF/ultralytics import.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("YOLO_OFFLINE", "1")

Builder = Callable[[], "tuple[nn.Module, tuple]"]

BATCH = 2
IMAGE = (3, 128, 128)


@dataclass(frozen=True)
class ModelInfo:
    """Tags of a registry entry.

    Attributes:
        library: Client library that defines the model (e.g. ``"timm"``).
        family: Architecture family (e.g. ``"resnet"``, ``"unet"``, ``"yolo"``).
        input_kind: ``"image"``, ``"video"``, ``"video-list"`` (list of clips)
            or ``"image-list"`` (list of variable-sized images).
    """

    library: str
    family: str
    input_kind: str = "image"


MODELS: dict[str, Builder] = {}
INFO: dict[str, ModelInfo] = {}


def _register(name: str, library: str, family: str, input_kind: str = "image"):
    def deco(fn: Builder) -> Builder:
        MODELS[name] = fn
        INFO[name] = ModelInfo(library, family, input_kind)
        return fn

    return deco


def _seed() -> None:
    torch.manual_seed(0)


def _image(size: int = 128, batch: int = BATCH) -> torch.Tensor:
    return torch.randn(batch, 3, size, size)


def build(name: str) -> tuple[nn.Module, tuple]:
    """Builds a registered model (seeded, eval mode) and its example inputs.

    Args:
        name: Registry key.

    Returns:
        ``(model, example_inputs)``.
    """
    _seed()
    model, inputs = MODELS[name]()
    return model.eval(), inputs


def names(library: str | None = None) -> list[str]:
    """Lists registry keys, optionally only those of one library."""
    return [n for n, i in INFO.items() if library is None or i.library == library]


# --------------------------------------------------------------------------
# ultralytics: built from the yaml files the package ships; DetectionModel /
# SegmentationModel directly, so no YOLO() wrapper (which may try downloads).
# --------------------------------------------------------------------------
def _yolo(cfg: str, kind: str, dynamic_head: bool = False) -> Builder:
    def fn():
        from ultralytics.nn import tasks

        cls = {"detect": tasks.DetectionModel, "segment": tasks.SegmentationModel}[kind]
        model = cls(cfg, ch=3, nc=80, verbose=False)
        if dynamic_head:
            # Detect caches anchors keyed on the full BCHW feature shape
            # (`self.shape != shape`), which specialises the batch dim under
            # torch.export; `dynamic=True` recomputes them every call instead
            # (what ultralytics' own `export(dynamic=True)` sets).
            model.model[-1].dynamic = True
        return model.eval(), (_image(128),)

    return fn


for _name, _cfg, _kind in [
    ("ultralytics.yolov8n", "yolov8n.yaml", "detect"),
    ("ultralytics.yolo11n", "yolo11n.yaml", "detect"),
    ("ultralytics.yolov8n-seg", "yolov8n-seg.yaml", "segment"),
]:
    _register(_name, "ultralytics", "yolo")(_yolo(_cfg, _kind))
    _register(_name + ".dynamic-head", "ultralytics", "yolo")(_yolo(_cfg, _kind, True))


# --------------------------------------------------------------------------
# HF transformers: small configs, random weights.
# --------------------------------------------------------------------------
def _hf_resnet(head: bool) -> Builder:
    def fn():
        import transformers as tf

        cfg = tf.ResNetConfig(
            embedding_size=32, hidden_sizes=[32, 64, 128, 256], depths=[1, 1, 1, 1],
            layer_type="bottleneck", num_labels=10,
        )
        cls = tf.ResNetForImageClassification if head else tf.ResNetModel
        return cls(cfg).eval(), (_image(128),)

    return fn


def _hf_convnext(head: bool) -> Builder:
    def fn():
        import transformers as tf

        cfg = tf.ConvNextConfig(
            hidden_sizes=[32, 64, 128, 256], depths=[1, 1, 2, 1], num_labels=10,
        )
        cls = tf.ConvNextForImageClassification if head else tf.ConvNextModel
        return cls(cfg).eval(), (_image(128),)

    return fn


def _hf_videomae() -> tuple[nn.Module, tuple]:
    import transformers as tf

    cfg = tf.VideoMAEConfig(
        image_size=64, patch_size=16, num_channels=3, num_frames=8, tubelet_size=2,
        hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=128, num_labels=10,
    )
    model = tf.VideoMAEForVideoClassification(cfg).eval()
    return model, (torch.randn(BATCH, 8, 3, 64, 64),)  # (B, T, C, H, W)


_register("hf.resnet", "transformers", "resnet")(_hf_resnet(False))
_register("hf.resnet-cls", "transformers", "resnet")(_hf_resnet(True))
_register("hf.convnext", "transformers", "convnext")(_hf_convnext(False))
_register("hf.convnext-cls", "transformers", "convnext")(_hf_convnext(True))
_register("hf.videomae-cls", "transformers", "vit", "video")(_hf_videomae)


# --------------------------------------------------------------------------
# segmentation-models-pytorch: every architecture x {resnet18, mobilenet_v2}.
# --------------------------------------------------------------------------
SMP_ARCHS = [
    "Unet", "UnetPlusPlus", "FPN", "PSPNet", "DeepLabV3", "DeepLabV3Plus",
    "Linknet", "MAnet", "PAN", "UPerNet", "Segformer",
]
SMP_ENCODERS = ["resnet18", "mobilenet_v2"]


def _smp(arch: str, encoder: str) -> Builder:
    def fn():
        import segmentation_models_pytorch as smp

        model = getattr(smp, arch)(
            encoder_name=encoder, encoder_weights=None, in_channels=3, classes=4,
        )
        return model.eval(), (_image(128),)

    return fn


def _smp_dpt() -> tuple[nn.Module, tuple]:
    import segmentation_models_pytorch as smp

    model = smp.DPT(
        encoder_name="tu-vit_tiny_patch16_224", encoder_weights=None, classes=4,
        dynamic_img_size=True,
    )
    return model.eval(), (_image(224),)


for _arch in SMP_ARCHS:
    for _enc in SMP_ENCODERS:
        _register(f"smp.{_arch}.{_enc}", "smp", _arch.lower())(_smp(_arch, _enc))
_register("smp.DPT.vit_tiny", "smp", "dpt")(_smp_dpt)


# --------------------------------------------------------------------------
# pytorchvideo: head pools sized for small 64x64 clips.
# --------------------------------------------------------------------------
def _clip(frames: int = 8, size: int = 64) -> torch.Tensor:
    return torch.randn(BATCH, 3, frames, size, size)


@_register("pytorchvideo.slow_r50", "pytorchvideo", "resnet3d", "video")
def _ptv_slow():
    from pytorchvideo.models.resnet import create_resnet

    # stem /4, stages /8 -> 2x2 spatial, 8 frames kept.
    model = create_resnet(model_depth=50, model_num_class=10, head_pool_kernel_size=(8, 2, 2))
    return model.eval(), (_clip(8),)


@_register("pytorchvideo.slowfast_r50", "pytorchvideo", "slowfast", "video-list")
def _ptv_slowfast():
    from pytorchvideo.models.slowfast import create_slowfast

    model = create_slowfast(
        model_depth=50, model_num_class=10,
        head_pool_kernel_sizes=((4, 2, 2), (16, 2, 2)),
    )
    # SlowFast takes ONE argument: a list [slow (T=4), fast (T=16, alpha=4)].
    return model.eval(), ([_clip(4), _clip(16)],)


@_register("pytorchvideo.x3d_xs", "pytorchvideo", "x3d", "video")
def _ptv_x3d():
    from pytorchvideo.models.x3d import create_x3d

    model = create_x3d(input_clip_length=4, input_crop_size=64, model_num_class=10)
    return model.eval(), (_clip(4),)


@_register("pytorchvideo.r2plus1d_r50", "pytorchvideo", "r2plus1d", "video")
def _ptv_r2plus1d():
    from pytorchvideo.models.r2plus1d import create_r2plus1d

    # stem /2, stages /16 spatial; temporal /4 -> (2, 2, 2).
    model = create_r2plus1d(model_num_class=10, head_pool_kernel_size=(2, 2, 2))
    return model.eval(), (_clip(8),)


@_register("pytorchvideo.csn_r50", "pytorchvideo", "csn", "video")
def _ptv_csn():
    from pytorchvideo.models.csn import create_csn

    # stem /2, stages /8 spatial; temporal /8 -> (1, 4, 4).
    model = create_csn(model_num_class=10, head_pool_kernel_size=(1, 4, 4))
    return model.eval(), (_clip(8),)


# --------------------------------------------------------------------------
# timm: one model per CNN family (plus a few hybrids), pretrained=False.
# --------------------------------------------------------------------------
TIMM_MODELS: dict[str, str] = {
    "resnet18": "resnet",
    "seresnet18": "resnet-se",
    "resnext26ts": "byobnet-resnext",
    "resnetv2_50": "resnetv2",
    "res2net50_14w_8s": "res2net",
    "resnest14d": "resnest",
    "skresnet18": "sknet",
    "efficientnet_b0": "efficientnet",
    "mixnet_s": "efficientnet-mixnet",
    "mobilenetv2_100": "mobilenetv2",
    "mobilenetv3_small_100": "mobilenetv3",
    "mobilenetv4_conv_small": "mobilenetv4",
    "lcnet_050": "lcnet",
    "regnety_002": "regnet",
    "convnext_atto": "convnext",
    "convnextv2_atto": "convnextv2",
    "densenet121": "densenet",
    "ghostnet_100": "ghostnet",
    "rexnet_100": "rexnet",
    "dla34": "dla",
    "dpn48b": "dpn",
    "vgg11_bn": "vgg",
    "cspdarknet53": "cspnet",
    "hrnet_w18_small": "hrnet",
    "selecsls42b": "selecsls",
    "inception_v3": "inception",
    "repvgg_a0": "repvgg",
    "mobileone_s0": "mobileone",
    "hgnetv2_b0": "hgnet",
    "ese_vovnet19b_dw": "vovnet",
    "nf_resnet26": "nfnet",
    "fastvit_t8": "fastvit",
    "edgenext_xx_small": "edgenext",
    "mobilevit_xxs": "mobilevit",
    "efficientvit_b0": "efficientvit",
}


def _timm(name: str) -> Builder:
    def fn():
        import timm

        model = timm.create_model(name, pretrained=False, num_classes=10)
        return model.eval(), (_image(128),)

    return fn


for _tname, _fam in TIMM_MODELS.items():
    _register(f"timm.{_tname}", "timm", _fam)(_timm(_tname))


# --------------------------------------------------------------------------
# torchvision: detection (list of images in, list of dicts out) and
# segmentation (dict out).
# --------------------------------------------------------------------------
def _tv_det(fn_name: str, **kw) -> Builder:
    def fn():
        from torchvision.models import detection

        model = getattr(detection, fn_name)(
            weights=None, weights_backbone=None, num_classes=5, **kw
        )
        # One 3x160x160 image in a list; the transform resizes it internally.
        return model.eval(), ([torch.rand(3, 160, 160)],)

    return fn


def _tv_det_backbone(fn_name: str, **kw) -> Builder:
    def fn():
        model, _ = _tv_det(fn_name, **kw)()
        # Only the (FPN) feature extractor: the part a pruner acts on; the
        # detection post-processing is data-dependent (see PROBE.md).
        size = 300 if fn_name.startswith("ssd") else 160  # SSD's VGG extras need 300
        return model.backbone.eval(), (_image(size),)

    return fn


for _det, _kw in [
    ("fasterrcnn_resnet50_fpn", {"min_size": 160, "max_size": 160}),
    ("retinanet_resnet50_fpn", {"min_size": 160, "max_size": 160}),
    ("fcos_resnet50_fpn", {"min_size": 160, "max_size": 160}),
    ("ssd300_vgg16", {}),
    ("maskrcnn_resnet50_fpn", {"min_size": 160, "max_size": 160}),
]:
    _register(f"tv.{_det}", "torchvision", "detection", "image-list")(_tv_det(_det, **_kw))
    _register(f"tv.{_det}.backbone", "torchvision", "detection-backbone")(
        _tv_det_backbone(_det, **_kw)
    )


def _tv_seg(fn_name: str) -> Builder:
    def fn():
        from torchvision.models import segmentation

        model = getattr(segmentation, fn_name)(weights=None, weights_backbone=None, num_classes=4)
        return model.eval(), (_image(128),)

    return fn


for _seg in ["fcn_resnet50", "deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large"]:
    _register(f"tv.{_seg}", "torchvision", "segmentation")(_tv_seg(_seg))

del _name, _cfg, _kind, _arch, _enc, _tname, _fam, _det, _kw, _seg
