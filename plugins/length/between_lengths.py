"""A limit between the two responses' lengths, so exactly one of them fits (the default of LIFT's augmentation)."""

from __future__ import annotations

from litforge.plugins.length.base import LimitRule


class BetweenLengths(LimitRule):
    """A limit drawn uniformly from [shorter, longer - 1] words: the shorter response fits, the longer does not.

    Equal lengths give that length (both fit; the original preference stands).
    """

    def pick(self, chosen_words, rejected_words, rng):
        shorter, longer = sorted((chosen_words, rejected_words))
        return max(1, rng.randint(shorter, max(shorter, longer - 1)))
