"""Measure the torchvision zoo and regenerate the tables of ``fxprune/testing/zoo.py``.

For every torchvision classification and video model, ``measure`` finds the cheapest
example input on which the eager forward works, ``torch.fx.symbolic_trace`` succeeds
and the traced module reproduces the eager output, and times build, trace, forward
and fake-tensor propagation (each model in a forked child with a time limit).
``ingest-junit`` adds the measured pytest seconds of ``tests/test_zoo.py``; ``emit``
prints (``--write``: rewrites) the generated block of ``fxprune/testing/zoo.py``.

Example::

    python3 benchmarks/zoo_measure.py measure            # writes benchmarks/zoo_measurements.json
    python3 -m pytest tests/test_zoo.py -m "slow or not slow" --junitxml=/tmp/zoo.xml
    python3 benchmarks/zoo_measure.py ingest-junit /tmp/zoo.xml
    python3 benchmarks/zoo_measure.py emit --write
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # this checkout's fxprune, not an installed one
    sys.path.insert(0, str(REPO_ROOT))

from fxprune.testing import zoo  # noqa: E402
from fxprune.testing.zoo import _construct  # noqa: E402

MEASUREMENTS_JSON = REPO_ROOT / "benchmarks" / "zoo_measurements.json"
ZOO_TABLES = Path(zoo.__file__)

#: Candidate spatial sizes for 2D classification models, cheapest first.
CANDIDATE_2D: tuple[int, ...] = (32, 64, 75, 96, 128, 160, 192, 224, 256, 299)

#: Candidate (T, H, W) clip sizes for video models, cheapest first.
CANDIDATE_3D: tuple[tuple[int, int, int], ...] = (
    (4, 32, 32),
    (8, 32, 32),
    (8, 64, 64),
    (16, 64, 64),
    (8, 112, 112),
    (16, 112, 112),
    (8, 224, 224),
    (16, 224, 224),
    (32, 224, 224),
)


@dataclass
class Measurement:
    """Raw measurement of one model (one line of the JSON file)."""

    name: str
    kind: str
    status: str = "ok"  # ok | untraceable | mismatch | no_input | error | timeout
    shape: list[int] | None = None
    build_s: float | None = None
    trace_s: float | None = None
    forward_first_s: float | None = None
    forward_s: float | None = None
    traced_forward_s: float | None = None
    fake_prop_s: float | None = None
    params: int | None = None
    nodes: int | None = None
    trace_max_abs_diff: float | None = None
    out_abs_max: float | None = None
    error: str | None = None
    interpreter_error: str | None = None
    tried: list[str] = field(default_factory=list)


def _candidates(kind: str) -> list[tuple[int, ...]]:
    """Return candidate input shapes for a model kind, cheapest first."""
    if kind == "video":
        return [(1, 3, *thw) for thw in CANDIDATE_3D]
    return [(1, 3, s, s) for s in CANDIDATE_2D]


def _timed(fn: Any, *args: Any) -> tuple[Any, float]:
    """Call ``fn(*args)`` and return ``(result, seconds)``."""
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def _short(exc: BaseException) -> str:
    """Format an exception as ``Class: first line of message`` (truncated)."""
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {msg}"[:300]


def _min_forward_seconds(model: nn.Module, x: torch.Tensor, budget_s: float = 3.0) -> float:
    """Return the fastest of up to 3 eager forwards (fewer when they are slow).

    The minimum filters out noise from other processes sharing the CPU.
    """
    best, spent = float("inf"), 0.0
    for _ in range(3):
        _, seconds = _timed(model, x)
        best, spent = min(best, seconds), spent + seconds
        if spent > budget_s:
            break
    return best


def _fake_codegen_seconds(gm: torch.fx.GraphModule, x: torch.Tensor) -> float:
    """Time one fake-tensor run of ``gm``'s generated code (no Interpreter)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    t0 = time.perf_counter()
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    fake_x = mode.from_tensor(x)
    with mode:
        gm(fake_x)
    return time.perf_counter() - t0


def _fake_prop_seconds(gm: torch.fx.GraphModule, x: torch.Tensor) -> float:
    """Time one fake-tensor shape propagation through ``gm``."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.passes.fake_tensor_prop import FakeTensorProp

    t0 = time.perf_counter()
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    FakeTensorProp(gm, mode).propagate(mode.from_tensor(x))
    return time.perf_counter() - t0


def measure_one(name: str, kind: str) -> Measurement:
    """Measure one model in the current process.

    Args:
        name: Torchvision model name.
        kind: ``"classification"`` or ``"video"``.

    Returns:
        The filled-in :class:`Measurement`.
    """
    m = Measurement(name=name, kind=kind)
    torch.manual_seed(0)
    model, m.build_s = _timed(_construct, name)
    m.params = sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        for shape in _candidates(kind):
            x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
            try:
                out, m.forward_first_s = _timed(model, x)
            except Exception as exc:  # noqa: BLE001 - any failure means "too small"
                m.tried.append(f"{list(shape)}: {_short(exc)}")
                continue
            m.shape = list(shape)
            m.forward_s = _min_forward_seconds(model, x)
            m.out_abs_max = float(out.abs().max())
            try:
                gm, m.trace_s = _timed(torch.fx.symbolic_trace, model)
            except Exception as exc:  # noqa: BLE001
                m.status, m.error = "untraceable", _short(exc)
                return m
            m.nodes = len(gm.graph.nodes)
            traced, m.traced_forward_s = _timed(gm, x)
            m.trace_max_abs_diff = float((traced - out).abs().max())
            if traced.shape != out.shape or m.trace_max_abs_diff > 1e-5 * max(1.0, m.out_abs_max):
                m.tried.append(f"{list(shape)}: traced output differs by {m.trace_max_abs_diff}")
                m.status = "mismatch"
                continue
            m.status = "ok"
            try:
                m.fake_prop_s = _fake_prop_seconds(gm, x)
            except Exception as exc:  # noqa: BLE001
                # e.g. swin3d: a wrapped helper mutates a list argument, which
                # torch.fx.Interpreter passes as an immutable_list.
                m.interpreter_error = _short(exc)
                m.fake_prop_s = _fake_codegen_seconds(gm, x)
            return m
    if m.status == "ok":
        m.status = "no_input"
        m.error = "no candidate input size worked"
    return m


def _child(name: str, kind: str, conn: Any) -> None:
    """Subprocess entry point: measure ``name`` and send the result back."""
    try:
        result = measure_one(name, kind)
    except Exception as exc:  # noqa: BLE001
        result = Measurement(name=name, kind=kind, status="error", error=_short(exc))
        traceback.print_exc()
    conn.send(asdict(result))
    conn.close()


def run_forked(target: Callable[..., None], args: tuple[Any, ...], timeout_s: float,
               grace_s: float = 5.0) -> tuple[Any, int | None]:
    """Run ``target(*args, conn)`` in a forked child that sends one payload on ``conn``.

    Returns ``(payload, exit code)``; the payload is None when the child crashed, was
    killed (out of memory) or sent nothing within ``timeout_s`` (it is then killed).
    """
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=target, args=(*args, child))
    proc.start()
    child.close()
    payload = None
    if parent.poll(timeout_s):
        try:
            payload = parent.recv()
        except EOFError:
            payload = None
    proc.join(grace_s)
    if proc.is_alive():
        proc.kill()
        proc.join()
    return payload, proc.exitcode


def measure_isolated(name: str, kind: str, timeout_s: float) -> dict[str, Any]:
    """Measure one model in a forked child process with a timeout.

    Args:
        name: Torchvision model name.
        kind: ``"classification"`` or ``"video"``.
        timeout_s: Kill the child after this many seconds.

    Returns:
        The measurement as a JSON-able dict.
    """
    t0 = time.perf_counter()
    result, exitcode = run_forked(_child, (name, kind), timeout_s)
    if result is None:
        status = "timeout" if time.perf_counter() - t0 >= timeout_s else "error"
        result = asdict(Measurement(name=name, kind=kind, status=status, error=f"child exit code {exitcode}"))
    result["wall_s"] = round(time.perf_counter() - t0, 3)
    return result


def all_model_names() -> list[tuple[str, str]]:
    """Return ``(name, kind)`` for every torchvision classification and video model."""
    import torchvision

    cls = torchvision.models.list_models(module=torchvision.models)
    vid = torchvision.models.list_models(module=torchvision.models.video)
    return [(n, "classification") for n in cls] + [(n, "video") for n in vid]


def cmd_measure(args: argparse.Namespace) -> None:
    """Run the measurement sweep and write the JSON file incrementally."""
    names = all_model_names()
    if args.models:
        wanted = set(args.models)
        names = [(n, k) for n, k in names if n in wanted]
    out = Path(args.out)
    data: dict[str, Any] = {}
    if (args.resume or args.merge_min) and out.exists():
        data = json.loads(out.read_text()).get("models", {})
    for name, kind in names:
        if name in data and args.resume:
            continue
        res = measure_isolated(name, kind, args.timeout)
        if args.merge_min and name in data:
            res = _merge_min(data[name], res)
        data[name] = res
        print(f"{name:22s} {res['status']:11s} shape={res['shape']} "
              f"build={res['build_s']} fwd={res['forward_s']} trace={res['trace_s']} "
              f"fake={res['fake_prop_s']} nodes={res['nodes']} wall={res['wall_s']} "
              f"{res['error'] or ''}", flush=True)
        _write_json(out, data)


TIMING_FIELDS = ("build_s", "trace_s", "forward_first_s", "forward_s", "traced_forward_s",
                 "fake_prop_s")


def _merge_min(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Combine two measurements of a model, keeping the fastest of each timing.

    Both runs must agree on status and input shape; otherwise the new one wins.
    """
    if old.get("status") != new.get("status") or old.get("shape") != new.get("shape"):
        return new
    merged = dict(new)
    for key in TIMING_FIELDS:
        values = [v for v in (old.get(key), new.get(key)) if v is not None]
        merged[key] = min(values) if values else None
    merged["samples"] = old.get("samples", 1) + 1
    return merged


def _write_json(out: Path, data: dict[str, Any]) -> None:
    """Write measurements with environment metadata to ``out``."""
    import platform

    import torchvision

    payload = {
        "command": "python3 benchmarks/zoo_measure.py measure",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "models": data,
    }
    if out.exists():  # keep sections written by other subcommands (pytest_seconds)
        previous = json.loads(out.read_text())
        payload.update({k: v for k, v in previous.items() if k not in payload})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=1, sort_keys=False) + "\n")


def _r(x: float | None, nd: int = 3) -> float:
    """Round a possibly-missing float for emission."""
    return round(x, nd) if x is not None else float("nan")


def cmd_emit(args: argparse.Namespace) -> None:
    """Print the generated Python tables from the JSON measurements."""
    payload = json.loads(Path(args.out).read_text())
    data = payload["models"]
    lines = ["# BEGIN GENERATED", "#: model name -> example input shape (batch 1).",
             "INPUT_SHAPES: dict[str, tuple[int, ...]] = {"]
    for name, res in data.items():
        if res["shape"]:
            lines.append(f"    {name!r}: {tuple(res['shape'])!r},")
    lines += ["}", "",
              "#: model name -> (build_s, trace_s, eager_forward_s, fake_prop_s, params, fx_nodes)",
              "MEASUREMENTS: dict[str, tuple[float, float, float, float, int, int]] = {"]
    for name, res in data.items():
        if res["status"] == "ok":
            fake = res["fake_prop_s"] if res["fake_prop_s"] is not None else 0.0
            lines.append(f"    {name!r}: ({_r(res['build_s'])}, {_r(res['trace_s'])}, "
                         f"{_r(res['forward_s'])}, {_r(fake)}, {res['params']}, {res['nodes']}),")
    lines += ["}", "", "#: Models that ``torch.fx.symbolic_trace`` cannot trace at all: name -> error.",
              "UNTRACEABLE: dict[str, str] = {"]
    for name, res in data.items():
        if res["status"] != "ok":
            lines.append(f"    {name!r}: {res['status'] + ': ' + (res['error'] or '')!r},")
    lines += ["}", "",
              "#: Traceable models whose graph fails under ``torch.fx.Interpreter`` (so also",
              "#: ShapeProp / FakeTensorProp) although ``gm(x)`` works: name -> error.",
              "INTERPRETER_ERRORS: dict[str, str] = {"]
    for name, res in data.items():
        if res.get("interpreter_error"):
            lines.append(f"    {name!r}: {res['interpreter_error']!r},")
    pytest_info = payload.get("pytest_seconds", {})
    lines += ["}", "",
              "#: model name -> measured pytest seconds of its two zoo tests (fixture included),",
              f"#: from {pytest_info.get('source', 'n/a')} on {pytest_info.get('date', 'n/a')}"
              f" (load average {pytest_info.get('loadavg', 'n/a')}).",
              "PYTEST_SECONDS: dict[str, float] = {"]
    for name, seconds in sorted(pytest_info.get("models", {}).items()):
        lines.append(f"    {name!r}: {round(seconds, 2)},")
    lines += ["}", "# END GENERATED"]
    text = "\n".join(lines)
    if not args.write:
        print(text)
        return
    source = ZOO_TABLES.read_text()
    head, rest = source.split("# BEGIN GENERATED", 1)
    _, tail = rest.split("# END GENERATED", 1)
    ZOO_TABLES.write_text(head + text + tail)
    print(f"updated {ZOO_TABLES}")


def cmd_ingest_junit(args: argparse.Namespace) -> None:
    """Store per-model pytest seconds from a junit XML of ``tests/test_zoo.py``.

    The seconds of ``test_exact[name]`` and ``test_default[name]`` (setup,
    call and teardown, as pytest's junit report totals them) are summed per
    model; skipped tests are ignored.
    """
    import re
    import xml.etree.ElementTree as ET

    seconds: dict[str, float] = {}
    for case in ET.parse(args.junit).iter("testcase"):
        match = re.fullmatch(r"test_(?:exact|default)\[(.+)\]", case.get("name", ""))
        if match is None or case.find("skipped") is not None:
            continue
        seconds[match.group(1)] = seconds.get(match.group(1), 0.0) + float(case.get("time", 0))
    out = Path(args.out)
    payload = json.loads(out.read_text())
    section = payload.get("pytest_seconds", {"models": {}})
    models = dict(section.get("models", {}))
    for name, value in seconds.items():
        models[name] = min(value, models[name]) if args.merge_min and name in models else value
    payload["pytest_seconds"] = {
        "source": f"pytest tests/test_zoo.py --junitxml ({Path(args.junit).name})",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "loadavg": [round(x, 1) for x in os.getloadavg()],
        "models": models,
    }
    out.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"stored pytest seconds of {len(seconds)} models in {out}")


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point (``measure`` / ``ingest-junit`` / ``emit``)."""
    parser = argparse.ArgumentParser(
        description="Measure the torchvision zoo (input sizes, timings) or emit the tables.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_measure = sub.add_parser("measure", help="measure every model in a forked child")
    p_measure.add_argument("--models", nargs="*", help="only these model names (default: all)")
    p_measure.add_argument("--timeout", type=float, default=300.0,
                           help="seconds before a model's child process is killed (default 300)")
    p_measure.add_argument("--resume", action="store_true",
                           help="keep models already present in --out and skip them")
    p_measure.add_argument("--merge-min", action="store_true",
                           help="re-measure models already in --out and keep the minimum of "
                                "each timing (filters noise from other CPU users)")
    p_measure.add_argument("--out", default=str(MEASUREMENTS_JSON),
                           help="JSON file to write (default benchmarks/zoo_measurements.json)")
    p_emit = sub.add_parser("emit", help="print the generated tables for this file")
    p_emit.add_argument("--out", default=str(MEASUREMENTS_JSON), help="JSON file to read")
    p_emit.add_argument("--write", action="store_true",
                        help="rewrite the generated block of this file instead of printing it")
    p_junit = sub.add_parser("ingest-junit",
                             help="store per-model test seconds from a pytest junit XML")
    p_junit.add_argument("junit", help="junit XML written by pytest tests/test_zoo.py --junitxml")
    p_junit.add_argument("--merge-min", action="store_true",
                         help="keep the smaller of the stored and the new seconds per model")
    p_junit.add_argument("--out", default=str(MEASUREMENTS_JSON), help="JSON file to update")
    args = parser.parse_args(argv)
    {"measure": cmd_measure, "emit": cmd_emit, "ingest-junit": cmd_ingest_junit}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
