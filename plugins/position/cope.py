"""CoPE — Contextual Position Encoding (Golovneva et al. 2024, "Contextual Position Encoding: Learning to Count
What's Important"), after the public reference facebookresearch/RAM `projects/cope/src/cope/context_position.py`.

For query i and key j <= i, per head (d = head_dim):
    g_ij = sigmoid(q_i . k_j / sqrt(d))                      gate (or q_i . (k_j G) / sqrt(d) with a gate key)
    p_ij = min(sum_{t=j..i} g_it, npos_max - 1)              contextual position: reverse cumulative sum of gates
    z_i[n] = q_i . E[:, n]                                    one logit per integer position; E: (d, npos_max)
    e_ij = z_i[floor p_ij] (1 - w) + z_i[ceil p_ij] w,  w = p_ij - floor p_ij
    a_ij = softmax_j(q_i . k_j / sqrt(d) + e_ij + mask_ij)

Departures from the paper / reference:
1. The optional separate gate key is a learned (d x d) map G of the cached key, `k_j G`, not a new projection of
   the hidden state (the attention function only sees q/k/v); it is identity-initialised, so it starts as the paper.
2. The table E is zero-initialised (as the reference) and shared by the heads (and by GQA groups) of one layer.
3. The attention is computed eagerly (O(T^2) memory per head for p, as in the reference); RoPE is turned off.
"""

from __future__ import annotations

from typing import Any

import torch
from litforge.plugins.position.base import PositionEncoding, attention_modules, disable_rotary
from torch import nn
from transformers import AttentionInterface, AttentionMaskInterface, PreTrainedModel
from transformers.masking_utils import eager_mask

ATTENTION_NAME = "litforge_cope"


class CoPETable(nn.Module):
    """The per-layer CoPE parameters: the position table E (head_dim x npos_max) and the optional gate key map."""

    def __init__(self, head_dim: int, npos_max: int, gate_key: bool = False):
        super().__init__()
        self.npos_max = npos_max
        self.pos_emb = nn.Parameter(torch.zeros(head_dim, npos_max))
        self.gate_key = nn.Parameter(torch.eye(head_dim)) if gate_key else None


def cope_position_logits(query: torch.Tensor, gate_logits: torch.Tensor, pos_emb: torch.Tensor,
                         visible: torch.Tensor) -> torch.Tensor:
    """CoPE's interpolated position logits e_ij, shape (batch, heads, query, key).

    query: (batch, heads, query, d); gate_logits: (batch, heads, query, key), already scaled by 1/sqrt(d);
    pos_emb: (d, npos_max); visible: bool, broadcastable to gate_logits, True where key j may be attended by query i.
    """
    npos_max = pos_emb.size(-1)
    gates = torch.sigmoid(gate_logits) * visible
    # p_ij = sum_{t >= j} g_it, as (row total - prefix sum before j): no flipped copies of the (T x T) gates
    positions = (gates.sum(-1, keepdim=True) - gates.cumsum(-1) + gates).clamp(min=0, max=npos_max - 1)
    logits_int = torch.matmul(query, pos_emb)  # z_i[n], (batch, heads, query, npos_max)
    # z_i[n] and z_i[n + 1] side by side, so one gather at floor(p) reads both ends of the interpolation
    pairs = torch.stack([logits_int, torch.cat([logits_int[..., 1:], logits_int[..., -1:]], -1)], -1)
    floor = positions.detach().floor()
    ends = pairs.gather(-2, floor.long().unsqueeze(-1).expand(*floor.shape, 2))  # (batch, heads, query, key, 2)
    weight = positions - floor
    return ends[..., 0] + weight * (ends[..., 1] - ends[..., 0])


def repeat_kv(states: torch.Tensor, groups: int) -> torch.Tensor:
    """(batch, kv_heads, T, d) -> (batch, kv_heads * groups, T, d), for grouped-query attention."""
    return states if groups == 1 else states.repeat_interleave(groups, dim=1)


def cope_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                   attention_mask: torch.Tensor | None, scaling: float, dropout: float = 0.0,
                   **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """An `AttentionInterface` function: attention with CoPE logits, reading the table from `module.cope`."""
    table: CoPETable = module.cope
    groups = query.size(1) // key.size(1)
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    logits = torch.matmul(query, key.transpose(2, 3)) * scaling  # (batch, heads, query, key)
    q_len, k_len = logits.shape[-2:]
    if attention_mask is None:  # causal, with the queries at the end of the keys (KV cache)
        causal = torch.ones(q_len, k_len, dtype=torch.bool, device=query.device).tril(k_len - q_len)
        attention_mask = torch.zeros(q_len, k_len, dtype=logits.dtype, device=query.device)
        attention_mask = attention_mask.masked_fill(~causal, torch.finfo(logits.dtype).min)
    elif attention_mask.dtype == torch.bool:
        attention_mask = torch.zeros_like(attention_mask, dtype=logits.dtype).masked_fill(
            ~attention_mask, torch.finfo(logits.dtype).min)
    attention_mask = attention_mask[..., :k_len]
    visible = attention_mask == 0
    if table.gate_key is None:
        gate_logits = logits
    else:
        gate_logits = torch.matmul(query, torch.matmul(key, table.gate_key).transpose(2, 3)) * scaling
    logits = logits + cope_position_logits(query, gate_logits, table.pos_emb.to(query.dtype), visible)
    weights = torch.softmax(logits + attention_mask, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = nn.functional.dropout(weights, p=dropout, training=module.training)
    output = torch.matmul(weights, value).transpose(1, 2).contiguous()  # (batch, query, heads, d)
    return output, weights


class CoPE(PositionEncoding):
    """Contextual position encoding on every attention layer of an `AttentionInterface` model (RoPE turned off).

    Args:
        npos_max: number of integer positions in the table (positions are clamped to npos_max - 1).
        gate_key: compute the gates with a separate (learned) key instead of the attention logits.
    """

    def __init__(self, npos_max: int = 64, gate_key: bool = False):
        if npos_max < 2:
            raise ValueError(f"npos_max must be at least 2, got {npos_max}")
        self.npos_max = npos_max
        self.gate_key = gate_key

    def init_args(self) -> dict[str, Any]:
        return {"npos_max": self.npos_max, "gate_key": self.gate_key}

    def attach(self, model: PreTrainedModel) -> None:
        # registering under a litforge name changes no model until its own config selects that name
        AttentionInterface.register(ATTENTION_NAME, cope_attention)
        AttentionMaskInterface.register(ATTENTION_NAME, eager_mask)  # a full additive mask: padding still arrives
        dtype = model.get_input_embeddings().weight.dtype
        for attention in attention_modules(model):
            attention.cope = CoPETable(attention.head_dim, self.npos_max, self.gate_key).to(dtype)
        disable_rotary(model)
        model.set_attn_implementation(ATTENTION_NAME)
        self.record(model)
