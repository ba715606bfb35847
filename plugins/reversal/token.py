"""Token reversal (Golovneva et al. 2024, §2): the whole token sequence read backwards.

Departures from the paper:
    1. Special tokens (bos, eos, pad) stay in place; only the text between them is reversed.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from litforge.plugins.reversal.base import ReversalTransform


class TokenReversal(ReversalTransform):
    """Reverse every token (on text: every character), so multi-token entities are reversed too."""

    def __init__(self):
        super().__init__(separator=None)

    def order(self, space: Sequence[bool], entity: Sequence[int] | None = None,
              rng: random.Random | None = None) -> list[int | None]:
        return list(reversed(range(len(space))))

    def chunks(self, words, entity, rng):
        return [(i, i + 1) for i in range(len(words))]
