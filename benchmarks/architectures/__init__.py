"""Architecture benchmark: small reference models of public architectures and idioms, pruned and checked.

Run it with ``python benchmarks/architectures/run.py`` (see :mod:`run` for the options).
"""

__all__: list[str] = []
