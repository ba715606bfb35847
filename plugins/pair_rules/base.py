"""The pair-rule contract: from one prompt's distinct candidates and their scores, the pairs to train on."""

from __future__ import annotations

import random
from typing import Any


class PairRule:
    """Turns one prompt's judged candidates into preference pairs.

    Attributes:
        threshold: the score at which a candidate counts as correct, for rules that have one (None otherwise); the
            iteration statistics report the share of correct candidates with it.
    """

    threshold: float | None = None

    def pairs(self, candidates: list[str], scores: list[float], rng: random.Random) -> list[tuple[int, int]]:
        """(chosen index, rejected index) pairs; candidates are distinct texts, scores are never None."""
        raise NotImplementedError


def build_pairs(prompts: list[str], references: list[str | None], texts: list[list[str]],
                scores: list[list[float | None]], rule: PairRule, seed: int) -> list[dict[str, Any]]:
    """Preference rows `{"prompt", "chosen", "rejected", "chosen_score", "rejected_score"[, "reference"]}` of every
    prompt under `rule`; candidates without a verdict are left out, and a prompt with fewer than two gives none."""
    rng = random.Random(seed)
    rows = []
    for prompt, reference, candidates, judged in zip(prompts, references, texts, scores):
        kept = [(text, score) for text, score in zip(candidates, judged) if score is not None]
        if len(kept) < 2:
            continue
        for chosen, rejected in rule.pairs([t for t, _ in kept], [s for _, s in kept], rng):
            row = {"prompt": prompt, "chosen": kept[chosen][0], "rejected": kept[rejected][0],
                   "chosen_score": kept[chosen][1], "rejected_score": kept[rejected][1]}
            if reference is not None:
                row["reference"] = reference
            rows.append(row)
    return rows
