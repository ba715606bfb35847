"""Reversal transforms for reverse training (Golovneva et al. 2024): token, word, entity-preserving, random segment."""

from litforge.plugins.reversal.base import ReversalTransform, entity_marks, runs
from litforge.plugins.reversal.entity import CapitalizedWords, EntityDetector, EntityPreservingReversal
from litforge.plugins.reversal.segment import RandomSegmentReversal
from litforge.plugins.reversal.token import TokenReversal
from litforge.plugins.reversal.word import WordReversal

__all__ = ["CapitalizedWords", "EntityDetector", "EntityPreservingReversal", "RandomSegmentReversal",
           "ReversalTransform", "TokenReversal", "WordReversal", "entity_marks", "runs"]
