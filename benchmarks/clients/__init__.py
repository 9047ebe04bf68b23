"""Client-library models (``models``) and their measurement (``measure``) for ``benchmarks/clients.py``.

A regular package, so that ``benchmarks.clients.models`` resolves to this folder and not to the
``benchmarks/clients.py`` script beside it.
"""

__all__: list[str] = []
