"""Correct against incorrect: the pair rule of Iterative Reasoning Preference Optimization (Pang et al. 2024, §2)."""

from __future__ import annotations

from itertools import product

from litforge.errors import require
from litforge.plugins.pair_rules.base import PairRule


class CorrectVsIncorrect(PairRule):
    """Every correct candidate against every incorrect one, at most `max_pairs` per prompt, drawn at random.

    Args:
        max_pairs: pairs per prompt (the paper: about 10, unsure).
        threshold: a candidate scoring at least this is correct (AnswerJudge gives 1.0 or 0.0).
    """

    def __init__(self, max_pairs: int = 10, threshold: float = 1.0):
        require(max_pairs >= 1, "max_pairs", f"must be >= 1, got {max_pairs}")
        self.max_pairs, self.threshold = max_pairs, threshold

    def pairs(self, candidates, scores, rng):
        correct = [i for i, s in enumerate(scores) if s >= self.threshold]
        incorrect = [i for i, s in enumerate(scores) if s < self.threshold]
        combos = list(product(correct, incorrect))
        rng.shuffle(combos)
        return combos[:self.max_pairs]
