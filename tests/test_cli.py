"""The ``fxprune`` command, run as a subprocess (``python -m fxprune`` and the console script).

Models come from ``tests/cli_factory.py`` (``tests.cli_factory:tiny2d`` ...), so every run is
small. Cheap commands run two at a time; the prune -> export -> bench chain shares one .pt2.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from fxprune import cli
from fxprune.cli.output import Progress

try:  # pytest puts tests/ on sys.path (rootdir-relative imports work when run from the repository root)
    from cli_factory import tiny2d, tiny3d
except ImportError:
    from tests.cli_factory import tiny2d, tiny3d

ROOT = Path(__file__).resolve().parents[1]
TINY2D = ["tests.cli_factory:tiny2d", "--input-shape", "1,3,32,32"]
GATED = ["tests.cli_factory:gated", "--input-shape", "2,3,8,8"]


def run(*args: str, entry_point: bool = False) -> subprocess.CompletedProcess:
    command = [shutil.which("fxprune") or "fxprune"] if entry_point else [sys.executable, "-m", "fxprune"]
    return subprocess.run([*command, *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          check=False)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("cli")
    torch.save({"state_dict": tiny2d().state_dict()}, folder / "tiny2d.pth")
    torch.save(tiny3d().state_dict(), folder / "tiny3d.pth")
    return {"folder": folder, "weights": folder / "tiny2d.pth", "wrong_weights": folder / "tiny3d.pth"}


QUICK = {
    "help": ["--help"],
    **{f"help_{name}": [name, "--help"] for name in ("prune", "inspect", "export", "bench", "sensitivity")},
    "unknown_model": ["prune", "resnet19", "--ratio", "0.5", "--input-shape", "1,3,64,64"],
    "malformed_shape": ["prune", "tests.cli_factory:tiny2d", "--ratio", "0.5", "--input-shape", "1,3,x,64"],
    "bad_ratio": ["prune", *TINY2D, "--ratio", "1.5"],
    "bad_ratio_text": ["prune", *TINY2D, "--ratio", "half"],
    "missing_weights": ["prune", *TINY2D, "--ratio", "0.5", "--weights", "no/such/file.pth"],
    "wrong_weights": ["prune", *TINY2D, "--ratio", "0.5", "--weights", "{wrong_weights}"],
    "not_a_model": ["inspect", "tests.cli_factory:not_a_model", "--input-shape", "1,3,8,8"],
    "prune_pt2": ["prune", "x.pt2", "--ratio", "0.5", "--input-shape", "1,3,8,8"],
    "bad_capture": ["sensitivity", *TINY2D, "--eval", "math:fabs", "--capture", "jit"],
    "submodules_saved": ["prune", *GATED, "--ratio", "0.5", "--submodules", "-o", "{folder}/gated.pt2"],
}


@pytest.fixture(scope="module")
def quick(files: dict[str, Path]) -> dict[str, subprocess.CompletedProcess]:
    """Every cheap command, two at a time (each one mostly waits for ``import torch``)."""
    commands = {name: [a.format(**files) for a in args] for name, args in QUICK.items()}
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(run, *args) for name, args in commands.items()}
        return {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("name", [n for n in QUICK if n.startswith("help")])
def test_help(quick: dict, name: str) -> None:
    done = quick[name]
    assert done.returncode == 0, done.stderr
    assert "usage: fxprune" in done.stdout
    if name != "help":
        assert "examples:" in done.stdout and "--input-shape" in done.stdout
    if name in ("help_prune", "help_inspect", "help_sensitivity"):
        assert "--capture {auto,fx,export}" in done.stdout and "--no-check-capture" in done.stdout


@pytest.mark.parametrize("name, message", [
    ("unknown_model", "unknown model 'resnet19'; did you mean resnet18"),
    ("malformed_shape", "malformed shape '1,3,x,64'"),
    ("bad_ratio", "must be in [0, 1)"),
    ("bad_ratio_text", "bad --ratio 'half'"),
    ("missing_weights", "weights file not found: 'no/such/file.pth'"),
    ("wrong_weights", "do not fit the model"),
    ("not_a_model", "returned a str, not an nn.Module"),
    ("prune_pt2", "give the original MODEL"),
    ("bad_capture", "argument --capture: invalid choice: 'jit'"),
    ("submodules_saved", "Gated was pruned by submodules"),
])
def test_user_errors_are_one_line_and_exit_2(quick: dict, name: str, message: str) -> None:
    done = quick[name]
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("fxprune: error:")]
    assert len(errors) == 1 and message in errors[0], done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_unexpected_errors_exit_1_with_debug_hint(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture) -> None:
    def broken(args: object, progress: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(cli, "_inspect", broken)
    assert cli.main(["inspect", "resnet18", "--input-shape", "1,3,8,8"]) == 1
    assert "internal error: RuntimeError: boom" in capsys.readouterr().err
    assert cli.main(["inspect", "resnet18", "--input-shape", "1,3,8,8", "--debug"]) == 1
    assert "Traceback" in capsys.readouterr().err


@pytest.fixture(scope="module")
def pruned(files: dict[str, Path]) -> tuple[subprocess.CompletedProcess, dict[str, Path]]:
    folder = files["folder"]
    paths = {"pt2": folder / "tiny2d.pt2", "onnx": folder / "tiny2d.onnx", "plan": folder / "plan.json"}
    done = run("prune", *TINY2D, "--ratio", "0.5", "--ratio", "block.0=0.25", "--weights", str(files["weights"]),
               "-o", str(paths["pt2"]), "--onnx", str(paths["onnx"]), "--plan-out", str(paths["plan"]), "--json")
    return done, paths


def test_prune_writes_pt2_onnx_plan_and_json(pruned: tuple) -> None:
    done, paths = pruned
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)  # stdout holds the JSON document and nothing else
    assert report["after"]["params"] < report["before"]["params"]
    assert report["groups"]["pruned"] >= 1 and report["groups"]["found"] >= report["groups"]["prunable"]
    assert report["outputs"] == {"plan": str(paths["plan"]), "pt2": str(paths["pt2"]), "onnx": str(paths["onnx"])}
    assert report["onnx"]["max_abs_error"] < 1e-4
    assert all(path.is_file() for path in paths.values())
    assert "pruning" in done.stderr  # progress goes to stderr


def test_export_a_pt2_without_input_shape(pruned: tuple, files: dict[str, Path]) -> None:
    _, paths = pruned
    target = files["folder"] / "again.onnx"
    done = run("export", str(paths["pt2"]), "-o", str(target), "--quiet")
    assert done.returncode == 0, done.stderr
    assert "max |onnxruntime - torch|" in done.stdout and target.is_file()
    assert done.stderr == ""


def test_bench_missed_budgets_exit_3_and_name_each(pruned: tuple) -> None:
    _, paths = pruned
    done = run("bench", "tests.cli_factory:tiny2d", str(paths["pt2"]), "--runs", "2", "--warmup", "0",
               "--no-eager", "--threads", "1", "--max-latency-ms", "0.0001", "--max-params", "1", "-q")
    assert done.returncode == 3, done.stderr
    assert "| pruned |" in done.stdout
    misses = [line for line in done.stderr.splitlines() if "budget missed" in line]
    assert len(misses) == 2, done.stderr
    assert "latency" in misses[0] and "> 0.0001 ms (+" in misses[0]
    assert misses[1].startswith("fxprune: budget missed: params") and "> 1 (+" in misses[1]


def test_bench_within_budget_exits_0(pruned: tuple, files: dict[str, Path]) -> None:
    _, paths = pruned
    markdown = files["folder"] / "bench.md"
    done = run("bench", "tests.cli_factory:tiny2d", str(paths["pt2"]), "--runs", "2", "--warmup", "1",
               "--threads", "1", "--min-speedup", "0.001", "--max-params", "1000000", "--json",
               "--markdown", str(markdown))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["passed"] is True and [b["name"] for b in report["budgets"]] == ["speed-up", "params"]
    assert [row["name"] for row in report["rows"]] == ["original", "pruned"]
    assert "| original |" in markdown.read_text()


def test_bench_budgets_check_the_int8_model_when_quantizing(pruned: tuple) -> None:
    _, paths = pruned
    done = run("bench", "tests.cli_factory:tiny2d", str(paths["pt2"]), "--runs", "2", "--warmup", "0", "--no-eager",
               "--threads", "1", "--int8", "--max-size-mb", "1000", "--max-int8-error", "1e-12",
               "--max-params", "1000000", "--json", "-q")
    assert done.returncode == 3, done.stderr
    report = json.loads(done.stdout)
    budgets = {b["name"]: b for b in report["budgets"]}
    assert list(budgets) == ["params", "size", "INT8 error"]
    int8 = next(r for r in report["rows"] if r["name"] == "pruned int8")
    assert budgets["size"]["actual"] == int8["onnx_bytes"] / 1e6 and budgets["size"]["ok"]
    assert budgets["INT8 error"]["actual"] == int8["int8_error"] and not budgets["INT8 error"]["ok"]
    assert all(b["message"].endswith("(pruned int8)") for b in budgets.values())
    float_rows = run("bench", "tests.cli_factory:tiny2d", str(paths["pt2"]), "--runs", "2", "--warmup", "0",
                     "--no-eager", "--threads", "1", "--int8", "--budget-on", "pruned", "--max-size-mb", "1000",
                     "--json", "-q")
    assert float_rows.returncode == 0, float_rows.stderr
    size = json.loads(float_rows.stdout)["budgets"][0]
    float_bytes = next(r["onnx_bytes"] for r in json.loads(float_rows.stdout)["rows"] if r["name"] == "pruned")
    assert size["actual"] == float_bytes / 1e6 and "(pruned" not in size["message"]


def test_int8_budgets_without_int8_are_refused_before_measuring(pruned: tuple) -> None:
    _, paths = pruned
    for extra in (["--max-int8-error", "0.1"], ["--budget-on", "int8"]):
        done = run("bench", "tests.cli_factory:tiny2d", str(paths["pt2"]), "--runs", "2", *extra)
        assert done.returncode == 2 and "needs --int8" in done.stderr, done.stderr


def test_inspect_lists_groups_with_list_input() -> None:
    done = run("inspect", "tests.cli_factory:two_stream", "--input-shape", "1,3,2,8,8", "--input-shape",
               "1,3,8,8,8", "--input-list", "--json", "--quiet")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["inputs"] == [[[1, 3, 2, 8, 8], [1, 3, 8, 8, 8]]]
    prunable = [g for g in report["groups"] if g["prunable"]]
    assert prunable and {"slow.0", "fast.0"} <= set(prunable[0]["producers"])
    assert any(not g["prunable"] and "output" in g["reason"] for g in report["groups"])


@pytest.mark.skipif(shutil.which("fxprune") is None, reason="the fxprune console script is not installed")
def test_console_script_inspects_a_3d_model() -> None:
    done = run("inspect", "tests.cli_factory:tiny3d", "--input-shape", "1,3,4,16,16", entry_point=True)
    assert done.returncode == 0, done.stderr
    assert "#0" in done.stdout and "[prunable]" in done.stdout and "frozen" in done.stdout
    assert "features.0" in done.stdout


def test_sensitivity_writes_report_and_ratios(tmp_path: Path) -> None:
    evaluator = tmp_path / "sens_eval.py"
    evaluator.write_text("import torch\n\ndef score(module):\n    torch.manual_seed(0)\n"
                         "    with torch.no_grad():\n"
                         "        return -float(module(torch.randn(2, 3, 8, 16, 16)).abs().mean())\n")
    done = subprocess.run([sys.executable, "-m", "fxprune", "sensitivity", "tests.cli_factory:tiny3d",
                           "--input-shape", "1,3,8,16,16", "--eval", "sens_eval:score", "--ratios", "0.25,0.5",
                           "--out", str(tmp_path / "out"), "--tolerance", "1.0", "--json", "-q",
                           "--capture", "export", "--no-check-capture"],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["rows"] >= 2 and data["ratios"]
    for name in ("sensitivity.csv", "sensitivity.json", "sensitivity.png", "ratios.yaml"):
        assert (tmp_path / "out" / name).exists()


def test_sensitivity_passes_the_capture_options_on(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from fxprune.cli import sensitivity as command

    asked: dict[str, object] = {}

    def recording(*args: object, **kwargs: object) -> None:
        asked.update(kwargs)
        raise RuntimeError("stop")

    monkeypatch.setattr(command, "sensitivity", recording)
    args = cli.build_parser().parse_args(["sensitivity", *TINY2D, "--eval", "math:fabs", "--capture", "export",
                                          "--no-check-capture", "--out", str(tmp_path)])
    with pytest.raises(RuntimeError, match="stop"):
        command.run_sensitivity(args, Progress(quiet=True))
    assert asked["capture"] == "export" and asked["check_capture"] is False


def test_prune_by_submodules() -> None:
    done = run("prune", *GATED, "--ratio", "0.5", "--submodules", "--json", "-q")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)["submodules"]
    assert [part["name"] for part in data["pruned"]] == ["features", "head"] and "export: " in data["whole"]
    assert all(part["groups"]["pruned"] == 1 for part in data["pruned"])
    done = run("prune", *GATED, "--ratio", "0.5", "--submodules", "head", "-q")
    assert done.returncode == 0 and "pruned  head (fx)" in done.stdout and "features" not in done.stdout, done.stderr


def test_prune_with_yaml_schedule(tmp_path: Path) -> None:
    config = tmp_path / "prune.yaml"
    config.write_text("version: 1\nratios: 0.4\nschedule: {steps: 2, kind: agp}\n")
    done = subprocess.run([sys.executable, "-m", "fxprune", "prune", "tests.cli_factory:tiny3d", "--input-shape",
                           "1,3,8,16,16", "--config", str(config), "--json", "-q"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["after"]["params"] < data["before"]["params"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nratios: 1.5\n")
    done = subprocess.run([sys.executable, "-m", "fxprune", "prune", "tests.cli_factory:tiny3d", "--input-shape",
                           "1,3,8,16,16", "--config", str(bad)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 2 and "line 2" in done.stderr and "ratios" in done.stderr
