"""Client-library models through fxprune and, side by side, through Torch-Pruning (issue 10's proof).

For each model of ``benchmarks/clients/models.py`` (ultralytics YOLO, HF transformers, every
segmentation-models-pytorch architecture, pytorchvideo, timm, torchvision detection and
segmentation) this script measures, at one ratio (default 0.5):

* fxprune with ``capture="auto"``: the front end that ran and the seconds of ``fxprune.capture``
  (checked against the model), an exact-mode compile and its oracle error (``fxprune.verify``),
  a default-mode compile (groups prunable / frozen, params and MACs ratios, seconds) and whether
  the pruned module's outputs keep the model's structure and shapes;
* Torch-Pruning (``MetaPruner``, L1 magnitude importance, the classifier / head ignored): whether
  it completes, its seconds, params and MACs ratios, and whether the pruned model runs forward
  and keeps the output shapes (it has no oracle).

Each model and tool runs in its own subprocess with a time limit, so a crash or a hang costs one
cell. Progress goes to stderr, one line per model; the table goes to ``docs/clients.md`` and the
raw results to ``benchmarks/clients.json``, rewritten after every model.

Run with the client libraries installed (``pip install -e ".[clients]"``), offline::

    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 YOLO_OFFLINE=1 PYTHONPATH=. \\
        /work/venv-clients/bin/python benchmarks/clients.py
    ... benchmarks/clients.py --models timm.resnet18,hf.resnet --out /tmp/c.md --json /tmp/c.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks.clients.models import INFO, names  # noqa: E402  (the repository root is on sys.path above)

DEFAULT_MD = REPO_ROOT / "docs" / "clients.md"
DEFAULT_JSON = REPO_ROOT / "benchmarks" / "clients.json"
TOOLS = ("fxprune", "torch-pruning")
MARK = "@@clients-result "
PACKAGES = ("torch", "torchvision", "ultralytics", "transformers", "segmentation-models-pytorch", "pytorchvideo",
            "timm", "torch-pruning")


def run_child(name: str, tool: str, ratio: float, timeout_s: float) -> dict[str, Any]:
    """Measure one model with one tool in a fresh subprocess; a crash or timeout is a failed result."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", name, "--tool", tool, "--ratio", str(ratio)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    started = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        return {"status": "failed", "stage": "child", "error": f"TimeoutError: exceeded {timeout_s:.0f} s",
                "wall_s": time.perf_counter() - started}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(MARK):
            return {**json.loads(line[len(MARK):]), "wall_s": time.perf_counter() - started}
    tail = (done.stderr.strip().splitlines() or ["no output"])[-1][:200]
    return {"status": "failed", "stage": "child", "error": f"exit code {done.returncode}: {tail}",
            "wall_s": time.perf_counter() - started}


def child_main(name: str, tool: str, ratio: float) -> None:
    """Subprocess entry: measure and print the result after the marker, on one stdout line."""
    import torch

    from benchmarks.clients.measure import measure_fxprune, measure_torch_pruning

    torch.set_num_threads(1)  # a shared machine: one core per measurement, the same for both tools
    measure = measure_fxprune if tool == "fxprune" else measure_torch_pruning
    print(MARK + json.dumps(measure(name, ratio)), flush=True)


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _fx_status(r: dict[str, Any]) -> str:
    if r["status"] == "failed":
        return _cell(f"failed ({r.get('stage')}): {r.get('error')}")
    return {"ok": "ok", "inexact": "inexact", "shape": "output shapes differ"}[r["status"]]


def _tp_status(r: dict[str, Any]) -> str:
    if r["status"] == "failed":
        return _cell(f"failed ({r.get('stage')}): {r.get('error')}")
    return "runs, shapes kept" if r["status"] == "ok" else "runs, output shapes differ"


def table_rows(rows: list[dict[str, Any]]) -> list[str]:
    """One markdown row per model: fxprune's columns, then Torch-Pruning's."""
    lines = []
    for row in rows:
        fx, tp = row["fxprune"], row.get("torch-pruning", {})
        groups = f"{fx['prunable']} / {fx['frozen']}" if "prunable" in fx else "-"
        lines.append(
            f"| {row['model']} | {row['library']} | {fx.get('front_end', '-')} | {_fmt(fx.get('capture_s'), '.1f')} "
            f"| {groups} | {_fmt(fx.get('params_ratio'), '.3f')} | {_fmt(fx.get('macs_ratio'), '.3f')} "
            f"| {_fmt(fx.get('oracle_err'), '.1e')} | {_fmt(fx.get('exact_s'), '.1f')} "
            f"| {_fmt(fx.get('default_s'), '.1f')} | {_fx_status(fx)} "
            f"| {_tp_status(tp) if tp else '-'} | {_fmt(tp.get('seconds'), '.1f')} "
            f"| {_fmt(tp.get('params_ratio'), '.3f')} | {_fmt(tp.get('macs_ratio'), '.3f')} |")
    return lines


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """The report: header, summary counts, the side-by-side table and the notes on failures."""
    fx_ok = sum(r["fxprune"]["status"] == "ok" for r in rows)
    tp_ok = sum(r.get("torch-pruning", {}).get("status") == "ok" for r in rows)
    small = sum(r["fxprune"]["status"] == "ok" and (r["fxprune"].get("params_ratio") or 1) < 0.9 for r in rows)
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    lines = [
        "# Client-library models: fxprune and Torch-Pruning side by side",
        "",
        f"- command: `{meta['command']}`",
        f"- fxprune commit {meta['commit']}, date: {meta['date']}; "
        f"{meta['done']} of {meta['selected']} selected models measured",
        f"- {versions}; python {meta['python']}",
        f"- machine: {meta['machine']}, {meta['cpu_count']} cores shared with other jobs; each model and tool in its "
        f"own subprocess with 1 torch thread and a {meta['timeout']:.0f} s limit",
        f"- ratio {meta['ratio']}; fxprune oracle tolerance 1e-4 x max(1, |output|)",
        f"- fxprune: {fx_ok} ok of {len(rows)} (oracle-exact, output structure kept), {small} of them with params "
        f"ratio < 0.9; Torch-Pruning: {tp_ok} of {len(rows)} prune, run and keep the output shapes",
        "",
        "fxprune columns: *front end* that `capture=\"auto\"` chose, *capture s* of `fxprune.capture` (with its check "
        "against the model), channel groups prunable / frozen and params / MACs ratios (after / before) of the "
        "default-mode compile, the exact-mode oracle error (`fxprune.verify`: max abs difference between the pruned "
        "module and the masked original), seconds of the exact and default compiles. Torch-Pruning columns: "
        "`MetaPruner` with `MagnitudeImportance(p=1)` at the same ratio, the classifier / head ignored "
        "(benchmarks/clients/measure.py: `ignored_layers`); it has no oracle, so the status says whether the pruned "
        "model runs forward and keeps the output shapes; its MACs are its own counter's "
        "(`tp.utils.count_ops_and_params`), the params ratios of both are parameter counts.",
        "",
        "| model | library | front end | capture s | groups prunable / frozen | params ratio | MACs ratio "
        "| oracle err | exact s | default s | fxprune | Torch-Pruning | TP s | TP params | TP MACs |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *table_rows(rows),
        "",
    ]
    return "\n".join(lines + notes(rows)) + "\n"


def notes(rows: list[dict[str, Any]]) -> list[str]:
    """Why fxprune left symbolic tracing, and why a model did not compress (its frozen groups' reasons)."""
    lines = ["## Notes per model", ""]
    for row in rows:
        fx = row["fxprune"]
        parts = [f"left {_cell(left)[:160]}" for left in fx.get("left", [])]
        if fx["status"] == "ok" and (fx.get("params_ratio") or 1) >= 0.9:
            reasons = "; ".join(f"{n} x {_cell(k)}" for k, n in list(fx.get("frozen_reasons", {}).items())[:3])
            parts.append(f"params ratio {fx['params_ratio']:.3f}: frozen groups: {reasons}")
        if parts:
            lines.append(f"- **{row['model']}**: " + "; ".join(parts))
    return lines


def metadata(args: argparse.Namespace, selected: int) -> dict[str, Any]:
    """The report's header: command, versions, machine."""
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = importlib_metadata.version(package)
        except importlib_metadata.PackageNotFoundError:
            versions[package] = "not installed"
    commit = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "unknown"
    return {"command": "python benchmarks/clients.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
            "commit": commit, "date": time.strftime("%Y-%m-%d %H:%M %Z"), "versions": versions,
            "python": platform.python_version(),
            "machine": f"{platform.system()} {platform.machine()}", "cpu_count": os.cpu_count(),
            "timeout": args.timeout, "ratio": args.ratio, "selected": selected, "done": 0}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="comma-separated registry names (default: every model)")
    parser.add_argument("--tools", default=",".join(TOOLS), help="comma-separated: fxprune,torch-pruning")
    parser.add_argument("--ratio", type=float, default=0.5)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per model and tool (default 300)")
    parser.add_argument("--out", type=Path, default=DEFAULT_MD)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--tool", choices=TOOLS, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the sweep; 0 when every model passes fxprune's oracle with its output structure kept."""
    args = parse_args(argv)
    if args.child:
        child_main(args.child, args.tool, args.ratio)
        return 0
    selected = args.models.split(",") if args.models else names()
    unknown = [n for n in selected if n not in INFO]
    if unknown:
        raise SystemExit(f"unknown model(s): {', '.join(unknown)}; see benchmarks/clients/models.py")
    tools = args.tools.split(",")
    meta = metadata(args, len(selected))
    rows: list[dict[str, Any]] = []
    for index, name in enumerate(selected, 1):
        row: dict[str, Any] = {"model": name, "library": INFO[name].library, "fxprune": {"status": "skipped"}}
        for tool in tools:
            row[tool] = run_child(name, tool, args.ratio, args.timeout)
        rows.append(row)
        meta["done"] = index
        progress = "; ".join(f"{t} {row[t]['status']} {row[t]['wall_s']:.0f}s" for t in tools)
        print(f"[{index}/{len(selected)}] {name}: {progress}", file=sys.stderr, flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(markdown(rows, meta))  # partial results survive an interrupted run
        args.json.write_text(json.dumps({**meta, "models": rows}, indent=1) + "\n")
    return 0 if all(r["fxprune"]["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
