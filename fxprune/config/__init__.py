"""YAML pruning configurations: read with the line of every key, checked key by key, then run.

Example:
    >>> result = fxprune.load_config("prune.yaml").run(model, (x,))
"""

from ..errors import ConfigError
from .prune_config import PruneConfig, load_config, parse_config
from .schema import ScheduleSpec

__all__ = ["ConfigError", "PruneConfig", "ScheduleSpec", "load_config", "parse_config"]
