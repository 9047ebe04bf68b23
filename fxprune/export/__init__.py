"""Deployment stage: ONNX export with parity checks, and ONNX Runtime benchmarks.

Example:
    >>> import torch, torchvision, fxprune
    >>> from fxprune.export import benchmark, to_onnx
    >>> model, x = torchvision.models.resnet18(), torch.randn(1, 3, 64, 64)
    >>> result = fxprune.compile(model, 0.5, example_inputs=(x,))
    >>> to_onnx(result.module, (x,), "pruned.onnx").max_abs_error < 1e-4
    True
    >>> print(benchmark((model, result.module), (x,), runs=5).to_markdown())
"""

from .bench import BenchmarkReport, BenchmarkRow, benchmark
from .onnx import Exporter, OnnxExport, to_onnx

__all__ = ["to_onnx", "OnnxExport", "Exporter", "benchmark", "BenchmarkReport", "BenchmarkRow"]
