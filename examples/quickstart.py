"""Prune torchvision's R(2+1)D-18 video network by half and print what changed.

Run: python examples/quickstart.py [--ratio 0.5] [--exact]
"""

from __future__ import annotations

import argparse

import torch
import torchvision

import fxprune


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ratio", type=float, default=0.5, help="fraction of channels to remove per group")
    parser.add_argument("--exact", action="store_true", help="freeze groups whose removal changes kept values")
    args = parser.parse_args()

    torch.manual_seed(0)
    model = torchvision.models.video.r2plus1d_18(weights=None, num_classes=101).eval()
    clip = torch.randn(1, 3, 16, 112, 112)
    result = fxprune.compile(model, args.ratio, example_inputs=(clip,), exact=args.exact)
    print(result.summary())
    print(f"oracle max error (pruned vs masked original): {fxprune.verify(model, result, (clip,)):.2e}")
    with torch.no_grad():
        print(f"output shape: {tuple(result.module(clip).shape)} (original {tuple(model(clip).shape)})")


if __name__ == "__main__":
    main()
