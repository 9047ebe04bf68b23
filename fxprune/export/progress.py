"""Progress while measuring: a tqdm bar on a terminal, a few plain lines otherwise, nothing when quiet.

A build log (CI, ``| tee``) is not a terminal: tqdm's carriage returns would fill it
with one very long line, so there a line is printed at every tenth of the work.

Example:
    >>> with progress_bar(120, "layer latency", enabled=True) as bar:
    ...     for _ in range(120):
    ...         bar.update()
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any

from tqdm import tqdm

__all__ = ["progress_bar"]


class _Lines:
    """Prints ``desc: done/total`` to stderr each time another tenth of ``total`` is done."""

    def __init__(self, total: int, desc: str) -> None:
        self.total, self.desc, self.done, self.printed = total, desc, 0, -1

    def update(self, count: int = 1) -> None:
        self.done += count
        tenth = self.done * 10 // max(1, self.total)
        if tenth > self.printed:
            self.printed = tenth
            print(f"fxprune: {self.desc}: {self.done}/{self.total}", file=sys.stderr, flush=True)

    def set_postfix_str(self, text: str) -> None:
        """Unused detail on a plain log; kept so that both kinds of bar take the same calls."""

    def close(self) -> None:
        """Nothing to tidy up."""

    def __enter__(self) -> _Lines:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()


def progress_bar(total: int, desc: str, enabled: bool) -> Any:
    """A tqdm bar on stderr if it is a terminal, else a :class:`_Lines` printer; disabled when not ``enabled``."""
    if enabled and not sys.stderr.isatty():
        return _Lines(total, desc)
    return tqdm(total=total, desc=desc, file=sys.stderr, leave=False, disable=not enabled)
