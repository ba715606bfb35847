"""Branch-Train-MiX merge (Sukhbaatar et al. 2024, "Branch-Train-MiX: Mixing Expert LLMs into a Mixture-of-Experts
LLM", §2.2): each layer's FFN from each domain expert becomes one expert of an MoE layer; the rest is averaged;
the router is new. The MoE is the standard transformers one of the branches' family (Mixtral for Llama, Mistral
and Phi-3; Qwen2-MoE and Qwen3-MoE for Qwen2 and Qwen3: `litforge.plugins.moe.base`).

FF_MoE(x) = sum_i g_i(x) FF_i(x), g = top-k(softmax(W_r x)) renormalised over the k chosen experts.

Departures from the paper:
1. The top-k gate weights are renormalised to sum to 1 (Mixtral's router; norm_topk_prob=True for the Qwen MoEs);
   with identical experts this makes the MoE equal to the dense model exactly.
2. With `include_seed`, the seed's FFN is appended as the last expert, but attention, embeddings and norms are
   still averaged over the domain branches only (the paper's "BTX with the seed as an expert" leaves this unsaid).
3. The router W_r is initialised N(0, router_std^2) (the paper says only "newly initialised").
"""

from __future__ import annotations

from collections.abc import Sequence

from litforge.plugins.moe.base import (
    Upcycler,
    average_state,
    build_moe,
    check_compatible,
    dense_ffn,
    moe_config,
)
from transformers import PreTrainedModel

from litforge.errors import require


class BTXMerge(Upcycler):
    """Mix N domain experts into one MoE of their family: FFNs become experts, everything else is averaged.

    Args:
        num_experts_per_tok: k of the top-k router (2 in the paper).
        include_seed: add the seed's FFN as one more expert (needs the seed model).
        router_std: std of the fresh router weights (None = the config's initializer_range).
        seed: seed of the router initialisation.
    """

    def __init__(self, num_experts_per_tok: int = 2, include_seed: bool = False, router_std: float | None = None,
                 seed: int = 0):
        require(num_experts_per_tok >= 1, "num_experts_per_tok", f"must be >= 1, got {num_experts_per_tok}")
        require(router_std is None or router_std > 0, "router_std", f"must be > 0 or null, got {router_std}")
        self.num_experts_per_tok = num_experts_per_tok
        self.include_seed = include_seed
        self.router_std = router_std
        self.seed = seed

    def merge(self, experts: Sequence[PreTrainedModel], seed: PreTrainedModel | None = None) -> PreTrainedModel:
        require(not self.include_seed or seed is not None, "seed", "BTXMerge(include_seed=True) needs the seed model")
        sources = list(experts) + ([seed] if self.include_seed else [])
        check_compatible(sources, [f"expert {index}" for index in range(len(experts))] + ["seed"] * self.include_seed)
        config = moe_config(sources[0], len(sources), self.num_experts_per_tok)
        shared = average_state(experts, skip=".mlp.")  # attention, embeddings, norms, head: mean over branches
        ffns = [[dense_ffn(model, layer) for layer in range(config.num_hidden_layers)] for model in sources]
        return build_moe(shared, ffns, config, self.router_std, self.seed)
