"""The consistency-filter contract: which System 2 answers become distillation targets, chosen without labels
(Yu et al. 2024, "Distilling System 2 into System 1", §2: self-consistency and input perturbation)."""

from __future__ import annotations

from collections.abc import Callable

from litforge.plugins.system2.base import System2Output, System2Program

Sampler = Callable[[list[dict], int], list[list[System2Output]]]  # sample(inputs, n) -> outputs[i][j]


class ConsistencyFilter:
    """Keeps one target answer per input, or drops the input (None), and counts why."""

    def select(self, program: System2Program, sample: Sampler, inputs: list[dict]
               ) -> tuple[list[str | None], dict[str, float]]:
        """The kept target answer per input (None = dropped) and counts (kept, dropped_unparsable, dropped_tie, ...).

        `sample(inputs, n)` runs the program (the objective binds model/tokenizer/settings) -> list[list[System2Output]].
        """
        raise NotImplementedError
