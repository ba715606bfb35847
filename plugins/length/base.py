"""The limit-rule contract of LIFT's augmentation: which word limit an augmented preference pair gets."""

from __future__ import annotations

import random


class LimitRule:
    """Picks the word limit of one augmented pair from the two responses' word counts."""

    def pick(self, chosen_words: int, rejected_words: int, rng: random.Random) -> int:
        """A positive word limit."""
        raise NotImplementedError
