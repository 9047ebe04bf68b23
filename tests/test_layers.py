"""The package's imports run one way, bottom to top (docs/design.md, "Layers").

Every module under ``fxprune/`` is parsed (nothing is imported), and every import in
it is resolved, relative or absolute, at module level, inside functions and under
``TYPE_CHECKING`` alike. A module may import its own layer or a lower one; an import
from a lower layer into a higher one fails, and so does a cycle between the packages
and top-level modules (an import both ways, even within a layer). The failure lists
each offending import as ``file:line imports module``.
"""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "fxprune"

# Bottom to top. A unit is a sub-package or a top-level module of fxprune.
LAYERS: dict[str, int] = {
    "errors": 0, "version": 0, "progress": 0,
    "ir": 1,
    "rules": 2,
    "passes": 3,
    "pipeline": 4,
    # ONNX export and ONNX Runtime measurement: what a latency budget is measured with.
    "export": 5,
    "drivers": 6,
    # The front, and the library-level helpers that only the front may use.
    "__init__": 7, "__main__": 7, "cli": 7, "config": 7, "serialize": 7,
    "models": 7, "data": 7, "train": 7, "distributed": 7,
    # Model builders shared by tests and benchmarks: nothing in the package imports them.
    "testing": 8,
}
LAYER_NAMES = ["base (errors, version)", "ir", "rules", "passes", "pipeline", "export", "drivers", "front", "testing"]


def _module_name(path: Path) -> str:
    parts = ("fxprune",) + path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _is_package(name: str) -> bool:
    return MODULES.get(name, Path()).name == "__init__.py"


def _resolve(importer: str, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` reads from."""
    if not node.level:
        return node.module or ""
    base = importer.split(".") if _is_package(importer) else importer.split(".")[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(name: str) -> list[tuple[int, str]]:
    """(line, module) of every fxprune module ``name`` imports, wherever the import stands."""
    found = []
    for node in ast.walk(ast.parse(MODULES[name].read_text(), str(MODULES[name]))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(name, node)
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                found.append((node.lineno, submodule if submodule in MODULES else source))
    return [(line, module) for line, module in found if module == "fxprune" or module.startswith("fxprune.")]


def unit(module: str) -> str:
    """The sub-package or top-level module of fxprune that ``module`` belongs to."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _where(importer: str, line: int, imported: str) -> str:
    return f"{MODULES[importer].relative_to(PACKAGE.parent)}:{line} imports {imported}"


def test_every_unit_has_a_layer() -> None:
    missing = sorted({unit(m) for m in MODULES} - set(LAYERS))
    assert not missing, f"give these parts of fxprune a layer in tests/test_layers.py: {missing}"


def test_imports_run_only_downward() -> None:
    upward = []
    for importer in MODULES:
        for line, imported in imports(importer):
            low, high = LAYERS[unit(importer)], LAYERS[unit(imported)]
            if high > low:
                upward.append(f"{_where(importer, line, imported)}  ({LAYER_NAMES[low]} -> {LAYER_NAMES[high]})")
    assert not upward, "imports from a lower layer into a higher one:\n  " + "\n  ".join(upward)


def test_no_cycle_between_packages_and_modules() -> None:
    edges: dict[tuple[str, str], str] = {}
    for importer in MODULES:
        for line, imported in imports(importer):
            pair = (unit(importer), unit(imported))
            if pair[0] != pair[1]:
                edges.setdefault(pair, _where(importer, line, imported))
    graph: dict[str, set[str]] = {}
    for source, target in edges:
        graph.setdefault(source, set()).add(target)
    cycle = _find_cycle(graph)
    assert cycle is None, "import cycle between parts of fxprune:\n  " + "\n  ".join(
        edges[(a, b)] for a, b in itertools.pairwise(cycle))


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A path a -> ... -> a in ``graph``, or None (depth-first search)."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state and (found := visit(target)):
                return found
        path.pop()
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


@pytest.mark.parametrize("source, expected", [
    ("from ..passes import groups\n", "fxprune.passes.groups"),
    ("from ..pipeline import analyze\n", "fxprune.pipeline"),
    ("def f():\n    from fxprune.drivers.compile import compile\n", "fxprune.drivers.compile"),
    ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .. import serialize\n", "fxprune.serialize"),
])
def test_the_walk_sees_every_kind_of_import(source: str, expected: str, monkeypatch, tmp_path) -> None:
    """The checker itself: an import written at module level, in a function or under TYPE_CHECKING is found."""
    probe = tmp_path / "probe.py"
    probe.write_text(source)
    monkeypatch.setitem(MODULES, "fxprune.ir.probe", probe)
    assert expected in [module for _, module in imports("fxprune.ir.probe")]
