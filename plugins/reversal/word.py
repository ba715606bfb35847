"""Word reversal (Golovneva et al. 2024, §2): word order reversed, the letters of each word kept.

Departures from the paper:
    1. A word is a run of non-whitespace (on token ids: of tokens between whitespace tokens, a multi-byte space
       such as U+00A0 included for byte-level tokenizers), so punctuation glued to a word moves with it.
"""

from __future__ import annotations

from litforge.plugins.reversal.base import ReversalTransform


class WordReversal(ReversalTransform):
    """Reverse the order of words; each word reads forward. A multi-word entity has its words reversed."""

    def __init__(self):
        super().__init__(separator=None)

    def chunks(self, words, entity, rng):
        return [(i, i + 1) for i in range(len(words))]
