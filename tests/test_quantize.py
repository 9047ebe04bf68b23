"""INT8: ONNX Runtime's static QDQ quantization of exported models, checked against float, in bench and the CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import onnx
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fxprune import InputError, cli
from fxprune.export import LatencySettings, OrtLatency, benchmark, quantize, to_onnx


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.Conv2d(32, 64, 3),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10)).eval()


def calibration() -> list[torch.Tensor]:
    """Calibration batches for the CLI test (``--calibration tests.test_quantize:calibration``)."""
    generator = torch.Generator().manual_seed(1)
    return [torch.randn(2, 3, 16, 16, generator=generator) for _ in range(4)]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return to_onnx(_net(), (torch.randn(1, 3, 16, 16),), tmp_path_factory.mktemp("q") / "net.onnx").path


def test_quantize_writes_qdq_within_tolerance_of_float(exported: Path, tmp_path: Path) -> None:
    x = calibration()[0]
    result = quantize(exported, calibration(), tmp_path / "net.int8.onnx", check_inputs=(x,))
    ops = [node.op_type for node in onnx.load(str(result.path)).graph.node]
    assert result.qdq_nodes == ops.count("QuantizeLinear") + ops.count("DequantizeLinear") > 0
    assert ops.count("DequantizeLinear") >= 3  # the two convs' and the linear's weights at least
    assert result.calibration_batches == 4 and result.file_bytes < result.float_bytes
    with torch.no_grad():
        scale = float(_net()(x).abs().max())
    assert 0 < result.max_abs_error < 0.1 * scale  # quantized, so not exact; close to float


def test_quantize_reads_a_loader_and_reports_a_metric(exported: Path, tmp_path: Path) -> None:
    images = torch.cat(calibration())
    loader = DataLoader(TensorDataset(images, torch.zeros(len(images), dtype=torch.long)), batch_size=4)
    with torch.no_grad():
        labels = _net()(images).argmax(1).numpy()  # the float model's own predictions: float accuracy is 1

    def agreement(run) -> float:
        return float((run((images,))[0].argmax(1) == labels).mean())

    result = quantize(exported, loader, tmp_path / "loader.int8.onnx", evaluate=agreement, max_batches=1)
    assert result.calibration_batches == 1
    assert result.float_metric == 1.0 and 0.0 <= result.metric <= 1.0


def test_quantize_without_batches_is_an_input_error(exported: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="yields no batch"):
        quantize(exported, [], tmp_path / "none.onnx")


def test_benchmark_adds_int8_rows(tmp_path: Path) -> None:
    model = _net()
    report = benchmark({"original": model}, (torch.randn(1, 3, 16, 16),), runs=2, warmup=0, threads=1,
                       eager=False, int8=calibration(), progress=False)
    rows = {row.name: row for row in report.rows}
    assert set(rows) == {"original", "original int8"}
    assert rows["original"].int8_error is None and rows["original int8"].int8_error > 0
    assert rows["original int8"].onnx_bytes < rows["original"].onnx_bytes
    assert "INT8 max err" in report.to_markdown()
    assert type(report).from_json(report.to_json()) == report


def test_latency_settings_int8_measures_the_quantized_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls = []

    def counting(*args, **kwargs):
        calls.append(args[0])
        return quantize(*args, **kwargs)

    # fxprune.export.quantize is also the function's name in the package: reach the module itself.
    monkeypatch.setattr(sys.modules["fxprune.export.quantize"], "quantize", counting)
    settings = LatencySettings(threads=1, runs=2, warmup=0, cache_dir=tmp_path, progress=False, int8=True)
    latency = OrtLatency(settings)
    assert latency.model_ms(_net(), (torch.randn(1, 3, 16, 16),)) > 0
    assert len(calls) == 1 and "INT8" in latency.describe()


def test_cli_export_int8(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "tiny.onnx"
    code = cli.main(["export", "tests.cli_factory:tiny2d", "--input-shape", "1,3,16,16", "-o", str(out), "--int8",
                     "--calibration", "tests.test_quantize:calibration", "--json", "--quiet"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and Path(data["int8"]["path"]) == tmp_path / "tiny.int8.onnx"
    assert data["int8"]["calibration_batches"] == 4 and data["int8"]["qdq_nodes"] > 0
    assert cli.main(["export", "tests.cli_factory:tiny2d", "--input-shape", "1,3,16,16", "-o", str(out), "--int8",
                     "--calibration", "tests.test_quantize:nothing_here"]) == 2
    assert "has no callable 'nothing_here'" in capsys.readouterr().err
