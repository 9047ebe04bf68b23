"""Deployment stage: ONNX export with parity checks, INT8 quantization, ONNX Runtime benchmarks, the latency model.

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
from .latency import LatencySettings, OrtLatency, latency_cache_dir
from .onnx import Exporter, OnnxExport, to_onnx
from .quantize import QuantizedExport, quantize

__all__ = ["to_onnx", "OnnxExport", "Exporter", "benchmark", "BenchmarkReport", "BenchmarkRow", "LatencySettings",
           "OrtLatency", "latency_cache_dir", "quantize", "QuantizedExport"]
