"""Pruning configuration files: a YAML schedule in the spirit of Intel Distiller.

Example file::

    version: 1
    importance: l1          # l1 | l2 | bn_scale | random | taylor
    ratios:                 # or one float; integer keys are group indices
      "layer4.*": 0.6
      "*": 0.4
    ignore: ["fc"]
    round_to: 8
    exact: false
    global_ranking: false
    target_macs: null       # or a budget, e.g. 0.5 (then leave ratios out)
    schedule: {steps: 3, kind: agp}
    capture: auto           # auto | fx | export (the capture front end)
    check_capture: true     # compare the captured graph with the model once

Also accepted: ``max_ratio`` (cap per layer with global ranking, default 0.9),
``target_params`` (a parameter budget instead of ``target_macs``) and
``calibration_batches`` (how many batches Taylor importance uses). Every key and type
is checked when the file is loaded; a :class:`ConfigError` names the file, the line
and the key, and says what is allowed.

Reading the YAML with the line of every key lives in :mod:`fxprune.config.yaml_entries`, the
check of each key in :mod:`fxprune.config.schema`; this module combines them and runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import fx, nn

from ..drivers.compile import compile as compile_model
from ..drivers.schedule import prune_iteratively
from ..errors import ConfigError, PlanError
from ..passes.taylor import Taylor
from .schema import CHECKS, KEYS, ScheduleSpec
from .yaml_entries import Entry, read_entries

__all__ = ["ConfigError", "PruneConfig", "ScheduleSpec", "load_config", "parse_config"]


@dataclass(frozen=True)
class PruneConfig:
    """A validated configuration; :meth:`run` prunes a model with it.

    ``ratios`` is a float or a read-only mapping (patterns or group indices to ratios).
    ``lines`` maps each key given in the file to its line, for later error messages.
    """

    importance: str = "l1"
    ratios: float | Mapping[Any, float] | None = None
    ignore: tuple[str, ...] = ()
    round_to: int | None = None
    exact: bool = False
    global_ranking: bool = False
    max_ratio: float = 0.9
    target_macs: float | None = None
    target_params: float | None = None
    schedule: ScheduleSpec | None = None
    calibration_batches: int | None = None
    capture: str = "auto"
    check_capture: bool = True
    version: int = 1
    source: str = "<string>"
    lines: Mapping[str, int] = field(default_factory=dict, repr=False, compare=False)

    def run(self, model: nn.Module, example_inputs: Any, *,
            fine_tune: Callable[[fx.GraphModule, int], Any] | None = None, calibration: Iterable[Any] | None = None,
            loss_fn: Callable[[Any, Any], torch.Tensor] | None = None,
            progress: bool = True) -> Any:
        """Prune ``model`` (not modified): one ``fxprune.compile``, or the iterative schedule.

        Args:
            fine_tune: ``fine_tune(module, step)`` after each step (after the single compile: step 1).
            calibration: ``(inputs, target)`` batches for ``importance: taylor`` (re-iterable
                when there is a schedule: every step re-scores).
            loss_fn: loss for Taylor importance (default cross-entropy).

        Returns:
            A :class:`fxprune.CompileResult` without ``schedule``, else a ``ScheduleResult``.

        Raises:
            ConfigError: taylor without calibration data, or patterns that match no module.

        Example:
            >>> result = load_config("prune.yaml").run(model, (x,))
            >>> print(result.summary())
        """
        importance = self._importance(calibration, loss_fn)
        options: dict[str, Any] = {
            "exact": self.exact, "ignore": self.ignore, "round_to": self.round_to, "importance": importance,
            "global_ranking": self.global_ranking, "max_ratio": self.max_ratio, "target_macs": self.target_macs,
            "target_params": self.target_params, "capture": self.capture, "check_capture": self.check_capture}
        ratios = dict(self.ratios) if isinstance(self.ratios, Mapping) else self.ratios
        try:
            if self.schedule is not None:
                return prune_iteratively(model, example_inputs, ratios, steps=self.schedule.steps,
                                         schedule=self.schedule.kind, fine_tune=fine_tune, progress=progress,
                                         **options)
            result = compile_model(model, ratios, example_inputs=example_inputs, **options)
        except PlanError as error:
            raise ConfigError(f"{self.source}: {error} (check {self._where('ratios', 'ignore')})") from error
        replaced = fine_tune(result.module, 1) if fine_tune is not None else None
        return dataclasses.replace(result, module=cast(fx.GraphModule, replaced)) if isinstance(replaced, nn.Module) \
            else result

    def _importance(self, calibration: Iterable[Any] | None, loss_fn: Any) -> Any:
        if self.importance != "taylor":
            return self.importance
        if calibration is None:
            raise ConfigError(f"{self.source}: {self._where('importance')}: 'taylor' needs calibration data: "
                              "pass run(..., calibration=loader) with (inputs, target) batches, or choose l1")
        return Taylor(calibration, loss_fn or F.cross_entropy, batches=self.calibration_batches)

    def _where(self, *keys: str) -> str:
        found = [f"'{k}' at line {self.lines[k]}" for k in keys if k in self.lines]
        return " and ".join(found) or f"keys {', '.join(repr(k) for k in keys)}"


def load_config(path: str | Path) -> PruneConfig:
    """Read and validate a YAML pruning configuration.

    Raises:
        ConfigError: unreadable file, YAML syntax error, unknown key, wrong type or value
            out of range; the message names the key and the line.

    Example:
        >>> config = load_config("prune.yaml")
        >>> result = config.run(model, (torch.randn(1, 3, 224, 224),))
    """
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise ConfigError(f"cannot read pruning config {path}: {error.strerror or error}") from error
    return parse_config(text, str(path))


def parse_config(text: str, source: str = "<string>") -> PruneConfig:
    """Validate configuration text (what :func:`load_config` does after reading the file)."""
    return _build(read_entries(text, source, KEYS), source)


def _build(values: dict[str, Entry], source: str) -> PruneConfig:
    parsed: dict[str, Any] = {}
    for key, entry in values.items():
        parsed[key] = CHECKS[key](entry)
    config = PruneConfig(**parsed, source=source, lines={k: e.line for k, e in values.items()})
    budgets = [k for k in ("target_macs", "target_params") if parsed.get(k) is not None]
    if len(budgets) > 1:
        raise values["target_params"].fail("give one budget, target_macs or target_params, not both")
    if budgets and config.ratios is not None:
        raise values["ratios"].fail(f"ratios and {budgets[0]} exclude each other: a budget searches the ratio; "
                                    "remove one of them")
    if not budgets and config.ratios is None:
        raise ConfigError(f"{source}: key 'ratios' is missing: give 'ratios: 0.5' (or patterns), or a budget "
                          "'target_macs: 0.5'")
    if config.global_ranking and isinstance(config.ratios, Mapping):
        raise values["global_ranking"].fail("global ranking takes one float 'ratios' (the fraction of all "
                                            "channels), not patterns; set it to false or give one float")
    return config
