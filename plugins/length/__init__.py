"""Limit rules: the word limit each LIFT-augmented pair gets. YAML names them by class_path."""

from litforge.plugins.length.around_lengths import AroundLengths
from litforge.plugins.length.base import LimitRule
from litforge.plugins.length.between_lengths import BetweenLengths
from litforge.plugins.length.fixed_limits import FixedLimits

__all__ = ["AroundLengths", "BetweenLengths", "FixedLimits", "LimitRule"]
