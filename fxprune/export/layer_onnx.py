"""One convolution or linear as a standalone ONNX model, at chosen widths, for the latency model to time.

Built with ``onnx.helper`` rather than exported from PyTorch: a measurement needs the
operator with its attributes and random weights, nothing more, and building it takes
a millisecond where an export takes a second.

Example:
    >>> data, feed = layer_model(layer, in_channels=32, out_channels=48, batch=1)
    >>> session = make_session(data, threads=2)
"""

from __future__ import annotations

from typing import cast

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..passes.layer_widths import Layer

__all__ = ["layer_model", "identity_model", "effective_attributes"]

_OPSET = 17
_IR_VERSION = 8  # what ONNX Runtime 1.1x and later all read


def effective_attributes(layer: Layer, in_channels: int, out_channels: int, batch: int | None) -> dict[str, object]:
    """The layer's attributes at these widths and batch size: what a measurement is keyed by."""
    attributes = dict(layer.attributes)
    if layer.kind == "depthwise":
        attributes["groups"] = in_channels
    if batch is not None and "input" in attributes:
        shape = list(attributes["input"])  # type: ignore[call-overload]
        attributes["input"] = [batch, *shape[1:]]
    elif batch is not None and "rows" in attributes:
        rows, rows_batch = cast(int, attributes["rows"]), cast(int, attributes.get("batch", 1))
        attributes["rows"] = batch * rows // max(1, rows_batch)
    attributes["widths"] = [in_channels, out_channels]
    return attributes


def layer_model(layer: Layer, in_channels: int, out_channels: int, batch: int | None = None,
                seed: int = 0) -> tuple[bytes, dict[str, np.ndarray]]:
    """The serialised model of ``layer`` at these widths, and a random input feed for it."""
    attributes = effective_attributes(layer, in_channels, out_channels, batch)
    rng = np.random.default_rng(seed)
    if attributes["op"] == "linear":
        shape = [int(attributes["rows"]), in_channels]  # type: ignore[call-overload]
        weight = rng.standard_normal((out_channels, in_channels), dtype=np.float32)
        node = helper.make_node("Gemm", ["x", "w", "b"] if attributes["bias"] else ["x", "w"], ["y"], transB=1)
    else:
        batch_size, *spatial = list(attributes["input"])  # type: ignore[call-overload]
        shape = [batch_size, in_channels, *spatial]
        node, weight = _conv(attributes, in_channels, out_channels, rng)
    initializers = [numpy_helper.from_array(weight, "w")]
    if attributes["bias"]:
        initializers.append(numpy_helper.from_array(rng.standard_normal(out_channels, dtype=np.float32), "b"))
    graph = helper.make_graph([node], "layer", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializers)
    return _serialise(graph), {"x": rng.standard_normal(shape, dtype=np.float32)}


def identity_model(shape: list[int]) -> tuple[bytes, dict[str, np.ndarray]]:
    """A model that returns its input: what a run costs apart from the work (call, copy-in, copy-out)."""
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    return _serialise(graph), {"x": np.zeros(shape, dtype=np.float32)}


def _conv(attributes: dict[str, object], in_channels: int, out_channels: int,
          rng: np.random.Generator) -> tuple[onnx.NodeProto, np.ndarray]:
    groups = int(attributes["groups"])  # type: ignore[call-overload]
    kernel = [int(k) for k in attributes["kernel"]]  # type: ignore[attr-defined]
    padding = [int(p) for p in attributes["padding"]]  # type: ignore[attr-defined]
    transposed = attributes["op"] == "conv_transpose"
    weight_shape = ([in_channels, out_channels // groups] if transposed else [out_channels, in_channels // groups])
    weight = rng.standard_normal([*weight_shape, *kernel], dtype=np.float32)
    options = {"kernel_shape": kernel, "strides": list(attributes["stride"]),  # type: ignore[call-overload]
               "pads": padding + padding, "dilations": list(attributes["dilation"]),  # type: ignore[call-overload]
               "group": groups}
    if transposed:
        options["output_padding"] = list(attributes.get("output_padding", [0] * len(kernel)))  # type: ignore[call-overload]
    inputs = ["x", "w", "b"] if attributes["bias"] else ["x", "w"]
    return helper.make_node("ConvTranspose" if transposed else "Conv", inputs, ["y"], **options), weight


def _serialise(graph: onnx.GraphProto) -> bytes:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", _OPSET)])
    model.ir_version = _IR_VERSION
    return model.SerializeToString()
