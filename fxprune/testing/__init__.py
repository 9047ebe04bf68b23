"""Model builders shared by fxprune's tests and benchmarks (the top layer: nothing in fxprune imports it).

- :mod:`fxprune.testing.zoo`: the torchvision zoo table (example input per model) and ``build``;
- :mod:`fxprune.testing.fuzz_models`: random CNNs as plain data (``NetSpec``) and the module that runs them;
- :mod:`fxprune.testing.fuzz_generate`: drawing random specs (``generate``, and ``strategy`` for hypothesis);
- :mod:`fxprune.testing.fuzz_check`: the property ``check_example`` that ``tests/test_fuzz.py`` and
  ``benchmarks/fuzz.py`` check.

They need the test extras (torchvision; hypothesis for ``fuzz_generate.strategy``), imported
only where used, so importing ``fxprune`` never needs them.
"""

__all__: list[str] = []
