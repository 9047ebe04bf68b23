"""Attention models: the exact-mode oracle and the MACs ratio at ratio 0.5 (issue 11's proof).

For every model: one exact-mode compile (oracle error, MACs ratio) and one default-mode
compile (MACs ratio, and the oracle error, which LayerNorm over a pruned residual makes
non-zero there: its statistics change). MACs are counted by ``torch.utils.flop_counter``
outside ``no_grad`` (under it ``nn.MultiheadAttention`` takes a fused path the counter does
not see), with fxprune's formula for the CPU attention kernel it lacks (``flop_counter``).
Weights are random (``weights=None``); parameters that torchvision initialises to zero
(ViT's head) are drawn again, so that the oracle sees every output.

Run from the repository root::

    python benchmarks/attention.py                      # torchvision models
    python benchmarks/attention.py vit_b_16 swin_t      # some of them
    /work/venv-clients/bin/python benchmarks/attention.py timm.vit_small_patch16_224 hf.videomae-cls

Prints one line per (model, mode): oracle error, tolerance, MACs ratio, seconds, front end.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fxprune
from fxprune.passes.shapes import flop_counter

RATIO = 0.5
RTOL = 1e-4


def _torchvision(name: str, *shape: int) -> Callable[[], tuple[nn.Module, tuple]]:
    def build() -> tuple[nn.Module, tuple]:
        import torchvision

        builder = getattr(torchvision.models, name, None) or getattr(torchvision.models.video, name)
        return builder(weights=None), (torch.randn(1, *shape),)

    return build


def _timm(name: str) -> Callable[[], tuple[nn.Module, tuple]]:
    def build() -> tuple[nn.Module, tuple]:
        import timm

        return timm.create_model(name, pretrained=False), (torch.randn(1, 3, 224, 224),)

    return build


def _client(name: str) -> Callable[[], tuple[nn.Module, tuple]]:
    def build() -> tuple[nn.Module, tuple]:
        from benchmarks.clients.models import MODELS

        return MODELS[name]()

    return build


MODELS: dict[str, Callable[[], tuple[nn.Module, tuple]]] = {
    "vit_b_16": _torchvision("vit_b_16", 3, 224, 224),
    "swin_t": _torchvision("swin_t", 3, 224, 224),
    "swin_v2_t": _torchvision("swin_v2_t", 3, 224, 224),
    "maxvit_t": _torchvision("maxvit_t", 3, 224, 224),
    "mvit_v2_s": _torchvision("mvit_v2_s", 3, 16, 224, 224),
    "swin3d_t": _torchvision("swin3d_t", 3, 8, 112, 112),
    "timm.vit_small_patch16_224": _timm("vit_small_patch16_224"),
    "timm.deit_tiny_patch16_224": _timm("deit_tiny_patch16_224"),
    "hf.videomae-cls": _client("hf.videomae-cls"),
}
TORCHVISION = ["vit_b_16", "swin_t", "swin_v2_t", "maxvit_t", "mvit_v2_s", "swin3d_t"]


def count_macs(model: nn.Module, inputs: tuple) -> int:
    """MACs of one forward, counted outside ``no_grad``."""
    with flop_counter() as counter:
        model(*inputs)
    return counter.get_total_flops() // 2


def _prepared(name: str) -> tuple[nn.Module, tuple]:
    torch.manual_seed(0)
    model, inputs = MODELS[name]()
    model.eval()
    with torch.no_grad():
        for param in model.parameters():
            if param.numel() and float(param.abs().max()) == 0:
                param.normal_(0, 0.02)
    return model, inputs


def measure(name: str, attention: str) -> None:
    model, inputs = _prepared(name)
    before = count_macs(model, inputs)
    with torch.no_grad():
        leaves = model(*inputs)
    leaves = leaves if isinstance(leaves, torch.Tensor) else getattr(leaves, "logits", leaves)
    tolerance = RTOL * max(1.0, float(leaves.abs().max()))
    for exact in (True, False):
        started = time.perf_counter()
        result = fxprune.compile(model, RATIO, example_inputs=inputs, exact=exact, attention=attention)
        seconds = time.perf_counter() - started
        error = fxprune.verify(model, result, inputs)
        ratio = count_macs(result.module, inputs) / before
        frozen = sum(1 for g in result.groups if not g.prunable)
        verdict = "pass" if error <= tolerance else ("caveats" if not exact else "FAIL")
        print(f"{name:28s} {'exact' if exact else 'default':7s} attention={attention:8s} oracle {error:.2e} "
              f"(tol {tolerance:.1e}, {verdict}) MACs {ratio:.3f}x  frozen groups {frozen:3d}  {seconds:5.0f} s  "
              f"{result.capture.front_end if result.capture else ''}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=TORCHVISION, help=f"any of {', '.join(MODELS)}")
    parser.add_argument("--attention", default="heads", choices=("heads", "head_dim"))
    args = parser.parse_args()
    for name in args.models:
        try:
            measure(name, args.attention)
        except Exception as error:  # noqa: BLE001 - one model's failure is reported, the others still run
            print(f"{name:28s} ERROR {type(error).__name__}: {str(error).splitlines()[0][:200]}", flush=True)


if __name__ == "__main__":
    main()
