"""Distillation in fine_tune: the loss is the specified mix of KD and cross-entropy; the teacher is left alone."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from fxprune import InputError
from fxprune.train import fine_tune

REPO = Path(__file__).resolve().parent.parent


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(8, 6, generator=generator), torch.randint(0, 4, (8,), generator=generator)


def _models() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    student = nn.Linear(6, 4)
    teacher = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 4))
    return student, teacher


@pytest.mark.parametrize("distill, temperature", [(0.5, 4.0), (0.9, 2.0), (1.0, 1.0)])
def test_first_loss_is_the_kd_mix(distill: float, temperature: float) -> None:
    student, teacher = _models()
    x, y = _batch()
    with torch.no_grad():
        s, t = student(x), teacher.eval()(x)
    soft = F.kl_div(F.log_softmax(s / temperature, 1), F.softmax(t / temperature, 1), reduction="batchmean")
    expected = distill * temperature**2 * soft + (1 - distill) * F.cross_entropy(s, y)
    teacher.train()
    history = fine_tune(student, [(x, y)], steps=1, lr=0.1, progress=False, teacher=teacher, distill=distill,
                        temperature=temperature)
    assert history["loss"][0] == pytest.approx(float(expected), rel=1e-5)
    assert history["distill"] == distill
    assert abs(float(expected) - float(F.cross_entropy(s, y))) > 1e-3  # the teacher does change the loss


def test_teacher_is_frozen_in_eval_and_its_mode_restored() -> None:
    student, teacher = _models()
    teacher.train()
    before = copy.deepcopy(teacher.state_dict())
    fine_tune(student, [_batch()], steps=3, lr=0.1, progress=False, teacher=teacher)
    assert teacher.training  # restored
    for name, value in teacher.state_dict().items():  # no step, and BatchNorm's statistics untouched (eval)
        assert torch.equal(value, before[name]), name
    assert all(p.grad is None for p in teacher.parameters())


def test_without_teacher_or_at_zero_weight_it_is_cross_entropy() -> None:
    x, y = _batch()
    student, teacher = _models()
    with torch.no_grad():
        plain = float(F.cross_entropy(student(x), y))
    assert fine_tune(copy.deepcopy(student), [(x, y)], steps=1, progress=False)["loss"][0] == pytest.approx(plain)
    zero = fine_tune(copy.deepcopy(student), [(x, y)], steps=1, progress=False, teacher=teacher, distill=0.0)
    assert zero["loss"][0] == pytest.approx(plain)


@pytest.mark.parametrize("kwargs, message", [
    ({"distill": 1.5}, "distill must be"), ({"temperature": 0}, "temperature must be"),
    ({"teacher": "resnet"}, "teacher must be an nn.Module"),
])
def test_bad_distillation_options(kwargs: dict, message: str) -> None:
    student, teacher = _models()
    kwargs = {"teacher": teacher, **kwargs}
    with pytest.raises(InputError, match=message):
        fine_tune(student, [_batch()], steps=1, progress=False, **kwargs)


@pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()), reason="no gloo backend")
def test_distillation_under_torchrun_keeps_ranks_identical(tmp_path: Path) -> None:
    data, checksums = tmp_path / "ucf", tmp_path / "checksums"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(REPO / "examples" / "ddp_finetune.py"), "--data", str(data), "--generate", "--steps", "2",
               "--prune", "0.5", "--distill", "0.7", "--checksum-dir", str(checksums)]
    # This checkout's fxprune, not whichever one is installed.
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    done = subprocess.run(command, check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"torchrun failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    records = [json.loads((checksums / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert records[0]["checksum"] == records[1]["checksum"] != records[0]["initial_checksum"]
    assert all(r["distill"] == 0.7 and r["teacher_unchanged"] for r in records)
