"""Progress on long work: a tqdm bar on a terminal, a few plain lines otherwise, nothing when disabled.

A build log (CI, ``| tee``, a file) is not a terminal: tqdm's carriage returns would fill it
with one very long line, so there a line is printed at every tenth of the work (at most one
every ``min_interval`` seconds, and the final count at the end), with the latest detail
(``set_postfix``) appended; work done within a second prints one line. Every long loop of the package (fine-tuning,
evaluation, indexing a dataset, sensitivity, schedules, ONNX Runtime measurement) and the
benchmark scripts use :func:`progress`, so they all behave the same.

Example:
    >>> for batch in progress(loader, "evaluate", unit="batch"):
    ...     ...
    >>> with progress(total=120, desc="layer latency") as bar:
    ...     for _ in range(120):
    ...         bar.update()
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Any

from tqdm import tqdm

__all__ = ["LineProgress", "progress"]


class LineProgress:
    """Prints ``fxprune: desc: done/total unit [detail]`` to stderr each time another tenth is done.

    Takes the calls of a tqdm bar that the package makes (iteration, ``update``, ``set_postfix``,
    ``set_postfix_str``, ``write``, ``close``, ``with``), so callers need not know which they hold.
    Without a known total (an iterable without ``len``) a line is printed every 10 items at first,
    then at every power of ten. Lines closer than ``min_interval`` seconds are skipped; ``close``
    prints the final count if the last line did not show it.
    """

    def __init__(self, iterable: Iterable[Any] | None, total: int | None, desc: str, unit: str,
                 min_interval: float = 1.0) -> None:
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.done, self.marked, self.shown, self.detail, self.closed = 0, 0, 0, "", False
        self.min_interval, self.last = min_interval, time.monotonic()

    def __iter__(self) -> Iterator[Any]:
        if self.iterable is None:
            raise TypeError("this progress was made without an iterable")
        for item in self.iterable:
            yield item
            self.update()
        self.close()

    def _due(self) -> bool:
        if self.total:
            return self.done * 10 // self.total > self.marked * 10 // self.total
        step = 10 ** max(1, len(str(max(1, self.done))) - 1)  # 10, 20, ..., 100, 200, ...
        return self.done // step > self.marked // step

    def _print(self) -> None:
        count = f"{self.done}/{self.total}" if self.total else f"{self.done}"
        detail = f" [{self.detail}]" if self.detail else ""
        print(f"fxprune: {self.desc}: {count} {self.unit}{detail}".rstrip(), file=sys.stderr, flush=True)
        self.shown, self.last = self.done, time.monotonic()

    def update(self, count: int = 1) -> None:
        self.done += count
        if self._due():
            self.marked = self.done  # a line too soon after the last is skipped, not deferred
            if time.monotonic() - self.last >= self.min_interval:
                self._print()

    def set_postfix(self, ordered_dict: dict[str, Any] | None = None, refresh: bool = True, **details: Any) -> None:
        """Keeps ``key=value`` details for the next printed line."""
        self.detail = ", ".join(f"{k}={v}" for k, v in {**(ordered_dict or {}), **details}.items())

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        self.detail = text

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""

    @staticmethod
    def write(text: str, file: Any = None) -> None:
        print(text, file=file or sys.stderr, flush=True)

    def close(self) -> None:
        """Prints the final count once if the last tenth's line did not."""
        if not self.closed and self.done != self.shown:
            self._print()
        self.closed = True

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()


def progress(iterable: Iterable[Any] | None = None, desc: str = "", *, total: int | None = None, unit: str = "it",
             enabled: bool = True, leave: bool = True, min_interval: float = 1.0) -> Any:
    """A tqdm bar on stderr when it is a terminal, else a :class:`LineProgress`; a disabled tqdm when not ``enabled``.

    Iterate it (``progress(loader, "evaluate")``) or drive it (``progress(total=n, desc=...)`` with
    ``update()``); both kinds take the same calls. ``min_interval`` spaces the plain lines.
    """
    if enabled and not sys.stderr.isatty():
        return LineProgress(iterable, total, desc, unit, min_interval)
    return tqdm(iterable, desc=desc, total=total, unit=unit, file=sys.stderr, leave=leave, disable=not enabled)
