"""Entity-preserving reversal (Golovneva et al. 2024, §2): word reversal that keeps each entity's words in order.

Entity spans come with the data (an `entities` list of [start, end) character spans, turned into per-token marks by
the datamodule) or from a pluggable `EntityDetector` when the data has none (the paper used an entity detector).

Departures from the paper:
    1. A word that overlaps an entity moves with the entity as one chunk, so an entity never splits even when its
       span starts or ends inside a word.
    2. The only detector shipped is `CapitalizedWords` (runs of capitalised words), a stand-in for a trained NER model.
"""

from __future__ import annotations

import re

from litforge.plugins.reversal.base import ReversalTransform, Span


class EntityDetector:
    """Finds entity spans in text when the data gives none."""

    def spans(self, text: str) -> list[Span]:
        """[start, end) character spans of the entities of `text`, in order, not overlapping."""
        raise NotImplementedError


class CapitalizedWords(EntityDetector):
    """Each run of consecutive capitalised words is one entity ("Mary Lee Pfeiffer")."""

    PATTERN = re.compile(r"[A-Z][\w'-]*(?:\s+[A-Z][\w'-]*)*")

    def spans(self, text):
        return [match.span() for match in self.PATTERN.finditer(text)]


class EntityPreservingReversal(ReversalTransform):
    """Reverse the order of words, but write each entity's words in their forward order.

    Args:
        detector: finds entities in `reverse_text` calls that pass no spans (None: such text has no entities).
    """

    def __init__(self, detector: EntityDetector | None = None):
        super().__init__(separator=None)
        self.detector = detector

    def chunks(self, words, entity, rng):
        groups: list[list[int]] = []
        previous: set[int] = set()
        for index, (start, end) in enumerate(words):
            marks = {mark for mark in entity[start:end] if mark}
            if groups and marks & previous:  # this word continues the entity of the word before
                groups[-1][1] = index + 1
            else:
                groups.append([index, index + 1])
            previous = marks
        return [(first, last) for first, last in groups]

    def reverse_text(self, text, entities=None, seed=0):
        if entities is None and self.detector is not None:
            entities = self.detector.spans(text)
        return super().reverse_text(text, entities, seed)
