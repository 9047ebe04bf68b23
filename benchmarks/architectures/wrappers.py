"""Models that torch tooling has rewritten or wrapped: quantization stubs, fused modules, QAT, checkpointing."""

from __future__ import annotations

import torch
import torch.ao.quantization as quant
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import Tensor, nn

from .catalog import IMAGE, SMALL_IMAGE, case, conv_bn

__all__ = ["CASES"]


class QuantStubNet(nn.Module):
    """An eager-mode quantization-ready model, still float: ``QuantStub``/``DeQuantStub`` around it and the
    residual add through ``FloatFunctional``, as PyTorch's quantization tutorial writes it."""

    def __init__(self) -> None:
        super().__init__()
        self.quant = quant.QuantStub()
        self.conv1, self.conv2 = conv_bn(3, 16), conv_bn(16, 16)
        self.skip = torch.ao.nn.quantized.FloatFunctional()
        self.out = nn.Conv2d(16, 4, 1)
        self.dequant = quant.DeQuantStub()

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv1(self.quant(x))
        y = self.skip.add(y, self.conv2(y))
        return self.dequant(self.out(y))


class CheckpointedBlock(nn.Module):
    """A residual block run through ``torch.utils.checkpoint`` (activation checkpointing), reentrant or not."""

    def __init__(self, reentrant: bool) -> None:
        super().__init__()
        self.reentrant = reentrant
        self.stem = conv_bn(3, 16)
        self.block = nn.Sequential(conv_bn(16, 16), conv_bn(16, 16, act=None))
        self.out = nn.Conv2d(16, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        x = F.relu(x + torch.utils.checkpoint.checkpoint(self.block, x, use_reentrant=self.reentrant))
        return self.out(x)


def fused_for_inference() -> nn.Module:
    """Conv-BN-ReLU chains folded by ``fuse_modules`` in eval mode: ``ConvReLU2d`` intrinsic modules."""
    model = nn.Sequential(conv_bn(3, 16), conv_bn(16, 16), nn.Conv2d(16, 4, 1)).eval()
    return quant.fuse_modules(model, [["0.0", "0.1", "0.2"], ["1.0", "1.1", "1.2"]])


def prepared_for_qat() -> nn.Module:
    """A model after ``prepare_qat`` (``qat.ConvBnReLU2d``, ``FakeQuantize``), its observers calibrated once
    so that fake quantization runs with real ranges."""
    model = nn.Sequential(quant.QuantStub(), conv_bn(3, 16), conv_bn(16, 16), nn.Conv2d(16, 4, 1),
                          quant.DeQuantStub())
    model.train()
    model.qconfig = quant.get_default_qat_qconfig("fbgemm")
    model = quant.prepare_qat(model)
    with torch.no_grad():
        model(torch.randn(2, 3, 16, 16))
    return model


CASES = (
    case("QuantStub/DeQuantStub + FloatFunctional.add (float model)", QuantStubNet, IMAGE),
    case("torch.utils.checkpoint(block, x, use_reentrant=False)", lambda: CheckpointedBlock(False), IMAGE),
    case("torch.utils.checkpoint(block, x, use_reentrant=True)", lambda: CheckpointedBlock(True), IMAGE),
    case("fuse_modules in eval: ConvReLU2d intrinsics, BN folded", fused_for_inference, SMALL_IMAGE),
    case("prepare_qat model: FakeQuantize, qat.ConvBnReLU2d", prepared_for_qat, SMALL_IMAGE),
)
