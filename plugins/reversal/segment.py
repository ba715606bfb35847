"""Random-segment reversal (Golovneva et al. 2024, §2): cut into segments of 1..k words, reverse the segment order.

Each segment keeps its words in forward order, so any entity of at most k words survives whole with some
probability, without knowing where the entities are.

Departures from the paper:
    1. Segments are counted in words (the paper's unit is unsure); on litforge's byte tokenizer a token is a byte.
    2. The randomness comes from the caller's seeded `random.Random` (the reverse LM seeds it from its seed and the
       global step), so a run and its resumption draw the same segments.
"""

from __future__ import annotations

from litforge.plugins.reversal.base import ReversalTransform

from litforge.errors import require


class RandomSegmentReversal(ReversalTransform):
    """Reverse the order of random segments whose lengths are drawn uniformly from [1, k] words.

    Args:
        k: the longest segment, in words (set it at least as long as the entities).
        separator: text written between segments (e.g. "@@ "), or None.
    """

    def __init__(self, k: int = 3, separator: str | None = None):
        require(k >= 1, "k", f"must be >= 1, got {k}")
        super().__init__(separator=separator)
        self.k = k

    def chunks(self, words, entity, rng):
        groups, first = [], 0
        while first < len(words):
            last = min(len(words), first + rng.randint(1, self.k))
            groups.append((first, last))
            first = last
        return groups
