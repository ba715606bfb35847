"""A control, never a default: keeps the System 2 answers that equal the input's label. It uses the labels the
unsupervised filters of System 2 distillation (Yu et al. 2024) must not, to bound what a perfect filter would give."""

from __future__ import annotations

from litforge.plugins.consistency.base import ConsistencyFilter
from litforge.plugins.system2.base import is_correct

from litforge.errors import UserError


class OracleFilter(ConsistencyFilter):
    """CONTROL ONLY (reads labels): keeps the first sample's answer when it equals the input's label.

    Dropped: no parsable answer (`dropped_unparsable`) or a wrong one (`dropped_wrong`). Every input needs a label.
    """

    def select(self, program, sample, inputs):
        missing = [k for k, item in enumerate(inputs) if item.get("label") is None]
        if missing:
            raise UserError(f"OracleFilter needs a label on every input; input {missing[0]} has none")
        counts = dict.fromkeys(["kept", "dropped_unparsable", "dropped_wrong"], 0.0)
        answers: list[str | None] = []
        for item, outputs in zip(inputs, sample(inputs, 1)):
            answer = outputs[0].answer
            reason = "dropped_unparsable" if answer is None else \
                "kept" if is_correct(answer, item) else "dropped_wrong"
            answers.append(answer if reason == "kept" else None)
            counts[reason] += 1
        return answers, counts
