"""Mutation checks: a broken compiler makes the default tests fail.

Each case runs a few of the default tests in a subprocess with ``--fxprune-mutate``
(tests/conftest.py), which breaks fxprune for that run, and asserts they fail, and fail
for the reason the mutation gives (not an unrelated error):

* ``compile-raises``: ``compile`` raises a typed error for every model. Every fuzz
  example then "keeps the promise" with a typed error; the share of compiled examples
  fails tests/test_fuzz.py, and the zoo tests fail on the error itself.
* ``conv-freezes``: the convolution rule freezes every channel it touches. The zoo
  model then compiles to itself, "nothing prunable"; the conformance pins fail
  tests/test_zoo.py.

The zoo test runs on resnet18 only (default mode); the fuzz test runs whole (quick, compile raising at
once). The fuzz test's share of pruned examples also fails under ``conv-freezes``
(``python -m pytest tests/test_fuzz.py --fxprune-mutate=conv-freezes``), left out here
for time: it compiles every example.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

#: mutation -> (the tests it must fail, patterns of the failure messages that must appear)
CASES: dict[str, tuple[list[str], list[str]]] = {
    "compile-raises": (
        ["tests/test_fuzz.py::test_compile_keeps_its_promise", "tests/test_zoo.py::test_default[resnet18]"],
        [r"only 0 of \d+ examples compiled", r"PlanError: mutation compile-raises"]),
    "conv-freezes": (["tests/test_zoo.py::test_default[resnet18]"], [r"resnet18: 0 prunable groups"]),
}


@pytest.mark.parametrize("mutation", sorted(CASES))
def test_a_broken_compiler_fails_the_default_tests(mutation: str) -> None:
    tests, messages = CASES[mutation]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *tests, "-q", "-p", "no:cacheprovider", f"--fxprune-mutate={mutation}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == pytest.ExitCode.TESTS_FAILED, f"{mutation}: exit code {done.returncode}\n{output}"
    assert f"{len(tests)} failed" in output, f"{mutation}: not every chosen test failed\n{output}"
    for message in messages:
        assert re.search(message, output), f"{mutation}: no failure matching {message!r}\n{output}"
