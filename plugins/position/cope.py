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
3. The attention is computed without a fused kernel (O(T^2) memory per head for p, as in the reference), with a
   hand-written backward for the position logits (`PositionLogits`) that keeps two (T x T) tensors; RoPE is off.
4. Models that soft-cap attention logits (Gemma 2) are refused: the paper does not say where the position logits go
   relative to the cap. Sliding windows are kept (the mask CoPE reads is the layer's windowed mask).
5. A query that may attend to no key (a left-padding position) gets all-zero attention weights, where the
   reference's softmax over an all-masked row gives NaN; the softmax runs in float32 for half-precision inputs and
   in the input's own precision otherwise.
"""

from __future__ import annotations

from typing import Any

import torch
from litforge.plugins.position.base import PositionEncoding, attention_modules, disable_rotary, rotary_modules
from torch import nn
from torch.autograd.function import once_differentiable
from transformers import AttentionInterface, AttentionMaskInterface, PreTrainedModel
from transformers.masking_utils import eager_mask

from litforge.errors import require

ATTENTION_NAME = "litforge_cope"


class CoPETable(nn.Module):
    """The per-layer CoPE parameters: the position table E (head_dim x npos_max) and the optional gate key map."""

    def __init__(self, head_dim: int, npos_max: int, gate_key: bool = False):
        super().__init__()
        self.pos_emb = nn.Parameter(torch.zeros(head_dim, npos_max))  # its width is npos_max
        self.gate_key = nn.Parameter(torch.eye(head_dim)) if gate_key else None


def cope_position_logits(query: torch.Tensor, gate_logits: torch.Tensor, pos_emb: torch.Tensor,
                         visible: torch.Tensor) -> torch.Tensor:
    """CoPE's interpolated position logits e_ij, shape (batch, heads, query, key).

    query: (batch, heads, query, d); gate_logits: (batch, heads, query, key), already scaled by 1/sqrt(d);
    pos_emb: (d, npos_max); visible: bool, broadcastable to gate_logits, True where key j may be attended by query i.
    """
    logits_int = torch.matmul(query, pos_emb)  # z_i[n], (batch, heads, query, npos_max)
    return PositionLogits.apply(gate_logits, logits_int, visible)


class PositionLogits(torch.autograd.Function):
    """e_ij from the gate logits and z_i = q_i . E, with a hand-written backward that keeps two (T x T) tensors.

    Autograd through the eager formula keeps the gates, the unclamped positions, a 2-wide int64 gather index, the
    interpolation weight and slope, and zero-fills a (T x T x 2) buffer per gather in its backward. Here the forward
    keeps the gates g and the clamped positions p, and works in place. With s_ij = z_i[floor p_ij + 1] -
    z_i[floor p_ij] (the interpolation's slope, 0 at the last position) and w_ij = p_ij - floor p_ij:
        dL/dp_ij = dL/de_ij s_ij            (0 where p is clamped to npos_max - 1, since s = 0 there)
        dL/dg_it = sum_{j <= t} dL/dp_ij    (p_ij sums g_it over t >= j: a forward cumulative sum)
        dL/dgate_logit = dL/dg g (1 - g)    (zero where masked, since g = 0 there)
        dL/dz_i[n] = sum_{j: floor p_ij = n} dL/de_ij (1 - w_ij) + sum_{j: floor p_ij = n - 1} dL/de_ij w_ij
    The clamp at 0 only guards against rounding (the gates are >= 0), so it passes the gradient through.
    """

    @staticmethod
    def forward(ctx, gate_logits: torch.Tensor, logits_int: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        npos_max = logits_int.size(-1)
        gates = torch.sigmoid(gate_logits).mul_(visible)
        # p_ij = sum_{t >= j} g_it = (row total) - (sum_{t < j} g_it): no flipped copies of the (T x T) gates
        positions = gates.cumsum(-1).sub_(gates)
        positions = torch.sub(gates.sum(-1, keepdim=True), positions, out=positions).clamp_(0, npos_max - 1)
        floor = positions.long()  # p >= 0, so truncation is the floor and frac(p) the interpolation weight
        # e = w (z[floor p + 1] - z[floor p]) + z[floor p]; the second gather reuses the first one's buffer, since
        # on a CPU each fresh (T x T) buffer costs about as much as an op on it (page faults)
        slopes = _slopes(logits_int).gather(-1, floor)
        out = positions.frac().mul_(slopes)
        out.add_(torch.gather(logits_int, -1, floor, out=slopes))
        ctx.save_for_backward(gates, positions, logits_int)
        return out

    @staticmethod
    @once_differentiable  # the saved gates carry no graph: a second derivative must fail, not come out wrong
    def backward(ctx, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        gates, positions, logits_int = ctx.saved_tensors
        floor = positions.long()
        grad_int = grad_gates = None
        buffer = positions.frac()  # w
        if ctx.needs_input_grad[1]:
            # scatter dL/de (1 - w) to floor p and dL/de w to floor p + 1; w = 0 wherever floor p = npos_max - 1,
            # so the second scatter is the first one's (dL/de w) shifted by one position
            weighted = buffer.mul_(grad_out)
            shifted = torch.zeros_like(logits_int).scatter_add_(-1, floor, weighted)
            grad_int = torch.zeros_like(logits_int).scatter_add_(-1, floor, grad_out).sub_(shifted)
            grad_int[..., 1:] += shifted[..., :-1]
        if ctx.needs_input_grad[0]:
            grad_gates = torch.gather(_slopes(logits_int), -1, floor, out=buffer).mul_(grad_out)  # dL/dp
            del floor
            grad_gates = grad_gates.cumsum_(-1).mul_(gates)
            grad_gates.addcmul_(grad_gates, gates, value=-1)  # dL/dg g (1 - g)
        return grad_gates, grad_int, None


def _slopes(logits_int: torch.Tensor) -> torch.Tensor:
    """z[n + 1] - z[n] for each n, with 0 at the last position (its ceiling is itself)."""
    return torch.nn.functional.pad(logits_int.diff(dim=-1), (0, 1))


def repeat_kv(states: torch.Tensor, groups: int) -> torch.Tensor:
    """(batch, kv_heads, T, d) -> (batch, kv_heads * groups, T, d), for grouped-query attention."""
    return states if groups == 1 else states.repeat_interleave(groups, dim=1)


def cope_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                   attention_mask: torch.Tensor | None, scaling: float, dropout: float = 0.0,
                   **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """An `AttentionInterface` function: attention with CoPE logits, reading the table from `module.cope`."""
    table: CoPETable = module.cope
    q_len, k_len = query.size(-2), key.size(-2)
    dtype = query.dtype
    if attention_mask is None:  # causal, with the queries at the end of the keys (KV cache)
        causal = torch.ones(q_len, k_len, dtype=torch.bool, device=query.device).tril(k_len - q_len)
        attention_mask = torch.zeros(q_len, k_len, dtype=dtype, device=query.device)
        attention_mask = attention_mask.masked_fill(~causal, torch.finfo(dtype).min)
    elif attention_mask.dtype == torch.bool:
        attention_mask = torch.zeros_like(attention_mask, dtype=dtype).masked_fill(
            ~attention_mask, torch.finfo(dtype).min)
    return cope_core(query, key, value, attention_mask[..., :k_len], table.pos_emb.to(dtype), table.gate_key,
                     scaling, dropout if module.training else 0.0)


def cope_core(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attention_mask: torch.Tensor,
              pos_emb: torch.Tensor, gate_key: torch.Tensor | None, scaling: float, dropout: float
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """CoPE attention on tensors: (batch, heads, T, d) q/k/v and an additive mask -> output (batch, T, heads, d)."""
    groups = query.size(1) // key.size(1)
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    logits = torch.matmul(query, key.transpose(2, 3)).mul_(scaling)  # (batch, heads, query, key)
    visible = attention_mask == 0
    if gate_key is None:
        gate_logits = logits
    else:
        gate_logits = torch.matmul(query, torch.matmul(key, gate_key).transpose(2, 3)).mul_(scaling)
    # in place on the position logits: nothing saved for the backward reads them
    logits = cope_position_logits(query, gate_logits, pos_emb, visible).add_(logits).add_(attention_mask)
    # the softmax runs in float32 for half precision and in the input's own precision above it (float64 stays)
    weights = torch.softmax(logits, dim=-1, dtype=torch.promote_types(logits.dtype, torch.float32)).to(query.dtype)
    # a query that sees no key (a left-padded row) attends to nothing: zeros, never NaN or a uniform average
    blind = ~visible.any(-1, keepdim=True)
    if blind.any():
        weights = weights.masked_fill(blind, 0.0)
    if dropout > 0:
        weights = nn.functional.dropout(weights, p=dropout)
    output = torch.matmul(weights, value).transpose(1, 2).contiguous()  # (batch, query, heads, d)
    return output, weights


class CoPE(PositionEncoding):
    """Contextual position encoding on every attention layer of an `AttentionInterface` model (RoPE turned off).

    Args:
        npos_max: number of integer positions in the table (positions are clamped to npos_max - 1).
        gate_key: compute the gates with a separate (learned) key instead of the attention logits.
    """

    def __init__(self, npos_max: int = 64, gate_key: bool = False):
        require(npos_max >= 2, "npos_max", f"must be >= 2 (positions interpolate between two entries), got {npos_max}")
        self.npos_max = npos_max
        self.gate_key = gate_key

    def init_args(self) -> dict[str, Any]:
        return {"npos_max": self.npos_max, "gate_key": self.gate_key}

    def attach(self, model: PreTrainedModel) -> None:
        softcap = getattr(model.config, "attn_logit_softcapping", None)
        require(softcap is None, "position",
                f"CoPE refuses {type(model).__name__}: it soft-caps attention logits (attn_logit_softcapping="
                f"{softcap}) and CoPE's position logits have no defined place relative to the cap; set "
                "attn_logit_softcapping to null in the model config to use CoPE")
        layers, _ = attention_modules(model), rotary_modules(model)  # refuse before changing anything
        self.claim(model)
        # registering under a litforge name changes no model until its own config selects that name
        AttentionInterface.register(ATTENTION_NAME, cope_attention)
        AttentionMaskInterface.register(ATTENTION_NAME, eager_mask)  # a full additive mask: padding still arrives
        dtype = model.get_input_embeddings().weight.dtype
        for attention in layers:
            attention.cope = CoPETable(attention.head_dim, self.npos_max, self.gate_key).to(dtype)
        disable_rotary(model)
        model.set_attn_implementation(ATTENTION_NAME)
        self.record(model)
