"""Tests of ``fxprune.export``: ONNX export parity, dynamic batch, and the benchmark report."""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torchvision
from torch import fx, nn

import fxprune
import fxprune.export.onnx
from fxprune.errors import ExportError, FxPruneError, InputError
from fxprune.export import BenchmarkReport, OnnxExport, benchmark, to_onnx
from fxprune.models import c3d, slowfast, slowfast_inputs

__all__: list[str] = []


class _Concat(nn.Module):
    """Two conv branches concatenated on channels, then a conv reading the concat."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.left = nn.Sequential(nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8), nn.ReLU())
        self.right = nn.Sequential(nn.Conv2d(8, 12, 3, padding=1), nn.BatchNorm2d(12), nn.ReLU())
        self.mix = nn.Conv2d(20, 16, 1)
        self.head = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        x = torch.cat([self.left(x), self.right(x)], dim=1)
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(self.mix(x), 1), 1))


def _resnet18() -> tuple[nn.Module, tuple[Any, ...]]:
    return torchvision.models.resnet18(num_classes=10), (torch.randn(2, 3, 64, 64),)


def _c3d() -> tuple[nn.Module, tuple[Any, ...]]:
    return c3d(num_classes=7, width=0.125, input_size=32, clip_length=16), (torch.randn(2, 3, 16, 32, 32),)


def _slowfast() -> tuple[nn.Module, tuple[Any, ...]]:
    model = slowfast(num_classes=7, base_width=16, depth=(1, 1))
    return model, (slowfast_inputs(2, clip_length=4, size=32, alpha=4),)


def _concat() -> tuple[nn.Module, tuple[Any, ...]]:
    return _Concat(), (torch.randn(2, 3, 16, 16),)


CASES: dict[str, Callable[[], tuple[nn.Module, tuple[Any, ...]]]] = {
    "resnet18": _resnet18, "c3d": _c3d, "slowfast": _slowfast, "concat": _concat}


@pytest.fixture(scope="module")
def pruned() -> dict[str, tuple[nn.Module, fx.GraphModule, tuple[Any, ...]]]:
    """Each case as (original in eval mode, pruned module, example inputs), compiled once."""
    torch.manual_seed(0)
    built = {}
    for name, make in CASES.items():
        model, inputs = make()
        model.eval()
        built[name] = (model, fxprune.compile(model, 0.5, example_inputs=inputs).module, inputs)
    return built


@pytest.fixture(scope="module")
def exported(pruned: dict, tmp_path_factory: pytest.TempPathFactory) -> dict[str, OnnxExport]:
    folder = tmp_path_factory.mktemp("onnx")
    return {name: to_onnx(module, inputs, folder / f"{name}.onnx") for name, (_, module, inputs) in pruned.items()}


def _batch_of(inputs: tuple[Any, ...], batch: int) -> tuple[Any, ...]:
    return torch.utils._pytree.tree_map(lambda t: torch.cat([t] * batch)[:batch] if t.shape[0] < batch else t[:batch],
                                        inputs)


def _ort_outputs(path: Path, inputs: tuple[Any, ...]) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    flat = torch.utils._pytree.tree_flatten(inputs)[0]
    return session.run(None, {f"input_{i}": t.numpy() for i, t in enumerate(flat)})


def _checksum(module: nn.Module) -> str:
    digest = hashlib.sha256()
    for name, value in module.state_dict().items():
        digest.update(name.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def test_cases_are_really_pruned(pruned: dict) -> None:
    for model, module, _ in pruned.values():
        assert sum(p.numel() for p in module.parameters()) < sum(p.numel() for p in model.parameters())
    assert pruned["concat"][1].get_submodule("mix").in_channels < 20  # the concat itself lost channels


@pytest.mark.parametrize("name", list(CASES))
def test_export_matches_pytorch(name: str, pruned: dict, exported: dict) -> None:
    result = exported[name]
    assert result.exporter == "torchscript"
    assert result.max_abs_error < 1e-4
    assert result.opset >= 13
    assert result.path.exists() and result.file_bytes == result.path.stat().st_size
    onnx.checker.check_model(str(result.path))


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("batch", [1, 4])
def test_export_runs_at_other_batch_sizes(name: str, batch: int, pruned: dict, exported: dict) -> None:
    _, module, inputs = pruned[name]
    inputs = _batch_of(inputs, batch)
    with torch.no_grad():
        expected = module(*inputs)
    (got,) = _ort_outputs(exported[name].path, inputs)
    assert got.shape == tuple(expected.shape)
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-4, rtol=1e-3)


def test_list_input_becomes_one_onnx_input_per_tensor(exported: dict) -> None:
    graph = onnx.load(str(exported["slowfast"].path), load_external_data=False).graph
    assert [i.name for i in graph.input] == ["input_0", "input_1"]
    assert all(i.type.tensor_type.shape.dim[0].dim_param for i in graph.input)


def test_static_batch_keeps_literal_dims(pruned: dict, tmp_path: Path) -> None:
    _, module, inputs = pruned["concat"]
    result = to_onnx(module, inputs, tmp_path / "static.onnx", dynamic_batch=False)
    graph = onnx.load(str(result.path)).graph
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_value == 2


def test_tolerance_breach_raises_export_error(pruned: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original_run = ort.InferenceSession.run

    def perturbed(self: ort.InferenceSession, *args: Any, **kwargs: Any) -> list[np.ndarray]:
        return [out + np.float32(1e-2) for out in original_run(self, *args, **kwargs)]

    monkeypatch.setattr(ort.InferenceSession, "run", perturbed)
    _, module, inputs = pruned["concat"]
    with pytest.raises(ExportError, match=r"output_0 differs .* max \|error\| 1\.0\d*e-02") as info:
        to_onnx(module, inputs, tmp_path / "broken.onnx", atol=1e-3, rtol=0.0)
    assert isinstance(info.value, FxPruneError)
    # The same error passes a tolerance that covers it.
    assert to_onnx(module, inputs, tmp_path / "loose.onnx", atol=2e-2).max_abs_error == pytest.approx(1e-2, rel=1e-2)


def test_batch_baked_into_a_literal_is_reported(tmp_path: Path) -> None:
    class Baked(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.view(2, -1).relu()

    with pytest.raises(ExportError, match=r"(?s)batch of 3.*dynamic_batch=False"):
        to_onnx(Baked(), (torch.randn(2, 3, 4),), tmp_path / "baked.onnx")
    assert to_onnx(Baked(), (torch.randn(2, 3, 4),), tmp_path / "ok.onnx", dynamic_batch=False).max_abs_error == 0


def test_caller_module_is_unchanged(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model, inputs = _concat()
    model.train()
    before = _checksum(model)
    result = to_onnx(model, inputs, tmp_path / "train_mode.onnx")
    assert _checksum(model) == before  # BatchNorm running stats untouched
    assert model.training and all(m.training for m in model.modules())
    model.eval()
    with torch.no_grad():
        (got,) = _ort_outputs(result.path, inputs)
        np.testing.assert_allclose(got, model(*inputs).numpy(), atol=1e-5)


def _refuse(*args: Any, **kwargs: Any) -> None:
    raise RuntimeError("exporter unavailable")


class _Upsampling(nn.Module):
    """Adaptive pooling to a size that is not a factor of the input (VGG's 7x7 head on small
    images): the TorchScript exporter refuses it, the dynamo exporter handles it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.pool = nn.AdaptiveAvgPool2d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.conv(x)), 1)


@pytest.mark.parametrize("case", ["torchscript", "fallback-to-dynamo"])
def test_exporters_work_quietly(case: str, pruned: dict, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    if case == "torchscript":
        _, module, inputs = pruned["concat"]
    else:
        module, inputs = _Upsampling(), (torch.randn(2, 3, 4, 4),)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = to_onnx(module, inputs, tmp_path / "quiet.onnx")
    assert [str(w.message) for w in caught] == []
    assert capfd.readouterr() == ("", "")  # nor the graph dump of the failed TorchScript attempt
    assert result.exporter == case.split("-")[-1] and result.max_abs_error < 1e-4
    assert result.file_bytes == result.path.stat().st_size  # one file, no external weights
    (got,) = _ort_outputs(result.path, _batch_of(inputs, 4))
    assert got.shape[0] == 4


def test_every_exporter_failing_raises_export_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fxprune.export.onnx, "_export_torchscript", _refuse)
    monkeypatch.setattr(fxprune.export.onnx, "_export_dynamo", _refuse)
    with pytest.raises(ExportError, match="torchscript: RuntimeError: exporter unavailable; dynamo: RuntimeError"):
        to_onnx(nn.ReLU(), (torch.randn(1, 2),), tmp_path / "none.onnx")


@pytest.mark.parametrize("options", [{"atol": -1.0}, {"rtol": float("nan")}, {"exporter": "tflite"}, {"opset": 3}])
def test_bad_options_raise_input_error(options: dict, tmp_path: Path) -> None:
    with pytest.raises(InputError):
        to_onnx(nn.ReLU(), (torch.randn(1, 2),), tmp_path / "x.onnx", **options)


@pytest.fixture(scope="module")
def report(pruned: dict, tmp_path_factory: pytest.TempPathFactory) -> BenchmarkReport:
    model, module, inputs = pruned["concat"]
    return benchmark((model, module), inputs, runs=2, warmup=1, threads=1, batch_sizes=(1, 2),
                     workdir=tmp_path_factory.mktemp("bench"), progress=False,
                     session_config={"session.intra_op.allow_spinning": "0"})


def test_benchmark_rows_and_ratios(report: BenchmarkReport, pruned: dict) -> None:
    assert [(r.name, r.batch_size) for r in report.rows] == [
        ("original", 1), ("pruned", 1), ("original", 2), ("pruned", 2)]
    assert report.baseline == "original" and report.threads == 1 and report.runs == 2
    assert report.session_config == {"session.intra_op.allow_spinning": "0"}
    for row in report.rows:
        assert row.ort_median_ms > 0 and row.ort_p90_ms >= row.ort_median_ms * 0.999
        assert row.eager_median_ms is not None and row.eager_median_ms > 0
        assert row.onnx_bytes > 0 and row.params > 0 and row.macs > 0
        assert row.efficiency == pytest.approx(row.speedup / row.macs_reduction)
    original, pruned_row = report.rows[0], report.rows[1]
    assert original.speedup == original.macs_reduction == original.efficiency == 1.0
    assert pruned_row.macs_reduction > 1.5 and pruned_row.params < original.params
    assert report.rows[2].macs == 2 * original.macs  # MACs scale with the batch


def test_benchmark_report_serialises(report: BenchmarkReport) -> None:
    assert BenchmarkReport.from_json(report.to_json()) == report
    data = json.loads(report.to_json())
    assert set(data) == {"rows", "baseline", "threads", "runs", "warmup", "session_config", "versions"}
    lines = report.to_markdown().splitlines()
    assert lines[0].startswith("| model | batch | ORT median ms")
    assert set(lines[1]) <= set("|-") and len(lines) >= 2 + len(report.rows)
    assert "allow_spinning=0" in lines[-1]


def test_benchmark_restores_torch_threads(pruned: dict) -> None:
    model, module, inputs = pruned["concat"]
    threads = torch.get_num_threads()
    result = benchmark({"a": model, "b": module}, inputs, runs=1, warmup=0, threads=threads + 1, progress=False)
    assert torch.get_num_threads() == threads and result.threads == threads + 1


@pytest.mark.parametrize("options", [{"runs": 0}, {"warmup": -1}, {"threads": 0}, {"batch_sizes": (0,)}])
def test_benchmark_bad_settings(options: dict) -> None:
    with pytest.raises(InputError):
        benchmark((nn.ReLU(), nn.ReLU()), (torch.randn(1, 2),), progress=False, **options)
