"""Drivers: compile, schedules, sensitivity and bias compensation, all through the pipeline."""

from .compensate import compensate_bias
from .compile import compile, verify
from .schedule import ScheduleResult, ScheduleStep, prune_iteratively, schedule_ratios
from .sensitivity import SensitivityReport, SensitivityRow, sensitivity

__all__ = ["compensate_bias", "compile", "verify", "ScheduleResult", "ScheduleStep", "prune_iteratively",
           "schedule_ratios", "SensitivityReport", "SensitivityRow", "sensitivity"]
