"""fxprune: a structured pruning compiler for PyTorch CNNs, 2D and 3D, built on torch.fx.

Example:
    >>> import torch, torchvision, fxprune
    >>> model = torchvision.models.video.r2plus1d_18().eval()
    >>> result = fxprune.compile(model, 0.5, example_inputs=(torch.randn(1, 3, 16, 112, 112),))
    >>> print(result.summary())
"""

from . import models
from .config import PruneConfig, load_config, parse_config
from .drivers.compensate import compensate_bias
from .drivers.compile import compile, verify
from .drivers.schedule import ScheduleResult, prune_iteratively
from .drivers.sensitivity import SensitivityReport, sensitivity
from .drivers.submodules import SubmoduleResult
from .errors import ConfigError, FxPruneError, InputError, PlanError, RewriteError, TraceError
from .passes import ChannelGroup, Groups, Member, Plan, PlanEntry, find_groups, propagate_shapes
from .passes.capture import Capture, capture, trace
from .passes.figures import Figures
from .passes.taylor import Taylor
from .pipeline import Analysis, CompileResult, analyze, apply_plan
from .serialize import load, read_metadata, save
from .version import __version__

__all__ = ["compile", "verify", "CompileResult", "Analysis", "analyze", "apply_plan", "Taylor", "trace", "capture",
           "Capture", "find_groups", "propagate_shapes", "ChannelGroup", "Groups", "Member", "Plan", "PlanEntry",
           "Figures", "FxPruneError", "InputError", "PlanError", "RewriteError", "TraceError", "save", "load",
           "read_metadata", "sensitivity", "SensitivityReport", "SubmoduleResult", "prune_iteratively",
           "ScheduleResult", "compensate_bias", "load_config", "parse_config", "PruneConfig", "ConfigError", "models", "__version__"]
