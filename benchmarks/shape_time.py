"""Shape-propagation benchmark: the outputs that rules state versus running every node on fake tensors.

For each model and front end, prints the nodes of the captured graph, how many of them
their rule states the output of (``Rule.shape``), and the median seconds of
``propagate_shapes`` with the stated outputs (the default) and with every node run on
fake tensors (``rule_shapes=False``), timed alternately in one process. With
``--against PATH`` another checkout of fxprune (for instance main, before a change) is
imported beside this one and its ``propagate_shapes`` and ``compile`` are timed in the
same loop, so before and after are measured side by side.

Example::

    python3 benchmarks/shape_time.py
    python3 benchmarks/shape_time.py --models resnet50 densenet121 --against /work/main --capture fx export
    python3 benchmarks/shape_time.py --models timm/densenet121 --size 128  # with the clients extra
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
import torchvision
from torch import fx, nn

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import fxprune  # noqa: E402
from fxprune.passes.capture import capture  # noqa: E402
from fxprune.passes.shapes import propagate_shapes  # noqa: E402
from fxprune.rules import lookup  # noqa: E402


def load_baseline(path: Path) -> ModuleType:
    """Import the fxprune package under ``path`` as ``fxprune_baseline``, beside this checkout's."""
    init = path / "fxprune" / "__init__.py"
    spec = importlib.util.spec_from_file_location("fxprune_baseline", init,
                                                  submodule_search_locations=[str(init.parent)])
    if spec is None or spec.loader is None:
        raise SystemExit(f"no fxprune package under {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["fxprune_baseline"] = module
    spec.loader.exec_module(module)
    return module


def stated_nodes(module: fx.GraphModule) -> int:
    """Nodes whose rule states their output, asked again on the fake values propagation left."""
    submodules = dict(module.named_modules())
    count = 0
    for node in module.graph.nodes:
        if not node.op.startswith("call"):
            continue
        sub = submodules.get(node.target) if node.op == "call_module" else None
        rule = lookup(node, sub)
        if rule is None or rule.shape is None:
            continue
        args, kwargs = fx.node.map_arg((node.args, node.kwargs), lambda n: n.meta.get("val"))
        count += rule.shape(sub, tuple(args), dict(kwargs)) is not None
    return count


def medians(timers: dict[str, Callable[[], Any]], repeat: int) -> dict[str, float]:
    """Median seconds of each timer over ``repeat`` rounds after one warm-up round.

    The order rotates every round and garbage is collected before each timing, so that no
    timer pays for the garbage of the one before it (the all-fake run leaves much).
    """
    runs: dict[str, list[float]] = {name: [] for name in timers}
    names = list(timers)
    for round_ in range(repeat + 1):
        for name in names[round_ % len(names):] + names[:round_ % len(names)]:
            gc.collect()
            started = time.perf_counter()
            timers[name]()
            if round_:
                runs[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in runs.items()}


def build(name: str) -> nn.Module:
    """A torchvision model by name, or a timm one as ``timm/<name>`` (random weights, eval mode)."""
    if name.startswith("timm/"):
        import timm  # the clients extra

        return timm.create_model(name[len("timm/"):], pretrained=False).eval()
    return getattr(torchvision.models, name)(weights=None).eval()


def bench(name: str, front_end: str, baseline: ModuleType | None, repeat: int, compile_too: bool,
          size: int) -> dict[str, Any]:
    model = build(name)
    inputs = (torch.randn(1, 3, size, size),)
    module = capture(model, inputs, front_end=front_end, check=False).module
    timers: dict[str, Callable[[], Any]] = {
        "rules s": lambda: propagate_shapes(module, inputs),
        "fake s": lambda: propagate_shapes(module, inputs, rule_shapes=False),
    }
    if baseline is not None:
        base_capture = importlib.import_module("fxprune_baseline.passes.capture")
        base_shapes = importlib.import_module("fxprune_baseline.passes.shapes")
        base_module = base_capture.capture(model, inputs, front_end=front_end, check=False).module
        timers["baseline s"] = lambda: base_shapes.propagate_shapes(base_module, inputs)
    if compile_too:
        timers["compile s"] = lambda: fxprune.compile(model, 0.5, example_inputs=inputs, capture=front_end)
        if baseline is not None:
            timers["baseline compile s"] = lambda: baseline.compile(model, 0.5, example_inputs=inputs,
                                                                  capture=front_end)
    seconds = medians(timers, repeat)
    propagate_shapes(module, inputs)
    nodes = sum(1 for n in module.graph.nodes if n.op.startswith("call"))
    return {"model": name, "front end": front_end, "calls": nodes, "stated": stated_nodes(module), **seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet50", "densenet121"],
                        help="torchvision model names, or timm/<name> (needs timm)")
    parser.add_argument("--size", type=int, default=224, help="input height and width (default 224)")
    parser.add_argument("--capture", nargs="+", default=["fx"], choices=("fx", "export"), help="front ends")
    parser.add_argument("--repeat", type=int, default=5, help="timed rounds (after one warm-up round)")
    parser.add_argument("--against", type=Path, default=None, metavar="PATH",
                        help="another checkout whose fxprune is timed alongside (e.g. main)")
    parser.add_argument("--no-compile", action="store_true", help="time shape propagation only")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    baseline = load_baseline(args.against.resolve()) if args.against is not None else None
    rows = [bench(m, f, baseline, args.repeat, not args.no_compile, args.size) for m in args.models
            for f in args.capture]
    columns = list(rows[0])
    print(" | ".join(columns))
    for row in rows:
        print(" | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.values()))
    for row in rows:
        ratios = [f"shapes fake / rules {row['fake s'] / row['rules s']:.2f}x"]
        if "baseline s" in row:
            ratios.append(f"shapes baseline / rules {row['baseline s'] / row['rules s']:.2f}x")
        if "baseline compile s" in row:
            ratios.append(f"compile baseline / this {row['baseline compile s'] / row['compile s']:.2f}x")
        print(f"{row['model']} ({row['front end']}): " + ", ".join(ratios))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
