"""Property test over random CNNs (tests/fuzz_models.py): compile keeps its promise.

For any model, ratio in [0, 0.9] and ``round_to`` in {None, 2, 4}, ``compile`` either
returns a module that passes the oracle (exact mode) with the model's output shapes,
or raises a typed ``fxprune.FxPruneError``; default mode runs with the same output
shapes. Anything else (an untyped exception, a wrong model) fails.

``benchmarks/fuzz.py`` runs the same property over many more examples without
hypothesis; every failure either finds is minimised into tests/test_regressions.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

try:
    from fuzz_models import NetSpec, check_example, strategy
except ImportError:  # tests/ imported as a package
    from tests.fuzz_models import NetSpec, check_example, strategy


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Tiny convolutions are dominated by thread hand-offs: one thread is several times faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(spec=strategy(), ratio=st.floats(0.0, 0.9), round_to=st.sampled_from([None, 2, 4]))
def test_compile_keeps_its_promise(spec: NetSpec, ratio: float, round_to: int | None) -> None:
    check_example(spec, ratio, round_to)
