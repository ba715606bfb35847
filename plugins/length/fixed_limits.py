"""A limit from a fixed list, whatever the responses' lengths (as benchmark prompts carry)."""

from __future__ import annotations

from litforge.errors import require
from litforge.plugins.length.base import LimitRule


class FixedLimits(LimitRule):
    """A limit drawn from a fixed list, whatever the responses' lengths.

    Args:
        limits: the word limits to choose from.
    """

    def __init__(self, limits: list[int] = [50, 100, 200]):
        require(bool(limits), "limits", "needs at least one limit")
        for limit in limits:
            require(isinstance(limit, int) and not isinstance(limit, bool) and limit >= 1, "limits",
                    f"each must be a positive integer, got {limit!r}")
        self.limits = list(limits)

    def pick(self, chosen_words, rejected_words, rng):
        return rng.choice(self.limits)
