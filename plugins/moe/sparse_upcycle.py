"""Sparse upcycling (Komatsuzaki et al. 2023), the special case of BTX with no branching (BTX paper §2.4): every
expert of the MoE starts as a copy of the one dense FFN, and MoE training must make them differ.

Departures from the paper:
1. Optional Gaussian noise (relative to each weight matrix's std) breaks the symmetry of the copies at the start;
   the original relies on the router alone.
2. The router is initialised N(0, router_std^2) and top-k weights are renormalised (Mixtral's router;
   norm_topk_prob=True for the Qwen MoEs).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from litforge.plugins.moe.base import Upcycler, build_moe, dense_ffn, moe_config
from transformers import PreTrainedModel

from litforge.errors import require


class SparseUpcycle(Upcycler):
    """Copy one dense model's FFN into `num_experts` experts of an MoE of its family; everything else is kept as is.

    Args:
        num_experts: experts per layer.
        num_experts_per_tok: k of the top-k router.
        noise: std of the noise added to each expert copy, as a fraction of the copied matrix's std (0 = exact copies).
        router_std: std of the fresh router weights (None = the config's initializer_range).
        seed: seed of the router and the noise.
    """

    def __init__(self, num_experts: int = 4, num_experts_per_tok: int = 2, noise: float = 0.0,
                 router_std: float | None = None, seed: int = 0):
        require(num_experts >= 1, "num_experts", f"must be >= 1, got {num_experts}")
        require(1 <= num_experts_per_tok <= num_experts, "num_experts_per_tok",
                f"must be between 1 and num_experts={num_experts}, got {num_experts_per_tok}")
        require(noise >= 0, "noise", f"must be >= 0, got {noise}")
        require(router_std is None or router_std > 0, "router_std", f"must be > 0 or null, got {router_std}")
        self.num_experts = num_experts
        self.num_experts_per_tok = num_experts_per_tok
        self.noise = noise
        self.router_std = router_std
        self.seed = seed

    def merge(self, experts: Sequence[PreTrainedModel], seed: PreTrainedModel | None = None) -> PreTrainedModel:
        if seed is None:
            require(len(experts) == 1, "experts", "SparseUpcycle copies one dense model: pass the seed, or exactly "
                                                  f"one model (got {len(experts)})")
            seed = experts[0]
        config = moe_config(seed, self.num_experts, self.num_experts_per_tok)
        generator = torch.Generator().manual_seed(self.seed + 1)

        def copy(weight: torch.Tensor) -> torch.Tensor:
            if self.noise == 0:
                return weight
            return weight + self.noise * weight.std() * torch.randn(weight.shape, generator=generator)

        ffns = [[tuple(copy(weight) for weight in dense_ffn(seed, layer)) for layer in range(config.num_hidden_layers)]
                for _ in range(self.num_experts)]
        shared = {key: value.float() for key, value in seed.state_dict().items() if ".mlp." not in key}
        return build_moe(shared, ffns, config, self.router_std, self.seed)
