"""No consistency filter: the "distilled without filter" arm of System 2 distillation (Yu et al. 2024, §5)."""

from __future__ import annotations

from litforge.plugins.consistency.base import ConsistencyFilter


class NoFilter(ConsistencyFilter):
    """Keeps the first sample's answer whenever it parses (`kept`, else `dropped_unparsable`)."""

    def select(self, program, sample, inputs):
        answers = [outputs[0].answer for outputs in sample(inputs, 1)]
        kept = sum(answer is not None for answer in answers)
        return answers, {"kept": float(kept), "dropped_unparsable": float(len(answers) - kept)}
