"""Analysis and transformation passes, one concept per module."""

from .groups import ChannelGroup, Groups, Member, find_groups
from .importance import IMPORTANCE, Importance, l1, l2, score_groups
from .plan import Plan, PlanEntry, keep_mask, make_plan
from .rewrite import check_shapes, rewrite
from .shapes import propagate_shapes

__all__ = ["ChannelGroup", "Groups", "Member", "find_groups", "IMPORTANCE", "Importance", "l1", "l2",
           "score_groups", "Plan", "PlanEntry", "make_plan", "check_shapes", "keep_mask", "rewrite",
           "propagate_shapes"]
