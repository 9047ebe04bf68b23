"""torchvision's detectors through ``compile(..., submodules=True)``: what is pruned, and the oracle.

No detector captures whole (NMS keeps a data-dependent number of boxes), so fxprune prunes
their largest submodules that capture and splices them back. For each detector (built with
``weights=None, weights_backbone=None``, score thresholds at 0 so that every image yields
boxes) this prints, at ratio 0.5, which submodules were pruned and which were left, the
params and MACs ratios of the whole model in default and exact mode, and in exact mode the
oracle of every pruned submodule and of the whole model's post-NMS outputs (boxes, scores,
labels of the pruned model against the masked original, eval mode, the same images).
The whole model's MACs come from one eager run each; the heads after a detector's NMS work
on as many boxes as it keeps, which differs once the model is pruned, so the MACs of the
pruned submodules on their recorded inputs are printed beside them ("parts").

    PYTHONPATH=. python benchmarks/detectors.py                  # all of them, 320x320 images
    PYTHONPATH=. python benchmarks/detectors.py fcos_resnet50_fpn --size 256 --summary
"""

from __future__ import annotations

import argparse
import time
import warnings
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_flatten
from torchvision.models import detection

import fxprune
from fxprune.drivers.submodules import SubmoduleResult, verify_submodules

#: name -> the keyword arguments that set its input size (where it has one) and its score threshold.
DETECTORS: dict[str, dict[str, Any]] = {
    "fasterrcnn_resnet50_fpn": {"box_score_thresh": 0.0, "sized": True},
    "fasterrcnn_mobilenet_v3_large_fpn": {"box_score_thresh": 0.0, "sized": True},
    "retinanet_resnet50_fpn": {"score_thresh": 0.0, "sized": True},
    "fcos_resnet50_fpn": {"score_thresh": 0.0, "sized": True},
    "ssd300_vgg16": {"score_thresh": 0.0, "sized": False},
    "ssdlite320_mobilenet_v3_large": {"score_thresh": 0.0, "sized": False},
    "maskrcnn_resnet50_fpn": {"box_score_thresh": 0.0, "sized": True},
    "keypointrcnn_resnet50_fpn": {"box_score_thresh": 0.0, "sized": True},
}


def build(name: str, size: int) -> nn.Module:
    options = dict(DETECTORS[name])
    if options.pop("sized"):
        options.update(min_size=size, max_size=size)
    torch.manual_seed(0)
    return getattr(detection, name)(weights=None, weights_backbone=None, **options).eval()


def boxes(model: nn.Module, images: list[torch.Tensor]) -> int:
    with torch.no_grad():
        return sum(len(out["boxes"]) for out in model(images))


def relative(error: float, model: nn.Module, images: list[torch.Tensor]) -> float:
    with torch.no_grad():
        leaves = [leaf for leaf in tree_flatten(model(images))[0] if isinstance(leaf, torch.Tensor) and leaf.numel()]
    return error / max(1.0, max(float(leaf.abs().max()) for leaf in leaves)) if leaves else error


def measure(name: str, size: int, show_summary: bool, modes: tuple[bool, ...]) -> None:
    model = build(name, size)
    torch.manual_seed(1)
    images = [torch.rand(3, size, size)]
    for exact in modes:
        started = time.perf_counter()
        result = fxprune.compile(model, 0.5, example_inputs=(images,), submodules=True, exact=exact)
        seconds = time.perf_counter() - started
        assert isinstance(result, SubmoduleResult)
        mode = "exact  " if exact else "default"
        line = (f"{name:<34} {mode} params {result.after.params / result.before.params:.3f}x  "
                f"MACs {result.after.macs / result.before.macs:.3f}x (parts "
                f"{result.parts_after.macs / result.parts_before.macs:.3f}x, "
                f"{result.parts_before.macs / result.before.macs:.0%} of the model)  {len(result.parts)} pruned, "
                f"{len(result.left)} left  {seconds:6.1f} s")
        if exact:
            errors = verify_submodules(model, result, (images,))
            whole = errors.pop("")
            line += (f"  oracle: parts max {max(errors.values()):.2e}, whole {whole:.2e} "
                     f"(relative {relative(whole, model, images):.1e}, {boxes(result.module, images)} boxes)")
        print(line, flush=True)
        if show_summary:
            print(result.summary(), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"detectors (default all: {', '.join(DETECTORS)})")
    parser.add_argument("--size", type=int, default=320, help="image side (the detectors' min/max size)")
    parser.add_argument("--summary", action="store_true", help="print each default-mode summary")
    parser.add_argument("--mode", choices=("both", "default", "exact"), default="both",
                        help="default mode (the ratios), exact mode (with the oracle), or both")
    args = parser.parse_args()
    unknown = [name for name in args.names if name not in DETECTORS]
    if unknown:
        parser.error(f"unknown detectors {unknown}; choose from {', '.join(DETECTORS)}")
    warnings.filterwarnings("ignore")
    torch.set_num_threads(2)
    for name in args.names or DETECTORS:
        modes = {"both": (False, True), "default": (False,), "exact": (True,)}[args.mode]
        measure(name, args.size, args.summary, modes)


if __name__ == "__main__":
    main()
