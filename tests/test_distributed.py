"""Fine-tuning: in one process, and under torchrun with two CPU ranks (gloo)."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler

from fxprune.data import UCF101, SlowFastClips, write_synthetic_ucf101
from fxprune.distributed import distributed_session, make_loader
from fxprune.errors import InputError
from fxprune.models import c3d, slowfast
from fxprune.train import evaluate, fine_tune, weights_checksum

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "ddp_finetune.py"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_ucf101(
        tmp_path_factory.mktemp("ucf") / "UCF", classes=2, videos_per_class=4, frames=16, size=32
    )


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    # Several OpenMP threads on a busy 2-core runner spin against each other
    # (a tiny C3D step goes from 0.05 s to 3 s); one thread is fastest here.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def tiny_c3d() -> torch.nn.Module:
    torch.manual_seed(0)
    return c3d(num_classes=2, clip_length=16, input_size=32, width=0.0625, dropout=0.0)


def test_fine_tune_learns_and_restores_mode(root: Path) -> None:
    data = UCF101(root, clip_length=16, size=32, progress=False)
    loader = make_loader(data, batch_size=4, shuffle=False)
    model = tiny_c3d().eval()
    before = weights_checksum(model)
    history = fine_tune(model, [next(iter(loader))], steps=25, lr=3e-3, optimizer="adamw", progress=False)
    assert history["steps"] == len(history["loss"]) == 25 and history["world_size"] == 1
    assert history["loss"][-1] < 0.5 * history["loss"][0]  # it can overfit one batch
    assert weights_checksum(model) != before and not model.training
    accuracy = evaluate(model, loader)
    assert 0.0 <= accuracy <= 1.0 and not model.training


def test_fine_tune_graph_module_and_slowfast_lists(root: Path) -> None:
    data = UCF101(root, clip_length=16, size=32, progress=False)
    traced = torch.fx.symbolic_trace(tiny_c3d())
    assert fine_tune(traced, make_loader(data, 2, shuffle=True), epochs=1, progress=False)["epochs"] == 1
    model = slowfast(num_classes=2, base_width=8, depth=(1, 1))
    history = fine_tune(model, make_loader(SlowFastClips(data, alpha=4), 2), steps=2, progress=False)
    assert len(history["loss"]) == 2


def test_fine_tune_rejects_bad_options() -> None:
    with pytest.raises(InputError, match="steps"):
        fine_tune(tiny_c3d(), [], steps=0)
    with pytest.raises(InputError, match="optimizer"):
        fine_tune(tiny_c3d(), [], optimizer="lbfgs")
    with pytest.raises(InputError, match="no batch"):
        fine_tune(tiny_c3d(), [], epochs=1, progress=False)
    with pytest.raises(InputError, match="torchrun"):
        make_loader(list(range(4)), 2, distributed=True)


def test_single_process_session_is_a_no_op() -> None:
    with distributed_session("cpu") as info:
        assert (info.rank, info.world_size, info.is_main) == (0, 1, True)
        assert not (dist.is_available() and dist.is_initialized())


@pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()),
    reason="this torch build has no torch.distributed with the gloo backend",
)
def test_torchrun_two_ranks_end_with_identical_weights(root: Path, tmp_path: Path) -> None:
    checksums = tmp_path / "checksums"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(EXAMPLE)]
    command += ["--data", str(root), "--steps", "3", "--checksum-dir", str(checksums)]
    # One thread per rank (two ranks on a small CI machine must not oversubscribe it), and this
    # checkout's fxprune, not whichever one is installed.
    env = os.environ | {"OMP_NUM_THREADS": "1",
                        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(command, check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"torchrun failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    records = [json.loads((checksums / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [r["world_size"] for r in records] == [2, 2]
    assert records[0]["checksum"] == records[1]["checksum"]
    assert records[0]["checksum"] != records[0]["initial_checksum"]  # training did change the weights
    assert len(records[0]["loss"]) == 3
    # Both ranks got a disjoint half of the 4 training videos.
    assert [r["samples_per_rank"] for r in records] == [2, 2]


def test_make_loader_shards_when_distributed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    loader = make_loader(list(range(10)), batch_size=5, shuffle=False)
    assert isinstance(loader.sampler, DistributedSampler)
    assert [int(x) for batch in loader for x in batch] == [1, 3, 5, 7, 9]


def test_cosine_schedule_warms_up_then_decays_to_zero(root: Path) -> None:
    data = UCF101(root, clip_length=16, size=32, progress=False)
    batch = next(iter(make_loader(data, batch_size=2)))
    history = fine_tune(tiny_c3d(), [batch], steps=12, lr=0.1, schedule="cosine", warmup=3, progress=False)
    rates = history["lr"]
    assert len(rates) == 12
    assert rates[:4] == pytest.approx([0.025, 0.05, 0.075, 0.1])  # linear ramp to the peak
    assert all(a > b for a, b in itertools.pairwise(rates[3:]))  # then strictly decreasing
    assert rates[-1] < 0.01
    constant = fine_tune(tiny_c3d(), [batch], steps=3, lr=0.1, progress=False)["lr"]
    assert constant == [0.1, 0.1, 0.1]


def test_cosine_schedule_needs_a_known_length() -> None:
    batches = (b for b in [])  # a generator has no len()
    with pytest.raises(InputError, match="cosine"):
        fine_tune(tiny_c3d(), batches, epochs=1, schedule="cosine", progress=False)
    with pytest.raises(InputError, match="schedule"):
        fine_tune(tiny_c3d(), [], schedule="step")
    with pytest.raises(InputError, match="warmup"):
        fine_tune(tiny_c3d(), [], schedule="cosine", warmup=-1)
