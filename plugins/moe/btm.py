"""Branch-Train-Merge (Li et al. 2022), the BTX paper's dense baseline (§2.4, §4): the branches' parameters are
averaged into one dense model of the seed's architecture; no MoE, no router, no further training.

Departures from the paper:
1. Only the parameter average is offered (BTM's output ensemble is left out: it costs N forward passes).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

from litforge.plugins.moe.base import Upcycler, average_state, check_compatible
from transformers import PreTrainedModel

from litforge.errors import require


class BranchTrainMerge(Upcycler):
    """Average the branches' parameters into one dense model.

    Args:
        weights: one weight per branch (normalised to sum to 1); None = uniform.
    """

    def __init__(self, weights: list[float] | None = None):
        require(weights is None or (all(w >= 0 for w in weights) and sum(weights) > 0), "weights",
                f"must be >= 0 with a positive sum, got {weights}")
        self.weights = weights

    def merge(self, experts: Sequence[PreTrainedModel], seed: PreTrainedModel | None = None) -> PreTrainedModel:
        check_compatible(experts, [f"expert {index}" for index in range(len(experts))])
        require(self.weights is None or len(self.weights) == len(experts), "weights",
                f"{len(self.weights or [])} weights for {len(experts)} experts")
        merged = copy.deepcopy(experts[0]).float()
        merged.load_state_dict(average_state(experts, self.weights))
        return merged.eval()
