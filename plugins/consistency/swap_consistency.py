"""Input perturbation as the target filter of System 2 distillation (Yu et al. 2024, §4.3): run the program on an
input and on its perturbation (for a pairwise judge, the two responses swapped) and keep the answer only when both
agree after mapping the perturbed answer back — the filter that made distilled BSM beat BSM itself.

Departures from the paper:
    1. One run per side (at the objective's temperature); combine with SelfConsistency through AllOf for more.
"""

from __future__ import annotations

from litforge.plugins.consistency.base import ConsistencyFilter
from litforge.plugins.system2.base import System2Program

from litforge.errors import ConfigError


class SwapConsistency(ConsistencyFilter):
    """Keeps an answer that the program gives both on the input and, mapped back, on `program.perturb(input)`.

    Dropped: either side unparsable (`dropped_unparsable`), the sides disagree (`dropped_inconsistent`), or the
    program has no perturbation of this input (`dropped_no_perturbation`). A program that defines no `perturb` at
    all is refused with a ConfigError.
    """

    def select(self, program, sample, inputs):
        if type(program).perturb is System2Program.perturb:
            raise ConfigError("filter", f"SwapConsistency needs a program with a perturbation (e.g. BranchSolveMerge); "
                                        f"{type(program).__name__} has none")
        perturbed = [program.perturb(item) for item in inputs]
        swapped = [pair[0] for pair in perturbed if pair is not None]
        # both sides in one call, so every generation step is batched over all of them
        outputs = sample(list(inputs) + swapped, 1)
        original, swapped_outputs = outputs[:len(inputs)], iter(outputs[len(inputs):])
        counts = dict.fromkeys(["kept", "dropped_unparsable", "dropped_inconsistent", "dropped_no_perturbation"], 0.0)
        answers: list[str | None] = []
        for first, pair in zip(original, perturbed):
            if pair is None:
                answers.append(None)
                counts["dropped_no_perturbation"] += 1
                continue
            answer, other = first[0].answer, next(swapped_outputs)[0].answer
            if answer is None or other is None:
                reason = "dropped_unparsable"
            else:
                reason = "kept" if pair[1](other) == answer else "dropped_inconsistent"
            answers.append(answer if reason == "kept" else None)
            counts[reason] += 1
        return answers, counts
