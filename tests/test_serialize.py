"""fxprune.serialize: .pt2 round trips without the model's class, metadata, modes, unsafe archives."""

from __future__ import annotations

import copy
import json
import pickle
import subprocess
import sys
import textwrap
import zipfile
from fractions import Fraction
from pathlib import Path

import pytest
import torch
from torch import nn

import fxprune
from fxprune import serialize
from fxprune.errors import InputError
from fxprune.models import C3D, SlowFast, slowfast_inputs

_NET_SOURCE = '''
import torch
from torch import nn


class HiddenNet(nn.Module):
    """A class the loading process never sees: residual block, BN, dropout, linear head."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16))
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(16, 7)

    def forward(self, x):
        x = self.stem(x)
        x = torch.relu(x + self.block(x))
        return self.head(self.drop(x.mean((2, 3))))
'''


@pytest.fixture(scope="module")
def hidden(tmp_path_factory: pytest.TempPathFactory) -> tuple[fxprune.CompileResult, Path, Path]:
    """A pruned HiddenNet saved to .pt2, its class file deleted afterwards; plus reference tensors."""
    folder = tmp_path_factory.mktemp("hidden")
    (folder / "hidden_net_module.py").write_text(_NET_SOURCE)
    sys.path.insert(0, str(folder))
    try:
        import hidden_net_module

        torch.manual_seed(0)
        model = hidden_net_module.HiddenNet().eval()
        result = fxprune.compile(model, 0.5, example_inputs=(torch.randn(1, 3, 16, 16),))
        path = serialize.save(result, folder / "hidden.pt2", metadata={"dataset": "none"})
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("hidden_net_module", None)
        (folder / "hidden_net_module.py").unlink()
    inputs = torch.randn(3, 3, 16, 16)  # another batch size than the example's
    with torch.no_grad():
        expected = result.module(inputs)
    torch.save({"inputs": inputs, "expected": expected}, folder / "reference.pt")
    return result, path, folder / "reference.pt"


def test_load_in_fresh_process_without_the_class(hidden: tuple) -> None:
    _, path, reference = hidden
    script = textwrap.dedent(f"""
        import sys, torch
        from fxprune.serialize import load
        module = load({str(path)!r})
        data = torch.load({str(reference)!r}, weights_only=True)
        with torch.no_grad():
            error = (module(data["inputs"]) - data["expected"]).abs().max().item()
        assert "hidden_net_module" not in sys.modules
        print("max-error", error)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240,
                          cwd=path.parent, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    error = float(done.stdout.split("max-error")[1])
    assert error < 1e-5


def test_metadata_holds_plan_and_figures(hidden: tuple) -> None:
    result, path, _ = hidden
    meta = serialize.read_metadata(path)
    assert meta["format"] == "fxprune-pt2" and meta["dynamic_batch"] is True
    assert meta["model"] == "HiddenNet" and meta["extra"] == {"dataset": "none"}
    assert meta["inputs"] == [{"shape": [1, 3, 16, 16], "dtype": "float32"}]
    assert meta["after"] == {"params": result.after.params, "macs": result.after.macs}
    assert meta["before"]["params"] == result.before.params
    assert meta["groups"]["pruned"] == len(result.plan.entries) > 0
    assert serialize.read_plan(path) == result.plan
    assert [t.shape for t in serialize.read_example_inputs(path)] == [torch.Size([1, 3, 16, 16])]
    assert sum(p.numel() for p in serialize.load(path).parameters()) == result.after.params


def test_train_and_eval_switch_batchnorm_and_dropout(hidden: tuple) -> None:
    result, path, _ = hidden
    loaded, reference = serialize.load(path), copy.deepcopy(result.module)
    assert not loaded.training
    torch.manual_seed(1)
    x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 7, (8,))
    loaded.train(), reference.train()
    torch.manual_seed(2)
    first = loaded(x)
    torch.manual_seed(2)  # same dropout mask: the loaded module must match the pruned one in train mode
    assert torch.allclose(first, reference(x), atol=1e-5)
    stats = "stem.1.running_mean"  # batch statistics update the running ones, as in the pruned module
    assert torch.allclose(loaded.get_buffer(stats), reference.get_buffer(stats), atol=1e-6)
    assert not torch.equal(loaded.get_buffer(stats), result.module.get_buffer(stats))
    assert not torch.equal(loaded(x), loaded(x)), "dropout should be active in train mode"
    optimizer = torch.optim.SGD(loaded.parameters(), lr=0.05)
    losses = []
    for _ in range(5):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(loaded(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert loaded.eval() is loaded and not loaded.training
    assert torch.equal(loaded(x), loaded(x))


def test_save_keeps_the_module_mode(hidden: tuple, tmp_path: Path) -> None:
    result, _, _ = hidden
    module = copy.deepcopy(result.module).train()
    serialize.save(module, tmp_path / "again.pt2")  # example inputs recovered from the compile's shapes
    assert all(m.training for m in module.modules())
    assert serialize.read_metadata(tmp_path / "again.pt2").get("plan") is None


@pytest.mark.parametrize("name", ["slowfast", "c3d"])
def test_video_models_round_trip_with_dynamic_batch(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    if name == "slowfast":
        model = SlowFast(num_classes=5, base_width=8, depth=(1, 1))
        inputs, bigger = (slowfast_inputs(1, clip_length=2, size=32, alpha=4),), (slowfast_inputs(3, 2, 32, 4),)
    else:
        model = C3D(num_classes=5, width=0.125, input_size=32)
        inputs, bigger = (torch.randn(1, 3, 16, 32, 32),), (torch.randn(3, 3, 16, 32, 32),)
    result = fxprune.compile(model.eval(), 0.5, example_inputs=inputs)
    loaded = serialize.load(serialize.save(result, tmp_path / f"{name}.pt2", inputs))
    with torch.no_grad():
        assert torch.allclose(loaded(*bigger), result.module(*bigger), atol=1e-5)
    assert serialize.read_metadata(tmp_path / f"{name}.pt2")["dynamic_batch"] is True


class _FixedBatch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).view(1, 64)  # only a batch of 1 fits


def test_fixed_batch_model_warns_and_records_it(tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="batch axis cannot be dynamic"):
        path = serialize.save(_FixedBatch(), tmp_path / "fixed.pt2", torch.randn(1, 3, 4, 4))
    assert serialize.read_metadata(path)["dynamic_batch"] is False
    assert serialize.load(path)(torch.randn(1, 3, 4, 4)).shape == (1, 64)


def test_plain_module_needs_example_inputs(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="example_inputs"):
        serialize.save(nn.Conv2d(3, 3, 1), tmp_path / "x.pt2")


def _rewrite(source: Path, target: Path, edit) -> Path:
    with zipfile.ZipFile(source) as archive, zipfile.ZipFile(target, "w") as out:
        for info in archive.infolist():
            out.writestr(info, edit(info.filename, archive.read(info.filename)))
    return target


def test_unsafe_archives_are_refused(hidden: tuple, tmp_path: Path) -> None:
    _, path, _ = hidden

    def pickled_weights(name: str, data: bytes) -> bytes:
        if not name.endswith("weights_config.json"):
            return data
        config = json.loads(data)
        next(iter(config["config"].values()))["use_pickle"] = True
        return json.dumps(config).encode()

    def foreign_inputs(name: str, data: bytes) -> bytes:  # a pickle weights_only=True refuses
        return pickle.dumps(Fraction(1, 3), protocol=2) if "sample_inputs" in name else data

    for edit in (pickled_weights, foreign_inputs):
        with pytest.raises(InputError, match="refusing to load"):
            serialize.load(_rewrite(path, tmp_path / f"{edit.__name__}.pt2", edit))


def test_bad_files_are_input_errors(tmp_path: Path) -> None:
    (tmp_path / "junk.pt2").write_bytes(b"not a zip")
    with pytest.raises(InputError, match=r"not a \.pt2"):
        serialize.load(tmp_path / "junk.pt2")
    with pytest.raises(InputError, match="no such file"):
        serialize.load(tmp_path / "missing.pt2")
    program = torch.export.export(nn.Conv2d(3, 3, 1), (torch.randn(2, 3, 4, 4),))
    torch.export.save(program, tmp_path / "plain.pt2")
    with pytest.raises(InputError, match="no fxprune metadata"):
        serialize.read_metadata(tmp_path / "plain.pt2")
    assert serialize.load(tmp_path / "plain.pt2")(torch.randn(2, 3, 4, 4)).shape == (2, 3, 4, 4)


def test_mode_switch_leaves_batchnorm_without_running_stats_alone(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4, track_running_stats=False), nn.Dropout())
    loaded = serialize.load(serialize.save(model, tmp_path / "bn.pt2", torch.randn(2, 3, 4, 4)))
    x = torch.randn(5, 3, 4, 4)
    for mode in (True, False):
        loaded.train(mode)
        torch.manual_seed(0)
        actual = loaded(x)
        torch.manual_seed(0)
        assert torch.allclose(actual, model.train(mode)(x), atol=1e-6)
