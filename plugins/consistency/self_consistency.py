"""Self-consistency (Wang et al. 2023) as the target filter of System 2 distillation (Yu et al. 2024, §2): sample the
program several times and keep the majority final answer when enough samples agree.

Departures from the paper:
    1. Yu et al. keep the majority answer (with an optional agreement threshold they leave unspecified); here a tie
       for the majority is always dropped, and the share is taken over all N samples, unparsable ones included, so
       that a program that rarely parses cannot reach `min_share` on one lucky sample.
"""

from __future__ import annotations

from collections import Counter

from litforge.plugins.consistency.base import ConsistencyFilter
from litforge.plugins.system2.base import System2Output

from litforge.errors import require


class SelfConsistency(ConsistencyFilter):
    """The majority answer over `samples` sampled runs; unparsable samples do not vote but count in the share.

    Dropped: no parsable sample (`dropped_unparsable`), a tie for the most votes (`dropped_tie`), or a majority
    share under `min_share` (`dropped_share`).

    Args:
        samples: program runs per input (sampled at the objective's temperature).
        min_share: least fraction of all samples that must give the majority answer.
    """

    def __init__(self, samples: int = 8, min_share: float = 0.5):
        require(samples >= 1, "samples", f"must be >= 1, got {samples}")
        require(0 <= min_share <= 1, "min_share", f"must be in [0, 1], got {min_share}")
        self.samples, self.min_share = samples, min_share

    def vote(self, outputs: list[System2Output]) -> tuple[str | None, str]:
        """The kept answer of one input's samples and why: ("answer", "kept") or (None, "dropped_<reason>")."""
        votes = Counter(output.answer for output in outputs if output.answer is not None).most_common()
        if not votes:
            return None, "dropped_unparsable"
        if len(votes) > 1 and votes[0][1] == votes[1][1]:
            return None, "dropped_tie"
        answer, count = votes[0]
        if count < self.min_share * len(outputs):
            return None, "dropped_share"
        return answer, "kept"

    def select(self, program, sample, inputs):
        counts = dict.fromkeys(["kept", "dropped_unparsable", "dropped_tie", "dropped_share"], 0.0)
        answers = []
        for outputs in sample(inputs, self.samples):
            answer, reason = self.vote(outputs)
            answers.append(answer)
            counts[reason] += 1
        return answers, counts
