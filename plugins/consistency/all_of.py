"""Composition of consistency filters: a target survives only when every filter keeps it, with the same answer
(e.g. self-consistency and swap consistency together, as Yu et al. 2024 §4.3 suggest for judges)."""

from __future__ import annotations

from litforge.plugins.consistency.base import ConsistencyFilter

from litforge.errors import require


class AllOf(ConsistencyFilter):
    """Keeps an input's answer when every filter keeps it and all their answers are equal.

    Counts: `kept`, `dropped` (some filter dropped it), `dropped_disagree` (all kept it with different answers), and
    each filter's own counts under "<ClassName>/<count>" (with "#k" after the class name when a class repeats).

    Args:
        filters: the filters, run in order on the same inputs.
    """

    def __init__(self, filters: list[ConsistencyFilter]):
        require(len(filters) > 0, "filters", "needs at least one filter")
        self.filters = list(filters)

    def select(self, program, sample, inputs):
        counts = dict.fromkeys(["kept", "dropped", "dropped_disagree"], 0.0)
        chosen = []
        names = [type(f).__name__ for f in self.filters]
        for k, (name, each) in enumerate(zip(names, self.filters)):
            answers, own = each.select(program, sample, inputs)
            label = name if names.count(name) == 1 else f"{name}#{k}"
            counts.update({f"{label}/{key}": value for key, value in own.items()})
            chosen.append(answers)
        kept: list[str | None] = []
        for answers in zip(*chosen):
            if any(answer is None for answer in answers):
                kept.append(None)
                counts["dropped"] += 1
            elif len(set(answers)) > 1:
                kept.append(None)
                counts["dropped_disagree"] += 1
            else:
                kept.append(answers[0])
                counts["kept"] += 1
        return kept, counts
