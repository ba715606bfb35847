"""Router statistics of a transformers MoE (Mixtral, Qwen2-MoE, Qwen3-MoE): which experts the top-k router picks,
and freezing the experts."""

from __future__ import annotations

import torch
from torch import nn


def routing_fractions(router_logits: torch.Tensor | tuple[torch.Tensor, ...], top_k: int,
                      mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per layer, how many of the top-k routing slots each expert received, and how many tokens were counted.

    Args:
        router_logits: (layers, tokens, N), or the model's tuple of per-layer (tokens, N).
        top_k: experts per token.
        mask: (tokens,) 1 for real tokens; None counts all.

    Returns:
        slot counts (layers, N) and the token count (a scalar); counts / (tokens * top_k) are the fractions.
    """
    if isinstance(router_logits, (tuple, list)):
        router_logits = torch.stack(list(router_logits))
    chosen = torch.topk(router_logits.detach(), top_k, dim=-1).indices  # (layers, tokens, k)
    slots = nn.functional.one_hot(chosen, router_logits.size(-1)).sum(-2).float()  # (layers, tokens, N)
    if mask is not None:
        slots = slots * mask.float().view(1, -1, 1)
        return slots.sum(1), mask.float().sum()
    return slots.sum(1), torch.tensor(float(slots.size(1)), device=slots.device)


def freeze_experts(model: nn.Module) -> int:
    """Stop gradients into the expert FFNs (train only the router and the averaged parts); returns how many tensors."""
    frozen = 0
    for name, parameter in model.named_parameters():
        if ".experts." in name:  # mlp.experts.gate_up_proj, mlp.experts.down_proj
            parameter.requires_grad_(False)
            frozen += 1
    return frozen
