"""Best against worst: the pair rule of Self-Rewarding Language Models (Yuan et al. 2024, §2.3)."""

from __future__ import annotations

from litforge.errors import require
from litforge.plugins.pair_rules.base import PairRule


class BestVsWorst(PairRule):
    """The highest-scored candidate against the lowest; ties (max - min <= min_gap) give no pair.

    Args:
        min_gap: the best must beat the worst by more than this.
    """

    def __init__(self, min_gap: float = 0.0):
        require(min_gap >= 0, "min_gap", f"must be >= 0, got {min_gap}")
        self.min_gap = min_gap

    def pairs(self, candidates, scores, rng):
        best = max(range(len(scores)), key=lambda i: scores[i])
        worst = min(range(len(scores)), key=lambda i: scores[i])
        return [(best, worst)] if scores[best] - scores[worst] > self.min_gap else []
