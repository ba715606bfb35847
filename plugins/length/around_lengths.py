"""A limit around the two responses' lengths, so that both, one or neither of them fits."""

from __future__ import annotations

import math

from litforge.errors import require
from litforge.plugins.length.base import LimitRule


class AroundLengths(LimitRule):
    """A limit drawn uniformly from [low x shorter, high x longer] words, so all three relabelling cases occur.

    Args:
        low: lower end as a fraction of the shorter response's length.
        high: upper end as a multiple of the longer response's length.
    """

    def __init__(self, low: float = 0.5, high: float = 1.5):
        require(low >= 0, "low", f"must be >= 0, got {low}")
        require(high >= low, "high", f"must be >= low={low}, got {high}")
        self.low, self.high = low, high

    def pick(self, chosen_words, rejected_words, rng):
        shorter, longer = sorted((chosen_words, rejected_words))
        lowest = max(1, math.floor(self.low * shorter))
        return rng.randint(lowest, max(lowest, math.ceil(self.high * longer)))
