"""A latency model measured in ONNX Runtime on this machine, cached on disk, and whole-model latency.

:class:`OrtLatency` times every conv and linear of a model alone in ONNX Runtime at
a few candidate widths (:func:`fxprune.passes.latency_plan.candidate_widths`): along
its output widths at full input width, along its input widths at full output width
(a depthwise conv along its one width), and predicts any pair of widths as
``T(in, full) * T(full, out) / T(full, full)`` with linear interpolation between
measured widths, which is what a GEMM-shaped kernel costs and what the blocked
kernels' steps show up in. The cost of one call into ONNX Runtime (an Identity model
on the same input) is taken off each layer's time.

Measurements are kept in a JSON file, ``latency.json`` under ``cache_dir``, or
``$FXPRUNE_CACHE_DIR``, or ``$XDG_CACHE_HOME/fxprune``, or ``~/.cache/fxprune``, keyed
by CPU model, ONNX Runtime version, threads, session options and the layer's
attributes and widths, so a second run on the same machine measures nothing. Two
processes may share the file: each write merges with what is on disk and replaces it
atomically.

:meth:`OrtLatency.model_ms` times a whole model: exported with
:func:`fxprune.export.to_onnx`, then ``warmup`` and ``runs`` runs, the median.

Example:
    >>> latency = OrtLatency(LatencySettings(threads=2, runs=20))
    >>> latency.prepare(find_layers(analysis.traced, analysis.groups))
    >>> latency.model_ms(model, (torch.randn(1, 3, 224, 224),))
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from torch import nn

from ..errors import InputError
from ..passes.latency_plan import candidate_widths
from ..passes.layer_widths import Layer
from ..progress import progress
from .layer_onnx import effective_attributes, identity_model, layer_model
from .onnx import to_onnx
from .session import flat_tensors, make_session, run_session
from .timing import median, time_calls, with_batch

__all__ = ["LatencySettings", "OrtLatency", "latency_cache_dir"]

_FORMAT = "fxprune-latency-1"


@dataclass(frozen=True)
class LatencySettings:
    """How latency is measured: ONNX Runtime session, batch size, repetitions, cache.

    Attributes:
        threads: ONNX Runtime intra-op threads (``None``: ``os.cpu_count()``).
        batch: batch size to measure at (``None``: the example inputs').
        runs, warmup: timed and untimed runs of a whole model (the median is reported).
        layer_runs, layer_warmup: the same for each single-layer measurement.
        session_config: extra session entries, e.g. ``{"session.intra_op.allow_spinning": "0"}``.
        cache_dir: where ``latency.json`` is kept (see the module docstring for the default).
        progress: show progress on stderr while measuring.
        int8: measure whole models after static INT8 quantization (:func:`fxprune.export.quantize`),
            calibrated on the example inputs; layers are still priced in float, the measured
            correction absorbing the difference.
    """

    threads: int | None = None
    batch: int | None = None
    runs: int = 30
    warmup: int = 5
    layer_runs: int = 15
    layer_warmup: int = 3
    session_config: Mapping[str, str] = field(default_factory=dict)
    cache_dir: str | Path | None = None
    progress: bool = True
    int8: bool = False

    def describe(self) -> str:
        """One line: what the figures were measured with."""
        config = "".join(f", {k}={v}" for k, v in sorted(self.session_config.items()))
        batch = "the example batch" if self.batch is None else f"batch {self.batch}"
        return (f"ONNX Runtime {ort.__version__} CPU{' INT8' if self.int8 else ''}, {self.resolved_threads} "
                f"threads{config}, {batch}, median of {self.runs} runs")

    @property
    def resolved_threads(self) -> int:
        return self.threads if self.threads is not None else (os.cpu_count() or 1)


def latency_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """The folder holding ``latency.json``: ``cache_dir``, else the environment's choice (module docstring)."""
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get("FXPRUNE_CACHE_DIR"):
        return Path(os.environ["FXPRUNE_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fxprune"


class OrtLatency:
    """Layer latencies measured in ONNX Runtime (cached), and whole-model latency.

    Attributes:
        layers_measured: single-layer measurements this object made (cache misses).
        models_measured: whole models it timed.
    """

    def __init__(self, settings: LatencySettings | None = None) -> None:
        self.settings = settings or LatencySettings()
        _check(self.settings)
        self.layers_measured = 0
        self.models_measured = 0
        self.path = latency_cache_dir(self.settings.cache_dir) / "latency.json"
        self._cache = _read(self.path)
        self._machine = "|".join([_FORMAT, _cpu_model(), f"ort {ort.__version__}",
                                  f"threads {self.settings.resolved_threads}",
                                  json.dumps(dict(sorted(self.settings.session_config.items())))])

    def describe(self) -> str:
        """How this object measures (see :meth:`LatencySettings.describe`)."""
        return self.settings.describe()

    def prepare(self, layers: Sequence[Layer]) -> None:
        """Measure every width pair :meth:`layer_ms` interpolates between that the cache lacks."""
        wanted = list(dict.fromkeys((layer, cin, cout) for layer in layers for cin, cout in _points(layer)))
        missing = [(layer, cin, cout) for layer, cin, cout in wanted if self._key(layer, cin, cout) not in self._cache]
        if not missing:
            return
        with progress(total=len(missing), desc="measuring layer latency in ONNX Runtime", unit="layer",
                      enabled=self.settings.progress, leave=False) as bar:
            for layer, cin, cout in missing:
                self._measure(layer, cin, cout)
                bar.update()
        self._save()

    def layer_ms(self, layer: Layer, in_channels: int, out_channels: int) -> float:
        """Predicted milliseconds of ``layer`` at these widths (interpolated between measured widths)."""
        full = self._ms(layer, layer.in_channels, layer.out_channels)
        if layer.kind == "depthwise":
            return self._along(layer, [(w * layer.in_channels // layer.out_channels, w) for w in
                                       candidate_widths(layer.out_channels)], 1, out_channels)
        if not _measured_widths(layer):  # grouped or transposed: its full time, scaled like its MACs
            return full * in_channels / layer.in_channels * out_channels / layer.out_channels
        by_out = self._along(layer, [(layer.in_channels, w) for w in _out_widths(layer)], 1, out_channels)
        by_in = self._along(layer, [(w, layer.out_channels) for w in _in_widths(layer)], 0, in_channels)
        return by_out * by_in / full if full > 0 else 0.0

    def model_ms(self, module: nn.Module, example_inputs: Any) -> float:
        """Median milliseconds of ``module`` in ONNX Runtime (INT8 when the settings say so)."""
        settings = self.settings
        inputs = example_inputs if settings.batch is None else with_batch(tuple(example_inputs), settings.batch)
        with tempfile.TemporaryDirectory(prefix="fxprune-latency-") as folder:
            path = to_onnx(module, inputs, Path(folder) / "model.onnx", dynamic_batch=False).path
            if settings.int8:
                from .quantize import quantize

                path = quantize(path, [inputs], Path(folder) / "model.int8.onnx").path
            session = make_session(path, threads=settings.resolved_threads, config=settings.session_config)
            flat = flat_tensors(inputs)
            times = time_calls({"model": partial(run_session, session, flat)}, settings.runs, settings.warmup)
        self.models_measured += 1
        return median(times["model"])

    def _along(self, layer: Layer, points: list[tuple[int, int]], axis: int, width: int) -> float:
        points = sorted(points, key=lambda p: p[axis])
        xs = [p[axis] for p in points]
        return float(np.interp(width, xs, [self._ms(layer, *p) for p in points]))

    def _ms(self, layer: Layer, cin: int, cout: int) -> float:
        key = self._key(layer, cin, cout)
        if key not in self._cache:
            self._measure(layer, cin, cout)
            self._save()
        return self._cache[key]

    def _key(self, layer: Layer, cin: int, cout: int) -> str:
        attributes = effective_attributes(layer, cin, cout, self.settings.batch)
        return f"{self._machine}|{json.dumps(attributes, sort_keys=True)}"

    def _measure(self, layer: Layer, cin: int, cout: int) -> None:
        data, feed = layer_model(layer, cin, cout, self.settings.batch)
        raw = self._time(data, feed)
        overhead = self._overhead(list(feed["x"].shape))
        self._cache[self._key(layer, cin, cout)] = max(raw - overhead, 0.02 * raw)
        self.layers_measured += 1

    def _overhead(self, shape: list[int]) -> float:
        key = f"{self._machine}|identity {shape}"
        if key not in self._cache:
            self._cache[key] = self._time(*identity_model(shape))
        return self._cache[key]

    def _time(self, data: bytes, feed: dict[str, np.ndarray]) -> float:
        settings = self.settings
        session = make_session(data, threads=settings.resolved_threads, config=settings.session_config)
        times = time_calls({"layer": partial(session.run, None, feed)}, settings.layer_runs, settings.layer_warmup)
        return median(times["layer"])

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        merged = {**_read(self.path), **self._cache}
        handle, scratch = tempfile.mkstemp(dir=self.path.parent, prefix=".latency-", suffix=".json")
        with os.fdopen(handle, "w") as file:
            json.dump(merged, file)
        os.replace(scratch, self.path)
        self._cache = merged


def _measured_widths(layer: Layer) -> bool:
    """Whether the layer is priced from measured widths: plain convs and linears (groups 1, not transposed)."""
    return layer.kind == "linear" or (layer.attributes.get("op") == "conv" and layer.attributes.get("groups") == 1)


def _out_widths(layer: Layer) -> tuple[int, ...]:
    return candidate_widths(layer.out_channels) if layer.outputs.channels else (layer.out_channels,)


def _in_widths(layer: Layer) -> tuple[int, ...]:
    return candidate_widths(layer.in_channels) if layer.inputs.channels else (layer.in_channels,)


def _points(layer: Layer) -> list[tuple[int, int]]:
    """The width pairs a layer is measured at."""
    if layer.kind == "depthwise":
        return [(w * layer.in_channels // layer.out_channels, w) for w in candidate_widths(layer.out_channels)]
    if not _measured_widths(layer):
        return [(layer.in_channels, layer.out_channels)]
    return ([(layer.in_channels, w) for w in _out_widths(layer)]
            + [(w, layer.out_channels) for w in _in_widths(layer)])


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _read(path: Path) -> dict[str, float]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # no cache yet, or one cut short: measure again
    return {str(k): float(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _check(settings: LatencySettings) -> None:
    for name in ("runs", "layer_runs"):
        value = getattr(settings, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"LatencySettings.{name} must be a positive int, got {value!r}")
    for name in ("warmup", "layer_warmup"):
        value = getattr(settings, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InputError(f"LatencySettings.{name} must be an int >= 0, got {value!r}")
    for name in ("threads", "batch"):
        value = getattr(settings, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise InputError(f"LatencySettings.{name} must be None or a positive int, got {value!r}")
