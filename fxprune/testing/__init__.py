"""Model builders shared by fxprune's tests and benchmarks (the top layer: nothing in fxprune imports it).

- :mod:`fxprune.testing.zoo`: the torchvision zoo table (example input per model) and ``build``;
- :mod:`fxprune.testing.fuzz_models`: random CNNs from a small DSL and the property
  ``check_example`` that ``tests/test_fuzz.py`` and ``benchmarks/fuzz.py`` check.

They need the test extras (torchvision; hypothesis for ``fuzz_models.strategy``), imported
only where used, so importing ``fxprune`` never needs them.
"""

__all__: list[str] = []
