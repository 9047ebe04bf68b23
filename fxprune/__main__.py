"""``python -m fxprune``: the same command as the ``fxprune`` console script."""

import sys

from .cli import main

__all__: list[str] = []

if __name__ == "__main__":
    sys.exit(main())
