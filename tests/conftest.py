"""Suite-wide options: mutations that break the compiler on purpose (see tests/test_mutations.py).

``--fxprune-mutate=NAME`` patches fxprune for the whole run before any test starts, so that
``tests/test_mutations.py`` can show, in a subprocess, that the default tests fail on a
broken compiler.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import pytest
from torch import nn

import fxprune
from fxprune.errors import PlanError
from fxprune.rules import RULES, Rule, module_rule


def _compile_raises() -> None:
    """``compile`` raises a typed error for every model (a compiler that never compiles)."""

    def compile(*args: Any, **kwargs: Any) -> Any:
        raise PlanError("mutation compile-raises: compile refuses every model")

    fxprune.compile = compile
    importlib.import_module("fxprune.drivers.compile").compile = compile


def _conv_freezes_everything() -> None:
    """The convolution rule freezes every channel it touches (a rule that starts freezing)."""
    original = module_rule(nn.Conv2d(1, 1, 1))

    def propagate(ctx: Any) -> Any:
        out = original.propagate(ctx)
        ctx.freeze_inputs("mutation conv-freezes")
        ctx.freeze(out, "mutation conv-freezes")
        return out

    frozen = Rule(propagate, original.rewrite_args, original.resize)
    for module_type, rule in list(RULES.modules.items()):
        if rule is original:
            RULES.modules[module_type] = frozen


MUTATIONS: dict[str, Callable[[], None]] = {
    "compile-raises": _compile_raises,
    "conv-freezes": _conv_freezes_everything,
}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--fxprune-mutate", choices=sorted(MUTATIONS), default=None,
                     help="break fxprune on purpose for this run (tests/test_mutations.py)")


def pytest_configure(config: pytest.Config) -> None:
    name = config.getoption("--fxprune-mutate")
    if name is not None:
        MUTATIONS[name]()
